"""`kiln release --tag` on the real local stack: v0.1.0 publishes wheels, images and the
components bundle, which a fresh venv installs from the private index alone and whose
`load()` runs a component in kfp.local and refuses a tampered YAML; v0.2.0 after a helper
change publishes only what changed, says so in its notes, and leaves 0.1.0's bundle
pinned to 0.1.0's digests; a release killed after the wheel upload completes when run
again; and what a release must refuse, it refuses before publishing anything."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import HELPERS, IMAGES, KilnCache, OsPins, copy_project, patch
from tests.e2e.tools import Repo, pip_into

pytestmark = pytest.mark.e2e

GIT = ["git", "-c", "user.name=kiln-test", "-c", "user.email=kiln@example.invalid"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def train(
    tmp_path_factory: pytest.TempPathFactory, os_pins: OsPins, kiln_cache: KilnCache
) -> Iterator[Repo]:
    """A git copy of this repo on its own stack, with the run's caches (the wheels and
    layers already fetched and built) and its committed tree regenerated for the new
    ports."""
    root = tmp_path_factory.mktemp("train")
    index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    train = Repo(root, f"http://127.0.0.1:{index_port}", f"127.0.0.1:{registry_port}")
    assert train.kiln("components", "--local").returncode == 0
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the monorepo")
    yield train
    train.kiln("stack", "down")


def _bundle_site(tmp_path: Path, index_url: str, version: str) -> Path:
    """A fresh venv with only ``acme-components==version`` from the private index; its
    site-packages (kfp and docker come from the test's own environment)."""
    venv.create(tmp_path, with_pip=False)
    pip_into(str(tmp_path / "bin" / "python"), "install", "--quiet", "--no-compile",
             "--index-url", f"{index_url}/simple/",
             f"acme-components=={version}" if version else "acme-components")  # fmt: skip
    (site,) = tmp_path.glob("lib/python3*/site-packages")
    return site


def _python(site: Path, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        check=False, timeout=600,
    )  # fmt: skip


def _index_files(repo: Repo, project: str) -> list[str]:
    page = requests.get(f"{repo.index_url}/simple/{project}/", timeout=10).text
    return re.findall(r">([^<]+\.whl)<", page)


def test_tag_releases_the_bundle_then_only_what_changed(train: Repo, tmp_path: Path) -> None:
    digests = _first_release(train, tmp_path)
    _second_release_killed_and_completed(train)
    _two_releases_of_one_tag_at_once(train, tmp_path)
    _dev_release(train, tmp_path)
    # 0.1.0's bundle still loads 0.1.0's digests.
    site = _bundle_site(tmp_path / "v1-again", train.index_url, "0.1.0")
    old = _python(site, (
        "from acme_components import load\n"
        "print(load('enhance_contrast').component_spec.implementation.container.image)\n"
    ), tmp_path)  # fmt: skip
    assert old.returncode == 0, old.stderr
    assert old.stdout.split() == [digests["base"]]


def _first_release(train: Repo, tmp_path: Path) -> dict[str, str]:
    """v0.1.0: refusals first, then the release, its record and its bundle."""
    root = train.root
    # Refused before anything is published: no tag, a dirty tree, a tag not on HEAD.
    assert train.kiln("release", "--tag", "v0.1.0", "--local").returncode == 3
    git(root, "tag", "v0.1.0")
    (root / "stray.txt").write_text("x\n")
    dirty = train.kiln("release", "--tag", "v0.1.0", "--local")
    assert dirty.returncode == 3
    assert "the working tree has changes" in dirty.stderr
    (root / "stray.txt").unlink()
    assert _index_files(train, "acme-imgproc") == []  # nothing was published

    first = train.kiln_json("release", "--tag", "v0.1.0", "--local")
    assert "acme_components-0.1.0-py3-none-any.whl" in first["uploaded"]
    assert len(first["pushed"]) == 3  # base, analytics, and packages mode's base
    record = Path(first["record"])
    assert sorted(p.name for p in record.iterdir()) == [
        "RELEASE_NOTES.md", "acme_components-0.1.0-py3-none-any.whl", "catalog.html",
        "catalog.md", "manifest.json", "sbom",
    ]  # fmt: skip
    manifest = json.loads((record / "manifest.json").read_text())
    assert manifest["release"] == "0.1.0"
    assert manifest["revision"] == git(root, "rev-parse", "HEAD")
    assert "(the first release)" in (record / "RELEASE_NOTES.md").read_text()
    assert git(root, "status", "--porcelain") == ""  # the tagged tree was already exact
    digests = {i["name"]: i["ref"] for i in manifest["images"]}

    # The bundle from the private index alone: load() runs a component in kfp.local.
    site = _bundle_site(tmp_path / "v1", train.index_url, "0.1.0")
    run = _python(site, (
        "from kfp import local\n"
        "from acme_components import load\n"
        "local.init(runner=local.DockerRunner(network_mode='none'), pipeline_root='runs')\n"
        "import numpy as np\n"
        "step = load('enhance_contrast')\n"
        "print(step.component_spec.implementation.container.image)\n"
    ), tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [digests["base"]]
    run = _python(site, (
        "from kfp import local\n"
        "from acme_components import load\n"
        "local.init(runner=local.DockerRunner(network_mode='host'), pipeline_root='runs')\n"
        "step = load('stretch_contrast_demo')\n"
        "print(step(seed=7, low_percentile=2.0, high_percentile=98.0).output)\n"
    ), tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert 40.0 < float(run.stdout.split()[-1]) < 80.0
    # A YAML altered inside the installed bundle is refused by load().
    yaml_file = site / "acme_components" / "components" / "enhance_contrast.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("image: ", "image:  "))
    tampered = _python(site, "from acme_components import load; load('enhance_contrast')", tmp_path)
    assert tampered.returncode != 0
    assert "the installed file was altered" in tampered.stderr

    # The tagged commit's YAMLs as they are (`git show v0.1.0:path` bytes): all load,
    # and one runs in kfp.local.
    tagged = git(root, "ls-tree", "--name-only", "v0.1.0", "pipelines/components/generated/")
    names = [p for p in tagged.split() if p.endswith(".yaml")]
    assert len(names) == 9
    for path in names:
        (tmp_path / "tag" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tag" / path).write_text(git(root, "show", f"v0.1.0:{path}") + "\n")
    run = _python(site, (
        "import pathlib\n"
        "from kfp import components, local\n"
        "yamls = sorted(pathlib.Path('tag').rglob('*.yaml'))\n"
        "loaded = {p.stem: components.load_component_from_text(p.read_text()) for p in yamls}\n"
        "local.init(runner=local.DockerRunner(network_mode='host'), pipeline_root='runs')\n"
        "step = loaded['stretch_contrast_demo']\n"
        "print(len(loaded), step(seed=7, low_percentile=2.0, high_percentile=98.0).output)\n"
    ), tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    count, value = run.stdout.split()[-2:]
    assert (count, 40.0 < float(value) < 80.0) == ("9", True)
    _consumer_pipeline(site, tmp_path, digests)

    # The same tag again: nothing to do, and it says so.
    again = train.kiln_json("release", "--tag", "v0.1.0", "--local")
    assert (again["uploaded"], again["pushed"]) == ([], [])
    return digests


def _consumer_pipeline(site: Path, tmp_path: Path, digests: dict[str, str]) -> None:
    """A consumer's own pipeline of two released YAMLs (the tagged commit's, in
    ``tmp_path/tag``): a packages-mode step (kiln's packages base, pinned by digest)
    feeding an image-mode one (the base image)."""
    run = _python(site, (
        "from kfp import components, dsl, local\n"
        "g = 'tag/pipelines/components/generated/'\n"
        "make = components.load_component_from_file(g + 'make_sample_images.yaml')\n"
        "enhance = components.load_component_from_file(g + 'enhance_contrast.yaml')\n"
        "@dsl.pipeline(name='consumer')\n"
        "def consumer() -> float:\n"
        "    images = make(seed=3, count=2, size=32).outputs['images']\n"
        "    return enhance(images=images, method='stretch').outputs['Output']\n"
        "local.init(runner=local.DockerRunner(network_mode='host'), pipeline_root='runs')\n"
        "gain = consumer().output\n"
        "print('PINS', make.component_spec.implementation.container.image,\n"
        "      enhance.component_spec.implementation.container.image, gain)\n"
    ), tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    (pins,) = [line for line in run.stdout.splitlines() if line.startswith("PINS ")]
    packages_base, image, gain = pins.split()[1:]
    assert packages_base == digests["packages"]
    assert image == digests["base"]
    assert float(gain) > 1.0  # stretched: more spread than the low-contrast input


def _change_and_commit(train: Repo, helper: str, line: str) -> None:
    """A change to ``helper``, bumped (patch), its YAMLs regenerated, committed."""
    source = train.root / "helpers" / helper / "src" / helper / "__init__.py"
    source.write_text(source.read_text() + f"\n\n{line}\n")
    assert train.kiln("bump", helper, "patch").returncode == 0
    assert train.kiln("components", "--local").returncode == 0
    git(train.root, "commit", "-qam", f"{helper}: {line}")


def _second_release_killed_and_completed(train: Repo) -> None:
    root = train.root

    # A helper change, bumped, regenerated, committed, tagged v0.2.0. The release is
    # killed right after the wheel upload, then run again.
    _change_and_commit(train, "imgproc", "RELEASE_TRAIN = 2")
    old, new = HELPERS["imgproc"], patch(HELPERS["imgproc"])
    wheel = f"acme_imgproc-{new}-py3-none-any.whl"
    # A version below the last release is refused.
    git(root, "tag", "v0.0.9")
    below = train.kiln("release", "--tag", "v0.0.9", "--local")
    assert below.returncode == 4, below.stderr
    assert "below the last released version 0.1.0" in below.stderr
    git(root, "tag", "v0.2.0")
    env = dict(os.environ)
    command = ["release", "--tag", "v0.2.0", "--local", "--repo", str(root)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiln", *command],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while wheel not in _index_files(train, "acme-imgproc"):
        assert proc.poll() is None, "the release ended before its wheel was on the index"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "acme_components-0.2.0-py3-none-any.whl" not in _index_files(train, "acme-components")

    second = train.kiln_json("release", "--tag", "v0.2.0", "--local")
    assert wheel not in second["uploaded"]  # the killed run's
    assert "acme_components-0.2.0-py3-none-any.whl" in second["uploaded"]
    assert _index_files(train, "acme-imgproc").count(wheel) == 1
    notes = (Path(second["record"]) / "RELEASE_NOTES.md").read_text()
    assert "Changes since v0.1.0:" in notes
    assert f"- `acme-imgproc`: `{old}` -> `{new}`" in notes
    assert "acme-tabular" not in notes
    assert "acme-viz" not in notes
    assert "- `make_sample_images`" not in notes  # numpy only: its YAML did not move
    assert "- `stretch_contrast_demo`" in notes
    assert "- `enhance_contrast`" in notes


def _dev_release(train: Repo, tmp_path: Path) -> None:
    """Edit one helper, `kiln release --dev`, `kiln run --dev`: dev versions only, timed."""
    root = train.root
    registry = RegistryClient(train.registry)
    # base, bumped once by the v0.2.0 release's helper change
    stable = {"base": registry.digest("acme/base", patch(IMAGES["base"]))}
    source = root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\n\nDEV_LOOP = 1\n")
    started = time.monotonic()
    dev = train.kiln_json("release", "--dev", "--local")
    released_at = time.monotonic()
    run = train.kiln_json("run", "--dev", "contrast_demo")
    finished = time.monotonic()
    print(
        f"dev loop: release --dev {released_at - started:.1f} s, run --dev "
        f"{finished - released_at:.1f} s, total {finished - started:.1f} s"
    )
    assert 40.0 < run["Output"] < 80.0
    published = patch(HELPERS["imgproc"])  # by the v0.2.0 release: dev counts from the next
    assert re.fullmatch(rf"{re.escape(patch(published))}\.dev\d{{14}}", dev["helpers"]["imgproc"])
    assert dev["image_tag"].startswith("dev-")
    assert all(":dev-" in pushed for pushed in dev["pushed"])
    assert re.fullmatch(r"acme_components-0\.3\.1\.dev\d{14}-py3-none-any\.whl", dev["bundle"])
    # Stable versions and tags untouched; pip picks the stable bundle unless asked.
    assert {name: registry.digest(f"acme/{name}", patch(IMAGES[name])) for name in stable} == stable
    site = _bundle_site(tmp_path / "latest", train.index_url, "")  # no version asked
    assert (site / "acme_components-0.3.0.dist-info").is_dir()
    assert git(root, "status", "--porcelain") == "M helpers/imgproc/src/imgproc/__init__.py"


def _two_releases_of_one_tag_at_once(train: Repo, tmp_path: Path) -> None:
    """v0.3.0 released from two clones at the same moment (as two CI runners would):
    both end well, and each artifact is on the index once."""
    root = train.root
    _change_and_commit(train, "tabular", "RACED = 3")
    git(root, "tag", "v0.3.0")
    other = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(other))
    for shared in ("cache", "wheelhouse"):  # hard links: kiln replaces files, never edits
        shutil.copytree(
            root / ".kiln" / shared, other / ".kiln" / shared, symlinks=True,
            copy_function=os.link,
        )  # fmt: skip
    target = ["--index", train.index_url, "--registry", train.registry, "--json"]
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kiln", "release", "--tag", "v0.3.0", *target, "--repo", str(r)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (root, other)
    ]
    results = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(err[-3000:] for _, err in results)
    outputs = [json.loads(out) for out, _ in results]
    assert {o["bundle"]["sha256"] for o in outputs} == {outputs[0]["bundle"]["sha256"]}
    for project, filename in (
        ("acme-tabular", f"acme_tabular-{patch(HELPERS['tabular'])}-py3-none-any.whl"),
        ("acme-components", "acme_components-0.3.0-py3-none-any.whl"),
    ):
        assert _index_files(train, project).count(filename) == 1
