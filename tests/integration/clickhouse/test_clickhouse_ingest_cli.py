"""`freshctl clickhouse ingest` holds the embedded engine open and prints the layer counts."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from clickhouse.backend import ChdbBackend
from clickhouse.quality import layer_counts
from fresh.pipeline import PipelineConfig
from freshctl.cli import freshctl


def test_ingest_prints_counts_until_its_deadline(migrated_config: PipelineConfig, chdb_backend: ChdbBackend,
                                                 chdb_path: str, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(migrated_config.to_yaml(), encoding="utf-8")
    env = {"FRESH_PIPELINE_CONFIG": str(config), "FRESH_CHDB_PATH": chdb_path, "FRESH_CLICKHOUSE_BACKEND": "chdb"}
    result = CliRunner().invoke(freshctl, ["clickhouse", "ingest", "--seconds", "1", "--every", "0.4"], env=env)
    assert result.exit_code == 0, result.output
    # How many lines fit in 1 s is timing; that it prints at its deadline and what it prints is not.
    lines = [line for line in result.output.splitlines() if "(raw rows / mart current)" in line]
    assert lines, result.output
    want = " ".join(f"{r['entity']}={r['raw_rows']}/{r['mart_current']}"
                    for r in layer_counts(chdb_backend, migrated_config))
    assert lines[-1] == f"{want}  (raw rows / mart current)"
    assert all(re.fullmatch(r"(\w+=\d+/\d+ ?)+ \(raw rows / mart current\)", line) for line in lines)
