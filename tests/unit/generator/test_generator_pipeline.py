"""Batching, JSON Lines export, change-mode planning and pacing, config checks and the CLI, without a server."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from bson import json_util
from click.testing import CliRunner

from fresh.pipeline import PipelineConfig
from freshctl.cli import freshctl
from generator.changes import CHANGE_CYCLE, KINDS, Pacer, planned_counts
from generator.domain import Domain, GeneratorError, Plan
from generator.seed import JsonlSink, batched, check_config, seed

READ_OPTIONS = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)


def test_batched_streams_in_fixed_sizes() -> None:
    assert [len(b) for b in batched(({"i": i} for i in range(7)), 3)] == [3, 3, 1]
    with pytest.raises(GeneratorError, match="batch size"):
        list(batched([], 0))


def test_jsonl_export_holds_the_same_documents(tmp_path: Path, pipeline: PipelineConfig) -> None:
    domain = Domain(Plan(seed=11))
    report = seed(domain, [JsonlSink(tmp_path, pipeline)], batch_size=64)
    assert report.counts == Plan(seed=11).counts
    for entity, count in report.counts.items():
        lines = (tmp_path / f"{pipeline.entity(entity).collection}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == count
        assert [json_util.loads(line, json_options=READ_OPTIONS) for line in lines[:30]] == list(
            domain.stream(entity, 0, 30))


def test_jsonl_export_is_byte_identical_across_runs(tmp_path: Path, pipeline: PipelineConfig) -> None:
    seed(Domain(Plan(seed=5)), [JsonlSink(tmp_path / "a", pipeline)], batch_size=100)
    seed(Domain(Plan(seed=5)), [JsonlSink(tmp_path / "b", pipeline)], batch_size=333)
    for name in ("stores", "products", "customers", "purchases"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()


def test_planned_counts_follow_the_cycle() -> None:
    assert sum(planned_counts(37).values()) == 37
    assert planned_counts(len(CHANGE_CYCLE)) == {
        "insert_purchase": 3, "update_product_price": 2, "update_customer_loyalty": 2,
        "update_purchase_status": 2, "delete_purchase": 1}
    assert set(planned_counts(0)) == set(KINDS) and not any(planned_counts(0).values())


def test_pacer_keeps_a_steady_schedule() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait_turn(0)
    now[0] += 0.05  # the operation took 50 ms
    pacer.wait_turn(1)
    now[0] += 0.5  # a slow operation: no sleep, and no drift afterwards
    pacer.wait_turn(2)
    pacer.wait_turn(3)  # its slot (100.75) is now: no sleep
    pacer.wait_turn(4)
    assert slept == [0.2, 0.25]
    with pytest.raises(GeneratorError):
        Pacer(-1)


def test_config_with_other_business_key_is_refused(pipeline: PipelineConfig) -> None:
    check_config(pipeline)
    raw = pipeline.model_dump()
    raw["entities"]["stores"] = {"collection": "stores", "business_key": "code"}
    with pytest.raises(GeneratorError, match="business key 'code'"):
        check_config(PipelineConfig.model_validate(raw))


def test_cli_help_has_examples() -> None:
    result = CliRunner().invoke(freshctl, ["seed", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--changes" in result.output


def test_cli_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(freshctl, ["seed", "--scale", "3", "--dry-run", "--export", str(tmp_path / "x"),
                                           "-o", "json"])
    assert result.exit_code == 0, result.output
    assert '"documents": 3000' in result.output and not (tmp_path / "x").exists()
    result = CliRunner().invoke(freshctl, ["seed", "--changes", "20", "--dry-run"])
    assert result.exit_code == 0 and "insert_purchase" in result.output


def test_cli_no_mongo_needs_export() -> None:
    result = CliRunner().invoke(freshctl, ["seed", "--no-mongo"])
    assert result.exit_code == 2
