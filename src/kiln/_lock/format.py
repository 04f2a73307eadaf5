"""An image lock's file: what it says (``Lock``, ``Pin``, ``BasePin``, ``Built``), how it
is read (``parse_lock``, ``read_lock``) and written (``render``).

The lock is a pip requirements file with hashes, under a ``# [kiln]`` header that
records what it was made from; ``# kiln: --no-deps`` opens the entries installed
without their dependencies (kfp), and ``# kiln: built`` follows a pin kiln builds
from its sdist.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from kiln._errors import ConfigError
from kiln._workspace.model import Image

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

LOCK_NAME = "requirements.lock"
FORMAT = 3  # the newest; a lock is written in the oldest format that can say it
_READS = ("1", "2", "3")
# Format 2 added built wheels (`# kiln: built`); 3, locks for several platforms (`platforms`).
# The line that opens the section of entries installed without their dependencies.
NO_DEPS_MARK = "# kiln: --no-deps"
_NO_DEPS_WHY = (
    "# kfp is installed the way KFP's own runtime installs it (`pip install kfp --no-deps`):\n"
    "# a component's executor needs none of kfp's client dependencies (kubernetes,\n"
    "# google-cloud-storage, kfp-server-api, ...), so they are not in the image.\n"
)
_PIP_WHY = (
    "# pip goes into packages mode's base image alone (Debian's Python has none), for the\n"
    "# `python3 -m pip install` a packages-mode pod runs at start.\n"
)
# uv names the requirements file an entry came from ("# via -r requirements.in").
INPUT = "requirements.in"


def lock_path(image: Image) -> Path:
    return image.path / LOCK_NAME


def locked_name(path: Path) -> str:
    """The `kiln lock` argument for the lock at ``path``, quoted for a shell (it goes into
    the commands kiln's messages print): its image's folder name, or "packages" for
    packages mode's lock (``pipelines/requirements.lock``)."""
    return "packages" if path.parent.name == "pipelines" else shlex.quote(path.parent.name)


def committed_path(path: Path) -> str:
    """Where the lock at ``path`` is in the repository, quoted for a shell (for the
    `git checkout -- ...` kiln's messages print)."""
    folder = "pipelines" if path.parent.name == "pipelines" else f"images/{path.parent.name}"
    return shlex.quote(f"{folder}/{path.name}")


@dataclass(frozen=True)
class Built:
    """The wheel kiln built from a pin's sdist: what a release's rebuild must give."""

    filename: str
    sha256: str
    backend: tuple[str, ...] = ()  # the build environment, exactly: "setuptools==80.9.0"

    def line(self) -> str:
        env = f" with {' '.join(self.backend)}" if self.backend else ""
        return f"{BUILT_MARK} {self.filename} sha256:{self.sha256} from sdist{env}"


BUILT_MARK = "# kiln: built"
_BUILT = re.compile(r"# kiln: built (\S+\.whl) sha256:([0-9a-f]{64}) from sdist(?: with (.+))?")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical project name
    version: str
    hashes: tuple[str, ...]  # sha256 hex digests of the files the lock allows
    no_deps: bool = False  # installed without its dependencies (kfp)
    built: Built | None = None  # no wheel for the image: kiln builds this one from the sdist

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def lines(self) -> str:
        return " \\\n".join([self.requirement, *(f"    --hash=sha256:{h}" for h in self.hashes)])


def untagged(ref: str) -> str:
    """``ref`` without its tag and digest: ``python:3.11-slim`` -> ``python``."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@dataclass(frozen=True)
class BasePin:
    """The base image the lock was made against. ``kind`` "digest": ``ref`` (image.toml's)
    pinned to its registry manifest digest ``value``; "os": kiln's OS base, whose lock
    (``value``) pins every byte."""

    ref: str
    kind: str
    value: str = ""

    @property
    def build_ref(self) -> str:
        """What to build from: ``repo@sha256:...`` for a digest, else ``ref``."""
        if self.kind != "digest":
            return self.ref
        return f"{untagged(self.ref)}@{self.value}"


@dataclass(frozen=True)
class Lock:
    path: Path
    inputs: str
    python: str
    platform: str
    kfp: str
    base: BasePin
    pins: tuple[Pin, ...]
    sha256: str  # of the file's bytes: the cache key of its wheelhouse
    # uv's platform of each platform the lock is for, ``platform`` first
    platforms: tuple[str, ...] = ()


_HEADER_LINE = re.compile(r"^# ([a-z][a-z-]*) = (.*)$")
_BASE_KEYS = {"base-digest": "digest", "base-os": "os"}
# Written by kiln 0.1, refused now: a base pinned by a local image ID, or not at all.
_UNPINNED_KEYS = ("base-id", "base-unpinned")


def _header(path: Path, lines: list[str]) -> dict[str, str]:
    try:
        start = lines.index("# [kiln]") + 1
    except ValueError:
        raise ConfigError(
            f"{path}: no `# [kiln]` header: this is not a lock kiln wrote; "
            f"regenerate it with `kiln lock {locked_name(path)}`"
        ) from None
    toml = []
    for line in lines[start:]:
        match = _HEADER_LINE.match(line)
        if not match:
            break
        toml.append(f"{match.group(1)} = {match.group(2)}")
    try:
        doc = tomllib.loads("\n".join(toml))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed `# [kiln]` header ({exc})") from None
    # A list (platforms) stays JSON, to be read as such.
    return {str(k): json.dumps(v) if isinstance(v, list) else str(v) for k, v in doc.items()}


def logical_lines(text: str) -> Iterable[tuple[int, int, str, bool]]:
    """(first and last line number, requirement line with its continuations joined, in the
    no-deps part)."""
    no_deps = False
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip() == NO_DEPS_MARK:
            no_deps = True
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        joined = " ".join([*pending, line]).strip()
        pending = []
        if joined:
            yield start, number, joined, no_deps


def parse_pin(path: Path, number: int, line: str, no_deps: bool) -> Pin:
    where = f"{path}:{number}"
    spec, *options = line.split(" --")
    hashes = []
    for option in options:
        key, _, value = option.strip().partition("=")
        if key != "hash" or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
            raise ConfigError(
                f"{where}: `--{option.strip()}`: a lock line takes only --hash=sha256:<64 hex>; "
                f"restore the file or regenerate it with `kiln lock {locked_name(path)}`"
            )
        hashes.append(value.removeprefix("sha256:"))
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ConfigError(f"{where}: {spec!r} is not a requirement ({exc})") from None
    pinned = [s for s in req.specifier if s.operator == "=="]
    if len(req.specifier) != 1 or not pinned or req.marker or req.url:
        raise ConfigError(f"{where}: {spec!r} must be an exact pin: name==version")
    if not hashes:
        raise ConfigError(
            f"{where}: {spec} has no --hash: every locked file is hash-pinned; restore the "
            f"file or regenerate it with `kiln lock {locked_name(path)}`"
        )
    return Pin(str(canonicalize_name(req.name)), pinned[0].version, tuple(hashes), no_deps)


def parse_lock(path: Path, text: str) -> Lock:
    header = _header(path, text.splitlines())
    missing = sorted({"format", "inputs", "python", "platform", "kfp", "base"} - set(header))
    if missing:
        raise ConfigError(f"{path}: the header lacks {', '.join(missing)}; run `kiln lock`")
    if header["format"] not in _READS:
        raise ConfigError(
            f"{path}: lock format {header['format']}, this kiln reads "
            f"{', '.join(_READS[:-1])} and {_READS[-1]}: upgrade kiln, or regenerate the lock "
            "with this one"
        )
    if any(key in header for key in _UNPINNED_KEYS):
        raise ConfigError(
            f"{path}: the lock does not pin its base by a registry digest (it was written by "
            f"an older kiln, from a machine-local base); run `kiln lock {locked_name(path)}` "
            "and commit the result"
        )
    kinds = [(kind, header[key]) for key, kind in _BASE_KEYS.items() if key in header]
    if len(kinds) != 1:
        raise ConfigError(f"{path}: the header needs one of {', '.join(_BASE_KEYS)}")
    base = BasePin(header["base"], kinds[0][0], kinds[0][1])
    platforms = _platforms(path, header)
    pins = pins_of(path, text)
    seen = [p.name for p in pins]
    doubled = sorted({n for n in seen if seen.count(n) > 1})
    if doubled:
        raise ConfigError(f"{path}: {', '.join(doubled)} locked more than once")
    return Lock(
        path=path,
        inputs=header["inputs"],
        python=header["python"],
        platform=header["platform"],
        kfp=header["kfp"],
        base=base,
        pins=pins,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        platforms=platforms,
    )


def _platforms(path: Path, header: Mapping[str, str]) -> tuple[str, ...]:
    """The header's ``platforms`` (only a lock for several says it), ``platform`` first."""
    if "platforms" not in header:
        return (header["platform"],)
    found = json.loads(header["platforms"]) if header["platforms"].startswith("[") else None
    if (
        not isinstance(found, list)
        or len(found) < 2  # a lock for one platform does not say platforms
        or found[0] != header["platform"]
        or not all(isinstance(p, str) for p in found)
    ):
        raise ConfigError(
            f"{path}: the header's platforms = {header['platforms']} is not a list of several "
            f"platforms starting with its platform ({header['platform']}); regenerate the "
            f"lock with `kiln lock {locked_name(path)}`"
        )
    return tuple(found)


def read_lock(image: Image) -> Lock:
    path = lock_path(image)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing; an image is built from its committed lock only: "
            f"run `kiln lock {image.name}` and commit the file"
        ) from None
    return parse_lock(path, text)


def pins_of(path: Path, text: str) -> tuple[Pin, ...]:
    """The pins of ``text``, each with the ``# kiln: built`` line that follows it, if any."""
    entries = [(end, parse_pin(path, n, line, nd)) for n, end, line, nd in logical_lines(text)]
    built: dict[int, Built] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip().startswith(BUILT_MARK):
            continue
        match = _BUILT.fullmatch(raw.strip())
        owners = [i for i, (end, _) in enumerate(entries) if end < number]
        if not match or not owners or owners[-1] in built:
            raise ConfigError(
                f"{path}:{number}: `{raw.strip()}` is not a built-wheel line kiln wrote under "
                f"a pin; regenerate the lock with `kiln lock {locked_name(path)}`"
            )
        pin = entries[owners[-1]][1]
        name, version, _build, _tags = parse_wheel_filename(match.group(1))
        if (name, str(version)) != (pin.name, pin.version):
            raise ConfigError(
                f"{path}:{number}: {match.group(1)} is not a wheel of {pin.requirement}; "
                f"regenerate the lock with `kiln lock {locked_name(path)}`"
            )
        backend = tuple(match.group(3).split()) if match.group(3) else ()
        built[owners[-1]] = Built(match.group(1), match.group(2), backend)
    return tuple(replace(pin, built=built.get(i)) for i, (_, pin) in enumerate(entries))


def _with_built(path: Path, body: str, built: Mapping[str, Built]) -> str:
    """``body`` with each built wheel's line right after its pin's lines."""
    lines = body.strip().splitlines()
    entries = logical_lines(body.strip())
    after = {end: parse_pin(path, start, line, False).name for start, end, line, _ in entries}
    out = []
    for number, line in enumerate(lines, 1):
        out.append(line)
        if number in after and after[number] in built:
            out.append(f"    {built[after[number]].line()}")
    return "\n".join(out)


def render(
    image: Image,
    *,
    inputs: str,
    kfp: str,
    index: str,
    base: BasePin,
    body: str,
    no_deps: Sequence[Pin],
    built: Mapping[str, Built] | None = None,
) -> str:
    """The lock's bytes: a function of its arguments only (no time, no absolute path).
    ``no_deps``: kfp (and pip, for packages mode's base), installed without dependencies;
    ``built``: canonical name -> the wheel kiln built from that pin's sdist. A lock for
    several platforms (``image.python_platforms``) lists them in its header."""
    base_key = {v: k for k, v in _BASE_KEYS.items()}[base.kind]
    platforms = image.python_platforms
    body = _with_built(lock_path(image), body, built or {})
    lines = "\n".join(p.lines() for p in sorted(no_deps, key=lambda p: p.name))
    kfp_lines = _with_built(lock_path(image), lines, built or {})
    why = _NO_DEPS_WHY + (_PIP_WHY if any(p.name == "pip" for p in no_deps) else "")
    config = "image.toml" if image.path.name != "pipelines" else "[tool.kiln.packages]"
    inputs_are = (
        "image.toml `requirements` + the helpers' dependencies"
        if config == "image.toml"
        else "every helper's dependencies (packages mode)"
    )
    header = [
        f"# Written by `kiln lock {image.name}`: do not edit. Change {config} or a helper's",
        f"# dependencies, then run it again; `kiln lock {image.name} --upgrade [PKG]` upgrades.",
        f"# {INPUT}: {inputs_are} (without kfp).",
        "# [kiln]",
        f"# format = {_format(image, built)}",
        f"# inputs = {json.dumps(inputs)}",
        f"# python = {json.dumps(image.python)}",
        f"# platform = {json.dumps(image.platform)}",
        *([f"# platforms = {json.dumps(list(platforms))}"] if len(platforms) > 1 else []),
        f"# index = {json.dumps(index)}",
        f"# kfp = {json.dumps(kfp)}",
        f"# base = {json.dumps(base.ref)}",
        f"# {base_key} = {json.dumps(base.value)}",
    ]
    return "\n".join(header) + "\n\n" + body.strip() + f"\n\n{NO_DEPS_MARK}\n{why}{kfp_lines}\n"


def _format(image: Image, built: Mapping[str, Built] | None) -> int:
    """The oldest format that says what the lock holds."""
    return FORMAT if len(image.platforms) > 1 else 2 if built else 1
