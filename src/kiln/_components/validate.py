"""Component functions checked before any YAML is written, read with ``ast``.

KFP names a component's pipeline after its function, made Kubernetes-friendly
(lowercased, each run of other characters a dash), and refuses a name that is then not
``^[a-z0-9][a-z0-9-]{0,127}$`` with a traceback, after the YAMLs before it were
written. KFP copies the docstring and the defaults into the comment that heads each
YAML: a character YAML refuses (a raw ESC) makes the committed file unreadable; the
docstring's lines are each commented, but a default is written as it is, so any line
break YAML reads in one (LF, CR, NEL, U+2028/9) ends the comment and the text after it
becomes YAML: a top-level key of the attacker's choosing, or a second document after
``---``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from kiln._errors import ConfigError
from kiln._util.kept import Kept, code_digest
from kiln._workspace.model import Component
from kiln._workspace.sources import parse_module

KFP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# What YAML reads: tab, LF, CR, NEL and the printable ranges (YAML 1.1, as PyYAML).
_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BREAKS = re.compile("[\n\r\x85\u2028\u2029]")  # what YAML reads as a line break


def kfp_name(name: str) -> str:
    """The name KFP gives the pipeline of the component ``name`` (its k8s renaming)."""
    return re.sub("-+", "-", re.sub("[^-0-9a-z]+", "-", name.lower())).strip("-")


def _bad(text: str, *, breaks: bool) -> tuple[int, str] | None:
    """The offset and the character in ``text`` a YAML comment cannot hold; ``breaks``:
    refuse every line break YAML reads too."""
    found = _UNPRINTABLE.search(text)
    if found is None and breaks:
        found = _BREAKS.search(text)
    return (found.start(), found.group()) if found is not None else None


def _strings(node: ast.AST | None) -> Iterator[ast.Constant]:
    for sub in ast.walk(node) if node is not None else ():
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub


def _fail(where: str, what: str, value: str, *, char: str, fix: str) -> ConfigError:
    return ConfigError(
        f"{where}: {what} {value!r} holds {char!r}, which KFP copies unescaped into the "
        f"comment heading the component's YAML, so the committed YAML would break; {fix}"
    )


def _check_function(path: Path, func: ast.FunctionDef) -> None:
    kfp = kfp_name(func.name)
    if not KFP_NAME.fullmatch(kfp):
        raise ConfigError(
            f"{path}:{func.lineno}: component {func.name!r} cannot be compiled: KFP names its "
            f"pipeline {kfp!r}, which must match ^[a-z0-9][a-z0-9-]{{0,127}}$ (at most 128 "
            "lowercase letters, digits and dashes; each run of other characters becomes a "
            f"dash); rename the function (e.g. {_shorter(func.name)!r})"
        )
    body = func.body[0] if func.body else None
    if isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant):
        doc = body.value.value
        bad = _bad(doc, breaks=False) if isinstance(doc, str) else None
        if isinstance(doc, str) and bad is not None:
            line = body.lineno + doc.count("\n", 0, bad[0])
            raise _fail(
                f"{path}:{line}", f"the docstring of {func.name}", doc, char=bad[1],
                fix="write it as plain text (an escape such as \\x1b in a docstring is the "
                "character itself; drop it)",
            )  # fmt: skip
    args = func.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    for param in params:
        if param is None:
            continue
        bad = _bad(param.arg, breaks=True)
        if bad is not None:
            where = f"{path}:{param.lineno}"
            raise _fail(where, "parameter name", param.arg, char=bad[1], fix="rename it")
        for const in _strings(param.annotation):
            _check_value(path, const, f"a string in the annotation of {param.arg}")
    for default in [*args.defaults, *args.kw_defaults]:
        for const in _strings(default):
            _check_value(path, const, f"a default of {func.name}")
    for const in _strings(func.returns):
        _check_value(path, const, f"a string in the return annotation of {func.name}")


def _check_value(path: Path, const: ast.Constant, what: str) -> None:
    value = str(const.value)
    bad = _bad(value, breaks=True)
    if bad is not None:
        raise _fail(
            f"{path}:{const.lineno}", what, value, char=bad[1],
            fix="keep such values on one line of printable text (pass multi-line text as an "
            "argument at run time instead)",
        )  # fmt: skip


def _shorter(name: str) -> str:
    kept = kfp_name(name)[:40].strip("-").replace("-", "_")
    return kept if kept and kept[0].isalpha() else f"step_{kept}".rstrip("_")


def validate_components(components: Sequence[Component], *, memo: Path | None = None) -> None:
    """Refuse any component KFP cannot compile or whose YAML would break, before any is
    written: the error names file:line, the value and the fix. ``memo``: where the sets
    of components that passed are remembered, by their functions' names and their
    modules' bytes (a release validated its 1004 components twice, 0.15 s, each run)."""
    key = _passed_key(components)
    kept = Kept(memo, _FORMAT) if memo is not None else None
    if key is not None and (key in _PASSED or (kept is not None and kept.get(key) is True)):
        _PASSED.add(key)
        return
    trees: dict[Path, ast.Module] = {}
    for component in components:
        if component.path not in trees:
            trees[component.path] = parse_module(component.path)
        for node in trees[component.path].body:
            if isinstance(node, ast.FunctionDef) and node.name == component.name:
                _check_function(component.path, node)
    if key is not None:
        _PASSED.add(key)
        if kept is not None:
            kept.put(key, True)


def memo_folder(state_dir: Path) -> Path:
    """Where a workspace's ``validate_components`` remembers what passed."""
    return state_dir / "cache" / "components" / "valid"


_FORMAT = b"kiln valid components 1 sha256:"
_PASSED: set[str] = set()  # the keys of the component sets that passed in this process


def _passed_key(components: Sequence[Component]) -> str | None:
    """A sha256 over what decides whether ``components`` pass: each one's name and its
    module's bytes, this module's code and the Python that parses them (None: a module
    cannot be read, and is left to ``parse_module`` to name)."""
    modules: dict[Path, str] = {}
    try:
        for component in components:
            if component.path not in modules:
                modules[component.path] = hashlib.sha256(component.path.read_bytes()).hexdigest()
    except OSError:
        return None
    parts = [
        code_digest(__file__), list(sys.version_info[:2]),
        [(c.name, modules[c.path]) for c in components],
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
