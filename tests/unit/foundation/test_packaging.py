"""Every asset next to the code (templates, values, migrations, fixtures, poms) is packaged, so a
non-editable install (the compose image) has them too."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch

from fresh.settings import REPO_ROOT

# Not package data: the Rust crate of the PII processor's fast path, built and installed as its own
# distribution (probablyfresh-smt-native) by scripts/setup.
SEPARATE_BUILDS = ("smt/native/",)


def test_every_package_asset_matches_package_data() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = config["package-data"]
    missing = []
    for package in config["packages"]:
        root = REPO_ROOT / package
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root).as_posix()
            if f"{package}/{relative}".startswith(SEPARATE_BUILDS):
                continue
            if not any(fnmatch(relative, p) for p in patterns.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert missing == [], f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
