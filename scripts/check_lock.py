#!/usr/bin/env python3
"""Check, offline, that the lock files still satisfy what the project declares.

Every requirement of ``pyproject.toml`` (dependencies, the ``dev`` extra, the build backend)
must be pinned in ``requirements/lock.txt`` or ``requirements/build.txt`` at a version its
specifier admits, and every line of a ``requirements/*.in`` file must be satisfied by the
``.txt`` compiled from it. Nothing is resolved against a package index: this fails when
someone edits ``pyproject.toml`` (or an ``.in`` file) without running ``make lock``.

Exit status: 0 when consistent, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
# The environment the lock is compiled for (Makefile: --python-version 3.11, Linux x86_64).
LOCK_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def read_pins(path: Path) -> dict[str, Version]:
    """``{canonical name: version}`` for every ``name==version`` line of a compiled file."""
    pins: dict[str, Version] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def requirement_lines(lines: Iterable[str]) -> list[Requirement]:
    """The requirements of an ``.in`` file (comments, blank lines and options skipped)."""
    found = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def project_requirements(pyproject: Path) -> list[Requirement]:
    """Dependencies, the ``dev`` extra and the build backend of ``pyproject``."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    texts = [
        *project.get("dependencies", []),
        *project.get("optional-dependencies", {}).get("dev", []),
        *data.get("build-system", {}).get("requires", []),
    ]
    return [Requirement(text) for text in texts]


def problems_for(
    requirements: Iterable[Requirement], pins: dict[str, Version], where: str
) -> list[str]:
    """One message per requirement that ``pins`` leaves out or pins outside its specifier."""
    problems = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({**LOCK_ENV, "extra": "dev"}):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name}: required ({req}) but not pinned in {where}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: {where} pins {version}, outside {req.specifier}")
    return problems


def check(root: Path = ROOT) -> list[str]:
    """Every inconsistency between the declared requirements and the lock files under ``root``."""
    req_dir = root / "requirements"
    try:
        lock_pins = {**read_pins(req_dir / "build.txt"), **read_pins(req_dir / "lock.txt")}
        problems = problems_for(
            project_requirements(root / "pyproject.toml"),
            lock_pins,
            "requirements/lock.txt or build.txt",
        )
        for source in sorted(req_dir.glob("*.in")):
            compiled = source.with_suffix(".txt")
            if not compiled.exists():
                problems.append(f"{source.name}: no {compiled.name}; run `make lock`")
                continue
            lines = source.read_text(encoding="utf-8").splitlines()
            problems += problems_for(requirement_lines(lines), read_pins(compiled), compiled.name)
    except (OSError, InvalidRequirement, tomllib.TOMLDecodeError) as exc:
        return [f"cannot read the lock files: {exc}"]
    return problems


def main() -> int:
    problems = check()
    for problem in problems:
        print(f"lock out of date: {problem}", file=sys.stderr)
    if problems:
        print(
            "run `make lock` (needs the package index), review the diff, commit it", file=sys.stderr
        )
        return 1
    print("lock consistent with pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
