"""compose/clickhouse-cluster.yml (two ClickHouse nodes and Keeper, docs/scaling.md) through the real
Compose loader (compose/validate), merged over docker-compose.yml as `docker compose -f ... -f ...`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fresh.settings import REPO_ROOT
from stack.versions import load_versions

VALIDATOR = REPO_ROOT / "compose" / "validate"
FILES = [REPO_ROOT / "docker-compose.yml", REPO_ROOT / "compose" / "clickhouse-cluster.yml"]
NODES = {"clickhouse-1", "clickhouse-2"}

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs Go (the compose-go loader)")


def load(*profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("-profile", p)]
    result = subprocess.run(["go", "-C", str(VALIDATOR), "run", ".", "-env-file", str(REPO_ROOT / "versions.env"),
                             *args, *map(str, FILES)], capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_default_stack_is_unchanged_without_the_profile() -> None:
    services = load()["services"]
    assert not (NODES | {"keeper"}) & set(services)


def test_the_profile_adds_two_pinned_nodes_with_keeper() -> None:
    services = load("clickhouse-cluster")["services"]
    assert NODES | {"keeper", "clickhouse"} <= set(services)
    image = f"clickhouse/clickhouse-server:{load_versions()['CLICKHOUSE_SERVER_VERSION']}"
    macros = set()
    for name in [*NODES, "keeper"]:
        service = services[name]
        assert service["image"] == image and service["healthcheck"]["test"]
        for volume in service["volumes"]:
            if volume["type"] == "bind":
                assert Path(volume["source"]).is_file(), volume["source"]
                if volume["target"].endswith("macros.xml"):
                    macros.add(Path(volume["source"]).read_text(encoding="utf-8"))
    for name in NODES:
        assert services[name]["depends_on"]["keeper"]["condition"] == "service_healthy"
        assert all(p["host_ip"] == "127.0.0.1" for p in services[name]["ports"])
    assert len(macros) == 2  # each node its own {shard}/{replica}
