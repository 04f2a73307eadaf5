"""The smoke check of a pushed image, with a fake container runner: what it runs, what
passes, and what fails (a helper that does not import, an unmet requirement beyond
kfp's gaps)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kiln._errors import CommandFailed
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import Platform, image_index
from kiln._images.oci.smoke import ContainerRunner, Run, smoke_check
from kiln._release.prepare import prepare
from tests.unit.fakes import release_setup
from tests.unit.test_oci_push import an_image, sha

IMAGE = "registry.invalid:5000/acme/base@sha256:" + "d" * 64
ENVIRONMENT = {
    "implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
    "platform_machine": "x86_64", "platform_release": "6.1", "platform_system": "Linux",
    "platform_version": "#1", "python_full_version": "3.11.2",
    "platform_python_implementation": "CPython", "python_version": "3.11",
    "sys_platform": "linux",
}  # fmt: skip
# kfp is baked --no-deps: what it requires is missing on purpose.
CLEAN = {
    "kfp": ["2.17.3", ["kubernetes<31,>=8.0.0", "click<9,>=8.1.8"]],
    "numpy": ["2.4.6", []],
    "acme-imgproc": ["0.2.0", ["numpy>=1.26"]],
    "pandas": [
        "2.2.0", ["numpy>=1.26", 'tomli; python_version < "3.11"', 'pytest; extra == "test"']
    ],
}  # fmt: skip


@dataclass
class FakeContainers:
    """Answers every run with ``failed`` imports and the ``distributions`` installed, as
    the smoke script in the image prints them; or runs the script with this interpreter."""

    failed: dict[str, str] = field(default_factory=dict)
    distributions: dict[str, list[Any]] = field(default_factory=lambda: dict(CLEAN))
    local: bool = False
    runs: list[tuple[str, list[str]]] = field(default_factory=list)

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        self.runs.append((image, list(command)))
        if self.local:
            proc = subprocess.run(
                [sys.executable, *command[1:]], capture_output=True, text=True, check=False
            )
            return Run(proc.returncode, proc.stdout + proc.stderr)
        result = {
            "failed": self.failed, "distributions": self.distributions, "environment": ENVIRONMENT
        }  # fmt: skip
        return Run(0, "some noise\n" + json.dumps(result) + "\n")


def test_a_clean_image_passes_and_its_run_goes_to_the_log() -> None:
    runner = FakeContainers()
    lines: list[str] = []
    smoke_check(runner, IMAGE, ["imgproc", "kfp", "viz"], log=lines.append)
    ((image, command),) = runner.runs
    assert image == IMAGE
    assert command[:2] == ["python3", "-c"]
    assert command[3:] == ["imgproc", "kfp", "viz"]
    assert "some noise" in lines[1]
    assert lines[-1].endswith("ok")


def test_a_helper_that_does_not_import_fails_naming_the_image_and_the_error() -> None:
    runner = FakeContainers(local=True)  # the real script, run here
    with pytest.raises(CommandFailed) as err:
        smoke_check(runner, IMAGE, ["json", "no_such_helper_pkg"])
    message = str(err.value)
    assert f"smoke check of {IMAGE} failed" in message
    assert "import no_such_helper_pkg failed" in message
    assert "ModuleNotFoundError: No module named 'no_such_helper_pkg'" in message
    assert "import json" not in message


def test_unmet_requirements_other_than_kfp_s_fail() -> None:
    broken = {**CLEAN, "numpy": ["1.0", []], "viz": ["0.1", ["matplotlib"]]}
    runner = FakeContainers(distributions=broken)
    with pytest.raises(CommandFailed) as err:
        smoke_check(runner, IMAGE, ["imgproc"])
    message = str(err.value)
    assert "pandas 2.2.0 has requirement numpy>=1.26, but you have numpy 1.0." in message
    assert "acme-imgproc 0.2.0 has requirement numpy>=1.26, but you have numpy 1.0." in message
    assert "viz 0.1 requires matplotlib, which is not installed." in message
    assert "kubernetes" not in message  # kfp's, left out on purpose
    assert "tomli" not in message  # its marker does not apply to Python 3.11
    assert "pytest" not in message  # an extra nobody asked for
    assert "what `pip check` reports" in message


def test_the_real_script_lists_what_this_interpreter_has_installed() -> None:
    runner = FakeContainers(local=True)
    smoke_check(runner, IMAGE, ["json"])  # this test environment's requirements are met
    ((_image, command),) = runner.runs
    proc = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, check=True
    )
    result = json.loads(proc.stdout)
    assert result["distributions"]["pytest"][0] == pytest.__version__
    assert result["environment"]["python_version"] == "{}.{}".format(*sys.version_info[:2])


def test_an_image_whose_python_prints_no_result_fails_with_its_output() -> None:
    def broken(_image: str, _command: Sequence[str]) -> Run:
        return Run(127, "exec: python3: not found\n")

    with pytest.raises(CommandFailed, match=r"(?s)exited 127 without a result.*python3: not found"):
        smoke_check(broken, IMAGE, [])


class PushedRegistry:
    """A registry that has every blob and stores manifests as sent."""

    host = "registry.invalid:5000"

    def __init__(self) -> None:
        self.references: list[str] = []  # what manifests were PUT as, in order

    def blob_exists(self, repository: str, digest: str) -> bool:
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        raise AssertionError("nothing to mount")

    def upload_blob(self, repository: str, digest: str, content: Path | bytes) -> None:
        raise AssertionError("nothing to upload")

    def put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> str:
        self.references.append(reference)
        return sha(manifest)

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes:
        raise AssertionError("not asked")


def test_kiln_s_builder_smoke_checks_what_it_pushed_by_digest(tmp_path: Path) -> None:
    setup = release_setup(tmp_path / "repo")
    (inputs,) = prepare(setup.ws, setup.services).images
    image = an_image(tmp_path)
    runner = FakeContainers(failed={"imgproc": "ImportError: boom"})

    def no_engine() -> Any:
        raise AssertionError("the fake runner stands in for the engine")

    registry = PushedRegistry()
    builder = KilnBuilder(no_engine, tmp_path / "cache", registry, containers=runner)
    with pytest.raises(CommandFailed, match="import imgproc failed:\nImportError: boom") as err:
        builder.push(inputs, image)
    ((ran, command),) = runner.runs
    assert ran == f"registry.invalid:5000/acme/base@{image.digest}"
    assert command[3:] == ["imgproc", "kfp"]
    assert registry.references == [image.digest]  # pushed by digest, never tagged
    assert f"Nothing was tagged ({inputs.tag} was not put) and no component YAML" in str(err.value)
    assert "fix the source of helpers/imgproc" in str(err.value)
    assert "bump it (`kiln bump imgproc patch`: its wheel is on the index" in str(err.value)


def test_what_the_smoke_check_imports_can_be_given(tmp_path: Path) -> None:
    setup = release_setup(tmp_path / "repo")
    (inputs,) = prepare(setup.ws, setup.services).images
    runner = FakeContainers()

    def no_engine() -> Any:
        raise AssertionError("the fake runner stands in for the engine")

    registry = PushedRegistry()
    builder = KilnBuilder(no_engine, tmp_path / "cache", registry, containers=runner)
    image = an_image(tmp_path)
    builder.push(dataclasses.replace(inputs, smoke=("pip",)), image)
    ((_ran, command),) = runner.runs
    assert command[3:] == ["pip"]  # packages mode's base: pip, no kfp
    assert registry.references == [image.digest, inputs.tag]  # tagged once it passed


def test_a_smoke_failure_outside_the_helpers_names_the_lock(tmp_path: Path) -> None:
    setup = release_setup(tmp_path / "repo")
    (inputs,) = prepare(setup.ws, setup.services).images
    runner = FakeContainers(distributions={**CLEAN, "numpy": ["2.4.6", ["six"]]})

    def no_engine() -> Any:
        raise AssertionError("the fake runner stands in for the engine")

    registry = PushedRegistry()
    builder = KilnBuilder(no_engine, tmp_path / "cache", registry, containers=runner)
    image = an_image(tmp_path)
    with pytest.raises(CommandFailed, match=r"numpy 2\.4\.6 requires six") as err:
        builder.push(inputs, image)
    assert registry.references == [image.digest]
    assert str(err.value).endswith(
        "fix the image's lock or its helpers (`kiln lock base`) and release again"
    )


def test_kiln_s_builder_checks_each_platform_of_an_index_before_the_index_and_its_tag(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path / "repo")
    (inputs,) = prepare(setup.ws, setup.services).images
    index = image_index([an_image(tmp_path, "amd64"), an_image(tmp_path, "arm64")])
    (_, amd64), (_, arm64) = index.images
    engine = FakeContainers()
    foreign_runs: list[tuple[str, str]] = []

    def foreign(platform: Platform, image: BuiltImage) -> ContainerRunner:
        foreign_runs.append((str(platform), image.digest))
        return FakeContainers(failed={"imgproc": "ImportError: wrong ELF class"})

    def no_engine() -> Any:
        raise AssertionError("the fake runner stands in for the engine")

    registry = PushedRegistry()
    builder = KilnBuilder(
        no_engine, tmp_path / "cache", registry, containers=engine, foreign=foreign
    )
    with pytest.raises(CommandFailed, match="import imgproc failed:\nImportError: wrong ELF"):
        builder.push(inputs, index)
    # This machine's (amd64) image by the engine, the arm64 one by the foreign runner;
    # both pushed by digest, and neither the index nor the tag put.
    assert [image for image, _ in engine.runs] == [
        f"registry.invalid:5000/acme/base@{amd64.digest}"
    ]
    assert foreign_runs == [("linux/arm64/v8", arm64.digest)]
    assert registry.references == [amd64.digest, arm64.digest]

    registry.references.clear()
    builder = KilnBuilder(
        no_engine, tmp_path / "cache", registry, containers=engine,
        foreign=lambda _platform, _image: FakeContainers(),
    )  # fmt: skip
    assert builder.push(inputs, index) == index.digest
    assert registry.references == [amd64.digest, arm64.digest, index.digest, inputs.tag]
