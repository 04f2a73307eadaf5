"""The hostile-repo corpus: each case is a small mutation of a copy of this monorepo
(its helpers, images, pipelines and pyproject.toml) with the error class, exit code and
message phrase kiln must answer it with, when it reads the repository: before anything
is built, let alone published (``tests/e2e/test_hostile.py`` proves that for a few of
them against a real index and registry).

``refuse(root)`` is what every command does first: ``discover`` and then
``validate_components``. No server, no build.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln._components.validate import validate_components
from kiln._errors import ConfigError, KilnError
from kiln._lock.format import committed_path, locked_name
from kiln._wheels.build import build_wheel
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests.unit.cli import run

PROJECT = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns(".kiln", "dist", "__pycache__", "*.egg-info")


def example(tmp_path: Path) -> Path:
    """A copy of this monorepo's helpers, images, pipelines and pyproject.toml."""
    root = tmp_path / "repo"
    for name in ("helpers", "images", "pipelines"):
        shutil.copytree(PROJECT / name, root / name, ignore=_IGNORE)
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    return root


def refuse(root: Path) -> Workspace:
    """What every command does with a repository before anything else."""
    ws = discover(root)
    validate_components(ws.components)
    return ws


# ------------------------------------------------------------------ mutations
PKG = Path("helpers/imgproc/src/imgproc")


def _link(rel: str, target: str | Callable[[Path], str]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        if (root / rel).is_dir() and not (root / rel).is_symlink():
            shutil.rmtree(root / rel)
        (root / rel).unlink(missing_ok=True)
        (root / rel).symlink_to(target(root) if callable(target) else target)

    return mutate


def _outside(root: Path) -> str:
    """A folder beside the repository, holding a secret."""
    folder = root.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "secret.txt").write_text("canary\n")
    return str(folder)


def _loop(root: Path) -> None:
    (root / PKG / "a.txt").symlink_to("b.txt")
    (root / PKG / "b.txt").symlink_to("a.txt")


def _new_helper(root: Path, name: str, *, at: Path | None = None) -> Path:
    """A copy of helper tabular named ``name`` (its distribution renamed to match), at
    ``helpers/<name>`` or ``at``; nothing uses it."""
    folder = at or root / "helpers" / name
    shutil.copytree(root / "helpers" / "tabular", folder)
    package = f"spare_{name[:8]}"  # an import package of its own
    (folder / "src" / "tabular").rename(folder / "src" / package)
    toml = folder / "pyproject.toml"
    text = toml.read_text().replace('"acme-tabular"', f'"acme-{name}"')
    toml.write_text(text.replace('"src/tabular"', f'"src/{package}"'))
    return folder


def _new_image(root: Path, name: str, *, at: Path | None = None) -> Path:
    """A copy of image base (same helpers) at ``images/<name>`` or ``at``."""
    folder = at or root / "images" / name
    shutil.copytree(root / "images" / "base", folder)
    return folder


def _linked_helper(root: Path) -> None:
    elsewhere = _new_helper(root, "evil", at=root.parent / "elsewhere" / "evil")
    (root / "helpers" / "evil").symlink_to(elsewhere, target_is_directory=True)


def _linked_image(root: Path) -> None:
    elsewhere = _new_image(root, "evil", at=root.parent / "elsewhere" / "evil")
    (root / "images" / "evil").symlink_to(elsewhere, target_is_directory=True)


def _outside_module(root: Path) -> str:
    """A valid component module beside the repository."""
    module = Path(_outside(root)) / "leak.py"
    module.write_text('IMAGE = "base"\n\n\ndef leak(x: int) -> int:\n    return x\n')
    return str(module)


def _fifo(rel: str) -> Callable[[Path], None]:
    return lambda root: os.mkfifo(root / rel)


def _socket(rel: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        # AF_UNIX paths are limited to ~107 bytes: bind from inside the folder.
        here = Path.cwd()
        os.chdir((root / rel).parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind((root / rel).name)
        finally:
            os.chdir(here)

    return mutate


def _edit(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return mutate


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    return mutate


def _component(func: str, *, doc: str = "", default: str = "1", returns: str = "int") -> bytes:
    """A component module (``pipelines/components/zz.py``) on image ``base``."""
    docstring = f'    """{doc}"""\n' if doc else ""
    return (
        f'IMAGE = "base"\n\n\ndef {func}(x: int = {default}) -> {returns}:\n{docstring}'
        "    return x\n"
    ).encode()


ZZ = "pipelines/components/zz.py"
HELPER_TOML = "helpers/imgproc/pyproject.toml"
IMAGE_TOML = "images/base/image.toml"


def _rename(rel: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / rel).rename((root / rel).with_name(new))

    return mutate


def _append(rel: str, data: bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        with (root / rel).open("ab") as fh:
            fh.write(data)

    return mutate


def _ship_numpy(root: Path) -> None:
    (root / "helpers/imgproc/src/numpy").mkdir()
    (root / "helpers/imgproc/src/numpy/__init__.py").write_text("")
    _edit(HELPER_TOML, '"src/imgproc"', '"src/imgproc", "src/numpy"')(root)


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Path], object]  # what it returns is not used
    phrase: str  # a substring of the message ({root}: the copy's path)
    error: type[KilnError] = ConfigError


CASES = [
    # -- symbolic links and special files (issue 18, defect 2)
    Case(
        "link-to-a-host-file",
        _link(f"{PKG}/leak.txt", "/etc/passwd"),
        f"{{root}}/{PKG}/leak.txt is a symbolic link to '/etc/passwd', which resolves to "
        "'/etc/passwd', outside",
    ),
    Case(
        "link-to-a-folder-outside",
        _link(f"{PKG}/home", _outside),
        "/outside', which resolves to",
    ),
    Case(
        "relative-link-leaving-the-helper",
        _link(f"{PKG}/up.toml", "../../../../pyproject.toml"),
        "symbolic link to '../../../../pyproject.toml', which resolves to",
    ),
    Case(
        "link-named-like-a-command-is-quoted",
        _link(f"{PKG}/leak $(id).txt", "/etc/passwd"),
        f"remove it (`git rm '{{root}}/{PKG}/leak $(id).txt'`)",
    ),
    Case("dangling-link", _link(f"{PKG}/gone.txt", "nowhere.txt"), "(a dangling link)"),
    Case("link-loop", _loop, "which is a loop of links"),
    Case(
        "link-inside-the-helper",
        _link(f"{PKG}/again.py", "__init__.py"),
        "inside the helper: a wheel holds no links",
    ),
    Case("helper-folder-is-a-link", _linked_helper, "{root}/helpers/evil is a symbolic link"),
    Case(
        "link-out-of-an-image-folder",
        _link("images/base/notes.txt", "/etc/passwd"),
        "{root}/images/base/notes.txt is a symbolic link to '/etc/passwd'",
    ),
    Case(
        "component-module-linked-from-outside",
        _link("pipelines/components/leak.py", _outside_module),
        "{root}/pipelines/components/leak.py is a symbolic link to",
    ),
    Case(
        "generated-yaml-linked-out-(written-through)",
        _link("pipelines/components/generated/enhance_contrast.yaml", "/etc/hostname"),
        "generated/enhance_contrast.yaml is a symbolic link to '/etc/hostname'",
    ),
    Case("fifo-in-a-helper", _fifo(f"{PKG}/pipe"), f"{{root}}/{PKG}/pipe is a FIFO"),
    Case("socket-in-a-helper", _socket(f"{PKG}/s"), f"{{root}}/{PKG}/s is a socket"),
    Case("fifo-in-pipelines", _fifo("pipelines/pipe"), "{root}/pipelines/pipe is a FIFO"),
    # -- component names and docstrings (defect 8): KFP's limits, control characters
    Case(
        "300-character-function-name",
        _write(ZZ, _component("f" * 300)),
        f"{{root}}/{ZZ}:4: component {'f' * 300!r} cannot be compiled: KFP names its pipeline",
    ),
    Case(
        "function-name-kfp-renames-to-nothing",
        _write(ZZ, _component("数据")),
        f"{{root}}/{ZZ}:4: component '数据' cannot be compiled: KFP names its pipeline ''",
    ),
    Case(
        "raw-esc-in-a-docstring",
        _write(ZZ, _component("shout", doc="Loud \x1b[31mred")),
        f"{{root}}/{ZZ}:5: the docstring of shout 'Loud \\x1b[31mred' holds '\\x1b'",
    ),
    Case(
        "carriage-return-in-a-default-(injects-a-yaml-key)",
        _write(ZZ, _component("cr", default='"c\\rd: 2"').replace(b"x: int", b"x: str")),
        "a default of cr 'c\\rd: 2' holds '\\r'",
    ),
    Case(
        "line-separator-in-a-default",
        _write(ZZ, _component("ls", default='"a\\u2028b: 1"').replace(b"x: int", b"x: str")),
        "a default of ls 'a\\u2028b: 1' holds '\\u2028'",
    ),
    Case(
        "yaml-document-in-a-default",
        _write(
            ZZ, _component("inject", default='"a\\n---\\nb: {{c}}"').replace(b"x: int", b"x: str")
        ),
        "{root}/" + ZZ + ":4: a default of inject 'a\\n---\\nb: {{{{c}}}}' holds '\\n'",
    ),
    Case(
        "escape-in-a-default",
        _write(ZZ, _component("esc", default='"\\x1b[2J"').replace(b"x: int", b"x: str")),
        "a default of esc '\\x1b[2J' holds '\\x1b'",
    ),
    Case(
        "line-break-in-an-output-name",
        _write(
            ZZ,
            b"from typing import NamedTuple\n"
            + _component("outs", returns="NamedTuple('O', [('a\\nb', int)])"),
        ),
        "a string in the return annotation of outs 'a\\nb' holds '\\n'",
    ),
    # -- path traversal and shell words in names
    Case(
        "helper-folder-named-like-a-command",
        _rename("helpers/viz", "$(touch x)"),
        "'{root}/helpers/$(touch x)': the folder name '$(touch x)' cannot be used",
    ),
    Case(
        "overlong-helper-folder-name",
        lambda root: _new_helper(root, "v" * 200),
        "the folder name is 200 characters long",
    ),
    Case(
        "overlong-image-folder-name",
        lambda root: _new_image(root, "a" * 101),
        "use at most 100 characters",
    ),
    Case(
        "image-folder-is-a-link",
        _linked_image,
        "{root}/images/evil is a symbolic link to",
    ),
    Case(
        "pipelines-folder-is-a-link",
        _link("pipelines", _outside),
        "{root}/pipelines is a symbolic link to",
    ),
    Case(
        "image-folder-with-a-space",
        _rename("images/analytics", "Analytics Image"),
        "the folder name 'Analytics Image' cannot be used",
    ),
    Case(
        "helper-project-name-traversal",
        _edit(HELPER_TOML, 'name = "acme-imgproc"', 'name = "../imgproc"'),
        "[project] name is '../imgproc', expected 'acme-imgproc'",
    ),
    Case(
        "image-helper-traversal",
        _edit(IMAGE_TOML, 'helpers = ["imgproc"]', 'helpers = ["../helpers/imgproc"]'),
        "helpers lists ../helpers/imgproc, which is not a folder under helpers/",
    ),
    Case(
        "component-image-traversal",
        _write(ZZ, _component("f").replace(b'"base"', b'"../images/base"')),
        "IMAGE = '../images/base' must name an image folder under images/",
    ),
    Case(
        "pipeline-module-named-like-a-command",
        _write("pipelines/$(id).py", b"def build(load):\n    return None\n"),
        "the module name '$(id)' cannot be used",
    ),
    Case(
        "pipeline-module-named-with-dots",
        _write("pipelines/..evil.py", b"def build(load):\n    return None\n"),
        "git mv {root}/pipelines/..evil.py {root}/pipelines/evil.py",
    ),
    Case(
        "component-module-name-with-a-line-break-(yaml-header-injection)",
        _write("pipelines/components/x\n---\nevil: 1.py", _component("f")),
        "the module name 'x\\n---\\nevil: 1' cannot be used",
    ),
    # -- dependency confusion
    Case(
        "image-requirement-in-the-org-namespace-that-no-helper-publishes",
        _edit(IMAGE_TOML, "requirements = []", 'requirements = ["acme-imgproc-extras>=1"]'),
        "requirements names 'acme-imgproc-extras>=1', in this organisation's namespace "
        "(acme-*), but no folder under helpers/ publishes acme-imgproc-extras",
    ),
    Case(
        "helper-dependency-in-the-org-namespace-that-no-helper-publishes",
        _edit(HELPER_TOML, '["numpy>=1.26"]', '["numpy>=1.26", "acme-secret-sauce"]'),
        "dependency confusion",
    ),
    Case(
        "lock-pins-a-helper-name-from-upstream",
        _append("images/base/requirements.lock", b"acme-imgproc==0.2.0 \\\n    --hash=sha256:00\n"),
        "requirements.lock:{line}: pins acme-imgproc, a name in this organisation's "
        "namespace (acme-*)",
    ),
    Case(
        "direct-reference-in-a-helper-dependency",
        _edit(HELPER_TOML, '["numpy>=1.26"]', '["numpy @ https://evil.invalid/numpy.whl"]'),
        "'numpy @ https://evil.invalid/numpy.whl', a direct reference",
    ),
    Case(
        "direct-file-reference-in-an-image-requirement",
        _edit(IMAGE_TOML, "requirements = []", 'requirements = ["x @ file:///etc/passwd"]'),
        "requirements names 'x @ file:///etc/passwd', a direct reference",
    ),
    Case(
        "helper-ships-an-import-package-named-numpy",
        _ship_numpy,
        "helper imgproc ships the import package 'numpy', named like the third-party project numpy",
    ),
    # -- files hatchling would read from outside the helper, code it would run
    Case(
        "readme-outside-the-helper",
        _edit(HELPER_TOML, "requires-python", 'readme = "../../../.netrc"\nrequires-python'),
        "[project] readme names '../../../.netrc', outside the helper's folder",
    ),
    Case(
        "license-file-absolute",
        _edit(HELPER_TOML, "requires-python", 'license = {file = "/etc/passwd"}\nrequires-python'),
        "[project] license names '/etc/passwd', outside the helper's folder",
    ),
    Case(
        "force-include-of-a-host-file",
        _append(
            HELPER_TOML,
            b'\n[tool.hatch.build.targets.wheel.force-include]\n"/etc/passwd" = "imgproc/passwd"\n',
        ),
        "[tool.hatch.build.targets.wheel] force-include names '/etc/passwd'",
    ),
    Case(
        "packages-traversal",
        _edit(HELPER_TOML, '["src/imgproc"]', '["src/imgproc", "../tabular/src/tabular"]'),
        "packages names '../tabular/src/tabular', outside the helper's folder",
    ),
    Case(
        "custom-build-hook-(code-run-at-build-time)",
        _append(HELPER_TOML, b"\n[tool.hatch.build.hooks.custom]\n"),
        "[tool.hatch.build.hooks.custom] runs the helper's own code (hatch_build.py)",
    ),
    Case(
        "custom-metadata-hook",
        _append(HELPER_TOML, b"\n[tool.hatch.metadata.hooks.custom]\n"),
        "[tool.hatch.metadata.hooks.custom] runs the helper's own code",
    ),
    # -- build system, encodings, settings
    Case(
        "setuptools-backend",
        _edit(HELPER_TOML, '"hatchling.build"', '"setuptools.build_meta"'),
        "build-backend is 'setuptools.build_meta'",
    ),
    Case(
        "unpinned-hatchling",
        _edit(HELPER_TOML, '"hatchling==1.33.0"', '"hatchling"'),
        "must pin hatchling exactly",
    ),
    Case(
        "non-utf8-helper-pyproject",
        _append(HELPER_TOML, b"# caf\xe9\n"),
        f"{{root}}/{HELPER_TOML}: not UTF-8 text (byte 0xe9",
    ),
    Case(
        "non-utf8-workspace-pyproject",
        _append("pyproject.toml", b"# \xff\n"),
        "{root}/pyproject.toml: not UTF-8 text (byte 0xff",
    ),
    Case(
        "non-utf8-component-module",
        _write(ZZ, _component("f") + b"# \xff\n"),
        "zz.py: not UTF-8 text",
    ),
    Case(
        "size-limit-of-zero",
        _edit("pyproject.toml", "[tool.kiln]\n", "[tool.kiln]\nmax-file-size-mib = 0\n"),
        "[tool.kiln] max-file-size-mib = 0; use a number of MiB of at least 1",
    ),
]


def test_the_corpus_has_at_least_thirty_cases_each_named_once() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_repository_is_refused_when_it_is_read(tmp_path: Path, case: Case) -> None:
    root = example(tmp_path)
    refuse(root)  # the copy itself is fine
    # the line a case appending a pin to images/base's lock writes it on
    line = len((root / "images/base/requirements.lock").read_text().splitlines()) + 1
    case.mutate(root)
    with pytest.raises(KilnError) as err:
        refuse(root)
    assert type(err.value) is case.error
    assert err.value.exit_code == case.error.exit_code
    assert case.phrase.format(root=root, line=line) in str(err.value)


# ------------------------------------------------------------------ reported, not refused
def _sparse(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        fh.truncate(mib * 1024 * 1024)  # sparse: costs no disk


def test_a_big_file_in_a_helper_is_reported_with_the_setting_that_raises_the_limit(
    tmp_path: Path,
) -> None:
    root = example(tmp_path)
    _sparse(root / PKG / "model.bin", 200)
    _sparse(root / PKG / "small.bin", 10)  # at the limit: fine
    ws = refuse(root)
    (warning,) = ws.warnings
    assert warning == (
        f"{root / PKG / 'model.bin'} is 200.0 MiB, over the 10 MiB limit for a helper's file: "
        "it is published in the wheel and baked into every image with this helper; move it "
        "out of the helper (fetch it at run time), or raise [tool.kiln] max-file-size-mib in "
        f"{root / 'pyproject.toml'}"
    )


@pytest.mark.parametrize("where", ["workspace", "helper"])
def test_the_size_limit_is_raised_in_tool_kiln(tmp_path: Path, where: str) -> None:
    root = example(tmp_path)
    _sparse(root / PKG / "model.bin", 200)
    pyproject = root / (
        "pyproject.toml" if where == "workspace" else "helpers/imgproc/pyproject.toml"
    )
    text = pyproject.read_text()
    if where == "workspace":
        pyproject.write_text(
            text.replace("[tool.kiln]\n", "[tool.kiln]\nmax-file-size-mib = 300\n")
        )
    else:
        pyproject.write_text(text + "\n[tool.kiln]\nmax-file-size-mib = 300\n")
    assert refuse(root).warnings == ()
    # ... and lowered, the warning names the file that set it
    pyproject.write_text(pyproject.read_text().replace("= 300", "= 100"))
    (warning,) = refuse(root).warnings
    assert warning.endswith(f"over the 100 MiB limit for a helper's file: it is published in "
                            "the wheel and baked into every image with this helper; move it out "
                            "of the helper (fetch it at run time), or raise [tool.kiln] "
                            f"max-file-size-mib in {pyproject}")  # fmt: skip


def test_what_never_reaches_a_wheel_is_not_looked_at(tmp_path: Path) -> None:
    # A helper's virtual environment is full of links out of it; caches and build outputs
    # hold whatever: hatchling never packs them, so neither is checked.
    root = example(tmp_path)
    helper = root / "helpers" / "imgproc"
    (helper / ".venv" / "bin").mkdir(parents=True)
    (helper / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (helper / "dist").mkdir()
    os.mkfifo(helper / "dist" / "pipe")
    (root / PKG / "__pycache__").mkdir(exist_ok=True)
    (root / PKG / "__pycache__" / "x.pyc").symlink_to("/etc/passwd")
    _sparse(helper / "dist" / "old.whl", 200)
    ws = refuse(root)
    assert ws.warnings == ()


def test_lock_hints_quote_what_they_name() -> None:
    # kiln's lock messages print `kiln lock NAME` and `git checkout -- PATH`.
    lock = Path("/repo/images/a $(id)/requirements.lock")
    assert locked_name(lock) == "'a $(id)'"
    assert committed_path(lock) == "'images/a $(id)/requirements.lock'"
    assert locked_name(Path("/repo/pipelines/requirements.lock")) == "packages"


@pytest.mark.parametrize("cached", [False, True])
def test_a_link_added_after_the_repo_was_read_is_refused_by_the_wheel_build(
    tmp_path: Path, cached: bool
) -> None:
    root = example(tmp_path)
    helper = refuse(root).helper("imgproc")
    (root / PKG / "leak.txt").symlink_to("/etc/passwd")
    cache = tmp_path / "cache" if cached else None
    with pytest.raises(ConfigError, match=r"leak\.txt is a symbolic link to '/etc/passwd'"):
        build_wheel(helper, tmp_path / "out", cache_dir=cache)
    assert not (tmp_path / "out").exists()


def test_a_link_inside_an_image_folder_or_pipelines_is_kept(tmp_path: Path) -> None:
    # Read, not packed: a link that stays in its folder names a committed file.
    root = example(tmp_path)
    (root / "images/base/notes.txt").write_text("notes\n")
    (root / "images/base/README").symlink_to("notes.txt")
    (root / "pipelines/shared").mkdir()
    (root / "pipelines/shared/data.json").write_text("{}\n")
    (root / "pipelines/data.json").symlink_to("shared/data.json")
    assert refuse(root).warnings == ()


def test_the_cli_prints_the_warning_and_refuses_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = example(tmp_path)
    _sparse(root / PKG / "model.bin", 200)
    code, _, err = run(capsys, "bump", "imgproc", "patch", "--dry-run", "--repo", str(root))
    assert code == 0, err
    assert f"warning: {root / PKG / 'model.bin'} is 200.0 MiB, over the 10 MiB limit" in err
    (root / PKG / "leak.txt").symlink_to("/etc/passwd")
    code, _, err = run(capsys, "release", "--local", "--dry-run", "--repo", str(root))
    assert code == 3
    assert f"{root / PKG / 'leak.txt'} is a symbolic link to '/etc/passwd'" in err


def test_an_anchored_include_pattern_is_inside_the_helper(tmp_path: Path) -> None:
    # In hatchling's gitignore-style patterns a leading "/" means the project's root.
    root = example(tmp_path)
    _append(HELPER_TOML, b'\n[tool.hatch.build]\ninclude = ["/src", "*.md"]\n')(root)
    assert refuse(root).warnings == ()
