"""kiln bump: one version moves, and every pin and image that must follow moves with it."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._workspace.bump import (
    BumpPlan,
    FileChange,
    PinChange,
    apply_bump,
    next_version,
    plan_bump,
    render_bump,
)
from kiln._workspace.discovery import discover, sibling_cycle
from kiln._workspace.model import Workspace
from tests import factory
from tests.unit.cli import run
from tests.unit.fakes import write_fake_lock

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the repo (kiln's own state under .kiln/ aside), by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kiln" not in p.relative_to(root).parts
    }


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def rows(plan: BumpPlan) -> list[tuple[str, str, str, str]]:
    return [(c.path, c.old_version, c.new_version, c.why) for c in plan.changes]


@pytest.fixture
def chain(tmp_path: Path) -> Workspace:
    """a <- b <- c (c pins b pins a), d unrelated; images over various subsets."""
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "a")
    factory.helper(tmp_path, "b", version="0.4.2", deps=("acme-a==0.1.0", "numpy>=1.26"))
    factory.helper(tmp_path, "c", version="1.0.0", deps=("acme-b==0.4.2",))
    factory.helper(tmp_path, "d", version="2.3.4")
    factory.image(tmp_path, "only-a", helpers=("a",))
    factory.image(tmp_path, "a-and-b", helpers=("a", "b"), version="0.3.0")
    factory.image(tmp_path, "only-c", helpers=("c",), version="1.1.1")
    factory.image(tmp_path, "only-d", helpers=("d",))
    factory.image(tmp_path, "c-and-d", helpers=("d", "c"), version="0.9.0")
    return discover(tmp_path)


def real_repo_copy(tmp_path: Path) -> Path:
    """This repo's helpers/ and images/ (commented files) under its own [tool.kiln]."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for folder in ("helpers", "images"):
        shutil.copytree(
            REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


# --------------------------------------------------------------------- versions
@pytest.mark.parametrize(
    ("current", "level", "expected"),
    [
        ("0.2.0", "patch", "0.2.1"),
        ("0.2.0", "minor", "0.3.0"),
        ("0.2.0", "major", "1.0.0"),
        ("1.4.9", "minor", "1.5.0"),
        ("1.2", "patch", "1.2.1"),
        ("1.2.3rc1", "patch", "1.2.4"),
        ("1.2.3.post2", "minor", "1.3.0"),
        ("1.2.3.dev4", "major", "2.0.0"),
        ("1.2.3+local", "patch", "1.2.4"),
        ("1!0.1.0", "patch", "1!0.1.1"),
    ],
)
def test_next_version(current: str, level: str, expected: str) -> None:
    assert next_version(current, level) == expected


@pytest.mark.parametrize(
    ("level", "expected"), [("patch", "0.1.1"), ("minor", "0.2.0"), ("major", "1.0.0")]
)
def test_each_level_rewrites_the_helper_version(tmp_path: Path, level: str, expected: str) -> None:
    root = factory.sample(tmp_path)
    apply_bump(plan_bump(discover(root), "imgproc", level))
    assert discover(root).helper("imgproc").version == expected
    assert f'version = "{expected}"' in (root / "helpers/imgproc/pyproject.toml").read_text()


def test_explicit_version_is_normalized_and_written(tmp_path: Path) -> None:
    root = factory.sample(tmp_path)
    plan = plan_bump(discover(root), "imgproc", "2.0.0rc1")
    assert rows(plan)[0] == ("helpers/imgproc/pyproject.toml", "0.1.0", "2.0.0rc1", "bumped")
    apply_bump(plan)
    assert discover(root).helper("imgproc").version == "2.0.0rc1"


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ("0.1.0", r"version 0.1.0 is not greater than the current 0.1.0"),
        ("0.0.9", r"version 0.0.9 is not greater than the current 0.1.0"),
        ("0.1.0rc1", r"version 0.1.0rc1 is not greater than the current 0.1.0"),
    ],
)
def test_backwards_or_equal_is_refused_and_nothing_is_written(
    tmp_path: Path, asked: str, message: str
) -> None:
    root = factory.sample(tmp_path)
    before = snapshot(root)
    with pytest.raises(ConfigError, match=message) as err:
        plan_bump(discover(root), "imgproc", asked)
    assert str(err.value).startswith("helpers/imgproc/pyproject.toml: ")
    assert "(patch gives 0.1.1)" in str(err.value)
    assert snapshot(root) == before


def test_a_level_that_is_no_version(tmp_path: Path) -> None:
    root = factory.sample(tmp_path)
    with pytest.raises(ConfigError, match=r"'huge' is neither a level \(major, minor, patch\)"):
        plan_bump(discover(root), "imgproc", "huge")


# --------------------------------------------------------------------- cascade
def test_bumping_the_bottom_of_a_chain_moves_every_dependant_and_their_images(
    chain: Workspace,
) -> None:
    plan = plan_bump(chain, "a", "minor")
    assert rows(plan) == [
        ("helpers/a/pyproject.toml", "0.1.0", "0.2.0", "bumped"),
        ("helpers/b/pyproject.toml", "0.4.2", "0.4.3", "pins acme-a, now ==0.2.0"),
        ("helpers/c/pyproject.toml", "1.0.0", "1.0.1", "pins acme-b, now ==0.4.3"),
        ("images/a-and-b/image.toml", "0.3.0", "0.3.1", "contains a, b"),
        ("images/c-and-d/image.toml", "0.9.0", "0.9.1", "contains a, b, c"),
        ("images/only-a/image.toml", "0.1.0", "0.1.1", "contains a"),
        ("images/only-c/image.toml", "1.1.1", "1.1.2", "contains a, b, c"),
    ]
    assert plan.changes[1].pins == (PinChange("acme-a", "0.1.0", "0.2.0"),)
    assert plan.images_to_relock == ("a-and-b", "c-and-d", "only-a", "only-c")

    before = snapshot(chain.root)
    apply_bump(plan)
    after = snapshot(chain.root)
    assert changed_files(before, after) == {c.path for c in plan.changes}
    ws = discover(chain.root)  # every sibling pin is consistent again
    assert {h.name: h.version for h in ws.helpers} == {
        "a": "0.2.0",
        "b": "0.4.3",
        "c": "1.0.1",
        "d": "2.3.4",
    }
    assert ws.helper("b").dependencies == ("acme-a==0.2.0", "numpy>=1.26")
    assert ws.helper("c").dependencies == ("acme-b==0.4.3",)
    assert {i.name: i.version for i in ws.images} == {
        "a-and-b": "0.3.1",
        "c-and-d": "0.9.1",
        "only-a": "0.1.1",
        "only-c": "1.1.2",
        "only-d": "0.1.0",
    }


def test_bumping_the_middle_leaves_what_it_pins_alone(chain: Workspace) -> None:
    plan = plan_bump(chain, "b", "patch")
    assert rows(plan) == [
        ("helpers/b/pyproject.toml", "0.4.2", "0.4.3", "bumped"),
        ("helpers/c/pyproject.toml", "1.0.0", "1.0.1", "pins acme-b, now ==0.4.3"),
        ("images/a-and-b/image.toml", "0.3.0", "0.3.1", "contains b"),
        ("images/c-and-d/image.toml", "0.9.0", "0.9.1", "contains b, c"),
        ("images/only-c/image.toml", "1.1.1", "1.1.2", "contains b, c"),
    ]


def test_bumping_a_helper_nothing_pins(chain: Workspace) -> None:
    assert rows(plan_bump(chain, "d", "major")) == [
        ("helpers/d/pyproject.toml", "2.3.4", "3.0.0", "bumped"),
        ("images/c-and-d/image.toml", "0.9.0", "0.9.1", "contains d"),
        ("images/only-d/image.toml", "0.1.0", "0.1.1", "contains d"),
    ]


def test_a_helper_pinning_two_changed_siblings_is_bumped_once(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "a")
    factory.helper(tmp_path, "b", deps=("acme-a==0.1.0",))
    factory.helper(tmp_path, "top", deps=("acme-b==0.1.0", "acme-a==0.1.0"))
    factory.image(tmp_path, "all", helpers=("top",))
    plan = plan_bump(discover(tmp_path), "a", "patch")
    assert rows(plan) == [
        ("helpers/a/pyproject.toml", "0.1.0", "0.1.1", "bumped"),
        ("helpers/b/pyproject.toml", "0.1.0", "0.1.1", "pins acme-a, now ==0.1.1"),
        (
            "helpers/top/pyproject.toml",
            "0.1.0",
            "0.1.1",
            "pins acme-b, now ==0.1.1; pins acme-a, now ==0.1.1",
        ),
        ("images/all/image.toml", "0.1.0", "0.1.1", "contains a, b, top"),
    ]
    apply_bump(plan)
    assert discover(tmp_path).helper("top").dependencies == ("acme-b==0.1.1", "acme-a==0.1.1")


def test_bumping_an_image_changes_only_that_image(chain: Workspace) -> None:
    before = snapshot(chain.root)
    plan = plan_bump(chain, "a-and-b", "1.0.0")
    assert plan.changes == (
        FileChange(
            path="images/a-and-b/image.toml",
            kind="image",
            name="a-and-b",
            distribution=None,
            old_version="0.3.0",
            new_version="1.0.0",
            why="bumped",
        ),
    )
    apply_bump(plan)
    assert changed_files(before, snapshot(chain.root)) == {"images/a-and-b/image.toml"}
    assert discover(chain.root).image("a-and-b").version == "1.0.0"


def test_a_pin_keeps_its_extras_spacing_and_markers(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "a")
    factory.helper(tmp_path, "b", deps=("acme-a[fast] == 0.1.0 ; python_version >= '3.8'",))
    apply_bump(plan_bump(discover(tmp_path), "a", "patch"))
    text = (tmp_path / "helpers/b/pyproject.toml").read_text()
    assert "\"acme-a[fast] == 0.1.1 ; python_version >= '3.8'\"" in text


def test_a_literal_string_stays_literal(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    path = factory.image(tmp_path, "base", helpers=())
    config = path / "image.toml"
    config.write_text(config.read_text().replace('version = "0.1.0"', "version = '0.1.0'  # v"))
    apply_bump(plan_bump(discover(tmp_path), "base", "patch"))
    assert "version = '0.1.1'  # v\n" in config.read_text()


# --------------------------------------------------------------------- the real files
def test_real_helpers_and_images_keep_every_comment(tmp_path: Path) -> None:
    root = real_repo_copy(tmp_path)
    ws = discover(root)
    dq, viz, analytics = ws.helper("dataquality"), ws.helper("viz"), ws.image("analytics")
    assert viz.siblings == ("dataquality",)  # what this test is about

    def patch(version: str) -> str:
        major, minor, micro = version.split(".")
        return f"{major}.{minor}.{int(micro) + 1}"

    before = snapshot(root)
    plan = plan_bump(ws, "dataquality", "patch")
    dq_new, viz_new, analytics_new = patch(dq.version), patch(viz.version), patch(analytics.version)
    assert [c.line for c in plan.changes] == [
        f"helpers/dataquality/pyproject.toml: acme-dataquality {dq.version} -> {dq_new} (bumped)",
        (
            f"helpers/viz/pyproject.toml: acme-viz {viz.version} -> {viz_new} "
            f"(pins acme-dataquality, now =={dq_new})"
        ),
        (
            f"images/analytics/image.toml: analytics {analytics.version} -> {analytics_new} "
            "(contains dataquality, viz)"
        ),
    ]
    apply_bump(plan)
    after = snapshot(root)
    assert changed_files(before, after) == {
        "helpers/dataquality/pyproject.toml",
        "helpers/viz/pyproject.toml",
        "images/analytics/image.toml",
    }

    def diff(path: str) -> list[str]:
        old, new = before[path].decode().splitlines(), after[path].decode().splitlines()
        return [
            line
            for line in difflib.unified_diff(old, new, n=0, lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]

    assert diff("helpers/dataquality/pyproject.toml") == [
        f'-version = "{dq.version}"',
        f'+version = "{dq_new}"',
    ]
    assert diff("helpers/viz/pyproject.toml") == [
        f'-version = "{viz.version}"',
        f'+version = "{viz_new}"',
        f'-  "acme-dataquality=={dq.version}",',
        f'+  "acme-dataquality=={dq_new}",',
    ]
    assert diff("images/analytics/image.toml") == [
        f'-version = "{analytics.version}"',
        f'+version = "{analytics_new}"',
    ]
    assert discover(root).helper("viz").version == viz_new


# --------------------------------------------------------------------- refusals
def test_a_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "a", deps=("acme-b==0.1.0",))
    factory.helper(tmp_path, "b", deps=("acme-c==0.1.0",))
    factory.helper(tmp_path, "c", deps=("acme-a==0.1.0",))
    factory.helper(tmp_path, "d", deps=("acme-a==0.1.0",))
    ws = discover(tmp_path)
    assert sibling_cycle(ws.helpers) == ("a", "b", "c", "a")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"in a cycle: a -> b -> c -> a \(") as err:
        plan_bump(ws, "d", "patch")
    assert "helpers/b/pyproject.toml" in str(err.value)
    assert snapshot(tmp_path) == before


def test_no_cycle_in_a_chain(chain: Workspace) -> None:
    assert sibling_cycle(chain.helpers) == ()


def test_a_name_that_is_both_needs_helper_or_image(tmp_path: Path) -> None:
    factory.workspace(tmp_path)
    factory.helper(tmp_path, "base")
    factory.image(tmp_path, "base", helpers=("base",), version="0.5.0")
    ws = discover(tmp_path)
    with pytest.raises(ConfigError) as err:
        plan_bump(ws, "base", "patch")
    assert "helpers/base/pyproject.toml" in str(err.value)
    assert "images/base/image.toml" in str(err.value)
    assert "--helper or --image" in str(err.value)
    assert rows(plan_bump(ws, "base", "patch", kind="image")) == [
        ("images/base/image.toml", "0.5.0", "0.5.1", "bumped")
    ]
    assert [c.path for c in plan_bump(ws, "base", "patch", kind="helper").changes] == [
        "helpers/base/pyproject.toml",
        "images/base/image.toml",
    ]


def test_an_unknown_name_lists_what_exists(chain: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"no helper or image named 'e' \(helpers: a, b, c, d;"):
        plan_bump(chain, "e", "patch")
    with pytest.raises(ConfigError, match=r"no image 'a' under images/"):
        plan_bump(chain, "a", "patch", kind="image")


def test_a_file_changed_after_planning_stops_every_write(chain: Workspace) -> None:
    plan = plan_bump(chain, "a", "patch")
    config = chain.root / "images/only-c/image.toml"
    config.write_text(config.read_text().replace('"1.1.1"', '"1.2.0"'))
    before = snapshot(chain.root)
    with pytest.raises(ConfigError, match=r"images/only-c/image.toml: version is .*1.2.0"):
        apply_bump(plan)
    assert snapshot(chain.root) == before


def test_render_writes_nothing_and_apply_leaves_no_temporary_files(chain: Workspace) -> None:
    plan = plan_bump(chain, "a", "patch")
    before = snapshot(chain.root)
    rendered = render_bump(plan)
    assert snapshot(chain.root) == before
    written = apply_bump(plan)
    assert written == tuple(f.path for f in rendered)
    after = snapshot(chain.root)
    assert {chain.root / p for p in changed_files(before, after)} == set(written)
    assert all(
        after[p.relative_to(chain.root).as_posix()] == f.text.encode()
        for f, p in zip(rendered, written, strict=True)
    )


# --------------------------------------------------------------------- the CLI
def test_cli_prints_one_line_per_file(chain: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bump", "b", "patch", "--repo", str(chain.root))
    assert code == 0
    assert out.splitlines() == [
        "helpers/b/pyproject.toml: acme-b 0.4.2 -> 0.4.3 (bumped)",
        "helpers/c/pyproject.toml: acme-c 1.0.0 -> 1.0.1 (pins acme-b, now ==0.4.3)",
        "images/a-and-b/image.toml: a-and-b 0.3.0 -> 0.3.1 (contains b)",
        "images/c-and-d/image.toml: c-and-d 0.9.0 -> 0.9.1 (contains b, c)",
        "images/only-c/image.toml: only-c 1.1.1 -> 1.1.2 (contains b, c)",
    ]
    assert "wrote 5 file(s)" in err
    assert discover(chain.root).helper("c").version == "1.0.1"


def test_cli_dry_run_writes_nothing(chain: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(chain.root)
    code, out, err = run(capsys, "bump", "a", "major", "--dry-run", "--repo", str(chain.root))
    assert code == 0
    assert out.splitlines()[0] == "helpers/a/pyproject.toml: acme-a 0.1.0 -> 1.0.0 (bumped)"
    assert len(out.splitlines()) == 7
    assert "nothing written" in err
    assert snapshot(chain.root) == before


def test_cli_json(chain: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bump", "c", "2.0.0", "--json", "--repo", str(chain.root))
    assert code == 0
    assert json.loads(out) == {
        "changes": [
            {
                "path": "helpers/c/pyproject.toml",
                "kind": "helper",
                "name": "c",
                "distribution": "acme-c",
                "old_version": "1.0.0",
                "new_version": "2.0.0",
                "why": "bumped",
                "pins": [],
            },
            {
                "path": "images/c-and-d/image.toml",
                "kind": "image",
                "name": "c-and-d",
                "distribution": None,
                "old_version": "0.9.0",
                "new_version": "0.9.1",
                "why": "contains c",
                "pins": [],
            },
            {
                "path": "images/only-c/image.toml",
                "kind": "image",
                "name": "only-c",
                "distribution": None,
                "old_version": "1.1.1",
                "new_version": "1.1.2",
                "why": "contains c",
                "pins": [],
            },
        ],
        "images_to_relock": ["c-and-d", "only-c"],
        "written": True,
        "relocked": [],  # neither image has a lock yet
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("a", "0.0.1"), "helpers/a/pyproject.toml: version 0.0.1 is not greater"),
        (("a", "sideways"), "'sideways' is neither a level"),
        (("nope", "patch"), "no helper or image named 'nope'"),
    ],
)
def test_cli_bad_input_exits_3(
    chain: Workspace, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    before = snapshot(chain.root)
    code, out, err = run(capsys, "bump", *argv, "--repo", str(chain.root))
    assert code == 3
    assert out == ""
    assert err.startswith("kiln: bad input: ")
    assert message in err
    assert snapshot(chain.root) == before


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bump", "--help")
    assert code == 0
    assert "kiln bump dataquality patch" in out
    assert "--dry-run" in out
    assert "--image" in out


def test_a_bump_keeps_fresh_locks_and_names_the_stale_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    write_fake_lock(ws, ws.image("base"))
    code, out, err = run(capsys, "bump", "imgproc", "patch", "--repo", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["relocked"] == []  # only versions moved: the lock still fits

    pyproject = root / "helpers" / "imgproc" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.26"', '"numpy>=2"'))
    code, _, err = run(capsys, "bump", "imgproc", "patch", "--repo", str(root), "--dry-run")
    assert code == 0, err
    assert "their locks would be stale: then `kiln lock base`" in err
