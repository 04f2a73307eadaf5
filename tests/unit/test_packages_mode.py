"""Packages mode and inferred dependencies: how a component says where it runs, what
kiln reads from its imports, and the hash-pinned install list its YAML carries."""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from kiln._components import generate as generate_module
from kiln._components import yamls
from kiln._components.drift import compare, describe
from kiln._components.generate import compile_pipeline as real_compile
from kiln._components.generate import generate_component as real_generate
from kiln._components.packages import (
    Installed,
    _requires,
    _requires_of,
    _tables,
    check_imports,
    closure,
    import_names,
    install_items,
    pip_options,
)
from kiln._components.yamls import PackagesInputs, generate
from kiln._errors import ConfigError
from kiln._release.prepare import Prepared, prepare
from kiln._wheels.build import BuiltWheel, build_wheels
from kiln._wheels.metadata import _read_wheel
from kiln._wheels.wheelhouse import WheelFile, Wheelhouse
from kiln._workspace.discovery import discover
from kiln._workspace.model import Component, Workspace
from tests import factory
from tests.unit.cli import run
from tests.unit.fakes import Setup, fake_sha, release_setup, write_fake_lock

LIGHT = '''
PACKAGES = True


def light_step(x: int) -> float:
    """Scale x with imgproc's answer."""
    import json

    import numpy as np
    from imgproc import answer

    return float(np.float64(x * answer())) + len(json.dumps({}))
'''


# ------------------------------------------------------------------ discovery
def _repo(tmp_path: Path) -> Path:
    root = factory.sample(tmp_path)
    factory.helper(
        tmp_path, "tabular", deps=("pandas>=2",), body="def frame() -> int:\n    return 1\n"
    )
    factory.image(tmp_path, "analytics", helpers=("tabular",))
    return root


def test_imports_inside_the_function_are_read_and_mapped_to_helpers(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.write(root / "pipelines" / "components" / "light.py", LIGHT)
    ws = discover(root)
    (light,) = [c for c in ws.components if c.name == "light_step"]
    assert (light.mode, light.image) == ("packages", None)
    assert light.imports == ("imgproc", "json", "numpy")
    assert light.helpers == ("imgproc",)
    # Packages mode's pseudo-image holds every helper, locked in pipelines/.
    assert ws.packages is not None
    assert (ws.packages.name, ws.packages.path) == ("packages", root / "pipelines")
    assert ws.packages.helpers == ("imgproc", "tabular")
    assert ws.image("packages") is ws.packages


def test_packages_can_name_functions_and_image_mode_stays_for_the_rest(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "mixed.py",
        'IMAGE = "base"\nPACKAGES = ["quick"]\n\n\ndef quick() -> int:\n    return 1\n\n\n'
        "def slow() -> int:\n    return 2\n",
    )
    by_name = {c.name: c for c in discover(root).components}
    assert (by_name["quick"].mode, by_name["slow"].mode) == ("packages", "image")
    assert by_name["slow"].image == "base"
    assert discover(factory.sample(tmp_path / "plain")).packages is None  # nobody uses it


def test_a_helper_missing_from_the_image_names_the_images_that_have_it(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "wrong.py",
        'IMAGE = "base"\n\n\ndef uses_tables() -> int:\n    from tabular import frame\n\n'
        "    return frame()\n",
    )
    with pytest.raises(ConfigError) as err:
        discover(root)
    message = str(err.value)
    assert "pipelines/components/wrong.py: uses_tables imports tabular (helper tabular)" in message
    assert "which image base does not contain; images containing it: analytics" in message
    assert 'set IMAGE = "analytics"' in message


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "PACKAGES = ['nosuch']\nIMAGE = 'base'\n",
            r"PACKAGES names nosuch, which is not a public",
        ),
        ("PACKAGES = 'yes'\n", r"PACKAGES must be True .* or a list of function names"),
        ("", r"IMAGE = None must name an image folder .* or PACKAGES = True"),
    ],
)
def test_a_bad_mode_names_the_file_and_the_fix(tmp_path: Path, header: str, message: str) -> None:
    root = _repo(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "bad.py",
        header + "\n\ndef step() -> int:\n    return 1\n",
    )
    with pytest.raises(ConfigError, match=message) as err:
        discover(root)
    assert "pipelines/components/bad.py" in str(err.value)


def test_an_image_folder_named_packages_is_refused(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.image(root, "packages", helpers=("imgproc",))
    with pytest.raises(ConfigError, match=r"images/packages: the name 'packages' is kiln's"):
        discover(root)


# ------------------------------------------------------------------ the install list
def _wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> WheelFile:
    module = name.replace("-", "_")
    buffer = io.BytesIO()
    meta = f"Name: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "")
        zf.writestr(f"{module}-{version}.dist-info/METADATA", meta)
    path = directory / f"{module}-{version}-py3-none-any.whl"
    path.write_bytes(buffer.getvalue())
    return WheelFile(name, version, path, f"{name}-sha")


def test_requires_dist_is_read_once_per_wheel_until_it_changes(tmp_path: Path) -> None:
    path = _wheel(
        tmp_path, "acme-h", "0.1.0", ("numpy>=1.26", "pywin32; sys_platform == 'win32'")
    ).path
    before, parsed = _read_wheel.cache_info(), _requires_of.cache_info()
    assert _requires(path, "3.11", "x86_64") == ["numpy"]
    assert _requires(path, "3.11", "x86_64") == ["numpy"]
    after = _read_wheel.cache_info()
    assert after.misses - before.misses == 1  # the zip read once
    assert _requires_of.cache_info().hits - parsed.hits == 1  # its markers evaluated once
    _wheel(tmp_path, "acme-h", "0.1.0", ("numpy>=1.26", "pandas>=2.2"))  # rewritten in place
    assert _requires(path, "3.11", "x86_64") == ["numpy", "pandas"]


def test_the_closure_follows_requires_dist_for_the_pods_python(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.write(root / "pipelines" / "components" / "light.py", LIGHT)
    ws = discover(root)
    (light,) = [c for c in ws.components if c.name == "light_step"]
    wheels = (
        _wheel(tmp_path, "numpy", "2.0", ("old-backport; python_version < '3.8'",)),
        _wheel(tmp_path, "pandas", "2.2", ("numpy>=1.26", "tzdata")),
        _wheel(tmp_path, "tzdata", "2025.1"),
        _wheel(tmp_path, "old-backport", "1.0"),
        _wheel(tmp_path, "kfp", "2.17.3", ("protobuf",)),
    )
    helper = _helper_wheel(tmp_path, ws)
    house = Wheelhouse("packages", (), wheels, (helper,))
    names = [i.name for i in closure(ws, light, house, "3.11", machine="x86_64")]
    # imgproc needs numpy; kfp goes --no-deps (protobuf not followed); pandas not imported.
    assert names == ["acme-imgproc", "kfp", "numpy"]


def _helper_wheel(tmp_path: Path, ws: Workspace) -> BuiltWheel:
    (built,) = build_wheels([ws.helper("imgproc")], tmp_path / "built")
    return built


def test_install_items_are_flags_then_hash_pinned_urls(tmp_path: Path) -> None:
    installed = [
        Installed(
            "acme-imgproc", "0.1.0", "acme_imgproc-0.1.0-py3-none-any.whl", "a" * 64, tmp_path
        ),
        Installed("kfp", "2.17.3", "kfp-2.17.3-py3-none-any.whl", "b" * 64, tmp_path),
    ]
    items = install_items({"x86_64": installed}, index_url="https://pypi.acme.example/")
    assert items == [
        "--no-deps",
        "--require-hashes",
        (
            "acme-imgproc @ https://pypi.acme.example/packages/acme_imgproc-0.1.0-py3-none-any.whl"
            f"#sha256={'a' * 64}"
        ),
        f"kfp @ https://pypi.acme.example/packages/kfp-2.17.3-py3-none-any.whl#sha256={'b' * 64}",
    ]


def test_requires_dist_markers_are_evaluated_for_each_platform_s_machine(tmp_path: Path) -> None:
    gated = ("x86-only; platform_machine == 'x86_64'", "arm-only; platform_machine == 'aarch64'")
    path = _wheel(tmp_path, "acme-h", "0.1.0", ("numpy", *gated)).path
    assert _requires(path, "3.11", "x86_64") == ["numpy", "x86-only"]
    assert _requires(path, "3.11", "aarch64") == ["numpy", "arm-only"]


def _installed(name: str, filename: str, sha: str) -> Installed:
    return Installed(name, "1.0", filename, sha * 64, Path(filename))


def test_a_file_the_same_everywhere_is_one_item_and_others_one_per_machine() -> None:
    kfp = _installed("kfp", "kfp-1.0-py3-none-any.whl", "b")
    numpy_x86 = _installed("numpy", "numpy-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "c")
    numpy_arm = _installed("numpy", "numpy-1.0-cp311-cp311-manylinux_2_28_aarch64.whl", "d")
    only_x86 = _installed("x86-only", "x86_only-1.0-py3-none-any.whl", "e")
    closures = {"x86_64": [kfp, numpy_x86, only_x86], "aarch64": [kfp, numpy_arm]}
    items = install_items(closures, index_url="https://pypi.acme.example")
    url = "https://pypi.acme.example/packages/"
    assert items == [
        "--no-deps",
        "--require-hashes",
        f"kfp @ {url}kfp-1.0-py3-none-any.whl#sha256={'b' * 64}",
        f'numpy @ {url}{numpy_x86.filename}#sha256={"c" * 64} ; platform_machine == "x86_64"',
        f'numpy @ {url}{numpy_arm.filename}#sha256={"d" * 64} ; platform_machine == "aarch64"',
        f'x86-only @ {url}{only_x86.filename}#sha256={"e" * 64} ; platform_machine == "x86_64"',
    ]
    # Each item is PEP 508 (as pip parses it): on each machine exactly that machine's
    # files are left, each by its URL and hash.
    reqs = [Requirement(i) for i in items[2:]]
    for machine, closure_ in closures.items():
        env = {"platform_machine": machine}
        kept = [r for r in reqs if r.marker is None or r.marker.evaluate(env)]
        assert [(r.name, r.url) for r in kept] == [
            (d.name, f"{url}{d.filename}#sha256={d.sha256}") for d in closure_
        ]
    # One platform: no markers (a single-platform repository's YAMLs are unchanged).
    one = install_items({"x86_64": [kfp, numpy_x86]}, index_url="https://pypi.acme.example")
    assert not any(";" in i for i in one)


def test_only_a_plain_http_loopback_index_is_trusted_and_only_by_host_port() -> None:
    local = pip_options("http://127.0.0.1:8765")
    assert local == {
        "pip_index_urls": ["http://127.0.0.1:8765/simple/"],
        "pip_trusted_hosts": ["127.0.0.1:8765"],
    }
    assert pip_options("https://pypi.acme.example")["pip_trusted_hosts"] == []
    assert pip_options("http://10.0.0.9:8080")["pip_trusted_hosts"] == []


def test_an_import_nobody_provides_is_named(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "light.py",
        LIGHT.replace("import json\n", "import json\n    import sklearn\n"),
    )
    ws = discover(root)
    (light,) = [c for c in ws.components if c.name == "light_step"]
    numpy = _wheel(tmp_path, "numpy", "2.0").path
    with pytest.raises(ConfigError) as err:
        check_imports(
            light, import_names([numpy, _helper_wheel(tmp_path, ws).path]), where="its packages"
        )
    assert "light_step imports sklearn, which nothing in its packages provides" in str(err.value)


# ------------------------------------------------------------------ generation
@pytest.fixture
def packages_setup(tmp_path: Path) -> Setup:
    setup = release_setup(tmp_path)
    factory.write(setup.ws.root / "pipelines" / "components" / "light.py", LIGHT)
    setup.ws = discover(setup.ws.root)
    assert setup.ws.packages is not None
    write_fake_lock(setup.ws, setup.ws.packages)
    return setup


def test_a_packages_mode_yaml_pins_every_file_by_hash_on_the_private_index_only(
    packages_setup: Setup,
) -> None:
    setup = packages_setup
    setup.release()
    path = setup.ws.component_dir / "light_step.yaml"
    text = path.read_text()
    assert text.startswith("# Generated by kiln ")
    assert "from pipelines/components/light.py (light_step, packages mode): do not edit." in text
    spec = yaml.safe_load(text)
    container = spec["deploymentSpec"]["executors"]["exec-light-step"]["container"]
    # Packages mode's base: kiln's OS base and the locked pip, pinned by digest.
    (base,) = [i for i in setup.release().manifest.images if i.name == "packages"]
    assert container["image"] == base.ref == f"registry.invalid:5000/acme/packages@{base.digest}"
    assert base.tag == f"py{factory.PYTHON}-{base.digest[7:19]}"
    command = container["command"][2]
    assert "pip @" not in command  # pip is in the base, not installed by the pod
    assert "--index-url http://index.invalid/simple/" in command
    assert "--extra-index-url" not in command
    assert "--trusted-host" not in command  # not a loopback index
    assert "'--no-deps' '--require-hashes'" in command
    helper = next((setup.ws.dist_dir / "wheels").glob("acme_imgproc-*.whl"))
    assert f"#sha256={fake_sha('numpy', '1.0')}'" in command
    assert f"acme-imgproc @ http://index.invalid/packages/{helper.name}#sha256=" in command
    assert "kfp @ http://index.invalid/packages/kfp-2.17.3-py3-none-any.whl#sha256=" in command
    assert "'kfp==" not in command  # KFP's own unpinned kfp line is off
    # The catalog beside it lists both components with their pins.
    catalog = (setup.ws.component_dir / "README.md").read_text()
    assert "`light_step`" in catalog
    assert "acme-imgproc==0.1.0" in catalog
    assert "registry.invalid:5000/acme/base@sha256:" in catalog


def test_same_inputs_same_bytes_and_a_removed_component_loses_its_yaml(
    packages_setup: Setup,
) -> None:
    setup = packages_setup
    setup.release()
    before = {p.name: p.read_bytes() for p in setup.ws.component_dir.iterdir()}
    setup.release()
    assert {p.name: p.read_bytes() for p in setup.ws.component_dir.iterdir()} == before
    (setup.ws.root / "pipelines" / "components" / "light.py").unlink()
    setup.ws = discover(setup.ws.root)
    prepared = prepare(setup.ws, setup.services)
    generate(
        setup.ws, prepared.wheelhouses, prepared.image_refs, packages=prepared.packages,
        index_url=setup.index.url,
    )  # fmt: skip
    assert not (setup.ws.component_dir / "light_step.yaml").exists()
    assert (setup.ws.component_dir / "double.yaml").exists()


def test_a_yaml_for_two_platforms_gates_each_platform_s_own_files_by_machine(
    packages_setup: Setup, tmp_path: Path
) -> None:
    setup = packages_setup
    prepared = prepare(setup.ws, setup.services)
    assert prepared.packages is not None
    assert setup.ws.packages is not None
    house = prepared.packages.wheelhouse
    # linux/arm64's wheelhouse: numpy an aarch64 file of its own, kfp and the helper alike.
    (numpy,) = [w for w in house.third_party if w.name == "numpy"]
    arm_path = tmp_path / "numpy-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    shutil.copy(numpy.path, arm_path)
    arm_numpy = WheelFile("numpy", "1.0", arm_path, "f" * 64)
    arm = dataclasses.replace(
        house, third_party=tuple(arm_numpy if w is numpy else w for w in house.third_party)
    )
    platforms = ("linux/amd64", "linux/arm64")
    packages = dataclasses.replace(
        prepared.packages, wheelhouses=(("linux/amd64", house), ("linux/arm64", arm))
    )
    ws = dataclasses.replace(
        setup.ws, packages=dataclasses.replace(setup.ws.packages, platforms=platforms)
    )
    generate(
        ws, prepared.wheelhouses, prepared.image_refs, packages=packages, index_url=setup.index.url
    )
    spec = yaml.safe_load((ws.component_dir / "light_step.yaml").read_text())
    command = spec["deploymentSpec"]["executors"]["exec-light-step"]["container"]["command"][2]
    items = [i for i in re.findall(r"'([^']*)'", command) if " @ " in i]
    numpy_items = [i for i in items if i.startswith("numpy @ ")]
    url = "http://index.invalid/packages"
    assert numpy_items == [
        f'numpy @ {url}/{numpy.filename}#sha256={numpy.sha256} ; platform_machine == "x86_64"',
        f'numpy @ {url}/{arm_path.name}#sha256={"f" * 64} ; platform_machine == "aarch64"',
    ]
    others = [i for i in items if i not in numpy_items]
    assert [i.split(" @ ")[0] for i in others] == ["acme-imgproc", "kfp"]
    assert not any(";" in i for i in others)  # the same file on both: one item each
    catalog = (ws.component_dir / "README.md").read_text()
    assert catalog.count("numpy==1.0") == 1


def test_every_platform_s_packages_mode_wheels_are_mirrored(tmp_path: Path) -> None:
    x86 = _wheel(tmp_path, "numpy", "2.0")
    arm_path = tmp_path / "numpy-2.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    shutil.copy(x86.path, arm_path)
    arm = WheelFile("numpy", "2.0", arm_path, "f" * 64)
    x86_house = Wheelhouse("packages", (), (x86,), ())
    arm_house = Wheelhouse("packages", (), (arm,), ())
    houses = (("linux/amd64", x86_house), ("linux/arm64", arm_house))
    packages = PackagesInputs(
        "registry.invalid/acme/packages@sha256:" + "0" * 64, x86_house, houses
    )
    prepared = Prepared(wheels=(), images=(), packages=packages)
    assert [c.path for c in prepared.mirror_candidates()] == [arm.path, x86.path]


# ------------------------------------------------------------------ drift
def test_drift_names_changed_missing_and_extra_files_with_a_diff(tmp_path: Path) -> None:
    committed, generated = tmp_path / "committed", tmp_path / "generated"
    factory.write(committed / "a.yaml", "x: 1\n")
    factory.write(committed / "gone.yaml", "x: 1\n")
    factory.write(committed / "same.yaml", "x: 1\n")
    factory.write(generated / "a.yaml", "x: 2\n")
    factory.write(generated / "new.yaml", "x: 1\n")
    factory.write(generated / "same.yaml", "x: 1\n")
    drifts = compare(committed, generated, label="gen")
    assert [(d.name, d.state) for d in drifts] == [
        ("a.yaml", "changed"),
        ("gone.yaml", "extra"),
        ("new.yaml", "missing"),
    ]
    text = describe(drifts, label="gen")
    assert "gen/a.yaml differs from what kiln generates now" in text
    assert "-x: 1\n+x: 2" in text
    assert "gen/gone.yaml is committed, but its component no longer exists" in text
    assert compare(generated, generated, label="gen") == []


def test_drift_names_a_yaml_that_pins_one_platform_s_image_of_an_index(tmp_path: Path) -> None:
    index, amd64, arm64 = (f"sha256:{c * 64}" for c in "abc")
    platforms = {amd64: ("linux/amd64", index), arm64: ("linux/arm64/v8", index)}
    committed, generated = tmp_path / "committed", tmp_path / "generated"
    factory.write(committed / "one.yaml", f"image: r/acme/base@{amd64}\n")
    factory.write(committed / "other.yaml", "x: 1\n")
    factory.write(generated / "one.yaml", f"image: r/acme/base@{index}\n")
    factory.write(generated / "other.yaml", "x: 2\n")
    drifts = compare(committed, generated, label="gen", platforms=platforms)
    text = describe(drifts, label="gen")
    assert (
        f"gen/one.yaml differs from what kiln generates now: it pins the linux/amd64 image "
        f"{amd64}, not the index {index} (every node would run the linux/amd64 image)\n"
    ) in text
    assert "gen/other.yaml differs from what kiln generates now\n" in text  # no note
    assert [d.note for d in compare(committed, generated, label="gen")] == ["", ""]


def test_kiln_components_stops_on_a_missing_helper_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _repo(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "wrong.py",
        'IMAGE = "base"\n\n\ndef uses_tables() -> int:\n    import tabular\n\n    return 1\n',
    )
    code, out, err = run(capsys, "components", "--local", "--repo", str(root))
    assert (code, out) == (3, "")
    assert "uses_tables imports tabular (helper tabular), which image base" in err
    assert not (root / "pipelines" / "components" / "generated").exists()


def test_a_helper_named_like_kfp_is_refused(tmp_path: Path) -> None:
    """KFP silently skips installing kfp when a package in packages_to_install starts with
    'kfp' (FIELD-NOTES): a pod would then start without it."""
    factory.workspace(tmp_path, org="kfpx")
    factory.helper(tmp_path, "imgproc", org="kfpx")
    with pytest.raises(ConfigError, match=r"\[project\] name 'kfpx-imgproc' starts with 'kfp'"):
        discover(tmp_path)


def test_unchanged_components_and_pipelines_come_from_the_generation_cache(
    packages_setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release where nothing changed compiles nothing with KFP; the files are the same
    bytes, and a changed source is compiled again."""
    setup = packages_setup
    setup.release()
    before = {p.name: p.read_bytes() for p in setup.ws.component_dir.glob("*.yaml")}
    pipeline = (setup.ws.dist_dir / "pipelines" / "demo.yaml").read_bytes()
    calls: list[str] = []
    real = real_generate

    def counting(component: Component, *args: Any, **kwargs: Any) -> Path:
        calls.append(component.name)
        return real(component, *args, **kwargs)

    monkeypatch.setattr(yamls, "generate_component", counting)
    monkeypatch.setattr(yamls, "compile_pipeline", _no_compile)
    setup.release()
    assert calls == []
    assert {p.name: p.read_bytes() for p in setup.ws.component_dir.glob("*.yaml")} == before
    assert (setup.ws.dist_dir / "pipelines" / "demo.yaml").read_bytes() == pipeline
    light = setup.ws.root / "pipelines" / "components" / "light.py"
    light.write_text(light.read_text().replace("Scale x", "Scale the x"))
    setup.ws = discover(setup.ws.root)
    monkeypatch.setattr(yamls, "compile_pipeline", real_compile)
    prepared = prepare(setup.ws, setup.services)
    generate(
        setup.ws, prepared.wheelhouses, _refs(setup), packages=prepared.packages,
        index_url="http://x",
    )  # fmt: skip
    assert sorted(calls) == ["double", "light_step"]  # every module's YAML: one key


def test_a_changed_generator_is_not_served_the_yamls_its_previous_code_wrote(
    packages_setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """kiln's version stays 0.1.0 in a checkout while its generator changes (a new YAML
    header, say): the cache key holds the generator's bytes, so every YAML is written again."""
    setup = packages_setup
    setup.release()
    package = Path(generate_module.__file__).parent
    copy = tmp_path / "generator"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(generate_module, "generator_digest", lambda: _digest(copy))
    calls: list[str] = []

    def counting(component: Component, *args: Any, **kwargs: Any) -> Path:
        calls.append(component.name)
        return real_generate(component, *args, **kwargs)

    monkeypatch.setattr(yamls, "generate_component", counting)
    setup.release()  # the same bytes as the real package: every YAML from the cache
    assert calls == []
    source = copy / "generate.py"
    source.write_text(source.read_text().replace("then run", "then please run"))
    setup.release()
    assert sorted(calls) == ["double", "light_step"]


def _digest(package: Path) -> str:
    return generate_module.files_digest(package.glob("*.py"))


def _no_compile(*_args: object) -> Path:
    raise AssertionError("an unchanged pipeline was compiled again")


def _refs(setup: Setup) -> dict[str, str]:
    image = setup.ws.image("base")
    return {image.name: f"registry.invalid:5000/acme/base@sha256:{'0' * 64}"}


def test_the_closures_of_many_components_read_their_wheelhouse_once(tmp_path: Path) -> None:
    """A closure went over every wheel of packages mode's wheelhouse (500 helpers at N=500)
    for each of the 202 packages-mode components: 1.6 s of a no-op release."""
    root = _repo(tmp_path)
    factory.write(root / "pipelines" / "components" / "light.py", LIGHT)
    ws = discover(root)
    (light,) = [c for c in ws.components if c.name == "light_step"]
    wheels = (_wheel(tmp_path, "numpy", "2.0"), _wheel(tmp_path, "kfp", "2.17.3"))
    house = Wheelhouse("packages", (), wheels, (_helper_wheel(tmp_path, ws),))
    first = closure(ws, light, house, "3.11", machine="x86_64")
    tables = _tables(house)
    assert [i.name for i in first] == ["acme-imgproc", "kfp", "numpy"]
    assert closure(ws, light, house, "3.11", machine="x86_64") == first
    assert _tables(house) is tables  # made once for this wheelhouse
    other = dataclasses.replace(house)  # equal, but another wheelhouse: its own tables
    assert _tables(other) is not tables
    assert _tables(other).by_name == tables.by_name
