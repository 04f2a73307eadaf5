"""Making an image's lock: ``uv pip compile --generate-hashes`` for the image's Python and
platform against the upstream index, kfp added ``--no-deps``, and a wheel built from
the sdist of each pin that has none for the image."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from kiln._errors import CommandFailed, ConfigError
from kiln._lock.format import INPUT, BasePin, Pin, lock_path, pins_of, render
from kiln._lock.inputs import closure_requirements, inputs_hash, no_deps_extra
from kiln._lock.platforms import Resolved, check_foreign_wheels, merged_hashes, with_hashes
from kiln._lock.sources import Pages, SdistBuilds, sdist_only
from kiln._lock.tags import supported_tags
from kiln._util.cmd import Runner
from kiln._workspace.model import Image, Workspace


@dataclass(frozen=True)
class Uv:
    """``uv pip compile``, hermetic: no uv config, an explicit index, the machine's CAs."""

    runner: Runner
    executable: str
    index: str
    ca_bundle: Path | None = None

    def compile(self, image: Image, directory: Path, *, no_deps: bool = False,
                upgrade: Sequence[str] = (), platform: str | None = None) -> str:  # fmt: skip
        """Compile ``directory/requirements.in`` into ``directory/requirements.txt`` (whose
        versions, when the file exists, uv keeps unless told to upgrade) for ``platform``
        (default: the image's); return it."""
        out = directory / "requirements.txt"
        argv = [
            self.executable, "pip", "compile", "--no-config", "--quiet", "--no-progress",
            "--generate-hashes", "--no-header", "--python-version", image.python,
            "--python-platform", platform or image.platform, "--index-url", self.index,
            *(["--no-deps"] if no_deps else []),
            *(["--upgrade"] if "" in upgrade else []),
            *(arg for p in upgrade if p for arg in ("--upgrade-package", p)),
            "--output-file", out.name, INPUT,
        ]  # fmt: skip
        # uv reads the CA bundle from SSL_CERT_FILE (a TLS-inspecting proxy's CA is in there).
        env = {"SSL_CERT_FILE": str(self.ca_bundle)} if self.ca_bundle else {}
        self.runner(argv, cwd=directory, env=env)
        return out.read_text(encoding="utf-8")


def _compile_all(
    uv: Uv, image: Image, directory: Path, upgrade: Sequence[str], *, no_deps: bool = False
) -> list[str]:
    """uv's output for each of the image's platforms, the first's first. The others are
    compiled after it, over its output, so uv prefers its versions (never upgrading)."""
    first = uv.compile(image, directory, no_deps=no_deps, upgrade=upgrade)
    rest = []
    for oci, platform in zip(image.platforms[1:], image.python_platforms[1:], strict=True):
        try:
            rest.append(uv.compile(image, directory, no_deps=no_deps, platform=platform))
        except CommandFailed as exc:
            raise CommandFailed(
                f"{exc}\n{lock_path(image)}: resolving for {platform} ({oci}) failed, where "
                f"{image.platform} resolved: if uv says a requirement has no wheel for it, pin "
                f"a version that ships one, or drop {oci} from platforms",
                returncode=exc.returncode,
                output=exc.output,
            ) from None
    return [first, *rest]


def _others(image: Image, bodies: Sequence[str] = ()) -> list[Resolved]:
    """Each platform but the first, with its pins from ``bodies`` (one per platform) if
    given."""
    path, oci = lock_path(image), image.platforms
    return [
        Resolved(oci[i], platform, pins_of(path, bodies[i]) if bodies else ())
        for i, platform in enumerate(image.python_platforms[1:], 1)
    ]


def _agreed(path: Path, image: Image, bodies: Sequence[str]) -> str:
    """The first platform's output, each pin allowing every platform's hashes, once the
    platforms agree on every project and version."""
    if len(bodies) == 1:
        return bodies[0]
    first = Resolved(image.platforms[0], image.platform, pins_of(path, bodies[0]))
    return with_hashes(path, bodies[0], merged_hashes(path, first, _others(image, bodies)))


def _kept_backend(old: Pin | None, pin: Pin, upgrade: Sequence[str]) -> tuple[str, ...] | None:
    """The build environment ``pin``'s wheel had in the previous lock, unless the pin moved
    or ``upgrade`` names it; None: resolve it anew."""
    if old is None or old.built is None or (old.version, old.hashes) != (pin.version, pin.hashes):
        return None
    if "" in upgrade or pin.name in {str(canonicalize_name(u)) for u in upgrade if u}:
        return None
    return old.built.backend


def make_lock(
    workspace: Workspace,
    image: Image,
    *,
    kfp_version: str,
    uv: Uv,
    base: BasePin,
    pages: Pages,
    sdists: SdistBuilds,
    upgrade: Sequence[str] = (),
) -> str:
    """The bytes of ``image``'s lock. Versions of an existing lock are kept unless
    ``upgrade`` names them ("" upgrades everything); so is the build environment of a
    wheel built from an sdist whose pin did not move."""
    path = lock_path(image)
    # Only the previous pins are kept (its header may be an older kiln's).
    previous = pins_of(path, path.read_text(encoding="utf-8")) if path.is_file() else None
    with tempfile.TemporaryDirectory(prefix="kiln-lock-") as tmp:
        closure_dir, kfp_dir = Path(tmp) / "closure", Path(tmp) / "kfp"
        closure_dir.mkdir()
        kfp_dir.mkdir()
        requirements = closure_requirements(workspace, image)
        (closure_dir / INPUT).write_text("".join(f"{r}\n" for r in requirements))
        if previous is not None and "" not in upgrade:
            # uv prefers the versions of an existing output file.
            kept = [p for p in previous if not p.no_deps]
            (closure_dir / "requirements.txt").write_text("".join(f"{p.lines()}\n" for p in kept))
        bodies = _compile_all(uv, image, closure_dir, upgrade) if requirements else None
        extra = no_deps_extra(workspace, image)
        (kfp_dir / INPUT).write_text("".join(f"{r}\n" for r in (f"kfp=={kfp_version}", *extra)))
        if previous is not None and "" not in upgrade:
            kept = [p for p in previous if p.no_deps and p.name in extra]
            (kfp_dir / "requirements.txt").write_text("".join(f"{p.lines()}\n" for p in kept))
        kfp_bodies = _compile_all(uv, image, kfp_dir, upgrade, no_deps=True)
    body = _agreed(path, image, bodies) if bodies else ""
    pins = pins_of(path, body)
    no_deps = tuple(
        Pin(p.name, p.version, p.hashes, no_deps=True)
        for p in pins_of(path, _agreed(path, image, kfp_bodies))
    )
    if any(p.name == "kfp" for p in pins):
        raise ConfigError(
            f"{image.path / 'image.toml'}: kfp is required by the image or a helper; kiln adds "
            f"kfp=={kfp_version} itself (without its dependencies): remove that requirement"
        )
    to_build = sdist_only(
        path, [*pins, *no_deps], pages, supported_tags(image.python, image.platform),
        f"Python {image.python} on {image.platform}",
    )  # fmt: skip
    before = {p.name: p for p in previous} if previous else {}
    built = {
        pin.name: sdists.lock(
            path,
            pin,
            to_build[pin.name],
            python=image.python,
            platform=image.platform,
            backend=_kept_backend(before.get(pin.name), pin, upgrade),
        )
        for pin in [*pins, *no_deps]
        if pin.name in to_build
    }
    for other in _others(image):
        check_foreign_wheels(path, [*pins, *no_deps], pages, python=image.python,
                             other=other, built=built)  # fmt: skip
    return render(
        image,
        inputs=inputs_hash(workspace, image, kfp_version),
        kfp=kfp_version,
        index=workspace.upstream_index,
        base=base,
        body=body,
        no_deps=no_deps,
        built=built,
    )
