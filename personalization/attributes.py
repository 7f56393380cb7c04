"""The attribute catalogue: every name a targeting condition can read, and who computes it.

Each namespace is one :class:`Provider`. It declares its attributes (:class:`Attribute`:
name, type, unit, a one-line description) and computes its part of the attributes a
decision evaluates conditions on. Fixed names (``session.scroll_speed``) and patterns
(``slot.<key>.ctr``: a ``<placeholder>`` stands for one path segment, ``<path>`` for one or
more) are both declarations. :data:`CATALOGUE` holds the providers in the order the engine
calls them; everything that needs to know the names reads it:

* the engine's attribute assembly (:meth:`Catalogue.assemble`);
* the condition builder's list (:meth:`Catalogue.builder_entries`);
* the admin's check of a saved condition (:func:`condition_problems`): an unknown attribute
  is refused with the closest names, a value of the wrong type with the clause it is in;
* the README's attribute table (:meth:`Catalogue.readme_table`; a test keeps them equal).

**Storefront attributes are free-form.** A storefront sends its own attributes
(``context.attributes`` with ``decide``, every other context field with OFREP), read at the
top level by their own names (``plan``, ``company.size`` for a nested OFREP object) and as
``context.attributes.<path>``. Their names cannot be known here, so any path whose first
segment is not one of the catalogue's namespaces (``id``, ``url``, ``context``, ``session``,
``visitor``, ``segments``, ``segment``, ``model``, ``slot``, ``page``) is a storefront
attribute of any type, accepted as it is, except a dotted one within a typo of a catalogue name
(``sesion.duration_s``), refused like an unknown one. Paths under a namespace must be
declared; an index into a list attribute (``session.path.0``) is allowed too.

**Page-side attributes.** The ``page`` provider (``page.scroll_speed`` …) is marked
``page_side``: its signals are measured by the tracker inside the open page and the server
never has their values. The engine does not call it; decide reduces a condition by what the
server knows (:func:`~personalization.conditions.partial_condition`) and hands the ``page.*``
part to the page. Each page attribute also says how the tracker measures it (``measurement``).

A new kind of attribute is one more provider here (and its rows in the README's table).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import live
from .conditions import (
    Clause,
    _describe,
    _is_operator_object,
    _js_type,
    condition_clauses,
    render_location,
    validate_condition,
)

if TYPE_CHECKING:
    from .engine import DecideRequest
    from .models import Property
    from .ruleset import RuleSet

TYPES = ("number", "string", "boolean", "array", "object", "any")


@dataclass(frozen=True)
class Attribute:
    """One name a condition can read. ``name`` may hold ``<placeholders>`` (a pattern)."""

    name: str
    type: str
    unit: str
    description: str
    # How a page-side attribute is measured in the browser (the tracker's live module).
    measurement: str = ""

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "description": self.description,
        }
        if self.measurement:
            entry["measurement"] = self.measurement
            entry["page_side"] = True
        return entry


Provide = Callable[[dict[str, Any], "DecideRequest", dict, "RuleSet", "Property", datetime], None]


class Provider:
    """A namespace of attributes: what it declares, and how it computes its values."""

    namespace: str = ""
    attributes: tuple[Attribute, ...] = ()
    # Whether paths it does not declare are allowed (the storefront's own attributes).
    free_form: bool = False
    # Page-side: measured by the tracker inside the open page, never known to the server at
    # decide. The engine does not call such a provider; decide reduces a condition by what it
    # knows and leaves the page-side part for the page (conditions.partial_condition).
    page_side: bool = False

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        """Add this namespace's values to ``attributes`` (in place: no copy per decision)."""
        raise NotImplementedError


def _attrs(rows: Iterable[tuple[str, str, str, str]]) -> tuple[Attribute, ...]:
    return tuple(Attribute(*row) for row in rows)


_UTM = ("source", "medium", "campaign", "term", "content")


class ContextProvider(Provider):
    """The request: the visitor id and the page's context."""

    namespace = "context"
    attributes = _attrs(
        [
            ("id", "string", "", "The visitor id of the request."),
            ("url", "string", "", "The page URL sent in the request's context ('' if none)."),
            ("context.url", "string", "", "The page URL sent in the request's context."),
            ("context.referrer", "string", "", "The page's referrer."),
            ("context.user_agent", "string", "", "The browser's user agent string."),
            ("context.title", "string", "", "The page title."),
            ("context.locale", "string", "", "The page's locale, e.g. en-GB."),
            ("context.timezone", "string", "", "The browser's time zone, e.g. Europe/Paris."),
            ("context.screen", "string", "", "The screen size, e.g. 1280x800."),
            *(
                (f"context.utm.{name}", "string", "", f"The page URL's utm_{name}.")
                for name in _UTM
            ),
            (
                "context.attributes.<path>",
                "any",
                "",
                "A storefront attribute, by its name (also readable at the top level).",
            ),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        context = request.context
        attributes["id"] = request.visitor_id
        attributes["url"] = context.get("url", "")
        attributes["context"] = context


class StorefrontProvider(Provider):
    """The storefront's own attributes at the top level, free-form. First, so that the names
    the other providers set win over a storefront's."""

    namespace = ""
    free_form = True
    attributes = _attrs(
        [
            (
                "<attribute>",
                "any",
                "",
                "A storefront attribute (context.attributes, or an OFREP context field) "
                "by its name; nested objects by dotted path.",
            )
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        custom = request.context.get("attributes")
        if custom:
            attributes.update(custom)


class SessionProvider(Provider):
    """The session's live signals (``signals.session_signals``)."""

    namespace = "session"
    attributes = _attrs(
        [
            (
                "session.duration_s",
                "number",
                "seconds",
                "Seconds from the session's first to its last event.",
            ),
            ("session.page_views", "number", "count", "Page views in the session."),
            ("session.is_bounce", "boolean", "", "The session has at most one page view."),
            (
                "session.section_ms",
                "object",
                "ms per section",
                "Visible milliseconds per page section (section_view).",
            ),
            (
                "session.section_ms.<section>",
                "number",
                "ms",
                "Visible milliseconds of one page section.",
            ),
            (
                "session.max_scroll_depth",
                "number",
                "percent",
                "Deepest scroll in the session, percent.",
            ),
            (
                "session.avg_scroll_depth",
                "number",
                "percent",
                "Mean of the scroll depths reported, percent.",
            ),
            (
                "session.scroll_speed",
                "number",
                "px/s",
                "Mean reported scroll speed, pixels per second.",
            ),
            ("session.clicks", "number", "count", "Clicks in the session."),
            ("session.hovers", "number", "count", "Hovers in the session."),
            ("session.form_starts", "number", "count", "Forms started in the session."),
            ("session.form_submits", "number", "count", "Forms submitted in the session."),
            ("session.form_abandons", "number", "count", "Forms abandoned in the session."),
            (
                "session.device_type",
                "string",
                "",
                "desktop, mobile, tablet or bot, from the user agent.",
            ),
            ("session.os", "string", "", "Operating system family, from the user agent."),
            ("session.browser", "string", "", "Browser family, from the user agent."),
            ("session.referrer_source", "string", "", "Referring host, or 'direct'."),
            ("session.referrer_kind", "string", "", "direct, search, social, internal or other."),
            ("session.utm_source", "string", "", "UTM source of the session's landing event."),
            ("session.utm_medium", "string", "", "UTM medium of the session's landing event."),
            (
                "session.utm_campaign",
                "string",
                "",
                "UTM campaign of the session's landing event.",
            ),
            (
                "session.path",
                "array",
                "URL paths",
                "The session's last 10 page URLs (paths), oldest first.",
            ),
            (
                "session.activity_trend",
                "number",
                "-1..1",
                "-1..1: events in the last minute against the minute before (rising > 0).",
            ),
            (
                "session.items_viewed",
                "array",
                "item ids",
                "Item ids viewed in the session (last 20).",
            ),
            ("session.cart_adds", "number", "count", "add_to_cart events in the session."),
            ("session.purchases", "number", "count", "Purchases in the session."),
            ("session.revenue", "number", "currency", "Revenue of the session's purchases."),
            (
                "session.engagement_score",
                "number",
                "0..100",
                "0..100, see README (engagement score).",
            ),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        attributes["session"] = signals["session"]


class VisitorProvider(Provider):
    """The visitor's live signals over all sessions (``signals.visitor_signals``)."""

    namespace = "visitor"
    attributes = _attrs(
        [
            ("visitor.sessions", "number", "count", "Sessions of the visitor."),
            (
                "visitor.bounce_rate",
                "number",
                "share 0..1",
                "Share of the visitor's sessions that bounced, 0..1.",
            ),
            ("visitor.visits_7d", "number", "count", "Sessions started in the last 7 days."),
            ("visitor.visits_30d", "number", "count", "Sessions started in the last 30 days."),
            (
                "visitor.days_since_last_visit",
                "number",
                "days",
                "Days between the current session's start and the previous session's last "
                "event (null on a first visit).",
            ),
            ("visitor.page_views", "number", "count", "Page views over all sessions."),
            ("visitor.clicks", "number", "count", "Clicks over all sessions."),
            (
                "visitor.items_viewed",
                "array",
                "item ids",
                "Item ids the visitor viewed (last 20).",
            ),
            (
                "visitor.items_carted",
                "array",
                "item ids",
                "Item ids the visitor carted (last 20).",
            ),
            ("visitor.cart_adds", "number", "count", "add_to_cart events over all sessions."),
            ("visitor.purchases", "number", "count", "Purchases over all sessions."),
            ("visitor.revenue", "number", "currency", "Revenue over all sessions."),
            (
                "visitor.engagement_score",
                "number",
                "0..100",
                "Mean engagement score of the visitor's sessions.",
            ),
            ("visitor.device_type", "string", "", "Device type of the latest session."),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        attributes["visitor"] = signals["visitor"]


class ModelProvider(Provider):
    """Propensity scores of the models the rule set reads (``RuleSet.model_scores``)."""

    namespace = "model"
    attributes = _attrs(
        [
            (
                "model.<key>.score",
                "number",
                "probability 0..1",
                "The model's predicted chance of its goal with the slot's default variant.",
            ),
            (
                "model.<key>.variants.<variant>",
                "number",
                "probability 0..1",
                "The model's predicted chance of its goal with that variant.",
            ),
            ("model.<key>.best", "string", "variant key", "The variant with the best chance."),
            ("model.<key>.version", "number", "", "The promoted version that scored."),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        if ruleset.models:
            # Scores before segments: segments and rules may read model.<key>.score.
            attributes["model"] = ruleset.model_scores(attributes)


class SegmentProvider(Provider):
    """Segment membership, from the rule set's compiled segments."""

    namespace = "segment"
    attributes = _attrs(
        [
            (
                "segments",
                "array",
                "segment keys",
                'The visitor\'s segments: {"segments": {"$in": ["deep-readers"]}}.',
            ),
            ("segment.<key>", "boolean", "", "The visitor is in the segment <key>."),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        saved = ruleset.saved_groups
        members = [key for key, cond in ruleset.segments if cond(attributes, saved)]
        attributes["segments"] = members
        attributes["segment"] = dict.fromkeys(members, True)


class SlotMetricsProvider(Provider):
    """A slot's live click-through over the last hour (``live.slot_metrics``)."""

    namespace = "slot"
    attributes = _attrs(
        [
            (
                "slot.<key>.ctr",
                "number",
                "share 0..1",
                "Clicks per exposure of the slot over the last hour.",
            ),
            (
                "slot.<key>.ctr_low",
                "number",
                "share 0..1",
                "Low end of the click-through's 95% Wilson interval.",
            ),
            (
                "slot.<key>.ctr_high",
                "number",
                "share 0..1",
                "High end of the click-through's 95% Wilson interval.",
            ),
            (
                "slot.<key>.exposures",
                "number",
                "count",
                "Adjustments of the slot shown in the last hour.",
            ),
            ("slot.<key>.clicks", "number", "count", "Clicks on them in the last hour."),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        metric_slots = ruleset.metric_slots
        if metric_slots:
            attributes["slot"] = live.slot_metrics(prop.pk, metric_slots, now)


class PageProvider(Provider):
    """Page signals: measured by the tracker's live module (``tracker-live.js``) in the open
    page, only while ``personalization`` or ``granular_tracking`` is granted, kept in memory.
    The server has no values for them: a condition reading them is a *live rule*, whose
    ``page.*`` part the page evaluates (docs/CONTRACT.md, "Live in-page adjustments")."""

    namespace = "page"
    page_side = True
    attributes = tuple(
        Attribute(*row)
        for row in [
            (
                "page.scroll_speed",
                "number",
                "px/s",
                "Live, in the page: vertical pixels scrolled (either way) in the last second.",
                "Each scroll event adds |scrollY - previous scrollY| with its time; the value is "
                "the sum over the last 1,000 ms, per second, so 0 a second after scrolling stops.",
            ),
            (
                "page.scroll_depth",
                "number",
                "percent 0..100",
                "Live, in the page: deepest point the viewport's bottom edge reached, percent.",
                "max over the page view of round((scrollY + innerHeight) * 100 / "
                "documentElement.scrollHeight), at most 100; read at load and on each scroll.",
            ),
            (
                "page.dwell_s",
                "number",
                "seconds",
                "Live, in the page: whole seconds the page has been visible since it loaded.",
                "Time since load with the document visible (visibilitychange pauses it), "
                "floored to whole seconds; updated four times a second.",
            ),
            (
                "page.idle_s",
                "number",
                "seconds",
                "Live, in the page: whole seconds since the visitor's last input.",
                "Time since the last pointermove, pointerdown, keydown, wheel, touchstart or "
                "scroll (since load before any), floored to whole seconds.",
            ),
            (
                "page.exit_intent",
                "boolean",
                "",
                "Live, in the page: the visitor made to leave (true from then on).",
                "The pointer left the document through its top edge (mouseout with no "
                "relatedTarget and clientY <= 0) or, on a touch screen (pointer: coarse), an "
                "upward scroll of 1,500 px or more within one second.",
            ),
            (
                "page.section_visible_s.<section>",
                "number",
                "seconds",
                "Live, in the page: whole seconds the section <section> was visible.",
                "IntersectionObserver on each [data-section]: counted while half of it (or half "
                "the viewport) shows and the page is visible, summed over the page view.",
            ),
            (
                "page.clicks",
                "number",
                "count",
                "Live, in the page: clicks anywhere in the page during this page view.",
                "Each click event on the document (any element, banner included) adds one.",
            ),
            (
                "page.rage_clicks",
                "number",
                "count",
                "Live, in the page: bursts of 3 or more clicks within 1 s and 30 px.",
                "A click within 1,000 ms and 30 px of the burst's first click extends the burst; "
                "a burst counts once, when its third click lands.",
            ),
            (
                "page.activity_trend",
                "number",
                "-1..1",
                "Live, in the page: activity of the last 30 s against the page view's own rate.",
                "Active seconds (any input in that second) among the last 30, a = share, "
                "against the share since load, b: (a - b) / max(a, b), 0 when both are 0 and "
                "during the first 30 s; falling activity is negative.",
            ),
        ]
    )

    def provide(
        self,
        attributes: dict[str, Any],
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> None:
        """Nothing: the server never has page signals (the engine does not call this)."""


def _pattern(name: str) -> re.Pattern[str]:
    parts = [
        (".+" if part == "<path>" else "[^.]+") if part.startswith("<") else re.escape(part)
        for part in name.split(".")
    ]
    return re.compile(r"\.".join(parts))


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit() and (segment == "0" or segment[0] != "0")


# How close a dotted storefront attribute must be to a catalogue name to be taken as a typo.
TYPO_CUTOFF = 0.9
SUGGEST_CUTOFF = 0.6


class Catalogue:
    """The providers, in the order the engine calls them, and lookups over their names."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self.providers = tuple(providers)
        declared = [a for p in self.providers if not p.free_form for a in p.attributes]
        names = [a.name for a in declared]
        if len(names) != len(set(names)):
            raise ValueError("an attribute is declared twice")
        bad = [a.name for a in declared if a.type not in TYPES]
        if bad:
            raise ValueError(f"unknown attribute types: {bad}")
        self.fixed = {a.name: a for a in declared if not a.is_pattern}
        self.patterns = [(_pattern(a.name), a) for a in declared if a.is_pattern]
        self.roots = frozenset(name.split(".", 1)[0] for name in names)
        self.storefront = next(a for p in self.providers if p.free_form for a in p.attributes)
        # The namespaces only the page knows: decide defers their clauses to the page.
        self.page_side = tuple(p.namespace for p in self.providers if p.page_side)
        # Bound once: the engine's loop makes no allocation of its own per decision.
        self.provides: tuple[Provide, ...] = tuple(
            p.provide for p in self.providers if not p.page_side
        )

    def attributes(self) -> list[Attribute]:
        return [a for p in self.providers for a in p.attributes]

    def provider(self, namespace: str) -> Provider:
        return next(p for p in self.providers if p.namespace == namespace)

    def assemble(
        self,
        request: DecideRequest,
        signals: dict,
        ruleset: RuleSet,
        prop: Property,
        now: datetime,
    ) -> dict[str, Any]:
        """The attributes a decision's conditions read, each provider adding its part."""
        attributes: dict[str, Any] = {}
        for provide in self.provides:
            provide(attributes, request, signals, ruleset, prop, now)
        return attributes

    def lookup(self, path: str) -> Attribute | None:
        """The declaration ``path`` reads, or None when the catalogue has no such name."""
        found = self.fixed.get(path)
        if found is not None:
            return found
        for pattern, attribute in self.patterns:
            if pattern.fullmatch(path):
                return attribute
        head, dot, _ = path.partition(".")
        if head not in self.roots:
            if dot and self._close(path, TYPO_CUTOFF):
                return None  # a typo of a catalogue name, not a storefront attribute
            return self.storefront
        parent, _, last = path.rpartition(".")
        if parent and _is_index(last):
            outer = self.lookup(parent)
            if outer is not None and outer.type == "array":
                return Attribute(path, "any", "", f"An element of {outer.name}.")
        return None

    def _close(self, path: str, cutoff: float) -> list[str]:
        """Catalogue names close to ``path``, best first; patterns of its namespace are
        filled in with its own keys (``slot.headline.ctrr`` → ``slot.headline.ctr``)."""
        candidates = set(self.fixed)
        segments = path.split(".")
        for _, attribute in self.patterns:
            parts = attribute.name.split(".")
            if parts[0] == segments[0] and len(parts) <= len(segments):
                filled = [
                    segments[i] if part.startswith("<") else part for i, part in enumerate(parts)
                ]
                candidates.add(".".join(filled))
        close = difflib.get_close_matches(path, sorted(candidates), n=3, cutoff=cutoff)
        if not close:
            return []
        # Only the names about as close as the closest: one clear typo gets one suggestion.
        best = difflib.SequenceMatcher(None, path, close[0]).ratio()
        return [c for c in close if difflib.SequenceMatcher(None, path, c).ratio() >= best - 0.05]

    def suggestions(self, path: str) -> list[str]:
        """The catalogue's closest names to ``path`` (patterns filled in with its keys)."""
        return self._close(path, SUGGEST_CUTOFF)

    def is_page_side(self, path: str) -> bool:
        """Whether ``path`` reads a page-side attribute (``page.scroll_speed`` …)."""
        return path.split(".", 1)[0] in self.page_side

    def builder_entries(self) -> list[dict[str, str]]:
        """What the condition builder offers: every declared name, with unit and meaning."""
        return [a.entry() for p in self.providers if not p.free_form for a in p.attributes]

    def readme_table(self) -> str:
        """The README's attribute table, as Markdown."""
        rows = ["| attribute | type | unit | meaning |", "| --- | --- | --- | --- |"]
        for a in self.attributes():
            rows.append(f"| `{a.name}` | {a.type} | {a.unit or '—'} | {a.description} |")
        return "\n".join(rows)


CATALOGUE = Catalogue(
    [
        StorefrontProvider(),
        ContextProvider(),
        SessionProvider(),
        VisitorProvider(),
        ModelProvider(),
        SegmentProvider(),
        SlotMetricsProvider(),
        PageProvider(),
    ]
)


# --- The admin's check of a condition ---------------------------------------------------------

_RELATIONAL = frozenset({"$lt", "$lte", "$gt", "$gte"})
_EQUALITY = frozenset({"$eq", "$ne"})
_MEMBERSHIP = frozenset({"$in", "$nin"})
_LIST_ONLY = frozenset({"$size", "$all", "$alli", "$elemMatch"})


_FINE = object()


def _numeric_text(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _wrong_operand(attribute: Attribute, op: str, operand: Any) -> Any:
    """The operand of ``op`` whose type cannot match ``attribute``, or ``_FINE``."""
    kind = attribute.type
    if op in _RELATIONAL:
        ok = kind in ("number", "string") and _js_type(operand) == kind
        return _FINE if ok else operand
    if op in _EQUALITY:
        ok = operand is None or (kind != "array" and _js_type(operand) == kind)
        return _FINE if ok else operand
    if op in _MEMBERSHIP and isinstance(operand, list) and kind != "array":
        for item in operand:
            if item is not None and _js_type(item) != kind:
                return item
    return _FINE


def _unit(attribute: Attribute) -> str:
    return f" ({attribute.unit})" if attribute.unit else ""


def _operator_problems(clause: Clause, attribute: Attribute, value: Any) -> list[str]:
    where = f"clause {clause.number} ({render_location(clause.location)})"
    name = f"`{clause.path}` is {'an' if attribute.type == 'array' else 'a'} {attribute.type}"
    problems = []
    for op, operand in value.items():
        if op == "$not" and _is_operator_object(operand):
            problems += _operator_problems(clause, attribute, operand)
        elif op in _LIST_ONLY and attribute.type != "array":
            problems.append(f"Wrong operator in {where}: {op} reads a list, and {name}.")
        else:
            wrong = _wrong_operand(attribute, op, operand)
            if wrong is not _FINE:
                problems.append(
                    f"Wrong value type in {where}: {name}{_unit(attribute)}, and {op} "
                    f"compares it with {_describe(wrong)}, so it never does what it says."
                )
    return problems


def _type_problems(clause: Clause, attribute: Attribute) -> list[str]:
    if attribute.type in ("any", "object"):
        return []
    value = clause.argument
    if _is_operator_object(value):
        return _operator_problems(clause, attribute, value)
    if attribute.type == "number" and isinstance(value, str) and not _numeric_text(value):
        where = f"clause {clause.number} ({render_location(clause.location)})"
        return [
            f"Wrong value type in {where}: `{clause.path}` is a number{_unit(attribute)}, "
            f"not {_describe(value)}."
        ]
    return []


def attribute_problems(condition: Any, catalogue: Catalogue = CATALOGUE) -> list[str]:
    """Each clause reading an attribute the catalogue does not have, or comparing one with a
    value of the wrong type, in words that name the clause (empty when all are known)."""
    problems: list[str] = []
    for clause in condition_clauses(condition):
        attribute = catalogue.lookup(clause.path)
        if attribute is None:
            close = catalogue.suggestions(clause.path)
            hint = (
                "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
                if close
                else "; the builder lists the attributes a condition can read."
            )
            problems.append(
                f"Unknown attribute `{clause.path}` in clause {clause.number} "
                f"({render_location(clause.location)}){hint}"
            )
        else:
            problems += _type_problems(clause, attribute)
    return problems


def condition_problems(condition: Any, *, known_groups: Collection[str] | None = None) -> list[str]:
    """Everything wrong with a condition staff save: the language's checks
    (:func:`~personalization.conditions.validate_condition`) and the catalogue's."""
    return validate_condition(condition, known_groups=known_groups) + attribute_problems(condition)
