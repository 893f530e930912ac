"""Prove from system tables that ClickHouse reads only `_secure` topics and holds no plaintext
email or phone number in RAW or MART string columns.

Findings never echo a matching value (it would be the plaintext PII itself); they name the
table and column and count the rows.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import orjson

from clickhouse.backend import Backend, quote
from fresh.pipeline import PipelineConfig

_TOPIC_LIST = re.compile(r"kafka_topic_list\s*=\s*'([^']*)'")

# Values the processor's guard would look at (smt.guard.is_candidate, widened: JSON escapes and any
# non-ASCII digit or lookalike of @ and +), selected in SQL; the guard's own detectors then decide in
# Python, so the audit and the processor agree on what a plaintext email or phone number is.
_LOOKALIKE = r"[@\\x{FE6B}\\x{FF20}\\x{FF0B}\\x{FE62}\\x{207A}\\x{208A}\\x{FB29}\\x{3200}-\\x{33FF}]"
_NON_ASCII_NUMBER = r"[^\\x00-\\x7F\\PN]"
# What the processor writes, by shape: envelopes and blind indexes are not read as text
# (at least the shortest payload: v2 g 44 bytes, v1 g 28, s 16, as base64url)
_WRITTEN = (r"^(pf2\\.[a-z0-9]{1,32}\\.g\\.[A-Za-z0-9_-]{59,}|pf1\\.[a-z0-9]{1,32}\\.g\\.[A-Za-z0-9_-]{38,}"
            r"|pf[12]\\.[a-z0-9]{1,32}\\.s\\.[A-Za-z0-9_-]{22,}|([a-z0-9]{1,32}\\.)?[0-9a-f]{64})$")
# Columns the audit reads: strings, arrays of them (nested too) and maps; the expression gives an
# array of the column's strings.
_STRING = r"(LowCardinality\()?(Nullable\()?(String|FixedString\(\d+\))\)?\)?"
_SHAPES = [
    (re.compile(f"^{_STRING}$"), "[ifNull(toString({c}), '')]"),
    (re.compile(rf"^Array\({_STRING}\)$"), "arrayMap(x -> ifNull(toString(x), ''), {c})"),
    (re.compile(rf"^Array\(Array\({_STRING}\)\)$"), "arrayMap(x -> ifNull(toString(x), ''), arrayFlatten({c}))"),
    (re.compile(r"^Map\("), "arrayConcat(arrayMap(x -> toString(x), mapKeys({c})), "
                             "arrayMap(x -> ifNull(toString(x), ''), mapValues({c})))"),
]


@dataclass(frozen=True)
class Finding:
    check: str
    table: str
    detail: str

    def as_row(self) -> dict[str, str]:
        return {"check": self.check, "table": self.table, "detail": self.detail}


def kafka_tables(backend: Backend, databases: list[str]) -> list[dict[str, str]]:
    dbs = ", ".join(quote(d) for d in databases)
    rows = backend.query(
        f"SELECT database, name, engine_full FROM system.tables WHERE engine = 'Kafka' AND database IN ({dbs}) "
        "ORDER BY database, name"
    )
    out = []
    for r in rows:
        m = _TOPIC_LIST.search(r["engine_full"])
        out.append({"table": f"{r['database']}.{r['name']}", "topics": m.group(1) if m else ""})
    return out


def check_topics(backend: Backend, cfg: PipelineConfig) -> list[Finding]:
    databases = [cfg.clickhouse.raw_database, cfg.clickhouse.mart_database]
    tables = kafka_tables(backend, databases)
    suffix = cfg.kafka.secure_suffix
    findings = []
    if not tables:
        findings.append(Finding("secure_topics", ",".join(databases),
                                "no Kafka engine table found (run `freshctl clickhouse migrate`)"))
    for t in tables:
        topics = [x.strip() for x in t["topics"].split(",") if x.strip()]
        if not topics:
            findings.append(Finding("secure_topics", t["table"], "topic list not found in engine settings"))
        for topic in topics:
            if not topic.endswith(suffix):
                findings.append(Finding("secure_topics", t["table"], f"reads non-secure topic {topic!r}"))
    return findings


def _candidates(expr: str, table: str, thresholds: tuple[int, int]) -> str:
    digits = "length(replaceRegexpAll(v, '[^0-9]', ''))"
    return (
        f"SELECT v FROM (SELECT arrayJoin({expr}) AS v FROM {table}) WHERE NOT match(v, '{_WRITTEN}') AND ("
        f"match(v, '{_LOOKALIKE}') OR position(v, '\\\\u') > 0 OR match(v, '{_NON_ASCII_NUMBER}') "
        f"OR {digits} >= {thresholds[0]} OR (position(v, '+') > 0 AND {digits} >= {thresholds[1]}))"
    )


def _detect(value: str, region: str) -> set[str]:
    """The processor's detectors on one stored string ("email", "phone"): read decoded too where it
    is JSON text or holds JSON escapes. A strictly valid envelope or blind index is what the
    processor wrote."""
    from smt.envelope import EnvelopeError, parse
    from smt.guard import detect, findings, is_blind_index, phone_thresholds

    with contextlib.suppress(EnvelopeError):
        parse(value)
        return set()
    if is_blind_index(value):
        return set()
    texts: list[object] = [value]
    if value[:1] in ("{", "[", '"'):
        with contextlib.suppress(ValueError):
            texts.append(orjson.loads(value))
    if "\\u" in value:
        with contextlib.suppress(ValueError):
            texts.append(orjson.loads('"' + value.replace('"', '\\"') + '"'))
    kinds: set[str] = set()
    for text in texts:
        if isinstance(text, str):
            what = detect(text, region, phone_thresholds(region))
            if what:
                kinds.add(what)
        elif isinstance(text, dict | list):
            try:
                kinds.update(f.what for f in findings(text, region))
            except ValueError:  # nests too deep to read: report it rather than pass it
                kinds.add("email or phone (too deeply nested to read)")
    return kinds


def check_plaintext(backend: Backend, cfg: PipelineConfig, sample_rows: int | None = None) -> list[Finding]:
    """Every string of every stored table (string columns, arrays of strings, maps) through the
    processor's guard detectors. A finding names table, column, kind and count, never a value.
    `sample_rows`: read at most that many rows of each table, drawn at random (`freshctl up`'s
    summary: the detectors take about 10 ms per JSON payload, so a whole large warehouse would take
    minutes); None reads every row (`freshctl clickhouse audit`)."""
    from smt.guard import phone_thresholds

    region = cfg.pii_processor.default_region
    thresholds = phone_thresholds(region)
    databases = [cfg.clickhouse.raw_database, cfg.clickhouse.mart_database]
    dbs = ", ".join(quote(d) for d in databases)
    # Only stored tables: selecting from a Kafka engine table would consume from the topic.
    columns = backend.query(
        "SELECT c.database AS database, c.table AS tbl, c.name AS name, c.type AS type FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        f"WHERE c.database IN ({dbs}) AND t.engine LIKE '%MergeTree' ORDER BY database, tbl, name"
    )
    findings = []
    for c in columns:
        expr = next((shape.format(c=f"`{c['name']}`") for pattern, shape in _SHAPES if pattern.match(c["type"])), None)
        if expr is None:
            continue
        table = f"{c['database']}.{c['tbl']}"
        source = table if sample_rows is None else f"(SELECT * FROM {table} ORDER BY rand() LIMIT {int(sample_rows)})"
        rows = backend.query(_candidates(expr, source, thresholds))
        counts: dict[str, int] = {}
        for row in rows:
            for what in _detect(str(row["v"]), region):
                counts[what] = counts.get(what, 0) + 1
        for kind, n in sorted(counts.items()):
            detail = f"column {c['name']}: {n} value(s) look like a plaintext {kind}"
            findings.append(Finding("plaintext_pii", table, detail))
    return findings


def audit(backend: Backend, cfg: PipelineConfig,
          sample_rows: int | None = None) -> tuple[list[dict[str, str]], list[Finding]]:
    """The Kafka tables with their topics, and every finding (empty when clean); `sample_rows`: see
    `check_plaintext`."""
    tables = kafka_tables(backend, [cfg.clickhouse.raw_database, cfg.clickhouse.mart_database])
    return tables, check_topics(backend, cfg) + check_plaintext(backend, cfg, sample_rows)
