"""``kiln check``: what must change before the next release, each with its fix.

Compares the repository with what is published, reading only: the helper wheels
(from kiln's build cache, so no backend runs for unchanged helpers) against the
index's ``#sha256=``, each image's committed lock (and the OS lock) against its
inputs, and each pushed image's recorded helpers, third-party set and base (its
labels: the OS layers' digests, or a registry base's) against the repository: a new
OS lock moves every image on it, which then needs a bump. Needs no Docker Engine.
Findings are data; the CLI prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kiln._components.drift import Drift
from kiln._debian.lock import OS_LOCK, OsLock
from kiln._errors import ArtifactAltered, ConfigError, PublishedConflict
from kiln._images.inputs import OsBase, base_label
from kiln._lock.format import Lock, read_lock
from kiln._lock.inputs import check_fresh
from kiln._locking.debian import fresh_os_lock
from kiln._release.plan import Action, FileCandidate, plan_file, unrecorded_hint
from kiln._servers.index import Index, files_for
from kiln._servers.registry import Registry
from kiln._wheels.build import BuiltWheel
from kiln._workspace.model import Image, Workspace, helper_closure

# What a finding means for the next release, and the exit code it gives.
BUMP, ALTERED, RELOCK, TODO = "bump", "altered", "relock", "unpublished"
REGENERATE = "regenerate"  # a committed component YAML differs from what kiln generates
_EXIT = {
    BUMP: PublishedConflict.exit_code,
    ALTERED: ArtifactAltered.exit_code,
    RELOCK: ConfigError.exit_code,
    REGENERATE: ConfigError.exit_code,
}


@dataclass(frozen=True)
class Finding:
    kind: str  # BUMP, ALTERED, RELOCK, REGENERATE (each blocks a release) or TODO
    subject: str  # the helper or image folder name
    path: str  # the file to look at, relative to the repository
    message: str
    fix: str  # the exact command, or what to do

    @property
    def blocking(self) -> bool:
        return self.kind != TODO


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    checked: Mapping[str, int]  # how many helpers and images were compared

    @property
    def exit_code(self) -> int:
        codes = [_EXIT[f.kind] for f in self.findings if f.blocking]
        return max(codes, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0,
            "checked": dict(self.checked),
            "findings": [{**asdict(f), "blocking": f.blocking} for f in self.findings],
        }


def _helper_findings(
    workspace: Workspace,
    wheels: Sequence[BuiltWheel],
    index: Index,
    recorded: Mapping[str, str],
) -> list[Finding]:
    found = []
    pages = files_for(index, ((w.distribution, w.filename) for w in wheels))
    for wheel in wheels:
        helper = workspace.helper(wheel.helper)
        path = str((helper.path / "pyproject.toml").relative_to(workspace.root))
        published = pages[wheel.distribution]
        # The release's own judgement of the file: publish, skip, or refuse (altered or not).
        step = plan_file(
            FileCandidate(
                "helper",
                wheel.distribution,
                wheel.version,
                wheel.path,
                wheel.sha256,
                recorded=recorded.get(wheel.filename),
            ),
            published,
        )
        there = published.get(wheel.filename, "")
        unrecorded = wheel.filename not in recorded
        what = f"{wheel.distribution} {wheel.version}"
        if step.action is Action.SKIP:
            continue
        if step.action is Action.PUBLISH:
            found.append(
                Finding(TODO, helper.name, path, f"{what} is not published yet", "kiln release")
            )
        elif step.altered:
            found.append(
                Finding(
                    ALTERED,
                    helper.name,
                    path,
                    f"the index serves other bytes for {wheel.filename} (sha256 {there[:12]}...) "
                    f"than kiln published ({wheel.sha256[:12]}...), and the source still builds "
                    "the published bytes: the index was altered",
                    f"delete {wheel.filename} from the index, then `kiln release`; do not bump",
                )
            )
        else:
            found.append(
                Finding(
                    BUMP,
                    helper.name,
                    path,
                    f"helpers/{helper.name} changed since {what} was published (index sha256 "
                    f"{there[:12]}..., built {wheel.sha256[:12]}...)"
                    f"{unrecorded_hint(f'helpers/{helper.name}') if unrecorded else ''}",
                    f"kiln bump {helper.name} patch",
                )
            )
    return found


def _labels_say(labels: Mapping[str, str], key: str) -> set[str]:
    return {item for item in labels.get(f"org.kiln.{key}", "").split(",") if item}


def _lock_findings(workspace: Workspace, image: Image, kfp_version: str) -> list[Finding]:
    """A RELOCK finding when ``image``'s lock is missing or stale."""
    try:
        check_fresh(read_lock(image), workspace, image, kfp_version)
    except ConfigError as exc:
        path = str((image.path / "requirements.lock").relative_to(workspace.root))
        return [Finding(RELOCK, image.name, path, str(exc), f"kiln lock {image.name}")]
    return []


def _base_now(image: Image, lock: Lock, os_lock: OsLock | None) -> tuple[str, str] | None:
    """The base label ``image`` would get now (None: its OS lock cannot say, which the OS
    lock's own finding reports)."""
    if image.base is not None:
        return base_label(lock.base.build_ref)
    if os_lock is None:
        return None
    return base_label(OsBase.of(os_lock, image))


def _os_state(workspace: Workspace) -> tuple[OsLock | None, list[Finding]]:
    """The fresh OS lock (None when no image is on kiln's OS base or the lock is missing
    or stale), and a RELOCK finding for the latter."""
    if not workspace.on_os:
        return None, []
    try:
        return fresh_os_lock(workspace), []
    except ConfigError as exc:
        return None, [Finding(RELOCK, "os", str(OS_LOCK), str(exc), "kiln lock")]


def _image_findings(
    workspace: Workspace,
    image: Image,
    registry: Registry,
    kfp_version: str,
    os_lock: OsLock | None,
) -> list[Finding]:
    config = str((image.path / "image.toml").relative_to(workspace.root))
    stale = _lock_findings(workspace, image, kfp_version)
    if stale:
        return stale
    lock = read_lock(image)
    repository = f"{workspace.org}/{image.name}"
    if registry.digest(repository, image.version) is None:
        what = f"{repository}:{image.version} is not pushed yet"
        return [Finding(TODO, image.name, config, what, "kiln release")]
    labels = registry.labels(repository, image.version)
    helpers = {
        f"{workspace.helper(h).distribution}=={workspace.helper(h).version}"
        for h in helper_closure(workspace, image.helpers)
    }
    third_party = {p.requirement for p in lock.pins}
    moved = [
        f"{what}: pushed {', '.join(sorted(was - now)) or 'nothing'}, now "
        f"{', '.join(sorted(now - was)) or 'nothing'}"
        for what, was, now in (
            ("helpers", _labels_say(labels, "helpers"), helpers),
            ("third-party", _labels_say(labels, "third-party"), third_party),
        )
        if was != now
    ]
    base = _base_now(image, lock, os_lock)
    if base is not None and labels.get(base[0]) != base[1]:
        what = "its OS layers (images/os.lock)" if image.base is None else "its base"
        moved.append(f"{what}: pushed {labels.get(base[0]) or 'unknown'}, now {base[1]}")
    if not moved:
        return []
    return [
        Finding(
            BUMP,
            image.name,
            config,
            f"{repository}:{image.version} was pushed from other inputs ({'; '.join(moved)})",
            f"kiln bump {image.name} patch",
        )
    ]


def check(
    workspace: Workspace,
    wheels: Sequence[BuiltWheel],
    *,
    index: Index,
    registry: Registry,
    kfp_version: str,
    recorded: Mapping[str, str],
) -> Report:
    """Every finding, helpers first; ``recorded``: the last manifest's wheel sha256s."""
    findings = _helper_findings(workspace, wheels, index, recorded)
    os_lock, os_findings = _os_state(workspace)
    findings += os_findings
    bumped = {f.subject for f in findings if f.kind == BUMP}
    if workspace.packages is not None:  # packages mode's lock: fresh, or relock
        findings += _lock_findings(workspace, workspace.packages, kfp_version)
    for image in workspace.images:
        image_findings = _image_findings(workspace, image, registry, kfp_version, os_lock)
        # A helper bump already cascades to the images containing it: say it once.
        if not set(helper_closure(workspace, image.helpers)) & bumped:
            findings += image_findings
        else:
            findings += [f for f in image_findings if f.kind != BUMP]
    return Report(tuple(findings), {"helpers": len(wheels), "images": len(workspace.images)})


def component_findings(drifts: Sequence[Drift], *, label: str, fix: str) -> list[Finding]:
    """A REGENERATE finding per committed component YAML (or catalog file) that differs
    from what kiln generates now (``label``: the committed folder)."""
    return [
        Finding(
            REGENERATE,
            d.name.removesuffix(".yaml"),
            f"{label}/{d.name}",
            d.meaning,
            fix,
        )
        for d in drifts
    ]
