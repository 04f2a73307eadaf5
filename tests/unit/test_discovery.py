from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kiln._debian.config import OsConfig
from kiln._errors import ConfigError
from kiln._workspace.discovery import discover, find_root
from kiln._workspace.model import Component, Helper, Image, Pipeline
from tests import factory


def test_sample_repo_is_read_into_frozen_data(tmp_path: Path) -> None:
    ws = discover(factory.sample(tmp_path))

    assert ws.org == "acme"
    assert ws.upstream_index == "https://upstream.invalid/simple"
    assert ws.stack.index_url == "http://127.0.0.1:8765"
    assert ws.stack.registry == "127.0.0.1:5765"
    assert ws.helpers == (
        Helper(
            name="imgproc",
            path=tmp_path / "helpers" / "imgproc",
            distribution="acme-imgproc",
            version="0.1.0",
            dependencies=("numpy>=1.26",),
            siblings=(),
            packages=("imgproc",),
        ),
    )
    assert ws.images == (
        Image(
            name="base",
            path=tmp_path / "images" / "base",
            version="0.1.0",
            base=None,  # kiln's OS base
            python="3.11",
            helpers=("imgproc",),
            requirements=(),
        ),
    )
    assert ws.os == OsConfig()  # [tool.kiln.os]'s defaults
    assert ws.on_os == ws.images
    components = tmp_path / "pipelines" / "components" / "maths.py"
    assert ws.components == (Component(name="double", path=components, image="base"),)
    assert ws.pipelines == (Pipeline(name="demo", path=tmp_path / "pipelines" / "demo.py"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ws.helpers[0].version = "9"  # type: ignore[misc]


def test_find_root_walks_up(tmp_path: Path) -> None:
    root = factory.sample(tmp_path)
    assert find_root(root / "helpers" / "imgproc" / "src") == root


def test_find_root_outside_a_monorepo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no pyproject.toml with a \[tool.kiln\] table"):
        find_root(tmp_path)


def test_sibling_dependency_is_recorded(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "dataquality", version="0.3.0")
    factory.helper(tmp_path, "viz", deps=("acme-dataquality==0.3.0", "numpy"))
    ws = discover(tmp_path)
    assert ws.helper("viz").siblings == ("dataquality",)
    assert ws.helper("dataquality").siblings == ()


@pytest.mark.parametrize(
    "spec", ["acme-dataquality>=0.3", "acme-dataquality==0.2.0", "acme-dataquality"]
)
def test_sibling_dependency_must_be_exact_and_current(tmp_path: Path, spec: str) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "dataquality", version="0.3.0")
    factory.helper(tmp_path, "viz", deps=(spec,))
    with pytest.raises(ConfigError, match=r'"acme-dataquality==0.3.0"') as err:
        discover(tmp_path)
    assert "helpers/viz/pyproject.toml" in str(err.value)


# ------------------------------------------------------------------ bad input
def test_missing_helper_pyproject(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    (tmp_path / "helpers" / "imgproc").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"helpers/imgproc/pyproject.toml: missing"):
        discover(tmp_path)


def test_malformed_helper_pyproject(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    factory.write(tmp_path / "helpers" / "imgproc" / "pyproject.toml", "[project\nname=")
    with pytest.raises(
        ConfigError, match=r"imgproc/pyproject.toml: not valid TOML .*fix the syntax"
    ):
        discover(tmp_path)


def test_unprefixed_distribution_name(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc", org="other")
    with pytest.raises(ConfigError, match=r"expected 'acme-imgproc'.*set name = \"acme-imgproc\""):
        discover(tmp_path)


def test_unpinned_hatchling(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    path = factory.helper(tmp_path, "imgproc")
    text = (path / "pyproject.toml").read_text().replace(factory.HATCHLING, "hatchling>=1.20")
    (path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"must pin hatchling exactly"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # hatchling merely listed: the build would run setuptools, unpinned
        (
            'build-backend = "hatchling.build"',
            'build-backend = "setuptools.build_meta"',
            r"build-backend is 'setuptools.build_meta'.*set build-backend = \"hatchling.build\"",
        ),
        # a hatchling plugin without a version
        (
            f'requires = ["{factory.HATCHLING}"]',
            f'requires = ["{factory.HATCHLING}", "hatch-vcs"]',
            r"requires 'hatch-vcs' without an exact version: pin each with ==",
        ),
    ],
)
def test_a_build_that_is_not_hatchling_pinned_is_refused(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    factory.workspace(tmp_path)
    path = factory.helper(tmp_path, "imgproc")
    text = (path / "pyproject.toml").read_text()
    assert old in text
    (path / "pyproject.toml").write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        discover(tmp_path)


def test_bad_version(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc", version="one")
    with pytest.raises(ConfigError, match=r"version 'one' is not a valid PEP 440 version"):
        discover(tmp_path)


def test_image_naming_an_unknown_helper(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    factory.image(tmp_path, "base", helpers=("imgproc", "tabluar"))
    with pytest.raises(ConfigError) as err:
        discover(tmp_path)
    message = str(err.value)
    assert "images/base/image.toml" in message
    assert "tabluar" in message
    assert "known helpers: imgproc" in message


def test_missing_image_toml(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.write(tmp_path / "images" / "base" / "Dockerfile", "FROM scratch\n")
    with pytest.raises(ConfigError, match=r"images/base/image.toml: missing"):
        discover(tmp_path)


def test_malformed_image_toml(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    path = factory.image(tmp_path, "base", helpers=("imgproc",))
    (path / "image.toml").write_text("[image]\nversion = \n")
    with pytest.raises(ConfigError, match=r"image.toml: not valid TOML"):
        discover(tmp_path)


def test_a_dockerfile_is_refused_with_what_replaces_it(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    path = factory.image(tmp_path, "base", helpers=("imgproc",))
    (path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    with pytest.raises(ConfigError) as err:
        discover(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path / 'Dockerfile'}: kiln builds no image with Docker")
    assert 'os-packages (e.g. os-packages = ["libgomp1"]), then `kiln lock`' in message


def test_os_packages_and_a_registry_base_are_read(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    path = factory.image(tmp_path, "base", helpers=("imgproc",))
    toml = path / "image.toml"
    toml.write_text(toml.read_text() + 'os-packages = ["libgomp1", "fonts-dejavu-core"]\n')
    image = discover(tmp_path).image("base")
    assert (image.base, image.os_packages) == (None, ("libgomp1", "fonts-dejavu-core"))

    factory.image(tmp_path, "gpu", helpers=("imgproc",), base="python:3.11-slim")
    assert discover(tmp_path).image("gpu").base == "python:3.11-slim"
    both = tmp_path / "images" / "gpu" / "image.toml"
    both.write_text(both.read_text() + 'os-packages = ["libgomp1"]\n')
    with pytest.raises(ConfigError, match=r"names a registry base \(python:3.11-slim\); drop one"):
        discover(tmp_path)
    both.write_text(both.read_text().replace('"libgomp1"]', '"Not A Package"]'))
    with pytest.raises(ConfigError, match=r"'Not A Package' is not a Debian package name"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[tool.kiln.os]\nsuite = "Bookworm"', "suite = 'Bookworm': use a codename"),
        ('[tool.kiln.os]\narchitecture = "s390x"', "kiln builds amd64 and arm64"),
        ("[tool.kiln.os]\npackages = []", "packages is empty"),
        ('[tool.kiln.os]\nmirror = ["x"]', "has no setting mirror (known: architecture,"),
        ('[tool.kiln.os]\npackages = ["dash"]\nexclude = ["dash"]', "dash is both in packages"),
        ('[tool.kiln.os.mirrors]\nubuntu = ["https://x"]', "unknown archive ubuntu"),
        (
            '[tool.kiln.os.mirrors]\ndebian = ["https://user:pw@proxy/debian"]',
            "must be an http(s) URL without credentials",
        ),
    ],
)
def test_a_bad_os_definition_is_named(tmp_path: Path, section: str, message: str) -> None:
    factory.sample(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n" + section + "\n")
    with pytest.raises(ConfigError) as err:
        discover(tmp_path)
    assert str(err.value).startswith(str(pyproject))
    assert message in str(err.value)
    assert "pw" not in str(err.value).replace("pyproject", "")


def test_mirrors_put_a_proxy_first_and_keep_the_other_archive(tmp_path: Path) -> None:
    factory.sample(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.kiln.os.mirrors]\ndebian = ["https://proxy.test/debian/", '
        '"https://deb.debian.org/debian"]\n'
    )
    config = discover(tmp_path).os
    assert config.urls("debian") == ("https://proxy.test/debian", "https://deb.debian.org/debian")
    assert config.urls("debian-security") == ("https://deb.debian.org/debian-security",)
    assert config.inputs({}) == OsConfig().inputs({})  # mirrors are no input of the lock


def _kiln_image(tmp_path: Path, extra: str) -> Path:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "imgproc")
    path = factory.image(tmp_path, "base", helpers=("imgproc",))
    toml = path / "image.toml"
    toml.write_text(toml.read_text() + extra)
    return path


def test_an_image_reads_its_env_and_still_accepts_builder_kiln(tmp_path: Path) -> None:
    _kiln_image(tmp_path, 'builder = "kiln"\n[image.env]\nMPLBACKEND = "Agg"\nA_B = "1"\n')
    image = discover(tmp_path).image("base")
    assert image.env == (("A_B", "1"), ("MPLBACKEND", "Agg"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('builder = "docker"\n', r"image.toml: builder = 'docker': kiln builds every image"),
        ('builder = "kiln"\n[image.env]\nMPLBACKEND = 1\n', r"\[image.env\] MPLBACKEND = 1"),
        ('builder = "kiln"\n[image.env]\n"A-B" = "x"\n', r"\[image.env\] A-B = 'x'"),
        ('builder = "kiln"\nenv = "A=1"\n', r"image.toml: env must be a table"),
    ],
)
def test_bad_builder_or_env_names_the_file(tmp_path: Path, extra: str, message: str) -> None:
    _kiln_image(tmp_path, extra)
    with pytest.raises(ConfigError, match=message) as err:
        discover(tmp_path)
    assert "images/base/image.toml" in str(err.value)


def test_component_with_unknown_image(tmp_path: Path) -> None:
    factory.sample(tmp_path)
    factory.component(tmp_path, "other.py", image_name="gpu", func="triple")
    with pytest.raises(ConfigError, match=r"other.py: IMAGE = 'gpu' must name an image folder"):
        discover(tmp_path)


def test_component_with_future_annotations(tmp_path: Path) -> None:
    factory.sample(tmp_path)
    path = tmp_path / "pipelines" / "components" / "maths.py"
    path.write_text("from __future__ import annotations\n" + path.read_text())
    with pytest.raises(ConfigError, match=r"maths.py: `from __future__ import annotations`"):
        discover(tmp_path)


def test_duplicate_component_names(tmp_path: Path) -> None:
    factory.sample(tmp_path)
    factory.component(tmp_path, "again.py", image_name="base")
    with pytest.raises(ConfigError, match=r"component 'double' is defined in both"):
        discover(tmp_path)


def test_pipeline_without_build(tmp_path: Path) -> None:
    factory.sample(tmp_path)
    factory.write(tmp_path / "pipelines" / "broken.py", "X = 1\n")
    with pytest.raises(
        ConfigError, match=r"broken.py: a pipeline module must define `build\(load\)`"
    ):
        discover(tmp_path)


def test_workspace_without_org(tmp_path: Path) -> None:
    factory.write(tmp_path / "pyproject.toml", "[tool.kiln]\nupstream-index = 'x'\n")
    with pytest.raises(ConfigError, match=r"\[tool.kiln\] org must be a non-empty string"):
        discover(tmp_path)


def test_helper_whose_package_is_not_named_like_the_distribution(tmp_path: Path) -> None:
    # The newcomer's trap: distribution acme-textstats, import package textstats, and no
    # [tool.hatch.build.targets.wheel] packages: hatchling would fail deep in the build.
    root = factory.sample(tmp_path)
    path = factory.helper(root, "textstats")
    pyproject = path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            '[tool.hatch.build.targets.wheel]\npackages = ["src/textstats"]\n', ""
        )
    )
    with pytest.raises(ConfigError) as err:
        discover(root)
    message = str(err.value)
    assert f"{pyproject}: hatchling cannot tell which files to ship" in message
    assert "named like the distribution (acme_textstats)" in message
    assert '[tool.hatch.build.targets.wheel]\n    packages = ["src/textstats"]' in message


def test_pipeline_with_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    root = factory.sample(tmp_path)
    path = factory.write(root / "pipelines" / "broken.py", "def build(load:\n    pass\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1: syntax error: .*; fix it$"):
        discover(root)


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        ("image", "python = 3.11", "[image] python must be a non-empty string, got 3.11"),
        ("image", 'base = ""', "[image] base must be a non-empty string, got ''"),
        ("tool.kiln", "upstream-index = 7", "upstream-index must be a non-empty string, got 7"),
        (
            "tool.kiln",
            'upstream-index = "https://user:tok@index.example/simple"',
            "must be an http(s) URL without credentials",
        ),
        (
            "tool.kiln",
            'source = "https://x-access-token:tok@github.com/acme/ml"',
            "source 'https://github.com/acme/ml' must be an https URL",  # no token shown
        ),
    ],
)
def test_settings_are_checked_not_coerced(
    tmp_path: Path, table: str, line: str, message: str
) -> None:
    root = factory.sample(tmp_path)
    path = root / ("images/base/image.toml" if table == "image" else "pyproject.toml")
    text = path.read_text()
    key = line.split(" = ", maxsplit=1)[0]
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"{key} ="))
    header = f"[{table}]"
    path.write_text(text.replace(header, f"{header}\n{line}", 1) + "\n")
    with pytest.raises(ConfigError) as err:
        discover(root)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "tok@" not in str(err.value)


@pytest.mark.parametrize(
    ("folder", "what"),
    [("helpers/$(touch x)", "a distribution"), ("images/Base Image", "a registry repository")],
)
def test_a_folder_a_shell_would_split_is_refused_naming_it_quoted(
    tmp_path: Path, folder: str, what: str
) -> None:
    # kiln's hints name helpers and images in commands (`kiln bump NAME patch`): a folder
    # named like a shell command would run when the hint is pasted.
    root = factory.sample(tmp_path)
    kind, name = folder.split("/")
    source = root / kind / ("imgproc" if kind == "helpers" else "base")
    source.rename(root / kind / name)
    with pytest.raises(ConfigError) as err:
        discover(root)
    message = str(err.value)
    assert f"the folder name {name!r} cannot be used: it names {what}" in message
    assert f"'{root / kind / name}'" in message  # quoted, as a shell reads one word
    assert f"{name} " not in message  # never bare before a space
