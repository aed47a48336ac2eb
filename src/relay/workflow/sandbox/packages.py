"""Which installed files make up the packages code nodes may import.

An allowed distribution brings its requirements along (pandas needs numpy, dateutil, pytz...).
Each distribution's top-level entries in site-packages (package directories, modules, bundled
``*.libs`` and its ``*.dist-info``) are bind-mounted one by one into the sandbox's own
site-packages, so nothing else installed next to them (relay, its services' clients) is visible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

_SETTING = "RELAY_WORKFLOW_CODE_ALLOWED_PACKAGES"


def canonical(name: str) -> str:
    """PEP 503 name: ``json_repair`` and ``JSON-Repair`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PackageView:
    """What the sandbox mounts, and what the child may import."""

    entries: tuple[Path, ...]  # top-level files and directories to mount, absolute
    modules: frozenset[str]  # importable top-level names
    allowed: tuple[str, ...]  # the distributions asked for and found
    missing: tuple[str, ...]  # asked for, not installed


def _requirements(dist: metadata.Distribution) -> list[str]:
    names = []
    for line in dist.requires or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # optional (extra) or for another platform
        names.append(requirement.name)
    return names


def _top_level(dist: metadata.Distribution) -> set[Path]:
    root = Path(str(dist.locate_file(""))).resolve()
    entries: set[Path] = set()
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue  # scripts in bin/, caches, path hooks
        entries.add(root / parts[0])
    return entries


def _module_name(entry: Path) -> str | None:
    name = entry.name
    if name.endswith((".dist-info", ".egg-info", ".libs", ".data")):
        return None
    if entry.suffix in (".py", ".so", ".pyd") or entry.is_file():
        return name.split(".", 1)[0]
    return name if "." not in name else None


@cache
def package_view(allowed: tuple[str, ...]) -> PackageView:
    """Resolve ``allowed`` and its requirements against relay's environment."""
    entries: set[Path] = set()
    seen: set[str] = set()
    found: list[str] = []
    missing: list[str] = []
    pending = [(name, True) for name in allowed]
    while pending:
        name, asked = pending.pop(0)
        key = canonical(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if asked:
                missing.append(name)
            continue
        if asked:
            found.append(name)
        entries |= _top_level(dist)
        pending.extend((req, False) for req in _requirements(dist))
    present = sorted(e for e in entries if e.exists())
    modules = frozenset(m for m in map(_module_name, present) if m)
    return PackageView(tuple(present), modules, tuple(found), tuple(missing))


def not_allowed_hint(allowed: tuple[str, ...]) -> str:
    """What an import error says about how to allow a package."""
    listed = ", ".join(allowed) or "none"
    return (
        f"code nodes may import the standard library and the allowed packages ({listed}); "
        f"to allow another, install it in relay's environment and add it to {_SETTING}"
    )
