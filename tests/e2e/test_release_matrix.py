"""The release as a CI matrix, on a private copy and stack: `kiln plan --jobs 2 --json`,
then `kiln release --job 0` and `--job 1` as kiln processes of their own. Together they
publish exactly what `repo`'s one-machine release published, at the same digests, each
artifact once; the plan made twice is the same bytes; a job given a plan whose digest is
not what it builds is refused (exit 11) with nothing of it published."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import docker

from kiln._servers.index import IndexClient
from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import KilnCache, OsPins, copy_project, on_stack
from tests.e2e.tools import kiln_process


def _bare(ref: str) -> str:
    """``host/org/name:tag@digest`` without the registry host (each stack has its own)."""
    return ref.split("/", 1)[1]


def test_two_jobs_publish_what_one_machine_does_and_a_wrong_digest_is_refused(
    tmp_path: Path,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
    released: dict[str, Any],
) -> None:
    root = tmp_path / "matrix"
    with on_stack(root, *copy_project(root, os_pins, kiln_cache), docker_client) as repo:
        made = kiln_process(root, "plan", "--local", "--jobs", "2", "--json")
        assert made.returncode == 0, made.stderr
        plan: dict[str, Any] = json.loads(made.stdout)
        path = tmp_path / "plan.json"
        path.write_text(made.stdout)
        again = repo.kiln("plan", "--local", "--jobs", "2", "--json")
        assert (again.returncode, again.stdout) == (0, made.stdout)  # byte for byte

        # Every image of the one-machine release in one job, at its digests.
        one = {i["name"]: i for i in released["manifest"]["images"]}
        images = {i["name"]: i for job in plan["jobs"] for i in job["images"]}
        assert sorted(images) == sorted(one)
        assert sum(len(job["images"]) for job in plan["jobs"]) == len(one)
        assert all(job["images"] for job in plan["jobs"])
        for name, image in images.items():
            assert image["digest"] == one[name]["digest"], name
            platforms = [(p["platform"], p["digest"]) for p in one[name]["platforms"]]
            assert [(p["platform"], p["digest"]) for p in image["platforms"]] == platforms
        owners = {w["filename"]: w["job"] for w in plan["wheels"]}
        assert sorted(f for job in plan["jobs"] for f in job["publishes"]) == sorted(owners)

        # Job 1 given a plan with another digest for its first image: refused, nothing
        # of the job published (no tag, none of its wheels on the index).
        bad = copy.deepcopy(plan)
        wrong = bad["jobs"][1]["images"][0]
        wrong["digest"] = "sha256:" + "0" * 64
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        refused = kiln_process(
            root, "release", "--local", "--job", "1", "--plan", str(tmp_path / "bad.json")
        )
        assert refused.returncode == 11, refused.stderr
        assert "does not match the plan" in refused.stderr
        assert f"built as {images[wrong['name']]['digest']}, the plan says {wrong['digest']}" in (
            refused.stderr
        )
        registry = RegistryClient(repo.registry)
        index = IndexClient(repo.index_url)
        assert registry.digest(_bare(wrong["repository"]), wrong["tag"]) is None
        projects = {w["project"] for w in plan["wheels"]}
        assert all(index.files(p) == {} for p in projects)

        runs = []
        for job in ("0", "1"):
            ran = kiln_process(
                root, "release", "--local", "--job", job, "--plan", str(path), "--json"
            )
            assert ran.returncode == 0, ran.stderr
            runs.append(json.loads(ran.stdout))

        uploaded = [f for run in runs for f in run["uploaded"]]
        pushed = [_bare(r) for run in runs for r in run["pushed"]]
        assert sorted(uploaded) == sorted(set(uploaded)) == sorted(released["uploaded"])
        assert sorted(pushed) == sorted(set(pushed)) == sorted(map(_bare, released["pushed"]))
        for number, run in enumerate(runs):  # each job its own share
            job = plan["jobs"][number]
            assert sorted(run["uploaded"]) == sorted(job["publishes"])
            assert sorted(map(_bare, run["pushed"])) == sorted(
                _bare(f"{i['repository']}:{i['tag']}@{i['digest']}") for i in job["images"]
            )
        # What the servers hold: each wheel at the plan's sha256, each tag at its digest.
        for wheel in plan["wheels"]:
            assert index.files(wheel["project"])[wheel["filename"]] == wheel["sha256"]
        for image in images.values():
            assert registry.digest(_bare(image["repository"]), image["tag"]) == image["digest"]
        assert not (root / "dist" / "manifest.json").exists()  # the finalize step's
        assert not (root / "dist" / "release").exists()
