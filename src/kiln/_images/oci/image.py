"""The OCI image config and manifest, as the exact bytes that are pushed.

Both are canonical JSON (sorted keys, no spaces, UTF-8): the manifest digest is
the sha256 of the bytes kiln PUTs, so it is known before any push. Nothing in
them comes from the build machine: the config carries the base's settings, the
layers' diff_ids, the environment and labels given, and a fixed ``created``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln._images.oci.cache import Blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI = "org.opencontainers.image"
# The runtime settings of an OCI config that an image inherits from its base.
_INHERITED = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal",
)  # fmt: skip


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def rfc3339(epoch: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_env(base: Sequence[str], extra: Mapping[str, str]) -> list[str]:
    """``base`` (``KEY=value`` items) with ``extra``'s values replacing or added (sorted)."""
    keys = [item.partition("=")[0] for item in base]
    merged = [f"{k}={extra[k]}" if k in extra else item for k, item in zip(keys, base, strict=True)]
    return merged + [f"{k}={extra[k]}" for k in sorted(extra) if k not in keys]


def labels(
    *,
    title: str,
    version: str,
    created: str,
    source: str | None = None,
    revision: str | None = None,
    base_name: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """OCI annotation keys (and ``extra``, e.g. helper versions). ``source`` must be free
    of credentials; ``created`` and ``revision`` should be those of the last change to
    the image's inputs, or every commit would give a new digest."""
    found = {
        f"{OCI}.title": title,
        f"{OCI}.version": version,
        f"{OCI}.created": created,
        f"{OCI}.source": source,
        f"{OCI}.revision": revision,
        f"{OCI}.base.name": base_name,
    }
    return {**{k: v for k, v in found.items() if v}, **(extra or {})}


def image_config(
    base: Mapping[str, Any],
    layers: Sequence[Blob],
    history: Sequence[str],
    *,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    created: str,
    cmd: Sequence[str] | None = None,
    workdir: str | None = None,
) -> dict[str, Any]:
    """The config of ``base`` (its config JSON) with ``layers`` (all of them, base first)
    and a ``history`` line for each layer added on top of the base's."""
    settings = base.get("config") or {}
    config = {k: settings[k] for k in _INHERITED if settings.get(k)}
    config["Env"] = merge_env(settings.get("Env") or [], env)
    config["Labels"] = {**(settings.get("Labels") or {}), **labels}
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if workdir is not None:
        config["WorkingDir"] = workdir
    doc: dict[str, Any] = {
        "architecture": base["architecture"],
        "os": base["os"],
        "created": created,
        "config": {k: v for k, v in config.items() if v},
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in layers]},
        "history": [
            *base.get("history", []),
            *({"created": created, "created_by": line} for line in history),
        ],
    }
    if base.get("variant"):
        doc["variant"] = base["variant"]
    return doc


def image_manifest(
    config: bytes, layers: Sequence[Blob], annotations: Mapping[str, str]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


@dataclass(frozen=True)
class BuiltImage:
    """An image ready to push: the exact config and manifest bytes, and its layers."""

    config: bytes
    manifest: bytes
    layers: tuple[Blob, ...]
    media_type: str = OCI_MANIFEST
    # Blob digest -> a repository of the push registry holding it already (the base's):
    # mounted from there instead of uploaded. Not part of the image's bytes.
    mounts: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)
