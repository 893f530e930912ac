"""A picture of a dashboard without a Grafana server: its panels, with the data its queries
returned, laid out on the dashboard's grid and drawn with Vega-Lite (vl-convert, offline).

`png(run)` is the whole dashboard as one image; `html(run)` is a self-contained page (the same
picture as inline SVG, then each panel's description, expanded SQL and data; no script, no CDN).
Panel types drawn: stat, bar chart, time series, table.
"""

from __future__ import annotations

import html as html_lib
from datetime import datetime
from pathlib import Path
from typing import Any

import vl_convert

from grafana.query import DashboardRun, PanelResult, stat_value, to_number

COL_PX = 56  # one of the 24 grid columns
ROW_PX = 34  # one grid row
FONT = "DejaVu Sans"
TABLE_ROWS = 12
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def format_value(value: Any, unit: str) -> str:
    """A number as the panel's unit shows it (a small subset of Grafana's unit formats)."""
    n = to_number(value)
    if n is None:
        return "" if value is None else str(value)
    if unit == "percentunit":
        return f"{n * 100:.2f}%"
    if unit == "currencyRUB":
        return f"₽{n:,.2f}"
    text = f"{n:,.0f}" if n == int(n) and abs(n) < 1e15 else f"{n:,.2f}"
    suffix = {"s": " s", "ms": " ms", "rps": " req/s", "rpm": " rows/min"}.get(unit, "")
    return text + suffix


def _iso(value: Any) -> str:
    text = str(value)
    return text.replace(" ", "T") + ("" if text.endswith("Z") or "+" in text else "Z")


def _columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(numeric columns, other columns) of a result."""
    names = list(rows[0]) if rows else []
    numeric = [c for c in names if all(to_number(r.get(c)) is not None for r in rows)]
    return numeric, [c for c in names if c not in numeric]


def _message(text: str, width: int, height: int, size: int = 14) -> dict[str, Any]:
    return {"data": {"values": [{"t": text}]}, "mark": {"type": "text", "fontSize": size, "font": FONT},
            "encoding": {"text": {"field": "t"}, "x": {"value": width / 2}, "y": {"value": height / 2}}}


def panel_spec(panel: PanelResult) -> dict[str, Any]:
    _, _, w, h = panel.grid
    width, height = w * COL_PX - 30, h * ROW_PX - 50
    base: dict[str, Any] = {"title": {"text": panel.title, "anchor": "start", "fontSize": 13},
                            "width": width, "height": height}
    rows = panel.rows
    if not rows:
        return {**base, **_message("No data", width, height)}
    if panel.kind == "stat":
        value = stat_value(panel)
        return {**base, **_message(format_value(value, panel.unit) if value is not None else "No data",
                                   width, height, size=min(44, max(18, height // 2)))}
    if panel.kind == "table":
        names = list(rows[0])
        cells = [{"row": i, "column": c, "text": format_value(r.get(c), "short" if c not in ("partition", "offset")
                                                               else "none")[:28]}
                 for i, r in enumerate(rows[:TABLE_ROWS]) for c in names]
        return {**base, "data": {"values": cells},
                "mark": {"type": "text", "align": "left", "font": FONT, "fontSize": 11, "dx": -40},
                "encoding": {"x": {"field": "column", "type": "ordinal", "sort": names,
                                   "axis": {"orient": "top", "title": None, "labelAngle": 0, "domain": False,
                                            "ticks": False, "labelFontWeight": "bold"}},
                             "y": {"field": "row", "type": "ordinal", "axis": None},
                             "text": {"field": "text"}}}
    numeric, other = _columns(rows)
    if panel.kind == "timeseries":
        time_col = "time" if "time" in rows[0] else next(iter(rows[0]))
        numeric = [c for c in numeric if c != time_col]
        labels = [c for c in other if c != time_col]
        values = [{"time": _iso(r[time_col]), "value": to_number(r[c]),
                   "series": " ".join(str(r[x]) for x in labels) if labels and len(numeric) == 1
                   else " ".join([*(str(r[x]) for x in labels), c])}
                  for r in rows for c in numeric]
        return {**base, "data": {"values": values}, "mark": {"type": "line", "point": len(rows) < 40},
                "encoding": {"x": {"field": "time", "type": "temporal", "title": None},
                             "y": {"field": "value", "type": "quantitative", "title": None},
                             "color": {"field": "series", "type": "nominal",
                                       "legend": {"orient": "bottom", "title": None}
                                       if len({v["series"] for v in values}) > 1 else None}}}
    # bar chart
    x_field = panel.x_field or (other[0] if other else next(iter(rows[0])))
    numeric = [c for c in numeric if c != x_field]
    values = [{"x": str(r[x_field]), "value": to_number(r[c]), "series": c,
               "label": format_value(r[c], panel.unit)} for r in rows for c in numeric]
    bar = {"mark": {"type": "bar"},
           "encoding": {"x": {"field": "x", "type": "nominal", "sort": None, "title": None,
                              "axis": {"labelAngle": -30, "labelLimit": 120}},
                        "y": {"field": "value", "type": "quantitative", "title": None},
                        "xOffset": {"field": "series"},
                        "color": {"field": "series", "type": "nominal", "legend": None if len(numeric) == 1 else
                                  {"orient": "bottom", "title": None}}}}
    text = {"mark": {"type": "text", "dy": -6, "fontSize": 10, "font": FONT},
            "encoding": {"x": {"field": "x", "type": "nominal", "sort": None}, "xOffset": {"field": "series"},
                         "y": {"field": "value", "type": "quantitative"}, "text": {"field": "label"}}}
    return {**base, "data": {"values": values}, "layer": [bar, text]}


# Each panel has its own scales and legend (Vega-Lite shares them across concatenated views by default).
_INDEPENDENT = {"scale": {"color": "independent", "xOffset": "independent", "x": "independent", "y": "independent"},
                "legend": {"color": "independent"}}


def dashboard_spec(run: DashboardRun) -> dict[str, Any]:
    """One Vega-Lite spec: a line per grid row (row headers full width), panels side by side."""
    lines: dict[int, list[dict[str, Any]]] = {}
    for title, y in run.rows:
        header = {"data": {"values": [{"t": title}]}, "width": 24 * COL_PX - 30, "height": 16,
                  "view": {"stroke": None},
                  "mark": {"type": "text", "fontSize": 16, "fontWeight": "bold", "align": "left", "font": FONT},
                  "encoding": {"text": {"field": "t"}, "x": {"value": 0}, "y": {"value": 8}}}
        lines.setdefault(y, []).append(header)
    for panel in sorted(run.panels, key=lambda p: (p.grid[1], p.grid[0])):
        lines.setdefault(panel.grid[1], []).append(panel_spec(panel))
    span = f"{run.start:%Y-%m-%d %H:%M} to {run.end:%Y-%m-%d %H:%M} UTC"
    return {
        "$schema": SCHEMA,
        "title": {"text": run.title, "subtitle": f"{span} (snapshot, freshctl grafana snapshot)",
                  "anchor": "start", "fontSize": 20},
        "vconcat": [{"hconcat": lines[y], "spacing": 20, "resolve": _INDEPENDENT} for y in sorted(lines)],
        "spacing": 16,
        "resolve": _INDEPENDENT,
        "config": {"font": FONT, "view": {"stroke": "#d8d9da"}, "background": "white"},
    }


def png(run: DashboardRun) -> bytes:
    return bytes(vl_convert.vegalite_to_png(dashboard_spec(run), scale=1))


def svg(run: DashboardRun) -> str:
    return str(vl_convert.vegalite_to_svg(dashboard_spec(run)))


def html(run: DashboardRun, picture_svg: str | None = None) -> str:
    e = html_lib.escape
    variables = ", ".join(f"{name} = {'All' if v.is_all else ','.join(v.selected)}"
                          for name, v in run.variables.items()) or "none"
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{e(run.title)}</title>",
        "<style>body{font-family:'DejaVu Sans',sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "pre{background:#f4f5f5;padding:8px;white-space:pre-wrap;font-size:12px}</style></head><body>",
        f"<h1>{e(run.title)}</h1>",
        f"<p>Time range {run.start.isoformat()} to {run.end.isoformat()}; variables: {e(variables)}. "
        f"Made by <code>freshctl grafana snapshot</code> on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.</p>",
        picture_svg if picture_svg is not None else svg(run),
    ]
    for p in run.panels:
        value = stat_value(p) if p.kind == "stat" else None
        stat_attr = f' data-stat-value="{e(format_value(value, p.unit))}"' if value is not None else ""
        parts.append(f'<section data-panel-id="{p.id}" data-panel-type="{p.kind}"{stat_attr}>'
                     f"<h2>{e(p.title)}</h2><p>{e(p.description)} (unit: {e(p.unit)}; "
                     f"{len(p.rows)} row(s), {p.seconds * 1000:.0f} ms)</p><pre>{e(p.sql)}</pre>")
        if p.rows:
            names = list(p.rows[0])
            parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in names) + "</tr>")
            for r in p.rows[:50]:
                parts.append("<tr>" + "".join(f"<td>{e(str(r.get(c)))}</td>" for c in names) + "</tr>")
            parts.append("</table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_snapshot(run: DashboardRun, out_dir: Path, name: str) -> tuple[Path, Path]:
    """`<name>.png` and `<name>.html` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path, html_path = out_dir / f"{name}.png", out_dir / f"{name}.html"
    png_path.write_bytes(png(run))
    html_path.write_text(html(run), encoding="utf-8")
    return png_path, html_path
