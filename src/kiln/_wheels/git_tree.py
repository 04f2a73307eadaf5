"""The git tree of each helper folder whose files are the commit's, byte for byte: the
wheel cache's key then names it instead of hashing every file (git hashed them when they
were committed; 500 helpers' files were read and hashed on every release).

A folder counts as clean only when git can vouch for every byte a build reads from it:
nothing in it is modified, staged, deleted, untracked or ignored (bar what never reaches
a wheel: tool caches, bytecode, build outputs, the folders the file walk skips too); no
file in it is skip-worktree or assume-unchanged (git would not look at it) or a
submodule; no attribute converts its bytes on checkout (``text``, ``eol``, ``filter``,
``ident``, ``working-tree-encoding``); and the repository does not hide changes from
``git status`` (``core.fileMode`` off, ``core.autocrlf``, an fsmonitor). Any doubt, or
git missing, and the folder is hashed file by file as before: a wrong key would hand out
another source's wheel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from kiln._util.git import git_output
from kiln._workspace.tree import SKIP_DIRS, SKIP_SUFFIXES, SKIP_TOP_DIRS

# Attributes that make a checked-out file's bytes differ from its blob's.
_CONVERTING = ("text", "eol", "crlf", "filter", "ident", "working-tree-encoding")
_FALSE = frozenset({"false", "no", "off", "0", ""})


def _fields(output: str | None) -> list[str]:
    return (output or "").split("\0")[:-1]


def _reaches_wheel(rel: PurePosixPath) -> bool:
    """Whether a file at ``rel`` (inside a helper folder) is one the file walk hashes."""
    parts = rel.parts
    if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return False
    if len(parts) > 1 and parts[0] in SKIP_TOP_DIRS:
        return False
    return not parts[-1].endswith(SKIP_SUFFIXES)


def _hides_changes(top: Path) -> bool:
    """Whether the repository's settings let a changed byte pass ``git status``."""
    pattern = r"^core\.(filemode|autocrlf|fsmonitor)$"
    settings = {}
    for entry in _fields(git_output(top, "config", "-z", "--get-regexp", pattern)):
        key, newline, value = entry.partition("\n")
        settings[key] = value if newline else "true"  # a bare key is a true boolean
    return (
        settings.get("core.filemode", "true").lower() in _FALSE
        or settings.get("core.autocrlf", "false").lower() not in _FALSE
        or settings.get("core.fsmonitor", "false").lower() not in _FALSE
    )


def clean_trees(folders: Sequence[Path]) -> Mapping[Path, str]:
    """The tree id at HEAD of each of ``folders`` that is clean (see the module); the
    others are left out. A handful of git commands, whatever the number of folders."""
    if not folders:
        return {}
    top_text = git_output(folders[0], "rev-parse", "--show-toplevel")
    if not top_text:
        return {}
    top = Path(top_text.rstrip("\n")).resolve()
    rels: dict[str, Path] = {}
    for folder in folders:
        resolved = folder.resolve()
        if resolved != top and resolved.is_relative_to(top):
            rels[resolved.relative_to(top).as_posix()] = folder
    if not rels or _hides_changes(top):
        return {}
    dirty: set[str] = set()

    def mark(path: str, *, always: bool = False) -> None:
        """``path``'s helper folder is dirty (``always``, or when the file reaches a wheel)."""
        pure = PurePosixPath(path)
        for folder in (pure, *pure.parents):
            if folder.as_posix() in rels:
                rel = pure.relative_to(folder)
                if always or not rel.parts or _reaches_wheel(rel):
                    dirty.add(folder.as_posix())
                return

    specs = ("--", *rels)
    # Paths, not patterns: a folder above the helpers may be named "[x]" or "*". git
    # status matches every path against every pathspec: it is asked about the folders
    # holding the helpers (one, helpers/), and what it says outside them is left out.
    status = git_output(
        top, "--literal-pathspecs", "--no-optional-locks", "status", "--porcelain=v1", "-z",
        "--no-renames", "--untracked-files=all", "--ignored=traditional", "--", *_holding(rels),
    )  # fmt: skip
    listed = git_output(top, "--literal-pathspecs", "ls-files", "-s", "-v", "-z", *specs)
    trees = git_output(top, "--literal-pathspecs", "ls-tree", "-z", "HEAD", *specs)
    if status is None or listed is None or trees is None:
        return {}
    for entry in _fields(status):  # "XY path"
        mark(entry[3:])
    files = []
    for entry in _fields(listed):  # "H 100644 <id> 0\tpath"
        info, _, path = entry.partition("\t")
        tag, mode, *_ = info.split()
        if tag != "H" or mode not in ("100644", "100755"):
            mark(path, always=True)  # not looked at by git status, a link or a submodule
        files.append(path)
    for path in _converted(top, files):
        mark(path, always=True)
    found = {}
    for entry in _fields(trees):  # "040000 tree <id>\tpath"
        info, _, path = entry.partition("\t")
        _mode, kind, tree = info.split()
        if kind == "tree" and path in rels and path not in dirty:
            found[rels[path]] = tree
    return found


def _holding(rels: Iterable[str]) -> list[str]:
    """The folders holding the helper folders ``rels`` (a helper at the repository's top
    stands for itself: its parent would be the whole repository)."""
    return sorted({rel.rpartition("/")[0] or rel for rel in rels})


def _converted(top: Path, files: Iterable[str]) -> set[str]:
    """Those of ``files`` with an attribute that converts their bytes on checkout (all of
    them when git cannot say)."""
    files = list(files)
    if not files:
        return set()
    output = git_output(top, "check-attr", "-z", *_CONVERTING, "--", *files)
    if output is None:
        return set(files)
    fields = _fields(output)  # path, attribute, value; three by three
    return {fields[i] for i in range(0, len(fields), 3) if fields[i + 2] != "unspecified"}
