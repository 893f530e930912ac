"""docker-compose.yml through a real Compose loader: compose-go, the library Docker Compose itself
loads files with (schema, interpolation, anchors, consistency), run without a Docker engine by the
small Go program in compose/validate (`go run`, modules from the Go module proxy; go.sum committed).
The first run compiles it (about a minute on 2 cores); later runs use Go's build cache."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fresh.settings import REPO_ROOT
from stack.versions import load_versions

VALIDATOR = REPO_ROOT / "compose" / "validate"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs Go (the compose-go loader); "
                                "install it from your distribution or go.dev")


def load(*env_files: Path, compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    args = [a for f in env_files for a in ("-env-file", str(f))]
    return subprocess.run(["go", "-C", str(VALIDATOR), "run", ".", *args, str(compose_file)],
                          capture_output=True, text=True, check=False, timeout=900)


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    result = load(REPO_ROOT / "versions.env")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_file_loads_with_versions_env(project: dict[str, Any]) -> None:
    versions = load_versions()
    services = project["services"]
    assert set(services) == {"mongo", "kafka", "kafka-init", "connect", "clickhouse", "init", "processor", "grafana"}
    assert services["kafka"]["image"] == f"apache/kafka:{versions['KAFKA_VERSION']}"
    assert services["mongo"]["image"] == f"mongo:{versions['MONGO_IMAGE_VERSION']}"
    assert services["init"]["build"]["args"]["PYTHON_IMAGE_VERSION"] == versions["PYTHON_IMAGE_VERSION"]
    assert services["processor"]["image"] == services["init"]["image"]  # one image for the project's services
    assert "build" not in services["processor"]
    # `$${dir:...}` reaches the worker as the provider reference `${dir:...}`; secrets are files
    assert services["connect"]["environment"]["CONNECT_SASL_JAAS_CONFIG"] == "${dir:/run/secrets:kafka-pf-connect.jaas}"
    assert project["secrets"]["ca.crt"]["file"].endswith("/compose/secrets/ca.crt")
    targets = {s.get("target") for s in services["init"]["secrets"]}
    assert "FRESH_CLICKHOUSE_PASSWORD" in targets and "FRESH_MONGO_URI" in targets


def test_without_versions_env_it_fails_naming_the_variable_and_the_fix() -> None:
    result = load()
    assert result.returncode == 1
    assert re.search(r"required variable [A-Z_]+_VERSION is missing a value: run docker compose --env-file "
                     r"versions.env", result.stderr), result.stderr


def test_every_variable_in_the_file_is_required() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # comments are not interpolated
    plain = re.findall(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*\}|(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*:?-[^}]*\}", code)
    assert plain == [], f"use ${{VAR:?message}}, so that compose stops when it is unset: {plain}"


def test_a_broken_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text(encoding="utf-8").replace(
        "kafka: {condition: service_healthy}", "kafak: {condition: service_healthy}", 1), encoding="utf-8")
    result = load(REPO_ROOT / "versions.env", compose_file=broken)
    assert result.returncode == 1 and "kafak" in result.stderr, result.stderr
