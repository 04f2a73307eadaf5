"""kiln's images read by clients kiln did not write, and what is inside them.

Debian's skopeo inspects each platform's image of each released index, and copies this
machine's (checking every blob's digest), which umoci unpacks, as any runtime would (the
arm64 image: tests/e2e/test_multiarch_release.py). Inside each image, run by Docker
Engine with no network: Python's ssl, sqlite3, zoneinfo and ctypes load,
``find_library`` answers from the ``ld.so.cache`` kiln wrote (byte for byte what the
image's own ``ldconfig`` writes), TLS verifies against the image's CA bundle, the
dpkg status lists every package of the OS lock, and nonroot and /tmp are as
distroless has them."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln._debian.lock import read_os_lock
from tests.e2e.conftest import required_tool
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e


def _images(released: dict[str, Any]) -> dict[str, str]:
    return {i["name"]: i["ref"] for i in released["manifest"]["images"]}


def test_skopeo_reads_and_copies_each_image_and_umoci_unpacks_it(
    repo: Repo, released: dict[str, Any], tmp_path: Path
) -> None:
    """Each image's digest names an index: skopeo reads each platform's image from it
    (the OS layer of its architecture first), and copies and umoci unpacks the one of
    this machine's platform (what a client without a platform of its own takes)."""
    skopeo, umoci = required_tool("skopeo"), required_tool("umoci")
    lock = read_os_lock(repo.root)
    assert lock.os.layer is not None
    for row in released["manifest"]["images"]:
        name, ref = row["name"], row["ref"]
        children = {p["platform"]: p["digest"] for p in row["platforms"]}
        assert sorted(children) == ["linux/amd64", "linux/arm64"], name
        for platform, child in children.items():
            arch = platform.split("/")[1]
            variant = ["--override-variant", "v8"] if arch == "arm64" else []
            # the platform's image, picked from the index, and asked for by its own digest
            picked, seen = (
                json.loads(subprocess.run(
                    [skopeo, "inspect", "--tls-verify=false", *override, f"docker://{asked}"],
                    capture_output=True, text=True, check=True,
                ).stdout)
                for override, asked in (
                    (["--override-arch", arch, *variant], ref),
                    ([], f"{row['repository']}@{child}"),
                )
            )  # fmt: skip
            assert seen["Digest"] == child, (name, platform)
            assert picked["Layers"] == seen["Layers"], (name, platform)
            os_layer = lock.of(arch).os.layer
            assert os_layer is not None
            assert seen["Layers"][0] == os_layer.digest  # the shared OS layer, first
            assert (picked["Os"], seen["Os"]) == ("linux", "linux")
            assert picked["Architecture"] == seen["Architecture"] == arch
        layout = tmp_path / f"{name}-oci"
        subprocess.run(
            [skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
             f"oci:{layout}:copied"],
            check=True,
        )  # fmt: skip
        index = json.loads((layout / "index.json").read_text())
        # this machine's platform's image, the same bytes
        assert [m["digest"] for m in index["manifests"]] == [children[f"linux/{lock.architecture}"]]
        bundle = tmp_path / f"{name}-bundle"
        subprocess.run(
            [umoci, "unpack", "--image", f"{layout}:copied", str(bundle)],
            check=True, capture_output=True,
        )  # fmt: skip
        root = bundle / "rootfs"
        assert (root / "usr" / "bin" / "python3").is_symlink()
        assert (root / "bin").readlink() == Path("usr/bin")
        assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
        assert (root / "home" / "nonroot").stat().st_uid == 65532
        status = root / "var" / "lib" / "dpkg" / "status.d"
        listed = {p.name for p in status.iterdir() if not p.name.endswith(".md5sums")}
        assert listed == {p.name for p in lock.os.packages}, name
        for pin in lock.os.packages:
            text = (status / pin.name).read_text()
            assert f"Package: {pin.name}\n" in text
            assert f"Version: {pin.version}\n" in text
            assert "Status: install ok installed\n" in text
        assert "nonroot:x:65532:65532:" in (root / "etc" / "passwd").read_text()
        assert (root / "etc" / "ssl" / "certs" / "ca-certificates.crt").stat().st_size > 100_000


# Run in each image: the standard library's native parts, find_library from the cache
# kiln wrote, and the cache the image's own ldconfig writes now (compared by sha256).
_INSIDE = r"""
set -e
ldconfig -C /tmp/ld.so.cache.now
sha256sum /etc/ld.so.cache /tmp/ld.so.cache.now
python3 - <<'EOF'
import ctypes.util, json, ssl, sqlite3, sys, zoneinfo
print(json.dumps({
    "python": sys.version.split()[0],
    "libc": ctypes.util.find_library("c"),
    "libssl": ctypes.util.find_library("ssl"),
    "sqlite": sqlite3.sqlite_version,
    "berlin": str(zoneinfo.ZoneInfo("Europe/Berlin")),
    "cafile": ssl.get_default_verify_paths().cafile,
    "cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
}))
EOF
"""


def test_inside_each_image_python_s_native_parts_load_and_ldconfig_agrees(
    released: dict[str, Any], docker_client: docker.DockerClient, repo: Repo
) -> None:
    mozilla = [p for p in read_os_lock(repo.root).os.packages if p.name == "ca-certificates"]
    assert mozilla
    for name, ref in _images(released).items():
        out = docker_client.containers.run(
            ref, ["sh", "-c", _INSIDE], network_mode="none", remove=True
        ).decode()
        sums = [line.split()[0] for line in out.splitlines()[:2]]
        assert sums[0] == sums[1], f"{name}: kiln's ld.so.cache is not what ldconfig writes"
        found = json.loads(out.splitlines()[-1])
        assert found["python"].startswith("3.11.")
        assert (found["libc"], found["libssl"]) == ("libc.so.6", "libssl.so.3"), name
        assert found["berlin"] == "Europe/Berlin"
        assert found["cafile"] == "/usr/lib/ssl/cert.pem"
        assert found["cas"] > 100, name  # Mozilla's roots, from the image's bundle
        print(f"{name}: Python {found['python']}, {found['cas']} CA roots, sqlite "
              f"{found['sqlite']}, ld.so.cache as ldconfig writes it")  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate from a throwaway CA: (port, CA)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "kiln test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"HTTP/1.0 200 OK\r\n\r\nkiln")
            except (ssl.SSLError, OSError):
                conn.close()  # the client refused our certificate: what a test expects

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, folder / "ca.pem"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


_HANDSHAKE = """
import socket, ssl, sys
port, extra = int(sys.argv[1]), sys.argv[2:]
context = ssl.create_default_context()  # the image's bundle: /usr/lib/ssl/cert.pem
for cafile in extra:
    context.load_verify_locations(cafile)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            print("verified", tls.version())
except ssl.SSLCertVerificationError as exc:
    print("refused", exc.verify_message)
"""


def test_tls_in_each_image_verifies_against_its_bundle(
    released: dict[str, Any], docker_client: docker.DockerClient, tls_server: tuple[int, Path]
) -> None:
    """The handshake verifies the server's chain: with the image's bundle alone a private
    CA is refused (no public CA signed it), and once that CA is trusted too it passes."""
    port, ca = tls_server
    for name, ref in _images(released).items():
        run = ["python3", "-c", _HANDSHAKE, str(port)]
        refused = docker_client.containers.run(ref, run, network_mode="host", remove=True).decode()
        assert refused.strip() == "refused unable to get local issuer certificate", name
        verified = docker_client.containers.run(
            ref, [*run, "/ca.pem"], network_mode="host", remove=True,
            volumes={str(ca): {"bind": "/ca.pem", "mode": "ro"}},
        ).decode()  # fmt: skip
        assert verified.strip().startswith("verified TLSv1."), name
