"""Config and manifest: the exact bytes pushed, so the digest is known before the push."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._images.oci.assemble import KFP_ENV, PythonLayer, assemble
from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.cache import Blob
from kiln._images.oci.compress import TAR_GZIP
from kiln._images.oci.image import labels, merge_env

BASE_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2026-11-29T06:35:04.417624671Z",
    "config": {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
        "Cmd": ["python3"],
        "Hostname": "",
        "Labels": None,
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
    "history": [{"created": "2026-11-29T06:35:04Z", "comment": "Imported from -"}],
}


def blob(n: str, files: dict[str, str] | None = None) -> Blob:
    return Blob(
        TAR_GZIP, "sha256:" + n * 64, 100 + len(n), "sha256:" + n * 64, Path(n), files or {}
    )


BASE = BaseImage("kiln-local/python:3.11-bookworm", "sha256:" + "0" * 64, BASE_CONFIG, (blob("1"),))
NUMPY = "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"
THIRD = PythonLayer("third-party", blob("2"), (NUMPY,), cached=False)
HELPERS = PythonLayer("helpers", blob("3"), ("acme_imgproc-0.2.0-py3-none-any.whl",), cached=False)
LABELS = labels(
    title="base",
    version="0.2.1",
    created="1980-01-01T00:00:00Z",
    source="https://git.example/acme/ml",
    revision="abc123",
    extra={"org.kiln.helpers": "acme-imgproc==0.2.0"},
)


def build(**overrides: object) -> tuple[bytes, bytes, str]:
    args: dict[str, object] = {
        "env": {**KFP_ENV, "MPLBACKEND": "Agg"},
        "labels": LABELS,
        "annotations": LABELS,
        "what": "image acme/base",
        **overrides,
    }
    image = assemble(BASE, [THIRD, HELPERS], **args)  # type: ignore[arg-type]
    return image.config, image.manifest, image.digest


def test_config_and_manifest_are_canonical_and_their_digests_stable() -> None:
    config, manifest, digest = build()
    assert config == (
        b'{"architecture":"amd64","config":{"Cmd":["python3"],"Env":['
        b'"PATH=/usr/local/bin:/usr/bin:/bin","LANG=C.UTF-8","MPLBACKEND=Agg",'
        b'"PIP_DISABLE_PIP_VERSION_CHECK=1","PIP_NO_CACHE_DIR=1","PYTHONUNBUFFERED=1",'
        b'"_KFP_RUNTIME=true"],"Labels":{"org.kiln.helpers":"acme-imgproc==0.2.0",'
        b'"org.opencontainers.image.created":"1980-01-01T00:00:00Z",'
        b'"org.opencontainers.image.revision":"abc123",'
        b'"org.opencontainers.image.source":"https://git.example/acme/ml",'
        b'"org.opencontainers.image.title":"base","org.opencontainers.image.version":"0.2.1"}},'
        b'"created":"1980-01-01T00:00:00Z","history":[{"comment":"Imported from -",'
        b'"created":"2026-11-29T06:35:04Z"},{"created":"1980-01-01T00:00:00Z",'
        b'"created_by":"kiln: third-party layer: numpy==2.4.6"},'
        b'{"created":"1980-01-01T00:00:00Z","created_by":"kiln: helpers layer: '
        b'acme-imgproc==0.2.0"}],"os":"linux","rootfs":{"diff_ids":["sha256:' + b"1" * 64 + b'",'
        b'"sha256:' + b"2" * 64 + b'","sha256:' + b"3" * 64 + b'"],"type":"layers"}}'
    )
    doc = json.loads(manifest)
    assert manifest == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        "size": len(config),
    }
    assert [layer["digest"][7:9] for layer in doc["layers"]] == ["11", "22", "33"]
    assert doc["annotations"] == LABELS
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    # The same inputs give the same digest on any machine and any day: a literal here.
    assert digest == "sha256:0ec5c3f1bc2f5662e76adb2cf54ce5a3508c9be3166b90abd49980937dab4ebc"


def test_created_command_and_workdir_are_parameters() -> None:
    config, _manifest, digest = build(created=1_700_000_000, cmd=["sh"], workdir="/work")
    doc = json.loads(config)
    assert doc["created"] == "2023-11-14T22:13:20Z"
    assert doc["config"]["Cmd"] == ["sh"]
    assert doc["config"]["WorkingDir"] == "/work"
    assert digest != build()[2]


def test_env_keeps_the_base_order_replaces_values_and_adds_sorted() -> None:
    base = ["PATH=/bin", "LANG=C", "EMPTY="]
    assert merge_env(base, {"LANG": "C.UTF-8", "Z": "1", "A": "2"}) == [
        "PATH=/bin", "LANG=C.UTF-8", "EMPTY=", "A=2", "Z=1",
    ]  # fmt: skip


def test_a_helper_shipping_a_third_party_file_is_an_error_naming_both() -> None:
    path = "/usr/local/lib/python3.11/dist-packages/numpy/__init__.py"
    third = PythonLayer("third-party", blob("2", {path: "numpy-2.4.6-cp311.whl"}), (), False)
    helpers = PythonLayer("helpers", blob("3", {path: "acme_imgproc-0.2.0.whl"}), (), False)
    with pytest.raises(ConfigError) as err:
        assemble(BASE, [third, helpers], env={}, labels={}, annotations={}, what="image acme/b")
    assert str(err.value).startswith(
        f"image acme/b: numpy-2.4.6-cp311.whl and acme_imgproc-0.2.0.whl both install {path};"
    )
