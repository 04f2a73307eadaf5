"""Pushing through the registry API (a fake transport: no sockets)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kiln._errors import CommandFailed, ServiceUnavailable
from kiln._images.oci.cache import Blob
from kiln._images.oci.compress import TAR_GZIP
from kiln._images.oci.image import BuiltImage, canonical_json, image_manifest
from kiln._images.oci.index import OCI_INDEX
from kiln._images.oci.push import push_image
from kiln._servers.registry import RegistryClient
from kiln._servers.registry_wire import default_scheme, scope
from tests.unit.test_credentials import FakeTransport, session_with

Answer = tuple[int, dict[str, str], bytes]


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class FakeRegistry:
    """Blob HEAD/POST/PUT and manifest PUT/GET, as CNCF distribution answers them."""

    def __init__(self, *, rewrite: bool = False, failures: list[int] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}  # by the reference they were PUT as
        self.by_digest: dict[str, bytes] = {}
        self.rewrite = rewrite  # store another manifest than the one sent
        self.failures = failures or []  # statuses answered to the next blob PUTs
        self.mountable: set[str] = set()  # blobs another repository of this registry holds
        self.refuse_index = False  # answer an OCI image index as a registry without them does
        self.rewrite_index = False  # store an index other than the one sent

    def __call__(self, request: requests.PreparedRequest) -> Answer:  # noqa: PLR0911
        url = urlsplit(str(request.url))
        path = url.path
        body = request.body if isinstance(request.body, bytes) else b""
        if hasattr(request.body, "read"):
            body = request.body.read()  # type: ignore[union-attr]  # a file being uploaded
        if request.method == "HEAD" and "/blobs/" in path:
            return (200 if path.rsplit("/", 1)[1] in self.blobs else 404), {}, b""
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            mount = parse_qs(url.query).get("mount", [""])[0]
            if mount in self.mountable:
                self.blobs[mount] = b"mounted"
                return 201, {"Docker-Content-Digest": mount}, b""
            return 202, {"Location": f"{path}u1?_state=abc"}, b""
        if request.method == "DELETE" and "/blobs/uploads/" in path:
            return 204, {}, b""
        if request.method == "PUT" and "/blobs/uploads/" in path:
            if self.failures:
                status = self.failures.pop(0)
                error = {"errors": [{"code": "DIGEST_INVALID", "message": "digest mismatch"}]}
                return status, {}, json.dumps(error).encode()
            digest = parse_qs(url.query)["digest"][0]
            assert sha(body) == digest
            self.blobs[digest] = body
            return 201, {"Docker-Content-Digest": digest}, b""
        if request.method == "PUT" and "/manifests/" in path:
            kind = request.headers["Content-Type"]
            assert kind in (OCI_INDEX, "application/vnd.oci.image.manifest.v1+json")
            if kind == OCI_INDEX and self.refuse_index:
                error = {"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid"}]}
                return 400, {}, json.dumps(error).encode()
            stored = body.replace(b'"size":400', b'"size":401') if self.rewrite else body
            stored += b"\n" if kind == OCI_INDEX and self.rewrite_index else b""
            self.manifests[path.rsplit("/", 1)[1]] = stored
            self.by_digest[sha(stored)] = stored
            return 201, {"Docker-Content-Digest": sha(stored)}, b""
        if request.method == "GET" and "/manifests/" in path:
            return 200, {}, self.by_digest[path.rsplit("/", 1)[1]]
        raise AssertionError(f"unexpected {request.method} {request.url}")


def an_image(tmp_path: Path, architecture: str = "amd64") -> BuiltImage:
    layers = []
    base = "base" if architecture == "amd64" else f"base-{architecture}"
    for name, size in ((base, 100), ("third", 7)):
        path = tmp_path / name
        path.write_bytes(name.encode() * size)
        data = path.read_bytes()
        layers.append(Blob(TAR_GZIP, sha(data), len(data), sha(b"tar" + data), path))
    config = b'{"architecture":"%s","os":"linux"}' % architecture.encode()
    manifest = canonical_json(image_manifest(config, layers, {}))
    return BuiltImage(config=config, manifest=manifest, layers=tuple(layers))


def client(registry: FakeRegistry, sleeps: list[float]) -> tuple[RegistryClient, FakeTransport]:
    transport = FakeTransport(registry)
    return RegistryClient("reg.test", session=session_with(transport), sleep=sleeps.append), (
        transport
    )


def test_missing_blobs_are_uploaded_then_the_manifest_by_digest_then_by_tag(
    tmp_path: Path,
) -> None:
    image = an_image(tmp_path)
    registry = FakeRegistry()
    registry.blobs[image.layers[0].digest] = image.layers[0].path.read_bytes()  # the base
    reg, transport = client(registry, [])

    pushed = push_image(reg, "acme/base", "0.2.1", image)

    assert pushed.digest == image.digest
    assert pushed.present == (image.layers[0].digest,)
    assert pushed.uploaded == (image.layers[1].digest, image.config_digest)
    assert pushed.uploaded_bytes == image.layers[1].size + len(image.config)
    assert registry.blobs[image.config_digest] == image.config
    assert registry.manifests == {image.digest: image.manifest, "0.2.1": image.manifest}
    layer, config = image.layers[1].digest, image.config_digest
    assert [line.split("?")[0] for line in transport.lines()] == [
        f"HEAD https://reg.test/v2/acme/base/blobs/{image.layers[0].digest}",
        f"HEAD https://reg.test/v2/acme/base/blobs/{layer}",
        "POST https://reg.test/v2/acme/base/blobs/uploads/",
        "PUT https://reg.test/v2/acme/base/blobs/uploads/u1",
        f"HEAD https://reg.test/v2/acme/base/blobs/{config}",
        "POST https://reg.test/v2/acme/base/blobs/uploads/",
        "PUT https://reg.test/v2/acme/base/blobs/uploads/u1",
        f"PUT https://reg.test/v2/acme/base/manifests/{image.digest}",
        "PUT https://reg.test/v2/acme/base/manifests/0.2.1",
    ]


def test_a_registry_storing_another_manifest_is_an_error_naming_the_image_and_layer(
    tmp_path: Path,
) -> None:
    image = an_image(tmp_path)
    reg, _ = client(FakeRegistry(rewrite=True), [])
    with pytest.raises(CommandFailed) as err:
        push_image(reg, "acme/base", "0.2.1", image)
    message = str(err.value)
    assert message.startswith(
        f"image reg.test/acme/base:{image.digest}: the registry answered digest sha256:"
    )
    base = image.layers[0].digest
    differs = f"layer 1: kiln {base} (400 bytes), registry {base} (401 bytes)"
    assert f"kiln predicted {image.digest} ({differs})" in message


def test_5xx_answers_are_retried_with_backoff(tmp_path: Path) -> None:
    image = an_image(tmp_path)
    sleeps: list[float] = []
    reg, _ = client(FakeRegistry(failures=[503, 502]), sleeps)
    assert push_image(reg, "acme/base", "1", image).digest == image.digest
    assert sleeps == [1.0, 2.0]


def test_a_refused_blob_is_not_retried_and_says_why(tmp_path: Path) -> None:
    image = an_image(tmp_path)
    sleeps: list[float] = []
    reg, _ = client(FakeRegistry(failures=[400]), sleeps)
    with pytest.raises(CommandFailed) as err:
        push_image(reg, "acme/base", "1", image)
    assert f"registry reg.test refused blob {image.layers[0].digest} of acme/base" in str(err.value)
    assert "DIGEST_INVALID: digest mismatch" in str(err.value)
    assert sleeps == []


def test_a_registry_that_stays_down_fails_after_the_retries(tmp_path: Path) -> None:
    sleeps: list[float] = []
    reg, transport = client(FakeRegistry(), sleeps)
    transport.handler = lambda _request: (503, {}, b"")
    with pytest.raises(ServiceUnavailable, match=r"registry reg\.test: HEAD .* answered 503"):
        push_image(reg, "acme/base", "1", an_image(tmp_path))
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(transport.seen) == 4


def test_writes_ask_for_a_push_token() -> None:
    upload = "https://reg.test/v2/acme/base/blobs/uploads/u1?_state=x"
    assert scope(upload, "PUT") == "repository:acme/base:pull,push"
    assert scope("https://reg.test/v2/acme/base/blobs/sha256:ab", "HEAD") == (
        "repository:acme/base:pull"
    )


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        ("127.0.0.1:5765", "http"),
        ("localhost:5000", "http"),
        ("[::1]:5000", "http"),
        ("ghcr.io", "https"),
        ("registry.example:5000", "https"),
        ("localhost.example.com", "https"),
    ],
)
def test_registries_off_this_machine_are_spoken_to_over_https(host: str, scheme: str) -> None:
    # A base on Docker Hub or a CI target on ghcr.io over plain HTTP would fail.
    assert default_scheme(host) == scheme


class RecordingRegistry:
    """A BlobRegistry that has no blob, stores manifests as sent and records each call."""

    host = "reg.test"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def blob_exists(self, repository: str, digest: str) -> bool:
        self.calls.append(f"head {digest[:13]}")
        return False

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        raise AssertionError("nothing to mount")

    def upload_blob(self, repository: str, digest: str, content: Path | bytes) -> None:
        self.calls.append(f"upload {digest[:13]}")

    def put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> str:
        self.calls.append(f"manifest {reference}")
        return sha(manifest)

    def manifest(self, repository: str, reference: str) -> bytes:
        raise AssertionError("not asked")


def test_the_tag_is_put_only_after_the_image_is_verified_by_digest(tmp_path: Path) -> None:
    image = an_image(tmp_path)
    registry = RecordingRegistry()

    def verify(digest: str) -> None:
        assert digest == image.digest
        registry.calls.append("verify")

    push_image(registry, "acme/base", "0.2.1", image, verify=verify)
    assert registry.calls[-3:] == [f"manifest {image.digest}", "verify", "manifest 0.2.1"]
    assert all(not call.startswith("manifest") for call in registry.calls[:-3])


def test_an_image_failing_its_verification_is_never_tagged(tmp_path: Path) -> None:
    image = an_image(tmp_path)
    registry = RecordingRegistry()

    def fails(_digest: str) -> None:
        raise CommandFailed("smoke check failed")

    with pytest.raises(CommandFailed, match="smoke check failed"):
        push_image(registry, "acme/base", "0.2.1", image, verify=fails)
    assert [c for c in registry.calls if c.startswith("manifest")] == [f"manifest {image.digest}"]
