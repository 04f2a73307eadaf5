"""The component catalog: what consuming teams read before they load a component.

One Markdown file (``README.md``, read on the forge) and one static HTML page
(``catalog.html``: no JavaScript, no external assets, every value HTML-escaped, so it
opens from a file share or an artifact store as it is). Each component shows its
interface, read back from the YAML kiln generated (so the catalog says what a pod
will get, not what the source looked like), its pins and the helpers baked in.

Both files are deterministic (entries sorted by name, no timestamps): regenerating
an unchanged catalog gives the same bytes, so it can be committed and diffed.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kiln._errors import ConfigError
from kiln._util.files import write_atomic

MODES = ("image", "packages")
# libyaml's safe loader when PyYAML has it (its wheels do): ~10x the pure-Python one.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=8)
def yaml_documents(data: bytes) -> tuple[Any, ...]:
    """Every document of ``data``, parsed by the safe loader once for the few YAMLs in
    hand: a release checks each generated YAML and reads its catalog row back from the
    same bytes, and parsing was 2 ms a YAML (1004 YAMLs twice at N=500). The documents are
    shared: read them, never change them."""
    return tuple(yaml.load_all(data, Loader=SAFE_LOADER))


# A parameter's IR type, shown as the Python annotation that gives it (as KFP's own
# YAML header does), since that is what a consumer writes in a pipeline.
_PARAMETER_TYPES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
    "TASK_FINAL_STATUS": "PipelineTaskFinalStatus",
    "TASK_CONFIG": "TaskConfig",
}

# KFP 2.17 keeps a component's description in no IR field (pipelineInfo.description
# is only set for @dsl.pipeline); its compiler writes it into the YAML's header
# comment, continuation lines indented under the first. KFP's loader reads it back
# from there too (ComponentSpec.from_yaml_documents).
_DESCRIPTION = "# Description: "
_CONTINUATION = "#" + " " * (len(_DESCRIPTION) - 1)

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Entry:
    """One component as the catalog shows it."""

    name: str
    source: str
    yaml: str
    description: str
    inputs: Pairs
    outputs: Pairs
    mode: str
    pins: tuple[str, ...]
    helpers: tuple[str, ...]
    snippet: str

    def __post_init__(self) -> None:
        # Entries come from kiln's own plan, never from a user's file: a bad one is a bug.
        if self.mode not in MODES:
            raise ValueError(f"{self.name}: pin mode must be one of {MODES}, got {self.mode!r}")


def _fail(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}: {problem}; it is not a component YAML kiln generated: regenerate it "
        "with `kiln components --local`"
    )


def _header_description(text: str) -> str:
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(_DESCRIPTION):
            lines.append(line[len(_DESCRIPTION) :])
        elif lines and line.startswith(_CONTINUATION):
            lines.append(line[len(_CONTINUATION) :])
        elif lines:
            break
    return "\n".join(lines).strip()


def _mapping(value: object, path: Path, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"{where} is not a mapping")
    return value


def _definitions(root: Mapping[str, object], key: str, path: Path) -> Pairs:
    """(name, type) of ``root[key]``, parameters and artifacts in the file's order."""
    pairs: list[tuple[str, str]] = []
    definitions = _mapping(root.get(key, {}), path, f"root.{key}")
    for kind, items in definitions.items():
        for name, spec in _mapping(items, path, f"root.{key}.{kind}").items():
            where = f"root.{key}.{kind}.{name}"
            fields = _mapping(spec, path, where)
            if kind == "parameters":
                ir_type = fields.get("parameterType")
                if not isinstance(ir_type, str) or ir_type not in _PARAMETER_TYPES:
                    raise _fail(path, f"{where} has an unknown parameterType {ir_type!r}")
                pairs.append((name, _PARAMETER_TYPES[ir_type]))
            elif kind == "artifacts":
                title = _mapping(fields.get("artifactType"), path, where).get("schemaTitle")
                if not isinstance(title, str):
                    raise _fail(path, f"{where} has no artifactType.schemaTitle")
                pairs.append((name, f"list[{title}]" if fields.get("isArtifactList") else title))
    return tuple(pairs)


def read_yaml(
    path: Path, parse: Callable[[bytes], tuple[Any, ...]] = yaml_documents
) -> tuple[str, Pairs, Pairs]:
    """(description, inputs, outputs) of a component YAML kiln generated (its documents
    read by ``parse``).

    Inputs and outputs are (name, type) in the YAML's order; an artifact's type is
    its schema title (``system.Dataset``); a function's return value is ``Output``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}); generate the component YAMLs "
            "with `kiln components --local` first"
        ) from exc
    try:
        document = next(iter(parse(text.encode("utf-8"))), None)
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({exc})") from exc
    spec = _mapping(document, path, "the document")
    root = _mapping(spec.get("root"), path, "root")
    return (
        _header_description(text),
        _definitions(root, "inputDefinitions", path),
        _definitions(root, "outputDefinitions", path),
    )


def _sorted(entries: Iterable[Entry]) -> list[Entry]:
    ordered = sorted(entries, key=lambda entry: entry.name)
    names = [entry.name for entry in ordered]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"the catalog lists each component once; repeated: {duplicates}")
    return ordered


def _pins_heading(entry: Entry) -> str:
    return "Image" if entry.mode == "image" else "Packages installed at start"


# ------------------------------------------------------------------ Markdown

_MD_ESCAPED = re.compile(r"([\\`*_\[\]|~])")
_MD_LINE_START = re.compile(r"^([#+=-]|\d+[.)])")
_BACKTICKS = re.compile(r"`+")


def _md_text(text: str) -> str:
    """Prose as literal Markdown text: no emphasis, links, lists or raw HTML."""
    lines = []
    for raw in text.splitlines():
        line = _MD_ESCAPED.sub(r"\\\1", raw.strip())
        line = _MD_LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], line)
        lines.append(html.escape(line, quote=False))
    return "\n".join(lines)


def _backtick_runs(text: str) -> list[str]:
    """The runs of backticks in ``text``; most texts (a catalog of 1004 components shows
    90000 pins) have none, and are not scanned."""
    return _BACKTICKS.findall(text) if "`" in text else []


def _md_code(text: str, *, in_table: bool = False) -> str:
    """A code span holding ``text`` literally, whatever backticks it contains."""
    text = text.replace("\n", " ")
    runs = _backtick_runs(text)
    fence = "`" * (max((len(run) for run in runs), default=0) + 1)
    if in_table:
        text = text.replace("|", "\\|")
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_pairs(title: str, pairs: Pairs) -> list[str]:
    if not pairs:
        return [f"**{title}:** none", ""]
    rows = [f"| {_md_code(n, in_table=True)} | {_md_code(t, in_table=True)} |" for n, t in pairs]
    return [f"**{title}**", "", "| name | type |", "|---|---|", *rows, ""]


def _md_list(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return [f"**{title}:** none", ""]
    return [f"**{title}**", "", *(f"- {_md_code(item)}" for item in items), ""]


def _md_entry(entry: Entry) -> list[str]:
    runs = _backtick_runs(entry.snippet)
    fence = "`" * max(3, max((len(run) for run in runs), default=0) + 1)
    description = _md_text(entry.description) or "_No description: the function has no docstring._"
    return [
        f'<a id="component-{html.escape(entry.name)}"></a>',
        "",
        f"## {_md_code(entry.name)}",
        "",
        description,
        "",
        "| | |",
        "|---|---|",
        f"| pin mode | {_md_code(entry.mode, in_table=True)} |",
        f"| source | {_md_code(entry.source, in_table=True)} |",
        f"| YAML | {_md_code(entry.yaml, in_table=True)} |",
        "",
        *_md_pairs("Inputs", entry.inputs),
        *_md_pairs("Outputs", entry.outputs),
        *_md_list(_pins_heading(entry), entry.pins),
        *_md_list("Helpers inside", entry.helpers),
        "**Load it**",
        "",
        f"{fence}python",
        *entry.snippet.strip("\n").splitlines(),
        fence,
        "",
    ]


def _summary(description: str) -> str:
    return description.strip().split("\n", 1)[0]


def _markdown_head(*, title: str, generated_by: str) -> list[str]:
    return [
        f"<!-- {_comment(generated_by)} -->",
        "",
        f"# {_md_text(title)}",
        "",
        f"_{_md_text(generated_by)}_",
        "",
        "| component | pin mode | what it does |",
        "|---|---|---|",
    ]


def render_markdown(entries: Sequence[Entry], *, title: str, generated_by: str) -> str:
    """The catalog as Markdown (``README.md`` of the components folder)."""
    ordered = _sorted(entries)
    lines = _markdown_head(title=title, generated_by=generated_by)
    for entry in ordered:
        link = f"[{_md_code(entry.name, in_table=True)}](#component-{entry.name})"
        summary = _md_text(_summary(entry.description))
        lines.append(f"| {link} | {entry.mode} | {summary} |")
    lines.append("")
    for entry in ordered:
        lines.extend(_md_entry(entry))
    return "\n".join(lines).rstrip("\n") + "\n"


# ------------------------------------------------------------------ HTML

_CSS = """\
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;
background:#f6f8fa;margin:0;padding:2rem 1rem}
main,header{max-width:60rem;margin:0 auto}
h1{margin:0 0 .25rem}
.generated{color:#59636e;margin:0 0 1.5rem}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:.25rem 0 1rem}
th,td{border:1px solid #d1d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f0f3f6}
.component{background:#fff;border:1px solid #d1d9e0;border-radius:8px;
padding:1rem 1.5rem;margin:1.5rem 0}
.component h2{margin:.25rem 0}
.component h2 code{font-size:1.3rem;font-weight:600}
.component h3{font-size:1rem;margin:1rem 0 .25rem}
.description{white-space:pre-line}
.mode{display:inline-block;font-size:12px;border-radius:1em;padding:0 .6em;
margin-left:.5em;vertical-align:middle;background:#ddf4ff;color:#0969da}
.mode-packages{background:#fff8c5;color:#9a6700}
.none{color:#59636e;font-style:italic}
ul{margin:.25rem 0;padding-left:1.25rem}
pre{background:#f6f8fa;border:1px solid #d1d9e0;border-radius:6px;padding:.75rem;
overflow-x:auto}
"""


def _comment(text: str) -> str:
    """``text`` safe inside an HTML comment (no ``-->``, no ``<!--``)."""
    text = html.escape(text)
    while "--" in text:
        text = text.replace("--", "- -")
    return text


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_pairs(kind: str, pairs: Pairs) -> list[str]:
    if not pairs:
        return [f'<p class="{kind} none">none</p>']
    rows = [
        f'<tr><td class="name"><code>{_e(name)}</code></td>'
        f'<td class="type"><code>{_e(type_)}</code></td></tr>'
        for name, type_ in pairs
    ]
    return [
        f'<table class="{kind}">',
        "<thead><tr><th>name</th><th>type</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
    ]


def _html_list(kind: str, items: Sequence[str]) -> list[str]:
    if not items:
        return [f'<p class="{kind} none">none</p>']
    return [
        f'<ul class="{kind}">',
        *(f"<li><code>{_e(item)}</code></li>" for item in items),
        "</ul>",
    ]


def _html_entry(entry: Entry) -> list[str]:
    badge = f'<span class="mode mode-{_e(entry.mode)}">{_e(entry.mode)}</span>'
    description = (
        f'<p class="description">{_e(entry.description)}</p>'
        if entry.description
        else '<p class="description none">No description: the function has no docstring.</p>'
    )
    return [
        f'<section class="component" id="component-{_e(entry.name)}">',
        f"<h2><code>{_e(entry.name)}</code>{badge}</h2>",
        description,
        '<table class="about"><tbody>',
        f"<tr><th>pin mode</th><td><code>{_e(entry.mode)}</code></td></tr>",
        f"<tr><th>source</th><td><code>{_e(entry.source)}</code></td></tr>",
        f"<tr><th>YAML</th><td><code>{_e(entry.yaml)}</code></td></tr>",
        "</tbody></table>",
        "<h3>Inputs</h3>",
        *_html_pairs("inputs", entry.inputs),
        "<h3>Outputs</h3>",
        *_html_pairs("outputs", entry.outputs),
        f"<h3>{_pins_heading(entry)}</h3>",
        *_html_list("pins", entry.pins),
        "<h3>Helpers inside</h3>",
        *_html_list("helpers", entry.helpers),
        "<h3>Load it</h3>",
        f'<pre class="snippet"><code>{_e(entry.snippet.strip(chr(10)))}</code></pre>',
        "</section>",
    ]


def render_html(entries: Sequence[Entry], *, title: str, generated_by: str) -> str:
    """The catalog as one self-contained HTML page (inline CSS, no scripts)."""
    ordered = _sorted(entries)
    index = [
        f'<tr><td><a href="#component-{_e(e.name)}"><code>{_e(e.name)}</code></a></td>'
        f"<td>{_e(e.mode)}</td><td>{_e(_summary(e.description))}</td></tr>"
        for e in ordered
    ]
    lines = [*_html_head(title=title, generated_by=generated_by), *index, "</tbody>", "</table>"]
    for entry in ordered:
        lines.extend(_html_entry(entry))
    lines += ["</main>", "</body>", "</html>"]
    return "\n".join(lines) + "\n"


def _html_head(*, title: str, generated_by: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        f"<!-- {_comment(generated_by)} -->",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>\n{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="generated">{_e(generated_by)}</p>',
        "</header>",
        "<main>",
        '<table class="index">',
        "<thead><tr><th>component</th><th>pin mode</th><th>what it does</th></tr></thead>",
        "<tbody>",
    ]


# What kiln writes beside the YAMLs, and how each file is rendered.
FILES: Mapping[str, Callable[..., str]] = {
    "README.md": render_markdown,
    "catalog.html": render_html,
}


def render_file(name: str, entries: Sequence[Entry], *, title: str, generated_by: str) -> bytes:
    """The bytes of the catalog file ``name`` (one of ``FILES``): "\n" on every platform,
    so the files never differ by OS."""
    return FILES[name](entries, title=title, generated_by=generated_by).encode("utf-8")


def catalog_head(name: str, *, title: str, generated_by: str) -> bytes:
    """What the catalog file ``name`` starts with, whatever its entries."""
    head = _markdown_head if name == "README.md" else _html_head
    return "\n".join(head(title=title, generated_by=generated_by)).encode("utf-8") + b"\n"


def write_catalog(
    entries: Sequence[Entry], directory: Path, *, title: str, generated_by: str
) -> tuple[Path, Path]:
    """Write ``directory/README.md`` and ``directory/catalog.html``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown, page = (directory / name for name in FILES)
    # Each replaced whole: a reader (a concurrent `kiln check`) never sees half a page.
    for path in (markdown, page):
        write_atomic(path, render_file(path.name, entries, title=title, generated_by=generated_by))
    return markdown, page
