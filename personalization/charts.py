"""Plotly figures as plain JSON in the house look, shared by the dashboards and learning.

A figure is a dict (``{"data": [...], "layout": {...}}``) that a page embeds with
``json_script`` and ``dashboard.js`` draws with ``Plotly.newPlot``.

plotly.js reads a subset of HTML in trace names (legends), category and tick labels, hover
and cell text — ``<a href>`` becomes a link. What a figure labels is often visitor data
(event types, UTM values, keys a storefront sent): every string a figure draws goes through
``text`` first, so it is shown as the characters it holds, never as markup.
"""

import functools
import html
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.io as pio

Figure = dict[str, Any]

# Colours that stay apart for the colour-blind (Okabe–Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
LAYOUT: dict[str, Any] = {
    "colorway": PALETTE,
    "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
    "legend": {"orientation": "h", "y": -0.2},
    "hovermode": "closest",
    "height": 380,
}


def text(value: Any) -> Any:
    """A string as plotly.js must draw it, as plain text: ``&``, ``<`` and ``>`` escaped
    (plotly.js turns the entities back into those characters when it draws the label).
    Anything but a string is returned as it is."""
    return html.escape(value, quote=False) if isinstance(value, str) else value


def texts(values: Iterable[Any]) -> list[Any]:
    """``text`` of each value."""
    return [text(v) for v in values]


@functools.cache
def _template() -> dict[str, Any]:
    """plotly's "plotly_white" theme as plotly.js reads it (it knows no template names)."""
    return pio.templates["plotly_white"].to_plotly_json()


def figure(traces: Sequence[dict[str, Any]], **layout: Any) -> Figure:
    """Plain dicts, not graph_objects: validating a figure cost more than the page's queries
    (the browser test draws every chart, which is the check that matters)."""
    return {"data": list(traces), "layout": {**LAYOUT, "template": _template(), **layout}}
