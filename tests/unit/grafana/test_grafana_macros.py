"""The macro expander: each supported macro expands as the ClickHouse plugin documents, an unknown
macro or variable fails (it never reaches ClickHouse unexpanded), and docs/grafana.md's table lists
exactly what is supported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fresh.settings import REPO_ROOT
from grafana.errors import MacroError
from grafana.macros import MACROS, QueryContext, Variable, expand

START = datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC)  # 1415792726.123
END = datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC)  # 1447328726.456
CTX = QueryContext(START, END, {"store": Variable(["S001", "S002", "S003"], ["S001", "S002"]),
                                "network": Variable(["A", "B"]),
                                "one": Variable(["x", "y"], ["y"])})


@pytest.mark.parametrize(("sql", "expected"), [
    ("$__timeFilter(t)", "t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)"),
    ("$__timeFilter_ms(t)",
     "t >= fromUnixTimestamp64Milli(1415792726123) AND t <= fromUnixTimestamp64Milli(1447328726456)"),
    ("$__dateFilter(d)", "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"),
    ("$__dateTimeFilter(d, t)",
     "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12') "
     "AND t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)"),
    ("$__fromTime $__toTime()", "toDateTime(1415792726) toDateTime(1447328726)"),
    ("$__fromTime_ms, $__toTime_ms",
     "fromUnixTimestamp64Milli(1415792726123), fromUnixTimestamp64Milli(1447328726456)"),
    ("$__timeInterval(t)", "toStartOfInterval(toDateTime(t), INTERVAL 43200 second)"),
    ("$__timeInterval_ms(t)", "toStartOfInterval(toDateTime64(t, 3), INTERVAL 43200000 millisecond)"),
    ("$__interval_s", "43200"),
    ("$__from $__to $__interval $__interval_ms", "1415792726123 1447328726456 43200s 43200000"),
    ("s IN (${store:singlequote})", "s IN ('S001','S002')"),
    ("${store:csv}", "S001,S002"),
    ("$one ${one}", "y y"),
    ("n IN (${network:singlequote})", "n IN ('A','B')"),  # All: every option
    ("$__conditionalAll(s IN (${store:singlequote}), $store)", "s IN ('S001','S002')"),
    ("$__conditionalAll(n IN (SELECT a FROM t WHERE f(a, 1)), $network)", "1=1"),
    ("$__timeFilter(toDateTime(x, 'UTC'))",
     "toDateTime(x, 'UTC') >= toDateTime(1415792726) AND toDateTime(x, 'UTC') <= toDateTime(1447328726)"),
])
def test_expansion(sql: str, expected: str) -> None:
    assert expand(sql, CTX) == expected


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT $__timeFilterz(t)", "unknown macro $__timeFilterz"),
    ("SELECT $__adHocFilter()", "unknown macro"),
    ("SELECT $nope", "unknown template variable $nope"),
    ("$__timeFilter()", "one of them empty"),
    ("$__timeFilter(a, b)", "takes 1 argument(s), got 2"),
    ("$__timeFilter t", "in parentheses"),
    ("$__timeFilter(t", "no closing parenthesis"),
    ("$__conditionalAll(x = 1)", "takes a condition and a template variable"),
    ("$__conditionalAll(x = 1, $nope)", "not a template variable"),
    ("$store", "write ${store:singlequote}"),
    ("${store:regex}", "unsupported variable format"),
])
def test_what_cannot_be_expanded_fails(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}")):
        expand(sql, CTX)


def test_the_time_range_must_be_utc_aware_and_ordered() -> None:
    with pytest.raises(MacroError):
        QueryContext(datetime(2025, 1, 1), datetime(2025, 1, 2))  # naive on purpose
    with pytest.raises(MacroError):
        QueryContext(END, START)


def test_interval_follows_the_time_range() -> None:
    end = datetime(2025, 1, 1, tzinfo=UTC)
    assert QueryContext(end - timedelta(hours=1), end).interval_s == 5
    assert QueryContext(end - timedelta(days=1), end).interval_s == 120
    assert QueryContext(end - timedelta(days=365), end).interval_s == 43200


def test_single_quoted_values_are_escaped() -> None:
    ctx = QueryContext(START, END, {"v": Variable(["it's", "a\\b"], ["it's", "a\\b"])})
    assert expand("x IN (${v:singlequote})", ctx) == "x IN ('it\\'s','a\\\\b')"


@given(column=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
       seconds=st.integers(min_value=1, max_value=10**9), span=st.integers(min_value=1, max_value=10**8))
def test_time_filter_bounds_any_column_and_range(column: str, seconds: int, span: int) -> None:
    start = datetime.fromtimestamp(seconds, UTC)
    ctx = QueryContext(start, start + timedelta(seconds=span))
    out = expand(f"SELECT count() FROM t WHERE $__timeFilter({column}) GROUP BY $__timeInterval({column})", ctx)
    assert f"{column} >= toDateTime({seconds}) AND {column} <= toDateTime({seconds + span})" in out
    assert "$" not in out and f"INTERVAL {ctx.interval_s} second" in out


@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_expands_or_fails_with_a_macro_error(text: str) -> None:
    """Open-ended input never crashes the expander and never leaves a `$name` behind."""
    try:
        out = expand(text, CTX)
    except MacroError:
        return
    assert "$__" not in out


def test_docs_list_every_supported_macro() -> None:
    doc = (REPO_ROOT / "docs" / "grafana.md").read_text(encoding="utf-8")
    for macro, _, _ in MACROS:
        assert f"`{macro}`" in doc, f"docs/grafana.md does not list {macro}"
