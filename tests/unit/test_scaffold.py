"""``kiln new``: the skeletons build, test, compile and run; bad values write nothing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln._components.generate import compile_pipeline, generate_component, pipeline_arguments
from kiln._errors import ConfigError
from kiln._wheels.build import build_wheel
from kiln._workspace.discovery import discover
from kiln._workspace.model import Component, Helper, Pipeline, Workspace
from kiln._workspace.scaffold import new_component, new_helper, new_pipeline
from tests import factory
from tests.unit.cli import run

FAKE_REF = "reg.invalid/acme/base@sha256:" + "0" * 64

# Like the repo's own image.toml: comments that an in-place edit must keep.
COMMENTED_IMAGE = f"""\
# The light image: numpy + imgproc, kfp preinstalled.
[image]
version = "0.1.0"
# No `base`: kiln's OS base (images/os.lock).
python = "{factory.PYTHON}"
helpers = ["imgproc"]  # baked into the image
# Third-party requirements beyond the helpers' own.
requirements = []
"""


def _sample(tmp_path: Path) -> Path:
    root = factory.sample(tmp_path / "repo")
    (root / "images" / "base" / "image.toml").write_text(COMMENTED_IMAGE)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def scaffolded(tmp_path: Path) -> Workspace:
    """The sample repo plus a helper on `base`, a component on `base`, a pipeline using it."""
    root = _sample(tmp_path)
    new_helper(discover(root), "text-stats", images=["base"])
    new_component(discover(root), "word_counts", image="base")
    new_pipeline(discover(root), "word_report", component="word_counts")
    return discover(root)


# --------------------------------------------------------------------- helper
def test_new_helper_writes_the_skeleton_and_lists_it_in_the_image(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    written = new_helper(discover(root), "text-stats", images=["base"])

    path = root / "helpers" / "text-stats"
    assert written == [
        path / "pyproject.toml",
        path / "src" / "text_stats" / "__init__.py",
        path / "src" / "text_stats" / "py.typed",
        path / "tests" / "test_text_stats.py",
        root / "images" / "base" / "image.toml",
    ]
    pyproject = (path / "pyproject.toml").read_text()
    assert 'requires = ["hatchling==1.33.0"]' in pyproject
    assert 'name = "acme-text-stats"' in pyproject
    assert 'version = "0.1.0"' in pyproject
    assert 'requires-python = ">=3.10"' in pyproject
    assert "dependencies = []" in pyproject
    assert 'packages = ["src/text_stats"]' in pyproject
    ws = discover(root)
    assert ws.helper("text-stats") == Helper(
        name="text-stats",
        path=path,
        distribution="acme-text-stats",
        version="0.1.0",
        dependencies=(),
        siblings=(),
        packages=("text_stats",),
    )
    assert ws.image("base").helpers == ("imgproc", "text-stats")
    # Edited in place: only the helpers line changed, its comment and the others kept.
    assert (root / "images" / "base" / "image.toml").read_text() == COMMENTED_IMAGE.replace(
        'helpers = ["imgproc"]', 'helpers = ["imgproc", "text-stats"]'
    )


def test_new_helper_builds_a_wheel_with_its_package(scaffolded: Workspace, tmp_path: Path) -> None:
    wheel = build_wheel(scaffolded.helper("text-stats"), tmp_path / "wheels")
    assert wheel.filename == "acme_text_stats-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel.path) as zf:
        names = set(zf.namelist())
        metadata = zf.read("acme_text_stats-0.1.0.dist-info/METADATA").decode()
    assert {"text_stats/__init__.py", "text_stats/py.typed"} <= names
    assert "Name: acme-text-stats\n" in metadata


def test_new_helper_test_passes(scaffolded: Workspace) -> None:
    helper_dir = scaffolded.helper("text-stats").path
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(helper_dir / "tests")],
        env={**os.environ, "PYTHONPATH": str(helper_dir / "src")},
        cwd=helper_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_new_helper_without_image_leaves_images_alone(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    written = new_helper(discover(root), "textstats")
    assert root / "images" / "base" / "image.toml" not in written
    assert (root / "images" / "base" / "image.toml").read_text() == COMMENTED_IMAGE
    assert 'packages = ["src/textstats"]' in (root / "helpers/textstats/pyproject.toml").read_text()


def test_new_helper_pins_the_hatchling_the_other_helpers_use(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    pyproject = root / "helpers" / "imgproc" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(factory.HATCHLING, "hatchling==1.27.0"))
    new_helper(discover(root), "textstats")
    text = (root / "helpers" / "textstats" / "pyproject.toml").read_text()
    assert 'requires = ["hatchling==1.27.0"]' in text


def test_new_helper_falls_back_to_the_repo_build_system(tmp_path: Path) -> None:
    root = factory.workspace(tmp_path / "repo")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["hatchling==1.26.3"]\n\n' + pyproject.read_text()
    )
    new_helper(discover(root), "first")
    text = (root / "helpers" / "first" / "pyproject.toml").read_text()
    assert 'requires = ["hatchling==1.26.3"]' in text


def test_new_helper_defaults_to_a_pinned_hatchling(tmp_path: Path) -> None:
    root = factory.workspace(tmp_path / "repo")
    new_helper(discover(root), "first")
    text = (root / "helpers" / "first" / "pyproject.toml").read_text()
    assert 'requires = ["hatchling==1.33.0"]' in text


# --------------------------------------------------------------------- component, pipeline
def test_discovery_sees_the_scaffolded_component_and_pipeline(scaffolded: Workspace) -> None:
    root = scaffolded.root
    component = root / "pipelines" / "components" / "word_counts.py"
    assert (
        Component(name="word_counts", path=component, image="base", imports=("re",))
        in scaffolded.components
    )
    pipeline = root / "pipelines" / "word_report.py"
    assert Pipeline(name="word_report", path=pipeline) in scaffolded.pipelines


def test_component_module_follows_kfp_rules(scaffolded: Workspace) -> None:
    path = scaffolded.root / "pipelines" / "components" / "word_counts.py"
    text = path.read_text()
    tree = ast.parse(text)
    # No module-level imports at all, so no `from __future__ import annotations` either.
    assert not [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert ast.get_docstring(func)
    assert isinstance(func.body[1], ast.Import | ast.ImportFrom)  # imports inside
    assert all(a.annotation is not None for a in func.args.args)
    assert func.returns is not None
    assert 'IMAGE = "base"' in text
    assert "Output[Dataset]" in text
    assert "from imgproc import ..." in text  # how to use a helper baked into `base`
    assert "images/base/image.toml" in text


def test_component_generates_and_pipeline_compiles(scaffolded: Workspace, tmp_path: Path) -> None:
    components = tmp_path / "components"
    for component in scaffolded.components:
        generate_component(component, FAKE_REF, components)
    yaml = (components / "word_counts.yaml").read_text()
    assert FAKE_REF in yaml
    pipeline = next(p for p in scaffolded.pipelines if p.name == "word_report")
    compiled = compile_pipeline(pipeline, components, tmp_path / "pipelines").read_text()
    assert "name: word-report" in compiled
    assert "word-counts" in compiled
    assert pipeline_arguments(pipeline) == {"text": "hello world", "min_length": 1}


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_scaffolded_pipeline_runs_and_returns_output(scaffolded: Workspace, tmp_path: Path) -> None:
    # SubprocessRunner runs the steps on this Python: no Docker, no network.
    from kfp import local  # noqa: PLC0415

    from kiln._components.generate import pipeline_function  # noqa: PLC0415

    components = tmp_path / "components"
    (component,) = [c for c in scaffolded.components if c.name == "word_counts"]
    generate_component(component, FAKE_REF, components)
    pipeline = next(p for p in scaffolded.pipelines if p.name == "word_report")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "run"))
    task = pipeline_function(pipeline, components)(text="one three seven", min_length=4)
    assert dict(task.outputs) == {"Output": 2}  # the name `kiln run` prints it under


def test_new_pipeline_defaults_to_the_first_component(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    (path,) = new_pipeline(discover(root), "auto_report")
    text = path.read_text()
    assert 'load("double")' in text
    assert '@dsl.pipeline(name="auto-report"' in text
    assert "RUN_ARGS = {" in text
    assert "--arg NAME=VALUE" in text
    ws = discover(root)
    generate_component(ws.components[0], FAKE_REF, tmp_path / "components")
    pipeline = next(p for p in ws.pipelines if p.name == "auto_report")
    compile_pipeline(pipeline, tmp_path / "components", tmp_path / "pipelines")
    assert pipeline_arguments(pipeline) == {"x": 1}


# --------------------------------------------------------------------- validation
def _artifact_component(root: Path) -> None:
    factory.write(
        root / "pipelines" / "components" / "files.py",
        """
        from kfp.dsl import Dataset, Input

        IMAGE = "base"


        def read_table(table: Input[Dataset]) -> int:
            return 0
        """,
    )


BAD: list[tuple[str, Callable[[Workspace], object], str]] = [
    (
        "bad helper name",
        lambda ws: new_helper(ws, "Text_Stats"),
        "helper name 'Text_Stats' must be lowercase letters, digits and dashes",
    ),
    (
        "bad component name",
        lambda ws: new_component(ws, "word-counts", image="base"),
        "component name 'word-counts' must be a lowercase Python identifier",
    ),
    (
        "keyword component name",
        lambda ws: new_component(ws, "class", image="base"),
        "component name 'class' must be a lowercase Python identifier (not a keyword)",
    ),
    (
        "bad pipeline name",
        lambda ws: new_pipeline(ws, "2fast"),
        "pipeline name '2fast' must be a lowercase Python identifier",
    ),
    (
        "existing helper",
        lambda ws: new_helper(ws, "imgproc"),
        "helpers/imgproc already exists; pick another name or edit it",
    ),
    (
        "existing pipeline",
        lambda ws: new_pipeline(ws, "demo"),
        "pipelines/demo.py already exists; pick another name or edit it",
    ),
    (
        "unknown image for a component",
        lambda ws: new_component(ws, "word_counts", image="gpu"),
        "--image 'gpu' is not a folder under images/ (known images: base)",
    ),
    (
        "unknown image for a helper: not even the helper is written",
        lambda ws: new_helper(ws, "textstats", images=["base", "gpu"]),
        "--image 'gpu' is not a folder under images/ (known images: base)",
    ),
    (
        "kfp-prefixed helper",
        lambda ws: new_helper(ws, "kfp-extras"),
        "helper name 'kfp-extras' gives the import package 'kfp_extras', which would shadow",
    ),
    (
        "helper shadowing the standard library",
        lambda ws: new_helper(ws, "json"),
        "'json', which would shadow a module the repo needs: it is a module of Python's",
    ),
    (
        "helper shadowing a third-party dependency",
        lambda ws: new_helper(ws, "numpy"),
        "the repo already depends on the third-party distribution 'numpy'",
    ),
    (
        "duplicate component name",
        lambda ws: new_component(ws, "double", image="base"),
        "component 'double' already exists in pipelines/components/maths.py; pick another",
    ),
    (
        "unknown component for a pipeline",
        lambda ws: new_pipeline(ws, "report", component="triple"),
        "--component 'triple' is not a component under pipelines/components/ (known: double)",
    ),
]


@pytest.mark.parametrize(("call", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_raise_and_write_nothing(
    tmp_path: Path, call: Callable[[Workspace], object], message: str
) -> None:
    root = _sample(tmp_path)
    before = _tree(root)
    with pytest.raises(ConfigError) as exc:
        call(discover(root))
    assert message in str(exc.value)
    assert _tree(root) == before


def test_helper_shadowing_another_helpers_package(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    factory.helper(root, "text_stats")  # an older folder spelled with an underscore
    before = _tree(root)
    with pytest.raises(ConfigError, match="helpers/text_stats already ships the package"):
        new_helper(discover(root), "text-stats")
    assert _tree(root) == before


def test_pipeline_needs_a_component_it_can_feed(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    _artifact_component(root)
    ws = discover(root)
    with pytest.raises(ConfigError, match="parameter 'table' is Input\\[Dataset\\]"):
        new_pipeline(ws, "report", component="read_table")
    (path,) = new_pipeline(ws, "report")  # the default skips it for `double`
    assert 'load("double")' in path.read_text()


def test_pipeline_without_components(tmp_path: Path) -> None:
    root = factory.workspace(tmp_path / "repo")
    with pytest.raises(ConfigError, match="kiln new component NAME --image IMAGE"):
        new_pipeline(discover(root), "report")
    assert not (root / "pipelines").exists()


# --------------------------------------------------------------------- CLI


def test_cli_new_prints_the_paths_and_next_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _sample(tmp_path)
    code, out, err = run(
        capsys, "new", "helper", "text-stats", "--image", "base", "--repo", str(root)
    )
    assert code == 0, err
    assert out.splitlines()[0] == str(root / "helpers" / "text-stats" / "pyproject.toml")
    assert str(root / "images" / "base" / "image.toml") in out.splitlines()
    assert "pytest helpers/text-stats" in err
    assert "kiln build" in err

    code, out, err = run(
        capsys, "new", "component", "word_counts", "--image", "base", "--repo", str(root), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {"written": [str(root / "pipelines/components/word_counts.py")]}
    assert "kiln release --local" in err

    code, out, err = run(
        capsys, "new", "pipeline", "word_report", "--component", "word_counts", "--repo", str(root)
    )
    assert code == 0, err
    assert out.strip() == str(root / "pipelines" / "word_report.py")
    assert "kiln run word_report" in err


def test_cli_new_bad_input_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _sample(tmp_path)
    code, out, err = run(capsys, "new", "helper", "kfp-extras", "--repo", str(root))
    assert code == 3
    assert out == ""
    assert err.startswith("kiln: bad input: helper name 'kfp-extras'")
    assert not (root / "helpers" / "kfp-extras").exists()


def test_cli_new_component_needs_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _sample(tmp_path)
    code, _, err = run(capsys, "new", "component", "word_counts", "--repo", str(root))
    assert code == 2
    assert "needs exactly one --image IMAGE" in err


def test_cli_new_help_has_an_example_per_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "new", "--help")
    assert code == 0
    for text in (
        "kiln new helper textstats --image analytics",
        "kiln new component word_counts --image analytics",
        "kiln new pipeline word_report --component word_counts",
    ):
        assert text in out
