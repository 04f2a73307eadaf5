"""What an image's lock is made from, and whether a lock is still what it would be.

A lock's header records the *inputs* hash of its image's third-party requirements,
Python, platform (and platforms, when several), upstream index, kfp and base; a lock
recording another value is stale and refused, never silently used.
"""

from __future__ import annotations

import hashlib
import json

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kiln._errors import ConfigError
from kiln._lock.format import Lock
from kiln._workspace.model import Image, Workspace, helper_closure


def closure_requirements(workspace: Workspace, image: Image) -> tuple[str, ...]:
    """The image's third-party requirements, without kfp: its helpers' dependencies
    (minus sibling helpers, which kiln builds) and ``image.toml`` ``requirements``."""
    helper_dists = {canonicalize_name(h.distribution) for h in workspace.helpers}
    reqs: set[str] = set(image.requirements)
    for name in helper_closure(workspace, image.helpers):
        for raw in workspace.helper(name).dependencies:
            if canonicalize_name(Requirement(raw).name) not in helper_dists:
                reqs.add(raw)
    return tuple(sorted(reqs))


OS_BASE = "os"  # a lock's base when the image is built on kiln's OS base (images/os.lock)


def inputs_hash(workspace: Workspace, image: Image, kfp_version: str) -> str:
    """What a lock is made from; a lock recording another value is stale."""
    doc = {
        "requirements": list(closure_requirements(workspace, image)),
        "python": image.python,
        "platform": image.platform,
        "index": workspace.upstream_index,
        "kfp": kfp_version,
        "base": image.base or OS_BASE,
    }
    extra = no_deps_extra(workspace, image)
    if extra:
        doc["no-deps"] = list(extra)
    if len(image.platforms) > 1:  # a lock for one platform: "platform" says it, as ever
        doc["platforms"] = list(image.python_platforms)
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def no_deps_extra(workspace: Workspace, image: Image) -> tuple[str, ...]:
    """What a lock pins ``--no-deps`` besides kfp: pip, for packages mode's base when kiln
    builds it (its pods run ``python3 -m pip install``; Debian's Python has no pip)."""
    return ("pip",) if image is workspace.packages and image.base is None else ()


def check_fresh(lock: Lock, workspace: Workspace, image: Image, kfp_version: str) -> None:
    """A ConfigError naming the file and the fix when ``lock`` was made from other inputs."""
    if lock.inputs != inputs_hash(workspace, image, kfp_version):
        raise ConfigError(
            f"{lock.path}: stale: image.toml, its helpers' dependencies, the upstream index "
            f"or kfp ({kfp_version}) changed since it was written; run `kiln lock {image.name}` "
            "and commit the result"
        )
