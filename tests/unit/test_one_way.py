"""One way to do each side effect, checked by reading kiln's source.

Each test parses every module under ``src/kiln`` and lists the places that do the
side effect some other way than through its one module; the list must be empty.
Each scan is also run on a snippet that does it the other way, so a scan that has
stopped finding anything fails too.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"

Finder = Callable[[ast.AST], Iterator[str]]


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a name or an attribute chain; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _imported(tree: ast.AST) -> Iterator[tuple[ast.stmt, str]]:
    """Every module an import statement names (``from a import b``: ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, node.module
            yield from ((node, f"{node.module}.{alias.name}") for alias in node.names)


def _violations(find: Finder, allowed: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in allowed:
            continue
        hits = list(find(ast.parse(path.read_text(), filename=str(path))))
        if hits:
            found[rel] = hits
    return found


def _finds(find: Finder, snippet: str) -> list[str]:
    return list(find(ast.parse(snippet)))


# ---------------------------------------------------------------- subprocesses
_SPAWNING_MODULES = ("subprocess", "multiprocessing", "pty", "asyncio.subprocess")
_SPAWNING_CALLS = {
    "os.system", "os.popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.posix_spawnp",
    "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell",
}  # fmt: skip
_SPAWNING_PREFIXES = ("os.exec", "os.spawn")


def _starts_programs(tree: ast.AST) -> Iterator[str]:
    for statement, module in _imported(tree):
        if module in _SPAWNING_MODULES or module.startswith(
            tuple(f"{m}." for m in _SPAWNING_MODULES)
        ):
            yield f"line {statement.lineno}: imports {module}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = _dotted(node)
        if name in _SPAWNING_CALLS or name.startswith(_SPAWNING_PREFIXES):
            yield f"line {node.lineno}: {name}"


def test_programs_are_started_only_through_util_cmd() -> None:
    # kiln._util.cmd is the one module that starts programs: call, ask, capture, the build
    # backend's hook_runner and spawn all resolve the executable and raise kiln's errors.
    assert _violations(_starts_programs, {"_util/cmd.py"}) == {}


def test_the_program_scan_sees_each_way_round_it() -> None:
    for snippet in (
        "import subprocess",
        "from subprocess import run",
        "import multiprocessing.pool",
        "import os\nos.system('ls')",
        "import os\nos.execvp('ls', ['ls'])",
        "import os\nos.posix_spawn('/bin/ls', ['ls'], {})",
    ):
        assert _finds(_starts_programs, snippet), snippet
    assert _finds(_starts_programs, "from kiln._util.cmd import call\ncall(['git'])") == []


# ---------------------------------------------------------------- Docker Engine
_CLIENTS = ("DockerClient", "APIClient")  # a type in annotations; made only by docker_client


def _reaches_docker(tree: ast.AST) -> Iterator[str]:
    """A Docker client made here (the engine comes from docker's environment or a
    hand-written address), or the docker CLI in an argv."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _dotted(node) == "docker.from_env":
            yield f"line {node.lineno}: docker.from_env"
        elif isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in _CLIENTS:
            yield f"line {node.lineno}: {_dotted(node.func)}()"
        elif isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "docker":
                yield f"line {node.lineno}: runs the docker CLI"
    for statement, module in _imported(tree):
        if module == "docker.from_env":
            yield f"line {statement.lineno}: imports {module}"


def test_docker_engine_is_reached_only_through_docker_client() -> None:
    # kiln._util.docker.docker_client connects to Options.docker_host, and nowhere else.
    assert _violations(_reaches_docker, {"_util/docker.py"}) == {}
    own = ast.parse((SRC / "_util" / "docker.py").read_text())
    assert [n for n in ast.walk(own) if _dotted(n) == "docker.from_env"] == []


def test_the_docker_scan_sees_each_way_round_it() -> None:
    for snippet in (
        "import docker\ndocker.from_env()",
        "import docker\ndocker.DockerClient(base_url='unix:///x')",
        "from docker import from_env",
        "from docker import DockerClient\nDockerClient()",
        "import docker.client\ndocker.client.DockerClient(base_url=where)",
        "call(['docker', 'stop', 'kiln-registry'])",
        "call(('docker', 'run'))",
    ):
        assert _finds(_reaches_docker, snippet), snippet
    harmless = "def f(client: docker.DockerClient) -> None:\n    docker_client(where).ping()"
    assert _finds(_reaches_docker, harmless) == []


# ---------------------------------------------------------------- HTTP
_REQUESTS_CALLS = ("Session", "session", "request", "get", "head", "post", "put", "patch")
_HTTP_CALLS = {
    *(f"requests.{name}" for name in (*_REQUESTS_CALLS, "delete", "options")),
    "urllib3.PoolManager", "urllib3.request", "urllib.request.urlopen", "urlopen",
}  # fmt: skip
_HTTP_IMPORTS = (
    "urllib.request.urlopen", "urllib.request.build_opener", "urllib.request.Request",
    "http.client", "urllib3", "httpx", "aiohttp",
)  # fmt: skip


def _sends_http(tree: ast.AST) -> Iterator[str]:
    """A session or request made without the factory, a CA bundle set by hand, or a
    PyPISimple left to make its own session."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _HTTP_CALLS:
                yield f"line {node.lineno}: {name}()"
            elif name == "PyPISimple" and "session" not in {k.arg for k in node.keywords}:
                yield f"line {node.lineno}: PyPISimple() without a session"
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "verify":
                    yield f"line {node.lineno}: sets {_dotted(target) or '.verify'}"
    for statement, module in _imported(tree):
        if module.startswith("urllib3.util.retry"):  # the factory's retry policy
            continue
        if module in _HTTP_IMPORTS or module.startswith(tuple(f"{m}." for m in _HTTP_IMPORTS)):
            yield f"line {statement.lineno}: imports {module}"


def test_http_sessions_are_made_only_by_util_http() -> None:
    # kiln._util.http.session: the CA bundle, credentials, retries and a timeout.
    assert _violations(_sends_http, {"_util/http.py"}) == {}


def test_the_http_scan_sees_each_way_round_it() -> None:
    for snippet in (
        "import requests\ns = requests.Session()",
        "import requests\nrequests.get(url, timeout=2)",
        "session.verify = str(bundle)",
        "client = PyPISimple(endpoint=url)",
        "from urllib.request import urlopen",
        "import http.client",
    ):
        assert _finds(_sends_http, snippet), snippet
    made = "session = http.session(ca_bundle)\nPyPISimple(endpoint=url, session=session)"
    assert _finds(_sends_http, made) == []
