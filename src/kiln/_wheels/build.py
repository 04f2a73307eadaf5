"""Build helper wheels, byte-reproducibly, with the pinned hatchling.

``build.ProjectBuilder`` runs the backend's hooks in a subprocess of kiln's own
interpreter (through ``kiln._util.cmd.hook_runner``) when that interpreter already
satisfies the helper's ``[build-system]`` (the fast path, ~0.3 s per helper);
otherwise in an isolated build environment that ``build`` makes and fills with its
own pip or uv runs, the one command kiln cannot hand a runner to.
``SOURCE_DATE_EPOCH`` is a constant, never the commit time: an unchanged helper
must give the same bytes at every commit.

Given a ``cache_dir``, builds are kept by a key over everything that decides a
wheel's bytes: the helper folder's files (path, content, executable bit; not
bytecode, tool caches or build outputs), the VCS ignore file hatchling reads
from above the folder, the ``[build-system]`` requires, ``SOURCE_DATE_EPOCH``
and the cache format; for a helper whose folder git vouches for (``git_tree``: nothing
in it differs from HEAD), its git tree id stands for its files. A hit is copied out
without running the backend (or left in place when the copy there has its bytes); an
entry is stored by renaming a finished temporary folder, and one that does not
check out (missing, altered, another helper's wheel) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import build
import build.env

from kiln._errors import CommandFailed
from kiln._util.cmd import CalledProcessError, hook_runner
from kiln._util.epoch import SOURCE_DATE_EPOCH
from kiln._util.files import sha256_file
from kiln._util.toml import load_toml
from kiln._wheels.git_tree import clean_trees
from kiln._workspace.hatch import build_requires
from kiln._workspace.model import Helper
from kiln._workspace.tree import SKIP_DIRS, SKIP_SUFFIXES, SKIP_TOP_DIRS, check_helper_tree

# Bump when the key or the layout of an entry changes: older entries are then ignored.
CACHE_FORMAT = "1"
NO_CACHE_ENV = "KILN_NO_WHEEL_CACHE"
_RECORD = "wheel.sha256"  # "<sha256>  <filename>", as sha256sum writes it

# Never part of a wheel (what discovery's walk of a helper skips too): tool caches,
# virtual environments, VCS folders, build outputs at the helper's top level, bytecode.
_SKIP_DIRS, _SKIP_TOP_DIRS, _SKIP_SUFFIXES = SKIP_DIRS, SKIP_TOP_DIRS, SKIP_SUFFIXES
# The ignore files hatchling reads: the nearest one at or above the project, up to the
# repository's root (the folder holding the second name).
_VCS_IGNORE_FILES = ((".gitignore", ".git"), (".hgignore", ".hg"))


@dataclass(frozen=True)
class BuiltWheel:
    helper: str
    distribution: str
    version: str
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def wheel_cache_dir(state_dir: Path, *, enabled: bool = True) -> Path | None:
    """Where built helper wheels are kept under kiln's state folder; None when the cache
    is off (``KILN_NO_WHEEL_CACHE=1``): then every wheel is rebuilt."""
    return state_dir / "cache" / "wheels" if enabled else None


def _hook_runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    env = {**(extra_environ or {}), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    hook_runner(cmd, cwd, env)


def _build_one(helper: Helper, outdir: Path) -> Path:
    builder = build.ProjectBuilder(
        helper.path, python_executable=sys.executable, runner=_hook_runner
    )
    # check_dependency yields the unmet requirements: a generator, truthy even when empty.
    unmet = [u for r in builder.build_system_requires for u in build.check_dependency(r)]
    backend_ready = not unmet
    if backend_ready and not builder.check_dependencies("wheel"):
        return Path(builder.build("wheel", outdir))
    with build.env.DefaultIsolatedEnv() as env:
        builder = build.ProjectBuilder.from_isolated_env(env, helper.path, runner=_hook_runner)
        env.install(builder.build_system_requires)
        env.install(builder.get_requires_for_build("wheel"))
        return Path(builder.build("wheel", outdir))


def _output_tail(output: bytes | str | None, lines: int = 20) -> str:
    if not output:
        return ""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    tail = "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])
    return f"; its output ends:\n{tail}"


def _backend_output(exc: Exception) -> str:
    """What the build backend itself printed: ``build`` keeps it on the wrapped error."""
    cause = getattr(exc, "exception", None) or exc.__cause__
    if cause is None:
        return ""
    output = getattr(cause, "output", None) or getattr(cause, "stderr", None)
    if output:
        return _output_tail(output)
    return f" ({type(cause).__name__}: {cause})"


def _build_checked(helper: Helper, outdir: Path) -> Path:
    """Run the backend for ``helper`` into the empty folder ``outdir``; errors say the fix."""
    try:
        built = _build_one(helper, outdir)
    except (build.BuildException, build.BuildBackendException) as exc:
        raise CommandFailed(
            f"building the wheel of {helper.path} failed: {exc}{_backend_output(exc)}\n"
            "fix the helper, then check with "
            f"`python -m build --wheel {shlex.quote(str(helper.path))}`"
        ) from None
    except CalledProcessError as exc:  # build's pip or uv filling an isolated env
        raise CommandFailed(
            f"preparing an isolated build environment for {helper.path} failed "
            f"(`{shlex.join(str(a) for a in exc.cmd)}` exited {exc.returncode})"
            f"{_output_tail(exc.output)}\ncheck [build-system] requires in "
            f"{helper.path / 'pyproject.toml'} and that its index is reachable"
        ) from None
    expected_prefix = helper.wheel_stem + "-"
    if not built.name.startswith(expected_prefix):
        raise CommandFailed(
            f"{helper.path}: the build produced {built.name}, expected {expected_prefix}*.whl; "
            "check [project] name and version"
        )
    return built


def _built(helper: Helper, path: Path, sha256: str) -> BuiltWheel:
    return BuiltWheel(helper.name, helper.distribution, helper.version, path, sha256)


# ---------------------------------------------------------------- the cache
def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file under ``root`` that can reach its wheel, as (posix path, path), in a
    fixed order (sorted, folder by folder). Symlinked folders are followed once each, as
    hatchling does."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        st = here.stat()
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        skip_top = _SKIP_TOP_DIRS if here == root else frozenset()
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_DIRS and d not in skip_top and not d.endswith(".egg-info")
        )
        for name in sorted(filenames):
            if not name.endswith(_SKIP_SUFFIXES):
                yield (here / name).relative_to(root).as_posix(), here / name


def _ignore_file_at_or_above(folder: Path, name: str, boundary: str) -> Iterator[tuple[str, Path]]:
    """The nearest file ``name`` at or above ``folder``, up to the folder holding
    ``boundary`` (the repository's root)."""
    for here in (folder, *folder.parents):
        if (here / name).is_file():
            yield name, here / name
            return
        if (here / boundary).exists():
            return


class OuterIgnores:
    """The ignore files above each helper, with their sha256, looked up once per folder
    holding helpers and hashed once per file in a run of ``build_wheels`` (500 helpers
    share one ``helpers/`` folder and one ``.gitignore`` above it)."""

    def __init__(self) -> None:
        self._above: dict[tuple[Path, str, str], tuple[tuple[str, Path], ...]] = {}
        self._sha256: dict[Path, str] = {}

    def __call__(self, root: Path) -> tuple[tuple[str, str], ...]:
        """(name, sha256) of each ignore file hatchling reads for ``root`` above it."""
        found = []
        for name, boundary in _VCS_IGNORE_FILES:
            if (root / name).is_file() or (root / boundary).exists():
                continue
            key = (root.parent, name, boundary)
            if key not in self._above:
                self._above[key] = tuple(_ignore_file_at_or_above(root.parent, name, boundary))
            for _name, path in self._above[key]:
                if path not in self._sha256:
                    self._sha256[path] = sha256_file(path)
                found.append((name, self._sha256[path]))
        return tuple(found)


def cache_key(helper: Helper, tree: str | None = None, ignores: OuterIgnores | None = None) -> str:
    """sha256 over everything that decides ``helper``'s wheel bytes (no build is run);
    ``tree``: the git tree of the helper's folder when git vouches for its files
    (``clean_trees``), named instead of hashing each file; ``ignores``: the ignore files
    above helpers found so far in this run (a new lookup when not given)."""
    digest = hashlib.sha256()

    def add(*fields: str) -> None:  # one JSON line per record: unambiguous framing
        digest.update(json.dumps(fields).encode() + b"\n")

    requires = helper.build_requires
    if requires is None:  # a Helper discovery did not read
        requires = build_requires(load_toml(helper.path / "pyproject.toml", what="helper"))
    add("kiln wheel cache", CACHE_FORMAT, f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}")
    add("build-system requires", *requires)
    for name, sha256 in (ignores or OuterIgnores())(helper.path):
        add("ignore file", name, sha256)
    if tree is not None:
        add("git tree", tree)
        return digest.hexdigest()
    for rel, path in _source_files(helper.path):
        try:
            executable = path.stat().st_mode & 0o111 != 0
            add("file", rel, "x" if executable else "-", sha256_file(path))
        except FileNotFoundError:  # a dangling symlink: hatchling would fail on it too
            add("dangling link", rel, str(path.readlink()))
    return digest.hexdigest()


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` (replaced whole, never half-written); return its sha256."""
    digest = hashlib.sha256()
    part = dst.with_name(f".{dst.name}.part")
    try:
        with src.open("rb") as fin, part.open("wb") as fout:
            while chunk := fin.read(1 << 20):
                digest.update(chunk)
                fout.write(chunk)
        part.replace(dst)
    finally:
        part.unlink(missing_ok=True)
    return digest.hexdigest()


def _holds_sha256(path: Path, sha256: str) -> bool:
    """Whether ``path`` is a file whose bytes have ``sha256``."""
    try:
        return sha256_file(path) == sha256
    except OSError:
        return False


def _from_cache(helper: Helper, entry: Path, outdir: Path) -> tuple[BuiltWheel | None, str]:
    """The wheel kept in ``entry``, copied into ``outdir``; None when there is none, or
    it does not check out (then the caller rebuilds it), and why ("" when there is none)."""
    try:
        recorded, filename = (entry / _RECORD).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError):  # an unreadable record
        return None, f"its {_RECORD} cannot be read"
    if (
        not filename.startswith(helper.wheel_stem + "-")
        or not filename.endswith(".whl")
        or Path(filename).name != filename
    ):
        return None, f"it holds {filename!r}, no wheel of {helper.distribution}"
    target = outdir / filename
    try:  # a copy left by the last run (a no-op release's staging) is not copied again
        held = _holds_sha256(target, recorded)
        sha256 = recorded if held else _copy_hashing(entry / filename, target)
    except OSError as exc:
        return None, f"{filename} cannot be read ({exc.strerror})"
    if sha256 != recorded:
        target.unlink()
        return None, f"{filename} has sha256 {sha256}, its record {recorded}"
    return _built(helper, target, sha256), ""


def _unwritable(cache_dir: Path, exc: OSError) -> CommandFailed:
    return CommandFailed(
        f"cannot write to the wheel cache {cache_dir} ({exc}); make it writable or remove "
        f"it, or set {NO_CACHE_ENV}=1 to build without it"
    )


def _build_cached(
    helper: Helper,
    outdir: Path,
    cache_dir: Path,
    note: Callable[[str], None],
    *,
    tree: str | None,
    ignores: OuterIgnores | None,
) -> BuiltWheel:
    entry = cache_dir / cache_key(helper, tree, ignores)
    hit, problem = _from_cache(helper, entry, outdir)
    if hit is not None:
        return hit
    if problem:
        note(f"wheel cache entry {entry} did not match its key ({problem}); rebuilt")
    if tree is not None:  # the folder is read now: what git does not list is checked first
        check_helper_tree(helper.path)
    # Built and recorded in a temporary folder of the cache, then renamed into place:
    # an interrupted build leaves no entry, only a ".tmp-*" folder.
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        workdir = tempfile.TemporaryDirectory(prefix=".tmp-", dir=cache_dir)
    except OSError as exc:
        raise _unwritable(cache_dir, exc) from None
    with workdir as tmp:
        staged = Path(tmp) / "entry"
        built = _build_checked(helper, Path(tmp) / "out")
        staged.mkdir()
        kept = built.rename(staged / built.name)
        target = outdir / built.name
        sha256 = _copy_hashing(kept, target)
        (staged / _RECORD).write_text(f"{sha256}  {built.name}\n", encoding="utf-8")
        shutil.rmtree(entry, ignore_errors=True)  # an entry that did not check out
        try:
            staged.rename(entry)
        except OSError as exc:
            # Another kiln may have stored the same key meanwhile: its entry is as good.
            if not (entry / _RECORD).is_file():
                raise _unwritable(cache_dir, exc) from None
    return _built(helper, target, sha256)


# ---------------------------------------------------------------- entry points
def build_wheel(
    helper: Helper,
    outdir: Path,
    *,
    cache_dir: Path | None = None,
    note: Callable[[str], None] = lambda _line: None,
    trees: Mapping[Path, str] | None = None,
    ignores: OuterIgnores | None = None,
) -> BuiltWheel:
    """Build ``helper``'s wheel into ``outdir`` (replacing an older build of it); with
    ``cache_dir``, reuse the wheel built from the same inputs (an entry that does not
    check out is rebuilt, with one line to ``note``; ``trees``: ``clean_trees`` of the
    helpers, asked here when not given; ``ignores``: shared by the helpers of one run).

    A link or a special file in the helper (one added since the repository was read) is
    refused before anything reads the folder: before its files are hashed for the key,
    before a build. A cache hit for a folder git vouches for (its tree names the entry)
    reads nothing in it, so it skips that walk: git lists every link and every file that
    is not HEAD's there (``clean_trees``), which makes the folder dirty; what git does
    not list (a FIFO, a socket) is checked when a miss builds from the folder."""
    tree = None
    if cache_dir is not None:
        tree = (clean_trees([helper.path]) if trees is None else trees).get(helper.path)
    if tree is None:
        check_helper_tree(helper.path)
    outdir.mkdir(parents=True, exist_ok=True)
    if cache_dir is not None:
        return _build_cached(helper, outdir, cache_dir, note, tree=tree, ignores=ignores)
    with tempfile.TemporaryDirectory(prefix="kiln-wheel-") as tmp:
        built = _build_checked(helper, Path(tmp))
        target = outdir / built.name
        sha256 = _copy_hashing(built, target)  # replaced whole: never half a wheel in dist
    return _built(helper, target, sha256)


def build_wheels(
    helpers: Sequence[Helper],
    outdir: Path,
    *,
    cache_dir: Path | None = None,
    note: Callable[[str], None] = lambda _line: None,
) -> tuple[BuiltWheel, ...]:
    # git vouches for the clean helpers' files in one pass: their keys hash no file.
    trees = clean_trees([h.path for h in helpers]) if cache_dir is not None else {}
    ignores = OuterIgnores()
    return tuple(
        build_wheel(h, outdir, cache_dir=cache_dir, note=note, trees=trees, ignores=ignores)
        for h in helpers
    )
