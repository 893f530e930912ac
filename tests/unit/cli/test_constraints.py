"""constraints.txt (what scripts/setup, CI and the compose image install) pins every dependency
of pyproject.toml, dev tools included, to a version inside pyproject's bounds."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fresh.settings import REPO_ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_within_its_bounds() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt; run scripts/refresh_constraints"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}; "
            "run scripts/refresh_constraints"
        )


def test_release_sensitive_dependencies_have_an_upper_bound() -> None:
    """A new major of these breaks a promise (faker: byte-identical data per seed) or turns CI red."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bounded = {canonicalize_name(Requirement(t).name): Requirement(t).specifier
               for t in [*project["dependencies"], *project["optional-dependencies"]["dev"]]}
    for name in ("faker", "ruff", "mypy", "pytest", "rich", "click"):
        assert any(s.operator in ("<", "<=", "==", "~=") for s in bounded[name]), f"{name} has no upper bound"
