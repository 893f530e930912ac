"""The migrations for a ClickHouse cluster (pipeline.yaml `clickhouse.cluster`, docs/scaling.md).

The migration files describe one node. With a cluster, each rendered statement is rewritten
here, so the files, and the checksums single-node ledgers hold for them, stay as they are:

- every DDL statement runs `ON CLUSTER`;
- a `*MergeTree` table `db.t` becomes `db.t_local`, `Replicated*MergeTree` with its Keeper path
  `/clickhouse/tables/{shard}/db/t_local` and replica `{replica}` (the nodes' macros), and
  `db.t` becomes a `Distributed` table over the shards for reads: dashboards, marts, `verify`
  and `status` read the same names as on one node and see every shard;
- the Kafka tables are shard-local, one per node, each with the one consumer group of its
  entity: the nodes share the partitions (scale.clickhouse_consumers x clickhouse_nodes <=
  partitions); a node's materialized views write to its local tables, never through the
  Distributed ones (a row is written once, where it was consumed);
- `TRUNCATE` and `INSERT ... SELECT` (a recompute: 008, 010) empty, read and write the local
  tables of the node migrated through; on a new cluster the tables are empty then. On a cluster
  that already holds rows, a recompute must be run on every shard (docs/scaling.md).

A statement of a kind this module does not know is refused: a new migration must be taught here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from fresh.errors import ConfigError

if TYPE_CHECKING:
    from clickhouse.render import Migration

LOCAL_SUFFIX = "_local"
KEEPER_PATH = "/clickhouse/tables/{{shard}}/{db}/{table}"

_NAME = r"[A-Za-z_][\w]*\.[A-Za-z_][\w]*"
_CREATE_TABLE = re.compile(rf"^CREATE TABLE IF NOT EXISTS ({_NAME})\s", re.S)
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)(?:\(([^)]*)\))?")
_KAFKA_ENGINE = re.compile(r"\)\s*ENGINE = Kafka\b")
_CREATE_MV = re.compile(rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS ({_NAME}) (TO {_NAME} AS\b)", re.S)
_CREATE_VIEW = re.compile(rf"^(CREATE VIEW IF NOT EXISTS|CREATE OR REPLACE VIEW) ({_NAME}) (AS\b)", re.S)
_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$")
_ALTER = re.compile(rf"^ALTER TABLE ({_NAME}) (.*)$", re.S)
_DETACH_ATTACH = re.compile(rf"^(DETACH|ATTACH) TABLE ({_NAME})$")
_DROP_TABLE = re.compile(rf"^DROP TABLE IF EXISTS ({_NAME})$")
_TRUNCATE = re.compile(rf"^TRUNCATE TABLE ({_NAME})$")
_INSERT = re.compile(rf"^INSERT INTO ({_NAME})\b", re.S)
_CREATE_ACCESS = re.compile(r"^(CREATE (?:ROLE|USER) IF NOT EXISTS \w+)(.*)$", re.S)
_GRANT = re.compile(r"^GRANT (.*)$", re.S)
_GRANT_ON = re.compile(rf" ON ({_NAME}) TO ")


def _split_comments(statement: str) -> tuple[str, str]:
    """(leading `--` comment lines, the statement itself)."""
    lines = statement.split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("--")):
        i += 1
    return "\n".join(lines[:i]), "\n".join(lines[i:])


def storage_tables(migrations: list[Migration]) -> set[str]:
    """`db.table` of every *MergeTree table the migrations create (they become `_local` + Distributed)."""
    found = set()
    for m in migrations:
        for statement in m.statements:
            body = _split_comments(statement)[1]
            created = _CREATE_TABLE.match(body)
            if created and _ENGINE.search(body) and not _KAFKA_ENGINE.search(body):
                found.add(created.group(1))
    return found


class _Rewriter:
    def __init__(self, cluster: str, storage: set[str]):
        self.on = f"ON CLUSTER {cluster}"
        self.cluster = cluster
        self.storage = storage
        alternatives = "|".join(re.escape(t) for t in sorted(storage, key=len, reverse=True)) or r"(?!x)x"
        self._refs = re.compile(rf"(?<![\w.`])({alternatives})(?!\w)")

    def local(self, sql: str) -> str:
        """Every reference to a storage table made a reference to its local table."""
        return self._refs.sub(lambda m: m.group(1) + LOCAL_SUFFIX, sql)

    def statement(self, statement: str) -> list[str]:
        comments, body = _split_comments(statement)
        out = self._body(body)
        if comments:
            out[0] = f"{comments}\n{out[0]}"
        return out

    def _body(self, body: str) -> list[str]:
        if m := _CREATE_DATABASE.match(body):
            return [f"{body} {self.on}"]
        if m := _CREATE_TABLE.match(body):
            name = m.group(1)
            if name not in self.storage:  # a Kafka table: one per node, the shared consumer group
                return [body.replace(f" {name} ", f" {name} {self.on} ", 1)]
            db, table = name.split(".")
            local = f"{name}{LOCAL_SUFFIX}"

            def replicated(e: re.Match[str]) -> str:
                args = [f"'{KEEPER_PATH.format(db=db, table=table + LOCAL_SUFFIX)}'", "'{replica}'"]
                args += [e.group(2)] if e.group(2) else []
                return f"ENGINE = Replicated{e.group(1)}({', '.join(args)})"

            created = _ENGINE.sub(replicated, body.replace(f" {name} ", f" {local} {self.on} ", 1), count=1)
            distributed = (f"CREATE TABLE IF NOT EXISTS {name} {self.on} AS {local}\n"
                           f"ENGINE = Distributed('{self.cluster}', '{db}', '{table}{LOCAL_SUFFIX}')")
            return [created, distributed]
        if m := _CREATE_MV.match(body):
            return [self.local(body.replace(f" {m.group(1)} ", f" {m.group(1)} {self.on} ", 1))]
        if m := _CREATE_VIEW.match(body):
            return [f"{m.group(1)} {m.group(2)} {self.on} {body[m.start(3):]}"]
        if m := _ALTER.match(body):
            name, rest = m.groups()
            if name in self.storage:  # a column change: the local tables, then the Distributed ones
                return [f"ALTER TABLE {name}{LOCAL_SUFFIX} {self.on} {rest}", f"ALTER TABLE {name} {self.on} {rest}"]
            return [f"ALTER TABLE {name} {self.on} {self.local(rest)}"]
        if m := _DETACH_ATTACH.match(body):
            return [f"{body} {self.on}"]
        if m := _TRUNCATE.match(body):  # as INSERT ... SELECT: the local table of the node migrated through
            return [f"TRUNCATE TABLE {self.local(m.group(1))}"]
        if m := _DROP_TABLE.match(body):
            if m.group(1) in self.storage:  # the Distributed table, then the shards' local ones
                return [f"{body} {self.on}", f"{body}{LOCAL_SUFFIX} {self.on}"]
            return [f"{body} {self.on}"]
        if _INSERT.match(body):
            return [self.local(body)]
        if m := _CREATE_ACCESS.match(body):
            return [f"{m.group(1)} {self.on}{m.group(2)}"]
        if m := _GRANT.match(body):
            grants = [f"GRANT {self.on} {m.group(1)}"]
            on = _GRANT_ON.search(body)
            if on and on.group(1) in self.storage:  # a Distributed read runs on each shard as the reader
                grants.append(f"GRANT {self.on} {self.local(m.group(1))}")
            return grants
        first = body.splitlines()[0] if body else ""
        raise ConfigError(f"cannot render for cluster {self.cluster}: unknown kind of statement {first[:80]!r}; "
                          "teach clickhouse/cluster.py")


def cluster_statements(statements: list[str], cluster: str) -> list[str]:
    """Statements outside the migrations (`migrate`'s re-created Kafka tables) rewritten for
    `cluster`; they may not touch a storage table."""
    rewriter = _Rewriter(cluster, set())
    return [s for statement in statements for s in rewriter.statement(statement)]


def cluster_migrations(migrations: list[Migration], cluster: str) -> list[Migration]:
    """The migrations rewritten for `cluster` (checksums unchanged: they are the files')."""
    rewriter = _Rewriter(cluster, storage_tables(migrations))
    out = []
    for m in migrations:
        statements = [s for statement in m.statements for s in rewriter.statement(statement)]
        out.append(replace(m, statements=statements, sql="".join(f"{s};\n\n" for s in statements)))
    return out
