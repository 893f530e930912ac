"""Expand a panel's SQL as Grafana and the ClickHouse plugin (4.x) would, to run it anywhere.

Order, as in Grafana: the plugin's frontend replaces `$__conditionalAll(...)` first, then Grafana
replaces template variables and its global variables, then the plugin's backend expands its
macros. Anything left that looks like a macro or a variable is an error (`MacroError`): an unknown
macro fails rather than passing through to ClickHouse.

`MACROS` is the table of what is supported (docs/grafana.md prints it); the expansions follow the
plugin's documentation, e.g. `$__timeFilter(t)` -> `t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from grafana.errors import MacroError

# (macro, arguments, expands to) -- the documented table; `expand` implements each row.
MACROS: list[tuple[str, str, str]] = [
    ("$__timeFilter(col)", "a DateTime/DateTime64 column",
     "col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)"),
    ("$__timeFilter_ms(col)", "a DateTime64 column",
     "col >= fromUnixTimestamp64Milli(<from ms>) AND col <= fromUnixTimestamp64Milli(<to ms>)"),
    ("$__dateFilter(col)", "a Date column", "col >= toDate('<from day>') AND col <= toDate('<to day>')"),
    ("$__dateTimeFilter(dcol, tcol)", "a Date and a DateTime column",
     "$__dateFilter(dcol) AND $__timeFilter(tcol)"),
    ("$__fromTime, $__toTime", "-", "toDateTime(<from s>), toDateTime(<to s>)"),
    ("$__fromTime_ms, $__toTime_ms", "-", "fromUnixTimestamp64Milli(<from ms>), ... (<to ms>)"),
    ("$__timeInterval(col)", "a DateTime/DateTime64 column",
     "toStartOfInterval(toDateTime(col), INTERVAL <interval s> second)"),
    ("$__timeInterval_ms(col)", "a DateTime64 column",
     "toStartOfInterval(toDateTime64(col, 3), INTERVAL <interval ms> millisecond)"),
    ("$__interval_s", "-", "<interval s> (at least 1)"),
    ("$__conditionalAll(cond, $var)", "a condition and a template variable",
     "cond, or 1=1 when the variable is All (or empty)"),
    ("$__from, $__to", "- (Grafana global)", "<from ms>, <to ms> (epoch milliseconds)"),
    ("$__interval, $__interval_ms", "- (Grafana global)", "e.g. 30s, 30000"),
    ("${var:singlequote}", "a template variable", "'a','b' (the selected values; All: every option)"),
    ("${var:csv}", "a template variable", "a,b"),
    ("$var, ${var}", "a single-valued template variable", "its value (multi-valued: use :singlequote)"),
]

# Grafana's "nice" intervals, in seconds: $__interval is the first one at least range / max_data_points.
_NICE_INTERVALS_S = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600,
                     43200, 86400, 604800, 2592000, 31536000]
_NAME = re.compile(r"\$__(\w+)")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_LEFTOVER = re.compile(r"\$\{?\w+")


@dataclass(frozen=True)
class Variable:
    """A template variable's state: `options` are all its values; `selected` empty means All."""

    options: list[str]
    selected: list[str] = field(default_factory=list)

    @property
    def is_all(self) -> bool:
        return not self.selected

    def values(self) -> list[str]:
        return list(self.options) if self.is_all else list(self.selected)


@dataclass(frozen=True)
class QueryContext:
    start: datetime
    end: datetime
    variables: dict[str, Variable] = field(default_factory=dict)
    max_data_points: int = 1000

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MacroError("the time range needs timezone-aware datetimes (UTC)")
        if self.end <= self.start:
            raise MacroError(f"the time range ends ({self.end.isoformat()}) "
                             f"before it starts ({self.start.isoformat()})")

    @property
    def interval_s(self) -> int:
        raw = (self.end - self.start).total_seconds() / max(self.max_data_points, 1)
        return next((s for s in _NICE_INTERVALS_S if s >= raw), _NICE_INTERVALS_S[-1])

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None, **kwargs: object) -> QueryContext:
        end = now or datetime.now(UTC)
        return cls(end - span, end, **kwargs)  # type: ignore[arg-type]


def _split_args(text: str, open_at: int, macro: str) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at `open_at` (nested parentheses and
    quoted strings kept whole), and the index just past its ')'."""
    depth, quote, args, start, escaped = 0, "", [], open_at + 1, False
    for i in range(open_at, len(text)):
        ch = text[i]
        if escaped:
            escaped = False
        elif quote:
            if ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
    raise MacroError(f"{macro}: no closing parenthesis")


def _conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    macro = "$__conditionalAll"
    while (at := sql.rfind(macro + "(")) != -1:
        args, end = _split_args(sql, at + len(macro), macro)
        if len(args) != 2:
            raise MacroError(f"{macro} takes a condition and a template variable, got {len(args)} argument(s)")
        ref = re.fullmatch(r"\s*\$\{?(\w+)\}?\s*", args[1])
        if not ref or ref.group(1) not in variables:
            raise MacroError(f"{macro}: {args[1].strip()!r} is not a template variable of this dashboard")
        phrase = "1=1" if variables[ref.group(1)].is_all else args[0]
        sql = sql[:at] + phrase + sql[end:]
    return sql


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _template_variables(sql: str, ctx: QueryContext) -> str:
    start_ms, end_ms = int(ctx.start.timestamp() * 1000), int(ctx.end.timestamp() * 1000)
    globals_ = {"__from": str(start_ms), "__to": str(end_ms), "__interval": f"{ctx.interval_s}s",
                "__interval_ms": str(ctx.interval_s * 1000)}

    def replace(m: re.Match[str]) -> str:
        name, fmt = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), None)
        if name in globals_ and fmt is None:
            return globals_[name]
        if name.startswith("__"):
            return m.group(0)  # a plugin macro: the backend step expands it (or rejects it)
        if name not in ctx.variables:
            raise MacroError(f"unknown template variable ${name}")
        values = ctx.variables[name].values()
        if fmt == "singlequote":
            return ",".join(_quote(v) for v in values) if values else "''"
        if fmt == "csv":
            return ",".join(values)
        if fmt is not None:
            raise MacroError(f"unsupported variable format ${{{name}:{fmt}}}; use singlequote or csv")
        if len(values) != 1:
            raise MacroError(f"${name} has {len(values)} values; write ${{{name}:singlequote}} in SQL")
        return values[0]

    return _VAR.sub(replace, sql)


def _backend_macros(sql: str, ctx: QueryContext) -> str:
    s, e = int(ctx.start.timestamp()), int(ctx.end.timestamp())
    s_ms, e_ms = int(ctx.start.timestamp() * 1000), int(ctx.end.timestamp() * 1000)
    day_s, day_e = ctx.start.astimezone(UTC).date().isoformat(), ctx.end.astimezone(UTC).date().isoformat()
    interval = max(ctx.interval_s, 1)

    def time_filter(a: list[str]) -> str:
        return f"{a[0]} >= toDateTime({s}) AND {a[0]} <= toDateTime({e})"

    def date_filter(a: list[str]) -> str:
        return f"{a[0]} >= toDate('{day_s}') AND {a[0]} <= toDate('{day_e}')"

    with_args = {
        "timeFilter": (1, time_filter),
        "timeFilter_ms": (1, lambda a: f"{a[0]} >= fromUnixTimestamp64Milli({s_ms}) "
                                       f"AND {a[0]} <= fromUnixTimestamp64Milli({e_ms})"),
        "dateFilter": (1, date_filter),
        "dateTimeFilter": (2, lambda a: f"{date_filter(a[:1])} AND {time_filter(a[1:])}"),
        "timeInterval": (1, lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {interval} second)"),
        "timeInterval_ms": (1, lambda a: f"toStartOfInterval(toDateTime64({a[0]}, 3), "
                                         f"INTERVAL {interval * 1000} millisecond)"),
    }
    plain = {"fromTime": f"toDateTime({s})", "toTime": f"toDateTime({e})",
             "fromTime_ms": f"fromUnixTimestamp64Milli({s_ms})", "toTime_ms": f"fromUnixTimestamp64Milli({e_ms})",
             "interval_s": str(interval)}
    out, pos = [], 0
    for m in _NAME.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        out.append(sql[pos:m.start()])
        if name in with_args:
            count, fn = with_args[name]
            if not sql.startswith("(", m.end()):
                raise MacroError(f"$__{name} needs {count} argument(s) in parentheses")
            args, pos = _split_args(sql, m.end(), f"$__{name}")
            args = [a.strip() for a in args]
            if len(args) != count or not all(args):
                got = f"{len(args)}" + (", one of them empty" if not all(args) else "")
                raise MacroError(f"$__{name} takes {count} argument(s), got {got}")
            out.append(fn(args))
        elif name in plain:
            pos = m.end() + (2 if sql.startswith("()", m.end()) else 0)
            out.append(plain[name])
        else:
            raise MacroError(f"unknown macro $__{name} (docs/grafana.md lists the supported ones)")
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL ClickHouse would receive from Grafana for this time range and these variables."""
    sql = _conditional_all(sql, ctx.variables)
    sql = _template_variables(sql, ctx)
    sql = _backend_macros(sql, ctx)
    leftover = _LEFTOVER.search(sql)
    if leftover:
        raise MacroError(f"{leftover.group(0)!r} is left in the expanded SQL: not a macro or variable this knows")
    return sql
