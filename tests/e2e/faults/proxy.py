"""A small threaded HTTP proxy put before a server (the index, the registry) that injects
faults: for the N-th request matching a method and a path (regular expressions), it
drops the connection, resets it, delays it, answers a 5xx itself, passes the answer on
with its body cut short, or holds the request until the test lets it go (then drops or
forwards it). It records each upload it forwarded to an index (file name, answer).
Test code: it may open sockets (tests/unit/test_one_way.py scans only src/). The Host
header goes through as the client sent it, so a registry's Location headers point back
at the proxy."""

from __future__ import annotations

import http.client
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te"})
KINDS = ("drop", "reset", "delay", "status", "truncate", "hold")
# The file of an upload to an index (twine's multipart form: its "content" part).
_UPLOADED = re.compile(rb'name="content"; filename="([^"]+)"')
# What a proxy may answer itself, from a request's method, path and headers: (status,
# JSON body), or None to pass the request on.
Answer = Callable[[str, str, Message], "tuple[int, bytes] | None"]


@dataclass
class Fault:
    """``kind`` (one of ``KINDS``) for the ``nth`` request (1-based) matching ``method``
    and ``path`` (regexes, searched), and the ``times - 1`` matching requests after it;
    ``agent``: only requests whose User-Agent it matches (kiln's own, not the engine's).
    A "hold" keeps the request until ``FaultProxy.let_go`` (at most ``seconds``), then
    does ``then``: "drop" it (it never reaches the server) or "forward" it."""

    kind: str
    method: str
    path: str
    nth: int = 1
    times: int = 1
    status: int = 503
    seconds: float = 1.5
    agent: str = ""
    then: str = "drop"
    seen: int = 0
    fired: list[str] = field(default_factory=list)  # "METHOD path" of each request hit

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert self.then in ("drop", "forward"), self.then

    def hits(self, method: str, path: str, agent: str) -> bool:
        if not re.search(self.method, method) or not re.search(self.path, path):
            return False
        if self.agent and not re.search(self.agent, agent):
            return False
        self.seen += 1
        return self.nth <= self.seen < self.nth + self.times

    @property
    def point(self) -> str:
        return (
            f"{self.kind}{'' if self.kind != 'status' else self.status} {self.method} {self.path}"
        )


class FaultProxy:
    """A proxy on a free loopback port before ``upstream`` (host:port)."""

    def __init__(self, upstream: str, answer: Answer | None = None) -> None:
        self.upstream = upstream
        self.answer = answer  # a refusal of the proxy's own (a registry without a feature)
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.uploads: list[tuple[str, int]] = []  # (file name, the index's status)
        self.held = threading.Event()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults = list(faults)
            self.held.clear()

    def clear(self) -> list[Fault]:
        """Stop injecting; the faults that were set, with what they hit."""
        with self.lock:
            done, self.faults = self.faults, []
        return done

    def let_go(self) -> None:
        """End every hold, now and after (``inject`` arms the next ones)."""
        self.held.set()

    def pick(self, method: str, path: str, agent: str) -> Fault | None:
        with self.lock:
            self.requests.append(f"{method} {path}")
            # every fault counts the request (its nth is among the requests it matches);
            # the first that is due fires
            due = [fault for fault in self.faults if fault.hits(method, path, agent)]
            if not due:
                return None
            due[0].fired.append(f"{method} {path}")
            return due[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (a killed kiln, a retry's lost race) is no error here;
        anything else is printed as http.server does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    proxy: ClassVar[FaultProxy]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _hang_up(self, *, reset: bool) -> None:
        if reset:  # an RST, not a FIN: "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self.proxy.upstream.rsplit(":", 1)
        upstream = http.client.HTTPConnection(host, int(port), timeout=300)
        # Every header as sent, repeated ones too (the engine sends one Accept per type).
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                upstream.putheader(name, value)
            upstream.endheaders(body or None)
            resp = upstream.getresponse()
            data = resp.read() if self.command != "HEAD" else b""
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            upstream.close()

    def _proxy(self) -> None:
        body = self._body()
        own = self.proxy.answer and self.proxy.answer(self.command, self.path, self.headers)
        if own:
            self.send_response_only(own[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(own[1])))
            self.end_headers()
            self.wfile.write(own[1])
            return
        fault = self.proxy.pick(self.command, self.path, self.headers.get("User-Agent", ""))
        if fault is not None and self._answered_by(fault):
            return
        status, reason, headers, data = self._forward(body)
        upload = _UPLOADED.search(body) if self.command == "POST" else None
        if upload is not None:
            with self.proxy.lock:
                self.proxy.uploads.append((upload.group(1).decode(), status))
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            length = {k.lower(): v for k, v in headers}.get("content-length")
            if length is not None:
                self.send_header("Content-Length", length)
        elif status not in (204, 304) and status >= 200:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault is not None and fault.kind == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._hang_up(reset=False)
            return
        self.wfile.write(data)

    def _answered_by(self, fault: Fault) -> bool:
        """Whether ``fault`` answered the request itself (nothing is forwarded); a delay
        or a hold let go to forward it first waits."""
        if fault.kind in ("drop", "reset"):
            self._hang_up(reset=fault.kind == "reset")
            return True
        if fault.kind == "status":
            self.send_response_only(fault.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault.kind == "hold":
            self.proxy.held.wait(fault.seconds)
            if fault.then == "drop":
                self._hang_up(reset=False)
                return True
        return False

    # http.server's names for the method handlers
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy  # noqa: N815
