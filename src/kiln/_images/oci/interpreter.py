"""The base image's own Python, run on the build machine without Docker or root.

The ``.pyc`` files of an image must not depend on the machine kiln runs on, and
their bytes differ between patch releases of one Python (3.11.2 and 3.11.7 give
different bytes for a few of matplotlib's modules). So they are compiled by the
image's own interpreter: the base's layers are unpacked once into the layer cache
(``kiln._images.oci.rootfs``) and its ``python3`` is started through the base's own
dynamic loader, with the base's library folders only (``kiln._images.oci.loader``). No
container, no privileges, and the same bytes as a ``python3`` started inside the image.

That interpreter also answers where the image installs distributions (the probe):
its sysconfig paths are under the unpacked folder, and are read back without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kiln._errors import ConfigError
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.loader import find_python, loader_argv
from kiln._images.oci.rootfs import unpack
from kiln._util.cmd import capture


class Interpreter(Protocol):
    """A Python that kiln runs with a script: kiln's own in tests, the base's in builds."""

    @property
    def identity(self) -> str:
        """What the interpreter's output depends on (part of a layer's cache key)."""
        ...

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``script`` with ``args`` (and the variables ``env``, for a probe of the
        image's own settings); its stdout. CommandFailed when it fails."""
        ...


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """None of kiln's environment reaches the interpreter: a fixed hash seed (set
    constants are marshalled in iteration order), no bytecode of its own. ``extra``
    (the image's Env, for the probe) adds what does not change how Python starts."""
    kept = {
        k: v
        for k, v in (extra or {}).items()
        if k not in ("PATH", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")
        and not k.startswith("LD_")
    }
    return {
        **kept,
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run(
    argv: Sequence[str], what: str, stdin: str | None, env: Mapping[str, str] | None = None
) -> str:
    return capture(argv, what=what, env=_clean_env(env), stdin=stdin)


class HostPython:
    """kiln's own interpreter (unit tests: no base image to unpack)."""

    identity = f"host python {sys.version}"

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        return _run([sys.executable, "-S", "-s", "-c", script, *args], "python", stdin, env)


class BaseImagePython:
    """The base image's ``python3``, run from its unpacked filesystem (see module doc)."""

    def __init__(
        self, image_id: str, layers: Sequence[Blob], env: Mapping[str, str], cache: LayerCache
    ) -> None:
        self.identity = f"base python {image_id}"
        self._image_id = image_id
        self._layers = tuple(layers)
        self._env = dict(env)
        self._cache = cache
        self._argv: list[str] | None = None
        self._root: Path | None = None
        self.image_python = ""

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = unpack(self._image_id, self._layers, self._cache)
        return self._root

    def _start(self) -> list[str]:
        if self._argv is None:
            what = f"base image {self._image_id}"
            self.image_python = find_python(self.root, self._env)
            self._argv = loader_argv(self.root, self.image_python, what)
        return self._argv

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        argv = [*self._start(), "-S", "-s", "-c", script, *args]
        return _run(argv, f"the base's {self.image_python or 'python3'}", stdin, env)

    def image_path(self, path: str) -> str:
        """A path the interpreter printed, as a path in the image."""
        top = os.path.realpath(self.root)
        for prefix in (str(self.root), top):
            if path == prefix or path.startswith(prefix + os.sep):
                return "/" + path[len(prefix) :].lstrip("/")
        raise ConfigError(
            f"base image {self._image_id}: its python3 reported {path}, outside its own "
            "filesystem; use a base whose Python is installed the usual way"
        )


class FolderPython:
    """The ``python3`` of a filesystem written out in ``root`` (an OS layer being built,
    before it is a blob): run as ``BaseImagePython`` runs the base's."""

    def __init__(self, root: Path, image_python: str, identity: str) -> None:
        self.identity = identity
        self.image_python = image_python
        self._argv = loader_argv(root, image_python, identity)

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        return _run([*self._argv, "-S", "-s", "-c", script, *args], self.image_python, stdin, env)
