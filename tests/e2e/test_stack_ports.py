"""The real local stack (pypiserver + the registry binary, no Docker Engine) when the
index port changes while it is up: ``up`` refuses, ``down`` stops what really runs."""

from __future__ import annotations

import dataclasses
import shutil
import socket
from pathlib import Path

import pytest
import requests

from kiln._errors import ServiceUnavailable
from kiln._servers.stack import LocalStack
from kiln._workspace.model import StackConfig
from tests.e2e.conftest import IN_CI
from tests.e2e.tools import free_port

pytestmark = pytest.mark.e2e


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_changed_index_port_is_refused_and_down_stops_the_first_stack(tmp_path: Path) -> None:
    if not (shutil.which("docker-registry") or shutil.which("registry")):
        reason = "no docker-registry/registry binary on PATH (this test must not need Docker)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    first = StackConfig(index_port=free_port(), registry_port=free_port())
    stack = LocalStack(first, tmp_path / "stack")
    try:
        assert all(s.running for s in stack.up())
        index_pid = next(s.pid for s in stack.status() if s.name == "index")

        moved = LocalStack(dataclasses.replace(first, index_port=free_port()), tmp_path / "stack")
        with pytest.raises(ServiceUnavailable) as err:
            moved.up()
        assert (
            f"the index started by this checkout runs on 127.0.0.1:{first.index_port} "
            f"(pid {index_pid}), but [tool.kiln.stack] index-port is now "
            f"{moved.config.index_port}; run `kiln stack down` first" in str(err.value)
        )
        assert requests.get(f"{first.index_url}/simple/", timeout=5).status_code == 200
        assert not _listens(moved.config.index_port)

        stopped = moved.down()
    finally:
        stack.down()  # a failed assertion must not leak the servers (no-op after down)

    assert sorted((s.name, s.how) for s in stopped) == [
        ("index", "SIGTERM"),
        ("registry", "SIGTERM"),
    ]
    assert not _listens(first.index_port)
    assert not _listens(first.registry_port)
