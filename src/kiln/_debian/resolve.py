"""The closure of an OS definition's roots: ``Depends`` and ``Pre-Depends``, as apt reads them.

Rules, each deterministic:
- a package's version is the newest any suite offers (the suite, its updates, its
  security archive), unless ``prefer`` names one still offered that fits (a lock
  made again keeps its versions; ``--upgrade-os`` passes none);
- ``a | b``: satisfied by an alternative already chosen, else by the first one
  that can be (apt's order);
- a virtual package (``Provides``) is satisfied by a chosen provider, else by its
  only provider, at a version that provides it; several providers and none chosen
  is an error naming them;
- an excluded package (one only maintainer scripts need) is never chosen: a
  relation naming it is met by another alternative already chosen or a real package
  that can be (``libfoo | debconf``: libfoo), else it is left out and listed as such
  (``debconf | debconf-2.0``);
- the roots are taken in name order, so the order they are written in changes nothing;
- relations that apply to another architecture (``[arm64]``) are ignored, and
  ``:any`` / ``:native`` qualifiers read as the package itself.
Conflicts and Breaks are not read: files that two packages ship differently are
found when the layer is written.

python-debian (0.04 s to import) is imported by the functions that read relations and
versions: a release reads a committed OS lock, whose types are here, and resolves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln._debian.archive import Candidate
from kiln._errors import ConfigError

_OPS = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">>": lambda c: c > 0,
    "<<": lambda c: c < 0,
}


@dataclass(frozen=True)
class Omitted:
    """A relation left out on purpose: ``package``'s ``field`` names an excluded package."""

    package: str
    field: str  # "Depends" or "Pre-Depends"
    relation: str  # as the index writes it, e.g. "debconf (>= 0.5) | debconf-2.0"


@dataclass(frozen=True)
class Closure:
    packages: tuple[Candidate, ...]  # sorted by name
    omitted: tuple[Omitted, ...]  # sorted


def _fits(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    from debian.debian_support import version_compare  # noqa: PLC0415 - see the module

    op, wanted = constraint
    return bool(_OPS[op](version_compare(version, wanted)))


def _relations(text: str) -> list[list[dict[str, Any]]]:
    """``Depends``-style text as groups of alternatives (python-debian's parser)."""
    from debian.deb822 import PkgRelation  # noqa: PLC0415 - see the module

    if not text.strip():
        return []
    return [[dict(r) for r in group] for group in PkgRelation.parse_relations(text)]


def _text(group: Sequence[Mapping[str, Any]]) -> str:
    from debian.deb822 import PkgRelation  # noqa: PLC0415 - see the module

    return str(PkgRelation.str([[dict(r) for r in group]]))  # type: ignore[misc]


class _Universe:
    """Every candidate by name, and every provider by the virtual name it provides."""

    def __init__(self, candidates: Mapping[str, Sequence[Candidate]], arch: str) -> None:
        from debian.debian_support import Version  # noqa: PLC0415 - see the module

        self.arch = arch
        self.real: dict[str, list[Candidate]] = {}
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = {}
        for name, found in candidates.items():
            usable = [c for c in found if c.architecture in (arch, "all")]
            if usable:
                # Newest first; the same version from two archives: the first archive's.
                ordered = sorted(usable, key=lambda c: Version(c.version), reverse=True)
                self.real[name] = ordered
                for candidate in ordered:
                    for group in _relations(candidate.provides):
                        for provided in group:
                            version = provided.get("version")
                            self.providers.setdefault(provided["name"], []).append(
                                (candidate, version[1] if version else None)
                            )

    def applies(self, relation: Mapping[str, Any]) -> bool:
        arches = relation.get("arch")
        if not arches:
            return True
        listed = {a.arch for a in arches}
        negated = any(not a.enabled for a in arches)
        return self.arch not in listed if negated else self.arch in listed


class Resolver:
    def __init__(
        self,
        candidates: Mapping[str, Sequence[Candidate]],
        *,
        architecture: str,
        exclude: Sequence[str] = (),
        prefer: Mapping[str, str] | None = None,
        where: str = "[tool.kiln.os]",
    ) -> None:
        self._universe = _Universe(candidates, architecture)
        self._exclude = set(exclude)
        self._prefer = dict(prefer or {})
        self._where = where

    def _pick(self, name: str, constraint: tuple[str, str] | None) -> Candidate | None:
        """The version of real package ``name`` to take: the preferred one if it fits,
        else the newest that fits; None when none does."""
        found = self._universe.real.get(name, [])
        preferred = self._prefer.get(name)
        for candidate in found:
            if candidate.version == preferred and _fits(candidate.version, constraint):
                return candidate
        return next((c for c in found if _fits(c.version, constraint)), None)

    def _met(
        self, relation: Mapping[str, Any], chosen: Mapping[str, Candidate]
    ) -> Candidate | None:
        """The chosen package that meets ``relation`` already: itself, or a provider."""
        name = str(relation["name"])
        constraint = relation.get("version")
        if name in chosen:
            return chosen[name] if _fits(chosen[name].version, constraint) else None
        for provider, provided in self._universe.providers.get(name, []):
            if chosen.get(provider.name) == provider and (
                constraint is None or (provided is not None and _fits(provided, constraint))
            ):
                return provider
        return None

    def _candidate(
        self, relation: Mapping[str, Any], chosen: Mapping[str, Candidate], owner: str
    ) -> Candidate | None:
        """A package not chosen yet that meets ``relation`` (None: there is none): the real
        package ``_pick`` takes, else the only package providing it, at a version that
        provides it (the preferred one, else the newest). Several providers and none
        chosen is an error naming them."""
        name = str(relation["name"])
        constraint = relation.get("version")
        if name in chosen:
            return None  # chosen at a version that does not fit: one version per package
        picked = self._pick(name, constraint)
        if picked is not None:
            return picked
        providing = [
            c
            for c, provided in self._universe.providers.get(name, [])
            if c.name not in chosen
            and c.name not in self._exclude
            and (constraint is None or (provided is not None and _fits(provided, constraint)))
        ]
        names = sorted({c.name for c in providing})
        if len(names) > 1:
            raise ConfigError(
                f"{owner} needs {name}, which several packages provide ({', '.join(names)}) "
                f"and none is chosen; add the one you want to {self._where} packages"
            )
        preferred = [c for c in providing if c.version == self._prefer.get(c.name)]
        found = preferred or providing
        return found[0] if found else None

    def _unsatisfied(
        self,
        owner: str,
        field: str,
        group: Sequence[Mapping[str, Any]],
        fixed: Sequence[Candidate],
    ) -> str:
        below = {c.name: c.version for c in fixed}
        shared = [str(r["name"]) for r in group if str(r["name"]) in below]
        if shared:
            name = shared[0]
            return (
                f"{self._where} need {owner} ({field} {_text(group)}), which the shared OS "
                f"layer's {name} {below[name]} does not meet; add what needs it to "
                "[tool.kiln.os] packages instead, so every image shares one version"
            )
        offered = []
        for relation in group:
            found = self._universe.real.get(str(relation["name"]), [])
            offered.append(
                f"{relation['name']}: "
                + (", ".join(c.version for c in found) if found else "not in any suite")
            )
        return (
            f"{owner} {field} {_text(group)}, which nothing in the suites satisfies "
            f"({'; '.join(offered)}); exclude it in {self._where} (if only a maintainer script "
            "needs it) or drop the package that needs it"
        )

    def resolve(self, roots: Sequence[str], *, fixed: Sequence[Candidate] = ()) -> Closure:
        """The closure of ``roots``. ``fixed``: packages already installed below (the shared
        OS layer, for an image's os-packages): they meet what they can, at their
        versions, and are not in the result."""
        chosen: dict[str, Candidate] = {c.name: c for c in fixed}
        omitted: list[Omitted] = []
        todo: list[Candidate] = []
        for root in sorted(roots):  # the order they are written in changes nothing
            if root in chosen:
                continue
            candidate = self._candidate({"name": root}, chosen, self._where)
            if candidate is None:
                raise ConfigError(
                    f"{self._where}: no suite has a package {root!r} for "
                    f"{self._universe.arch}; check the name (`apt-cache show {root}` on a "
                    "Debian machine) and the suite"
                )
            chosen[candidate.name] = candidate
            todo.append(candidate)
        while todo:
            package = todo.pop(0)
            for field, text in (("Pre-Depends", package.pre_depends), ("Depends", package.depends)):
                for parsed in _relations(text):
                    group = [r for r in parsed if self._universe.applies(r)]
                    if not group:
                        continue
                    if any(self._met(r, chosen) is not None for r in group):
                        continue
                    owner = f"{package.name} {package.version}"
                    excluded = any(str(r["name"]) in self._exclude for r in group)
                    wanted = [
                        r
                        for r in group
                        if str(r["name"]) not in self._exclude
                        # beside an excluded package, only a real one: a virtual one would
                        # bring in another provider of what was excluded (debconf-2.0)
                        and (not excluded or str(r["name"]) in self._universe.real)
                    ]
                    found = None
                    for relation in wanted:  # apt's order: the first that can be met
                        found = self._candidate(relation, chosen, owner)
                        if found is not None:
                            break
                    if found is None and excluded:  # only maintainer scripts need it
                        omitted.append(Omitted(package.name, field, _text(group)))
                        continue
                    if found is None:
                        raise ConfigError(self._unsatisfied(owner, field, group, fixed))
                    chosen[found.name] = found
                    todo.append(found)
        extra = {c.name for c in fixed}
        return Closure(
            packages=tuple(chosen[n] for n in sorted(chosen) if n not in extra),
            omitted=tuple(sorted(set(omitted), key=lambda o: (o.package, o.field, o.relation))),
        )


def extra_closure(
    candidates: Mapping[str, Sequence[Candidate]],
    base: Closure,
    roots: Sequence[str],
    *,
    architecture: str,
    exclude: Sequence[str],
    prefer: Mapping[str, str] | None = None,
    where: str,
) -> Closure:
    """The packages an image's ``os-packages`` add to the shared OS closure ``base``: its
    own layer holds those; the base's packages meet what they can, at their versions."""
    resolver = Resolver(
        candidates, architecture=architecture, exclude=exclude, prefer=prefer, where=where
    )
    return resolver.resolve(roots, fixed=base.packages)
