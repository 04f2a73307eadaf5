"""Scenario 8: kiln's OS base. What its images weigh, what its OS layer costs, and the
per-machine stand-in it replaced, measured in the same run.

    python -m bench.os_base layer --repo DIR --debs DIR --cache DIR   # one OS layer build

The scenario (``os_base``) releases a copy of this repository (``Bench.example``: the
``base`` and ``analytics`` images and packages mode's ``packages`` base) on its own
stack, then, ``repeat`` times each:

- reads each image's manifest and config from the registry: the compressed size of
  each layer, named from the config's history (OS / third-party / helpers), and their
  total;
- makes the old stand-in the way ``.ci/build-base-image`` did (``debootstrap
  --variant=minbase --include=python3,python3-pip,python3-venv bookworm``, then
  EXTERNALLY-MANAGED and apt's lists removed, ``tar | docker import``), pushes it to the
  same registry and reads its compressed size; debootstrap and the import are timed;
- builds the OS layer with kiln's own code (``fetch_debs``, ``OsLayers.layer``) in a
  subprocess (``layer`` below): cold (empty .deb cache and layer cache: the .debs
  fetched from Debian's mirror, unpacked, the layer written) and from a warm .deb cache
  (empty layer cache);
- times ``kiln release --local`` (asserted a no-op) and ``kiln components --local``
  when nothing changed: the OS layer comes from kiln's cache.

python:3.11-slim cannot be pulled here: its size is quoted (``SLIM_BYTES``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.harness import Bench, BenchError, Measurement, Outcome, Repo, Sample, measured, run
from kiln._debian.archive import Mirrors
from kiln._debian.lock import read_os_lock
from kiln._images.oci.cache import LayerCache
from kiln._images.os_layers import OsLayers, fetch_debs
from kiln._servers.registry import RegistryClient
from kiln._workspace.discovery import discover

PY = sys.executable
TARGET_BYTES = 60_000_000  # the `base` image, compressed, in total (MB = 10^6 bytes)
NOOP_TARGET_S = 3.0  # a no-op release (scenario 1's target)
# python:3.11-slim, linux/amd64, compressed, as Docker Hub lists it: quoted, not measured
# (no image can be pulled here).
SLIM_BYTES = 47_800_000
EXAMPLE_IMAGES = ("base", "analytics", "packages")
STAND_IN = "kiln-bench/stand-in"
DEBOOTSTRAP = (
    "--variant=minbase", "--include=python3,python3-pip,python3-venv",
    "bookworm", "{root}", "http://deb.debian.org/debian",
)  # fmt: skip
# What .ci/build-base-image gave `docker import`.
IMPORT = (
    'set -o pipefail; tar -C "$1" -c . | docker import '
    "--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "
    "--change 'ENV LANG=C.UTF-8' --change 'CMD [\"python3\"]' - \"$2\""
)


# -- one OS layer build, in its own process --------------------------------------------
def build_layer(repo: Path, debs: Path, cache: Path) -> dict[str, object]:
    """The OS layer of ``repo``'s images/os.lock, with kiln's code: the .debs from
    ``debs`` (a .kiln/cache/debian folder) or Debian's mirrors, then the layer written
    into the layer cache ``cache``. Seconds of each step, and what it made."""
    lock = read_os_lock(repo)
    mirrors = Mirrors(discover(repo).os)
    cached = sum((debs / "debs" / f"{p.sha256}.deb").is_file() for p in lock.os.packages)
    start = time.perf_counter()
    fetched = fetch_debs(lock.os.packages, mirrors, debs)
    fetch_s = time.perf_counter() - start
    if fetched.gone:
        raise SystemExit(f"no mirror serves {', '.join(p.name for p in fetched.gone)}")
    start = time.perf_counter()
    blob = OsLayers(LayerCache(cache), debs, mirrors).layer(lock)  # its digest checked
    build_s = time.perf_counter() - start
    return {
        "fetch_s": fetch_s,
        "build_s": build_s,
        "debs": len(lock.os.packages),
        "fetched": len(lock.os.packages) - cached,
        "deb_bytes": sum(p.size for p in lock.os.packages),
        "digest": blob.digest,
        "size": blob.size,
    }


def _layer(example: Repo, work: Path, debs: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="oci-", dir=work) as cache:
        argv = (PY, "-m", "bench.os_base", "layer", "--repo", str(example.root),
                "--debs", str(debs), "--cache", cache)  # fmt: skip
        result: dict[str, object] = json.loads(run(argv, env=example.env).stdout)
    return result


# -- sizes in the registry -------------------------------------------------------------
def layer_kind(created_by: str) -> str:
    """A layer's part, from kiln's history line: ``kiln: OS layer: ...`` -> ``OS``."""
    text = created_by.removeprefix("kiln: ")
    if text == created_by:
        return "OS (docker import)" if "Imported" in created_by else created_by[:40]
    if text.startswith("OS layer"):
        return "OS"
    if "'s os-packages" in text:
        return "os-packages"
    return text.split(" layer", 1)[0]


def image_layers(
    registry: RegistryClient, repository: str, reference: str, work: Path
) -> list[tuple[str, int]]:
    """(part, compressed bytes) of each layer of ``repository@reference``, base first."""
    manifest = json.loads(registry.manifest(repository, reference))
    config_path = work / "config.json"
    registry.download_blob(repository, str(manifest["config"]["digest"]), config_path)
    history = [
        h for h in json.loads(config_path.read_text()).get("history", [])
        if not h.get("empty_layer")
    ]  # fmt: skip
    if len(history) != len(manifest["layers"]):
        history = [{}] * len(manifest["layers"])
    return [
        (layer_kind(str(h.get("created_by", ""))), int(layer["size"]))
        for h, layer in zip(history, manifest["layers"], strict=True)
    ]


# -- the old stand-in ------------------------------------------------------------------
def _unmount_below(root: Path) -> None:
    """debootstrap mounts /proc and /sys in its target and unmounts them on exit; make
    sure nothing stays mounted before the folder is removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        run(("umount", "-l", point), check=False)
    if any(m.startswith(f"{root}/") for m in Path("/proc/mounts").read_text().split()):
        raise BenchError(f"{root}: still mounted below; not removed")


def stand_in(work: Path, name: str, env: Mapping[str, str]) -> tuple[Sample, Sample]:
    """The per-machine stand-in as .ci/build-base-image made it: debootstrap, then
    ``tar | docker import``. The two timed steps."""
    debootstrap = shutil.which("debootstrap") or shutil.which("/usr/sbin/debootstrap")
    if debootstrap is None:
        raise BenchError("no debootstrap: sudo apt-get install debootstrap")
    root = work / "stand-in-rootfs"
    shutil.rmtree(root, ignore_errors=True)
    try:
        argv = (debootstrap, *(a.format(root=root) for a in DEBOOTSTRAP))
        boot = run(argv, env=env)
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for junk in (*root.glob("var/cache/apt/archives/*.deb"), root / "var/lib/apt/lists"):
            if junk.is_dir():
                shutil.rmtree(junk)
                junk.mkdir()
            else:
                junk.unlink()
        imported = run(("bash", "-c", IMPORT, "import", str(root), name), env=env)
    finally:
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
    return boot, imported


# -- the scenario ----------------------------------------------------------------------
def _mb(size: float) -> float:
    return round(size / 1e6, 1)


def _noop(sample: Sample) -> Sample:
    result = json.loads(sample.stdout)
    if result["uploaded"] or result["pushed"]:
        raise BenchError(f"not a no-op: uploaded {result['uploaded']}, pushed {result['pushed']}")
    return sample


def _example_sizes(o: Outcome, example: Repo, registry: RegistryClient, work: Path) -> int:
    """Each example image's layers as ``o.sizes`` rows and figures; the `base` total."""
    manifest = json.loads((example.root / "dist" / "manifest.json").read_text())
    rows = {i["name"]: i for i in manifest["images"]}
    unique: dict[str, int] = {}
    totals = {}
    for name in EXAMPLE_IMAGES:
        if name not in rows:
            raise BenchError(f"the example release has no {name} image: {sorted(rows)}")
        repository = rows[name]["repository"].split("/", 1)[1]
        layers = image_layers(registry, repository, rows[name]["digest"], work)
        blobs = json.loads(registry.manifest(repository, rows[name]["digest"]))["layers"]
        unique.update({str(b["digest"]): int(b["size"]) for b in blobs})
        label = f"{name} {rows[name]['version']}"
        o.sizes += [(label, part, size) for part, size in layers]
        totals[name] = sum(size for _part, size in layers)
        o.sizes.append((label, "total", totals[name]))
        o.figures[f"{name} MB"] = _mb(totals[name])
    o.figures["registry MB (3 images, unique layers)"] = _mb(sum(unique.values()))
    return totals["base"]


def os_base(b: Bench) -> Outcome:
    o = Outcome(
        8,
        "kiln's OS base: image bytes, OS layer build, no-op",
        f"`base` <= {TARGET_BYTES // 1_000_000} MB compressed in total; a no-op release "
        f"< {NOOP_TARGET_S:.0f} s",
    )
    example = b.example()
    example.release()
    ws = discover(example.root)
    registry = RegistryClient(ws.stack.registry)
    work = b.workdir / "os-base"
    work.mkdir(parents=True, exist_ok=True)
    base_total = _example_sizes(o, example, registry, work)

    boots: list[Sample] = []
    imports: list[Sample] = []
    stand_ins: list[int] = []
    cold: list[dict[str, object]] = []
    warm: list[dict[str, object]] = []
    noops: list[Sample] = []
    components: list[Sample] = []
    for r in range(b.repeat):
        name = f"{STAND_IN}:r{r}"
        boot, imported = stand_in(work, name, b.env)
        boots.append(boot)
        imports.append(imported)
        target = f"{ws.stack.registry}/bench/stand-in:r{r}"
        run(("docker", "tag", name, target), env=b.env)
        run(("docker", "push", "-q", target), env=b.env)
        for ref in (target, name):
            run(("docker", "rmi", ref), env=b.env, check=False)
        stand_ins.append(
            sum(s for _k, s in image_layers(registry, "bench/stand-in", f"r{r}", work))
        )
        debs = work / f"debs-{r}"
        cold.append(_layer(example, work, debs))  # nothing cached: Debian's mirror
        warm.append(_layer(example, work, debs))  # the same .debs, a new layer cache
        shutil.rmtree(debs)
        noops.append(_noop(example.kiln("release", "--local", "--json")))
        components.append(example.kiln("components", "--local", "--json"))

    def seconds(results: Sequence[Mapping[str, object]], *keys: str) -> tuple[float, ...]:
        return tuple(sum(float(str(x[k])) for k in keys) for x in results)

    n_debs = cold[0]["debs"]
    o.rows = [
        Measurement(
            f"OS layer, cold: {n_debs} .debs fetched from deb.debian.org, layer written",
            seconds(cold, "fetch_s", "build_s"),
        ),
        Measurement("OS layer, cold: of which fetching the .debs", seconds(cold, "fetch_s")),
        Measurement("OS layer, warm .deb cache: unpacked, layer written", seconds(warm, "build_s")),
        measured("stand-in: debootstrap (minbase, python3, pip, venv)", boots),
        measured("stand-in: tar | docker import", imports),
        measured("kiln release --local, nothing changed (OS layer from the cache)", noops),
        measured("kiln components --local, nothing changed", components),
    ]
    made = [a.seconds + i.seconds for a, i in zip(boots, imports, strict=True)]
    stand_in_s = statistics.median(made)
    stand_in_bytes = int(statistics.median(stand_ins))
    o.sizes.append((f"stand-in (median of {len(stand_ins)})", "total", stand_in_bytes))
    noop_s = o.rows[5].median
    o.figures |= {
        "stand-in MB": _mb(stand_in_bytes),
        "stand-in MB per run": ", ".join(str(_mb(s)) for s in stand_ins),
        "python:3.11-slim MB (quoted)": _mb(SLIM_BYTES),
        "base / stand-in": round(base_total / stand_in_bytes, 2),
        "base / slim": round(base_total / SLIM_BYTES, 2),
        "OS layer MB": _mb(float(str(cold[0]["size"]))),
        "cold: .debs fetched": ", ".join(str(x["fetched"]) for x in cold),
        ".deb MB": _mb(float(str(cold[0]["deb_bytes"]))),
        "cold OS layer / stand-in made (s)": round(o.rows[0].median / stand_in_s, 2),
        "warm .debs / stand-in made (s)": round(o.rows[2].median / stand_in_s, 2),
        "no-op release s": round(noop_s, 2),
    }
    o.note = (
        f"MB = 10^6 bytes, compressed, read from the registry's manifests. The stand-in "
        f"was made {b.repeat} time(s) in this run the way .ci/build-base-image did and pushed "
        "by docker (its gzip); python:3.11-slim's 47.8 MB is quoted from Docker Hub (it "
        "cannot be pulled here). 'stand-in made' is debootstrap + import, the same mirror."
    )
    return o.judge(base_total <= TARGET_BYTES and noop_s < NOOP_TARGET_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.os_base", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    layer = sub.add_parser("layer", help="build the OS layer once; JSON on stdout")
    layer.add_argument("--repo", type=Path, required=True, help="its images/os.lock")
    layer.add_argument("--debs", type=Path, required=True, help="a .kiln/cache/debian folder")
    layer.add_argument("--cache", type=Path, required=True, help="a layer cache folder")
    args = parser.parse_args(argv)
    print(json.dumps(build_layer(args.repo, args.debs, args.cache)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
