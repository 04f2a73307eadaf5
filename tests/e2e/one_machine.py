"""The workflow rehearsal's reference: one machine's `kiln release --tag` of the same
commit, on an index and a registry of its own that serve the rehearsal's addresses
(``Servers.fresh``: the same URLs, empty storage), so that it publishes everything as
the matrix did, and its record must be the matrix's byte for byte: every file of
`dist/release/` (the manifest, the bundle, notes, catalog, SBOMs), `dist/manifest.json`,
and what the servers hold (each file's sha256, each tag's digest)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import requests

from tests.e2e.conftest import PASSWORD, USER, Servers

_MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


def release_tag(
    kiln: Path, workspace: Path, servers: Servers, tag: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`kiln release --tag TAG` of ``workspace`` (a checkout) to ``servers``."""
    target = ("--index", servers.index_url, "--registry", servers.registry)
    return subprocess.run(
        [str(kiln), "release", "--tag", tag, *target, "--repo", str(workspace)],
        env={**env, **servers.env()}, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


def held(servers: Servers) -> tuple[dict[str, str], dict[str, str]]:
    """What the servers hold, asked directly: index filename -> sha256, and registry
    repository:tag -> manifest digest."""
    ask = requests.Session()
    ask.auth = (USER, PASSWORD)
    base = servers.index_url
    projects = re.findall(r'href="([^"/]+)/?"', ask.get(f"{base}/simple/", timeout=30).text)
    files: dict[str, str] = {}
    for project in projects:
        page = ask.get(f"{base}/simple/{project}/", timeout=30).text
        for name, sha in re.findall(r'href="[^"#]*/([^"/#]+)#sha256=([0-9a-f]+)"', page):
            assert name not in files, f"{name} listed twice"
            files[name] = sha
    registry = f"http://{servers.registry}/v2"
    tags: dict[str, str] = {}
    for repo in ask.get(f"{registry}/_catalog", timeout=30).json()["repositories"] or []:
        for tag in ask.get(f"{registry}/{repo}/tags/list", timeout=30).json()["tags"] or []:
            head = ask.head(
                f"{registry}/{repo}/manifests/{tag}", headers={"Accept": _MANIFESTS}, timeout=30
            )
            tags[f"{repo}:{tag}"] = head.headers["Docker-Content-Digest"]
    return files, tags


def record(workspace: Path) -> list[str]:
    """dist/release's files, as the gh step's `find dist/release -type f | sort` lists them."""
    found = [p.relative_to(workspace).as_posix() for p in (workspace / "dist/release").rglob("*")]
    return sorted(f for f in found if (workspace / f).is_file())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_record(alone: Path, work: Path) -> None:
    """The release record in ``alone`` (one machine's checkout) is, byte for byte, the one
    in ``work`` (the finalize job's): every file of dist/release, and dist/manifest.json."""
    files = record(work)
    assert record(alone) == files
    assert "dist/release/manifest.json" in files
    for path in [*files, "dist/manifest.json"]:
        assert sha256(alone / path) == sha256(work / path), path
