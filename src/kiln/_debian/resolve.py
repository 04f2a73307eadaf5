"""The closure of an OS definition's roots: ``Depends`` and ``Pre-Depends``, as apt reads them.

Rules, each deterministic:
- a package's version is the newest any suite offers (the suite, its updates, its
  security archive), unless ``prefer`` names one still offered that fits (a lock
  made again keeps its versions; ``--upgrade-os`` passes none);
- ``a | b``: satisfied by an alternative already chosen, else by the first one
  that can be (apt's order);
- a virtual package (``Provides``) is satisfied by a chosen provider, else by its
  only provider; several providers and none chosen is an error naming them;
- a relation that names an excluded package (one only maintainer scripts need) is
  left out, and listed as such;
- relations that apply to another architecture (``[arm64]``) are ignored, and
  ``:any`` / ``:native`` qualifiers read as the package itself.
Conflicts and Breaks are not read: files that two packages ship differently are
found when the layer is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from debian.debian_support import Version

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


def _compare(a: str, b: str) -> int:
    va, vb = Version(a), Version(b)
    return (va > vb) - (va < vb)


def _fits(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    op, wanted = constraint
    return bool(_OPS[op](_compare(version, wanted)))


def _relations(text: str) -> list[list[dict[str, Any]]]:
    """``Depends``-style text as groups of alternatives (python-debian's parser)."""
    from debian.deb822 import PkgRelation  # noqa: PLC0415 - imported with the module anyway

    if not text.strip():
        return []
    return [[dict(r) for r in group] for group in PkgRelation.parse_relations(text)]


def _text(group: Sequence[Mapping[str, Any]]) -> str:
    from debian.deb822 import PkgRelation  # noqa: PLC0415

    return str(PkgRelation.str([[dict(r) for r in group]]))  # type: ignore[misc]


class _Universe:
    """Every candidate by name, and every provider by the virtual name it provides."""

    def __init__(self, candidates: Mapping[str, Sequence[Candidate]], arch: str) -> None:
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

    def _satisfy(
        self, relation: Mapping[str, Any], chosen: Mapping[str, Candidate], owner: str
    ) -> Candidate | None:
        """A candidate satisfying one alternative (None: this alternative cannot be)."""
        name = str(relation["name"])
        constraint = relation.get("version")
        if name in chosen:
            return chosen[name] if _fits(chosen[name].version, constraint) else None
        picked = self._pick(name, constraint)
        if picked is not None:
            return picked
        providers = [
            c
            for c, provided in self._universe.providers.get(name, [])
            if constraint is None or (provided is not None and _fits(provided, constraint))
        ]
        names = sorted({c.name for c in providers})
        for provider in names:
            if provider in chosen:
                return chosen[provider]
        if len(names) == 1:
            return self._pick(names[0], None)
        if len(names) > 1:
            raise ConfigError(
                f"{owner} needs {name}, which several packages provide ({', '.join(names)}) "
                f"and none is chosen; add the one you want to {self._where} packages"
            )
        return None

    def _unsatisfied(self, owner: str, field: str, group: Sequence[Mapping[str, Any]]) -> str:
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

    def resolve(self, roots: Sequence[str]) -> Closure:
        chosen: dict[str, Candidate] = {}
        omitted: list[Omitted] = []
        todo: list[tuple[Candidate, str]] = []
        for root in roots:
            if root in chosen:
                continue
            candidate = self._satisfy({"name": root}, chosen, self._where)
            if candidate is None:
                raise ConfigError(
                    f"{self._where}: no suite has a package {root!r} for "
                    f"{self._universe.arch}; check the name (`apt-cache show {root}` on a "
                    "Debian machine) and the suite"
                )
            chosen[candidate.name] = candidate
            todo.append((candidate, root))
        while todo:
            package, _why = todo.pop(0)
            for field, text in (("Pre-Depends", package.pre_depends), ("Depends", package.depends)):
                for parsed in _relations(text):
                    group = [r for r in parsed if self._universe.applies(r)]
                    if not group:
                        continue
                    if any(str(r["name"]) in self._exclude for r in group):
                        omitted.append(Omitted(package.name, field, _text(group)))
                        continue
                    owner = f"{package.name} {package.version}"
                    options = [self._satisfy(r, chosen, owner) for r in group]
                    found = next((c for c in options if c is not None and c.name in chosen), None)
                    found = found or next((c for c in options if c is not None), None)
                    if found is None:
                        raise ConfigError(self._unsatisfied(owner, field, group))
                    if found.name in chosen:
                        continue
                    chosen[found.name] = found
                    todo.append((found, package.name))
        return Closure(
            packages=tuple(chosen[n] for n in sorted(chosen)),
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
    own layer holds those, the base's versions satisfy what they share."""
    shared = {c.name: c.version for c in base.packages}
    resolver = Resolver(
        candidates,
        architecture=architecture,
        exclude=exclude,
        prefer={**(prefer or {}), **shared},
        where=where,
    )
    whole = resolver.resolve([*(c.name for c in base.packages), *roots])
    moved = [c for c in whole.packages if c.name in shared and c.version != shared[c.name]]
    if moved:
        c = moved[0]
        raise ConfigError(
            f"{where}: os-packages need {c.name} other than the shared OS layer's "
            f"{shared[c.name]} ({c.version}); add what needs it to [tool.kiln.os] packages "
            "instead, so every image shares one version"
        )
    base_omitted = set(base.omitted)
    return Closure(
        packages=tuple(c for c in whole.packages if c.name not in shared),
        omitted=tuple(o for o in whole.omitted if o not in base_omitted),
    )
