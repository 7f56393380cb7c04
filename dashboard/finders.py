"""Serve the plotly.js that the installed ``plotly`` package ships, as ``dashboard/plotly.min.js``.

The dashboards load plotly.js from the project's own static files (never a CDN), and the copy
is the one matching the Python package, so figures built in Python and drawn in the browser
always agree on the schema. ``collectstatic`` copies it like any other static file.
"""

import functools
import re
from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.utils import matches_patterns
from django.core.checks import CheckMessage, Error
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "plotly.min.js"
PREFIX = "dashboard"
STATIC_PATH = f"{PREFIX}/{PLOTLY_JS}"


def plotly_js_dir() -> Path:
    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    """Finds ``dashboard/plotly.min.js`` in the plotly package's package_data."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.storage = FileSystemStorage(location=str(plotly_js_dir()))
        self.storage.prefix = PREFIX  # type: ignore[attr-defined]  # read by collectstatic

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        if not (plotly_js_dir() / PLOTLY_JS).is_file():
            return [
                Error(
                    f"The plotly package ships no {PLOTLY_JS} at {plotly_js_dir()}.",
                    hint="Reinstall plotly (pip install -e '.[dev]').",
                    id="dashboard.E001",
                )
            ]
        return []

    # Django 5.2's signature (``find_all``; the stubs still name it ``all``)
    def find(  # type: ignore[override]
        self, path: str, find_all: bool = False, **kwargs: Any
    ) -> str | list[str]:
        if path != STATIC_PATH:
            return [] if find_all else ""
        match = str(plotly_js_dir() / PLOTLY_JS)
        return [match] if find_all else match

    def list(self, ignore_patterns: Any) -> Any:
        if not matches_patterns(PLOTLY_JS, ignore_patterns or []):
            yield PLOTLY_JS, self.storage


# plotly.js injects its stylesheet as <style> rules at run time, which a strict CSP refuses.
# It skips that when the page already holds an element with id "plotly.js-style-global" and
# class "no-inline-styles": dashboard/plotly.css (a <link> with that id) is that stylesheet,
# extracted from the shipped plotly.min.js by ``plotly_css`` (a test keeps them in step).
_RULES_START = re.compile(r'\{"X,X div":')
# a JS string literal, or a bare identifier used as a key ({Y: '...'})
_JS_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|([A-Za-z_$][\w$]*)')


def plotly_css(source: str | None = None) -> str:
    """The CSS rules plotly.js would inject, in the order it injects them."""
    js = source if source is not None else (plotly_js_dir() / PLOTLY_JS).read_text("utf-8")
    start = _RULES_START.search(js)
    if start is None:
        raise ValueError("plotly.min.js no longer carries its style rules where expected")
    strings: list[str] = []
    pos = start.start() + 1
    while js[pos] != "}":
        match = _JS_STRING.match(js, pos)
        if match is None:
            raise ValueError(f"unexpected text in plotly.js style rules at {pos}")
        raw = next(g for g in match.groups() if g is not None)
        strings.append(re.sub(r"\\(.)", r"\1", raw))
        pos = match.end()
        pos += 1 if js[pos] in ":," else 0
    pairs = zip(strings[::2], strings[1::2], strict=True)
    lines = ["/* Generated from plotly.min.js by dashboard.finders.plotly_css; do not edit. */"]
    for selector, declarations in pairs:
        selector = " ," + selector[1:] if selector.startswith(",") else selector
        selector = selector.replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        lines.append(f"{selector}{{{declarations}}}")
    return "\n".join(lines) + "\n"


_MAPLIBRE_STYLE = re.compile(
    r'document\.getElementById\("([0-9a-f]{32,64})"\)\)\{var \w+=document\.createElement\("style"\)'
)


@functools.cache
def plotly_maplibre_style_id() -> str:
    """The id under which plotly.js injects maplibre's stylesheet as a <style> (maps only).

    plotly.js skips that when an element with this id is already in the page. The dashboards
    draw no maps, so their layout puts an empty element with this id there: the CSP is not
    tripped. A page that draws maps must link the real stylesheet with this id instead.
    """
    match = _MAPLIBRE_STYLE.search((plotly_js_dir() / PLOTLY_JS).read_text("utf-8"))
    return match.group(1) if match else ""
