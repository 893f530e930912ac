"""Prove from system tables that ClickHouse reads only `_secure` topics and holds no plaintext
email or phone number in RAW or MART string columns.

Findings never echo a matching value (it would be the plaintext PII itself); they name the
table and column and count the rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse.backend import Backend, quote
from fresh.pipeline import PipelineConfig

_TOPIC_LIST = re.compile(r"kafka_topic_list\s*=\s*'([^']*)'")

# An email anywhere in the value; a phone number as a whole value or a whole JSON string value:
# an optional +, then 10 to 15 digits possibly grouped by spaces, dashes or brackets.
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\\.[A-Za-z0-9.-]+"
PHONE_CANDIDATES_RE = r'(?:^|")(\\+?[0-9][0-9 ()-]{8,}[0-9])(?:"|$)'
_STRING_TYPES = ("String", "Nullable(String)", "LowCardinality(String)", "LowCardinality(Nullable(String))")


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


def _pii_expr(column: str) -> tuple[str, str]:
    col = f"toString({column})"
    email = f"countIf(match({col}, '{EMAIL_RE}'))"
    phone = (
        f"countIf(arrayExists(x -> length(replaceRegexpAll(x, '[^0-9]', '')) BETWEEN 10 AND 15, "
        f"extractAll({col}, '{PHONE_CANDIDATES_RE}')))"
    )
    return email, phone


def check_plaintext(backend: Backend, cfg: PipelineConfig) -> list[Finding]:
    databases = [cfg.clickhouse.raw_database, cfg.clickhouse.mart_database]
    dbs = ", ".join(quote(d) for d in databases)
    types = ", ".join(quote(t) for t in _STRING_TYPES)
    # Only stored tables: selecting from a Kafka engine table would consume from the topic.
    columns = backend.query(
        "SELECT c.database AS database, c.table AS tbl, c.name AS name FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        f"WHERE c.database IN ({dbs}) AND c.type IN ({types}) AND t.engine LIKE '%MergeTree' "
        "ORDER BY database, tbl, name"
    )
    by_table: dict[str, list[str]] = {}
    for c in columns:
        by_table.setdefault(f"{c['database']}.{c['tbl']}", []).append(c["name"])
    findings = []
    for table, cols in by_table.items():
        selects = []
        for i, col in enumerate(cols):
            email, phone = _pii_expr(f"`{col}`")
            selects += [f"{email} AS e{i}", f"{phone} AS p{i}"]
        counts = backend.query(f"SELECT {', '.join(selects)} FROM {table}")[0]
        for i, col in enumerate(cols):
            for kind, key in (("email", f"e{i}"), ("phone", f"p{i}")):
                n = int(counts[key])
                if n:
                    detail = f"column {col}: {n} row(s) look like a plaintext {kind}"
                    findings.append(Finding("plaintext_pii", table, detail))
    return findings


def audit(backend: Backend, cfg: PipelineConfig) -> tuple[list[dict[str, str]], list[Finding]]:
    """The Kafka tables with their topics, and every finding (empty when clean)."""
    tables = kafka_tables(backend, [cfg.clickhouse.raw_database, cfg.clickhouse.mart_database])
    return tables, check_topics(backend, cfg) + check_plaintext(backend, cfg)
