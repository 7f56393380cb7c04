"""Plotly figure builders: plain functions from selector output to a figure's JSON.

Each returns the figure as a dict (``{"data": [...], "layout": {...}}``) that a page embeds
with ``json_script`` and ``dashboard.js`` draws with ``Plotly.newPlot``: no inline script,
so a strict Content-Security-Policy holds. ``Chart`` pairs a figure with the rows behind it;
the same rows are the chart's CSV download, so what is drawn and what is downloaded agree.

Labels are text, never markup. plotly.js reads a subset of HTML in trace names (legends),
category labels, hover and cell text (``<a href>``, ``<b>``, ``<br>``…), and much of what
these charts label — event types, segment keys, rule, variant and goal keys, survey keys —
comes from visitors or from what a storefront sent. Every figure function here passes every
string it draws through ``text`` (``personalization.charts``, shared with the learning
figures), which escapes it; plotly.js turns the entities back into the characters, so
``<a href=…>`` shows as those characters and is never a link. The CSV rows keep the raw
values.

Days are dates: an x axis of days (``datetime.date`` values) is a date axis with one tick
label per day or week, ``2026-11-25``, never a time of day.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from personalization.charts import PALETTE, Figure, text, texts
from personalization.charts import figure as _figure

Rows = Sequence[Sequence[Any]]  # a chart's rows: its CSV, and what its figure is built from
Point = tuple[Any, float | None]  # (x, y)
Interval = tuple[float | None, float | None]  # (low, high)


@dataclass
class Chart:
    """One chart of a page: its figure (None when there is nothing to draw) and its rows."""

    name: str
    title: str
    columns: list[str]
    rows: Rows
    build: Callable[[Rows], Figure] | None = None
    empty: str = "No data for these filters yet."
    help: str = ""
    figure: Figure | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rows and self.build is not None:
            self.figure = self.build(self.rows)

    @property
    def script_id(self) -> str:
        return f"figure-{self.name}"


DAY_MS = 24 * 60 * 60 * 1000
DAY_STEPS = (1, 2, 7, 14)  # days between tick labels, the first that gives at most 12
MAX_DAY_TICKS = 12


def _is_day(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def day_axis(xs: Sequence[Any]) -> dict[str, Any] | None:
    """The x axis for values that are all days: a date axis labelled ``%Y-%m-%d`` with ticks
    on whole days (plotly.js would otherwise pick hours, and label a lone day
    ``23:59:59.999``). None when the values are not days."""
    if not xs or not all(_is_day(x) for x in xs):
        return None
    first, last = min(xs), max(xs)
    span = (last - first).days + 1
    axis: dict[str, Any] = {
        "type": "date",
        "tickformat": "%Y-%m-%d",
        "hoverformat": "%Y-%m-%d",
        "tick0": first.isoformat(),
    }
    step = next((d for d in DAY_STEPS if math.ceil(span / d) <= MAX_DAY_TICKS), None)
    axis["dtick"] = step * DAY_MS if step else "M1"
    if span < 3:  # a day or two: a range of whole days around them, not of milliseconds
        axis["range"] = [
            (first - timedelta(days=1)).isoformat(),
            (last + timedelta(days=1)).isoformat(),
        ]
    return axis


def _errors(values: Sequence[float | None], intervals: Sequence[Interval]) -> dict[str, Any]:
    """Asymmetric error bars from (low, high) intervals around ``values``."""
    plus = [
        (hi - v) if v is not None and hi is not None else None
        for v, (_, hi) in zip(values, intervals, strict=True)
    ]
    minus = [
        (v - lo) if v is not None and lo is not None else None
        for v, (lo, _) in zip(values, intervals, strict=True)
    ]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True}


def lines(
    series: Mapping[str, Sequence[Point]],
    *,
    y_title: str,
    x_title: str = "",
    intervals: Mapping[str, Sequence[Interval]] | None = None,
    y_format: str = "",
    mode: str = "lines+markers",
) -> Figure:
    """One line per series; optional (low, high) error bars per point."""
    traces = []
    every_x: list[Any] = []
    for name, points in series.items():
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        every_x += xs
        trace: dict[str, Any] = {"x": texts(xs), "y": texts(ys), "name": text(name), "mode": mode}
        if intervals and name in intervals:
            trace["error_y"] = _errors(ys, intervals[name])
        traces.append({"type": "scatter", **trace})
    return _figure(
        traces,
        xaxis={"title": {"text": text(x_title)}, **(day_axis(every_x) or {})},
        yaxis={"title": {"text": text(y_title)}, "tickformat": y_format, "rangemode": "tozero"},
    )


def bars(
    categories: Sequence[str],
    groups: Mapping[str, Sequence[float | None]],
    *,
    y_title: str,
    intervals: Mapping[str, Sequence[Interval]] | None = None,
    stacked: bool = False,
    y_format: str = "",
    x: Sequence[Any] | None = None,
) -> Figure:
    """Grouped (or stacked) bars, one group per series, with optional error bars."""
    xs = list(x if x is not None else categories)
    days = day_axis(xs)
    traces = []
    for name, values in groups.items():
        trace: dict[str, Any] = {"x": texts(xs), "y": texts(values), "name": text(name)}
        if days is not None:
            trace["width"] = 0.8 * DAY_MS  # a day's bar, whatever the number of days
        if intervals and name in intervals:
            trace["error_y"] = _errors(values, intervals[name])
        traces.append({"type": "bar", **trace})
    layout: dict[str, Any] = {}
    if days is not None:
        layout["xaxis"] = days
    return _figure(
        traces,
        barmode="stack" if stacked else "group",
        yaxis={"title": {"text": text(y_title)}, "tickformat": y_format},
        **layout,
    )


def forest(
    labels: Sequence[str],
    estimates: Sequence[float | None],
    intervals: Sequence[Interval],
    *,
    x_title: str,
    colours: Sequence[str] | None = None,
    x_format: str = ".0%",
) -> Figure:
    """A forest plot: one row per label, the estimate with its interval, a line at zero."""
    trace: dict[str, Any] = {
        "x": list(estimates),
        "y": texts(labels),
        "mode": "markers",
        "marker": {"size": 10, "color": list(colours) if colours else PALETTE[0]},
        "error_x": _errors(estimates, intervals),
        "showlegend": False,
        "hovertemplate": "%{y}: %{x:" + x_format + "}<extra></extra>",
    }
    height = max(220, 60 + 36 * len(labels))
    return _figure(
        [{"type": "scatter", **trace}],
        height=height,
        xaxis={"title": {"text": text(x_title)}, "tickformat": x_format, "zeroline": True},
        yaxis={"autorange": "reversed", "automargin": True},
        shapes=[
            {
                "type": "line",
                "x0": 0,
                "x1": 0,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": "#888", "dash": "dot"},
            }
        ],
    )


def heatmap(
    x: Sequence[Any],
    y: Sequence[Any],
    z: Sequence[Sequence[float | None]],
    *,
    x_title: str,
    y_title: str,
    z_format: str = ".0%",
    cell_text: Sequence[Sequence[str]] | None = None,
) -> Figure:
    trace: dict[str, Any] = {
        "x": texts(x),
        "y": texts(y),
        "z": [list(row) for row in z],
        "colorscale": "Blues",
        "zmin": 0,
        "hovertemplate": "%{y}, %{x}: %{z:" + z_format + "}<extra></extra>",
        # no colour bar: plotly.js styles its fills with a style attribute (refused by the
        # CSP); the cells carry their values as text instead
        "showscale": False,
        # gaps between cells: also keeps plotly.js off its "fast" path, which sets a style
        # attribute on the image
        "xgap": 1,
        "ygap": 1,
    }
    if cell_text is not None:
        trace["text"] = [texts(row) for row in cell_text]
        trace["texttemplate"] = "%{text}"
    return _figure(
        [{"type": "heatmap", **trace}],
        xaxis={"title": {"text": text(x_title)}, "type": "category"},
        yaxis={"title": {"text": text(y_title)}, "type": "category", "autorange": "reversed"},
    )
