"""Reading TOML files with errors that name the file and the fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from kiln._errors import ConfigError
from kiln._util.files import text_of
from kiln._util.kept import KeptRecords


def load_toml(path: Path, *, what: str, kept: KeptRecords | None = None) -> dict[str, Any]:
    """Parse ``path``; a missing or malformed file is a ``ConfigError``. ``kept``: where
    documents are kept by the file's bytes (read, never changed: the document may be
    shared with the next caller)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; every {what} needs this file") from None
    if kept is not None:
        doc = kept.get(data)
        if isinstance(doc, dict):
            return doc
    parsed = parse_toml(path, data)
    if kept is not None:
        kept.put(data, parsed)
    return parsed


def parse_toml(path: Path, data: bytes) -> dict[str, Any]:
    """Parse ``data``, the bytes of ``path``, as ``path.read_text(encoding="utf-8")``
    reads them (universal newlines); malformed, a ``ConfigError``."""
    try:
        text = text_of(data)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "TOML files are UTF-8: save it as UTF-8"
        ) from None
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return doc


def get_str(
    table: dict[str, Any], key: str, path: Path, section: str, default: str | None = None
) -> str:
    """``table[key]``, a non-empty string (``default`` when the key is absent)."""
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{path}: [{section}] {key} must be a non-empty string, got {value!r}; set it"
        )
    return value


def get_str_list(table: dict[str, Any], key: str, path: Path, section: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [{section}] {key} must be a list of strings, got {value!r}")
    return tuple(value)


def get_int(table: dict[str, Any], key: str, default: int, path: Path, section: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{path}: [{section}] {key} must be an integer, got {value!r}")
    return value
