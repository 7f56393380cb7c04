"""Decision benchmark: the engine against GrowthBook's Python SDK, and decide over HTTP against
a trivial DRF endpoint, in one run (docs/CONTRACT.md, "Performance budgets").

Setup (its own database, ``--db``, default ``bench_decide``, created, migrated and dropped):
one property (holdout 0), 5 slots of 5 variants, 50 active rules (10 a slot) whose
conditions have 2–5 clauses over ``session.*``/``visitor.*`` signals and context attributes
(``$lt $lte $gt $gte $in $nin $regex $exists``, implicit equality, nested ``$or``), some
with caps and cooldowns; ``--visitors`` visitors who granted consent (all purposes) and whose
simulated visits (``personalization.simulation``) were ingested through ``events_ingest``, so
every visitor has live visitor and session signals. Each decision asks for the 5 slots for
the visitor's latest session, with a context (url, referrer, user agent, locale, 6–7
attributes). Half of the visitors get one real decision first, so counters, session budgets
and sticky slots exist when the engine is measured.

In-process, interleaved per decision, on the same visitors:

(a) the engine's pure work: ``decide(..., dry_run=True)`` through the pipeline's public seams,
    ``ruleset=`` (the compiled rule set, instead of ``ruleset_for``'s cache read) and
    ``state=`` (a ``decisions.state.VisitorState`` whose loaders return pre-loaded values:
    the visitor's ``EffectiveConsent``, signals dict, counters and session budget, instead
    of one Redis round trip or queries on the database path). What
    remains: attributes, candidates, the compiled conditions, live windows, caps and cooldowns
    against the loaded counters, stickiness and the session budget, resolution, the answer —
    and, because it is a dry run, the explanation trace. (a') is the same without the trace:
    ``dry_run=False`` with the state's ``apply_and_log`` (the writes and the log) stubbed.
(b) GrowthBook's SDK (``growthbook.core.evalCondition``) evaluating the same 50 conditions (the
    rules' stored JSON) on the same nested attribute dict the engine builds; (a0) is the
    engine's 50 compiled conditions alone on that dict.
(c) the whole ``decide()`` on PostgreSQL: consent, signals, counters, the budget, the atomic
    counter updates and the decision log — with the Redis cache (``--redis-url``, default
    ``redis://127.0.0.1:6379/3``, flushed at the start) or the per-process cache
    (``--no-redis``). With Redis, the engine's hot state (personalization/hotstate/) is in
    the same Redis: counters and budget read in one round trip, applied with the log entry
    queued in one Lua script, the log flushed to PostgreSQL in batches (timed apart: the
    flush's cost per decision); (c0) is the same decisions on the database path
    (``DECIDE_REDIS_URL=""``: counters, budget and log in PostgreSQL, one transaction).
    ``--db-path`` runs everything, HTTP included, on the database path.

Over HTTP: ``gunicorn personalization.wsgi`` with ``DJANGO_SETTINGS_MODULE=
benchmarks.bench_settings`` (the project's URLs plus ``/bench/trivial``, a DRF APIView with
``AllowAny`` answering ``{"ok": true}``), ``-w 2`` sync workers pinned with ``taskset -c 1``,
``benchmarks/loadgen.py`` pinned with ``taskset -c 0``; the decision log flushed to
PostgreSQL by a Celery worker (solo pool, broker ``--broker-url``) pinned to the server's
core as production runs it (``--flush inline``: inside the request that fills a batch, as
``TASKS_IN_PROCESS`` does), its CPU counted with the server's: closed-loop rate of
``POST /api/v1/decide`` (many visitors) and of ``POST /bench/trivial`` (same bodies), then
decide paced at ``--paced-rate`` (default 700/s) and at half the measured closed-loop rate.

When the engine is not faster than the SDK, or decide's HTTP rate is below half the trivial
endpoint's (or with ``--profile``), pyinstrument profiles the engine's pure path and the whole
request in-process (Django test client, same middleware and views).

    .venv/bin/python benchmarks/bench_decide.py                     # default, about 3-4 minutes
    .venv/bin/python benchmarks/bench_decide.py --skip-http --iterations 20000
"""

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.bench_ingest import (  # noqa: E402
    analyze,
    cpu_model,
    create_database,
    drop_database,
    free_port,
    gunicorn,
    log,
    pct,
    server_facts,
    spawned,
)

PYTHON = sys.executable
SLOTS = ("hero", "cta", "recommendations", "banner", "popup")
RULES_PER_SLOT = 10
TARGET_DECISIONS_PER_S = 1_000
TARGET_PACED_RATE = 700
TARGET_PACED_P99_MS = 25.0
TARGET_IN_PROCESS_P99_MS = 5.0
TARGET_HTTP_RATIO = 0.5
RESULTS = BASE_DIR / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- bench_decide:begin -->", "<!-- bench_decide:end -->"

COUNTRIES = ["US", "DE", "FR", "GB", "NL", "ES", "IT"]
TAGS = ["sale", "new", "vip", "outlet", "eco", "gift"]
PAGES = [
    "/",
    "/products/trail-runner-42",
    "/products/city-sneaker-7",
    "/category/shoes",
    "/sale/summer",
    "/cart",
    "/blog/how-to-choose-running-shoes",
]
REFERRERS = ["", "https://www.google.com/", "https://www.instagram.com/", "https://shop.example/"]
LOCALES = ["en-US", "de-DE", "fr-FR", "en-GB", "nl-NL"]


def us(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(seconds, 50) * 1e6, 1),
        "p90": round(pct(seconds, 90) * 1e6, 1),
        "p99": round(pct(seconds, 99) * 1e6, 1),
        "mean": round(statistics.fmean(seconds) * 1e6, 1) if seconds else 0.0,
    }


def ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(seconds, 50) * 1000, 3),
        "p90": round(pct(seconds, 90) * 1000, 3),
        "p99": round(pct(seconds, 99) * 1000, 3),
        "max": round(max(seconds, default=0.0) * 1000, 3),
        "mean": round(statistics.fmean(seconds) * 1000, 3) if seconds else 0.0,
    }


# --------------------------------------------------------------------------- targeting


def _clauses() -> list[Callable[[random.Random], tuple[str, Any]]]:
    """Realistic clauses: a path and what it must satisfy."""
    return [
        lambda r: ("session.duration_s", {"$gt": r.choice([30, 60, 120, 300])}),
        lambda r: ("session.page_views", {"$gte": r.randint(2, 5)}),
        lambda r: ("session.max_scroll_depth", {"$gt": r.choice([25, 50, 75])}),
        lambda r: ("session.scroll_speed", {"$lt": r.choice([800, 1500, 2500])}),
        lambda r: ("session.clicks", {"$gt": r.randint(0, 3)}),
        lambda r: ("session.engagement_score", {"$gt": r.choice([20, 35, 50])}),
        lambda r: ("session.device_type", {"$in": r.sample(["desktop", "mobile", "tablet"], 2)}),
        lambda r: (
            "session.referrer_kind",
            {"$in": r.sample(["direct", "search", "social", "internal", "other"], 2)},
        ),
        lambda r: ("session.browser", {"$regex": r.choice(["^Chrome", "Safari|Firefox"])}),
        lambda r: ("session.cart_adds", {"$gte": 1}),
        lambda r: ("session.is_bounce", r.random() < 0.3),
        lambda r: ("visitor.sessions", {"$gte": r.randint(1, 3)}),
        lambda r: ("visitor.bounce_rate", {"$lt": r.choice([0.3, 0.5, 0.7])}),
        lambda r: ("visitor.visits_7d", {"$gt": r.randint(0, 2)}),
        lambda r: ("visitor.purchases", {"$gt": 0}),
        lambda r: ("visitor.revenue", {"$gte": r.choice([20, 50, 100])}),
        lambda r: ("visitor.engagement_score", {"$gt": r.choice([15, 30, 45])}),
        lambda r: ("visitor.days_since_last_visit", {"$exists": r.random() < 0.6}),
        lambda r: ("visitor.device_type", {"$nin": [r.choice(["tablet", "mobile"])]}),
        lambda r: (
            "url",
            {
                "$regex": r.choice(
                    ["/products/", r"^https://shop\.example/(category|sale)/", "/cart$"]
                )
            },
        ),
        lambda r: ("context.locale", {"$regex": r.choice(["^de", "^(en|fr)-", "-GB$"])}),
        lambda r: ("context.referrer", {"$regex": "google|bing|duckduckgo"}),
        lambda r: ("country", {"$in": r.sample(COUNTRIES, r.randint(2, 4))}),
        lambda r: ("plan", {"$in": r.sample(["free", "plus", "pro"], r.randint(1, 2))}),
        lambda r: ("cart_value", {"$gt": r.choice([25, 50, 100, 150])}),
        lambda r: ("cart_value", {"$lte": r.choice([40, 80, 200])}),
        lambda r: ("logged_in", True),
        lambda r: ("ab_cohort", {"$lt": r.choice([20, 50, 80])}),
        lambda r: ("tags", {"$in": r.sample(TAGS, 2)}),
        lambda r: ("coupon", {"$exists": False}),
    ]


def make_condition(r: random.Random) -> dict[str, Any]:
    """2–5 clauses; about half the conditions carry one nested ``$or`` (counted as one)."""
    catalogue = _clauses()
    n = r.randint(2, 5)
    condition: dict[str, Any] = {}
    plain = n - 1 if r.random() < 0.5 else n
    for make in r.sample(catalogue, len(catalogue)):
        if len(condition) >= plain:
            break
        path, expr = make(r)
        condition.setdefault(path, expr)
    if plain < n:
        branches = []
        for _ in range(r.randint(2, 3)):
            branch: dict[str, Any] = {}
            for make in r.sample(catalogue, 2 if r.random() < 0.3 else 1):
                path, expr = make(r)
                branch.setdefault(path, expr)
            branches.append(branch)
        condition["$or"] = branches
    return condition


def build_targeting(prop: Any, seed: int, segments: int) -> dict[str, Any]:
    from personalization.models import Segment
    from tests.targeting import rule, slot

    r = random.Random(seed)
    variants = ("v1", "v2", "v3", "v4")
    for key in SLOTS:
        slot(prop, key, {v: {"text": f"{key} {v}", "style": v} for v in variants})
    clause_counts: list[int] = []
    operators: Counter[str] = Counter()
    nested_or = capped = cooled = 0
    for key in SLOTS:
        for i in range(RULES_PER_SLOT):
            condition = make_condition(r)
            clause_counts.append(len(condition))
            nested_or += "$or" in condition
            text = json.dumps(condition)
            for op in ('$lt"', "$lte", '$gt"', "$gte", '$in"', "$nin", "$regex", "$exists", "$or"):
                operators[op.strip('"')] += text.count(op)
            fields: dict[str, Any] = {"priority": r.randint(1, 100)}
            if r.random() < 0.3:
                fields["cap_per_session"] = 2
            if r.random() < 0.2:
                fields["cap_per_day"] = 3
            if r.random() < 0.2:
                fields["cooldown_seconds"] = 600
            if r.random() < 0.1:
                fields["stickiness_override"] = True
            capped += any(k.startswith("cap_") for k in fields)
            cooled += "cooldown_seconds" in fields
            rule(prop, f"{key}-r{i:02d}", key, r.choice(variants), condition, **fields)
    for i in range(segments):
        Segment.objects.create(
            property=prop, key=f"seg-{i}", name=f"Segment {i}", condition=make_condition(r)
        )
    return {
        "slots": len(SLOTS),
        "variants_per_slot": len(variants) + 1,
        "rules": len(SLOTS) * RULES_PER_SLOT,
        "segments": segments,
        "clauses_per_condition": dict(sorted(Counter(clause_counts).items())),
        "conditions_with_nested_or": nested_or,
        "operator_uses": dict(operators),
        "rules_with_caps": capped,
        "rules_with_cooldown": cooled,
    }


# --------------------------------------------------------------------------- visitors


@dataclass
class Case:
    visitor_id: str
    session_id: str
    context: dict[str, Any]

    def request(self) -> Any:
        return decisions_api().DecideRequest(
            self.visitor_id, self.session_id, list(SLOTS), self.context
        )

    def body(self) -> bytes:
        payload = {
            "visitor_id": self.visitor_id,
            "session_id": self.session_id,
            "slots": list(SLOTS),
            "context": self.context,
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def body_one(self) -> bytes:
        """The same request for the first slot only (against a single-flag OFREP call)."""
        payload = json.loads(self.body())
        payload["slots"] = [SLOTS[0]]
        return json.dumps(payload, separators=(",", ":")).encode()

    def ofrep_body(self) -> bytes:
        """The same visitor through OFREP: the context's attributes are the OFREP context's
        other fields (they become ``context.attributes`` for conditions)."""
        context = {"targetingKey": self.visitor_id, "session_id": self.session_id}
        context.update(self.context.get("attributes") or {})
        return json.dumps({"context": context}, separators=(",", ":")).encode()


def make_context(r: random.Random) -> dict[str, Any]:
    from personalization.simulation import USER_AGENTS

    attributes: dict[str, Any] = {
        "country": r.choice(COUNTRIES),
        "plan": r.choice(["free", "free", "plus", "pro"]),
        "cart_value": round(r.uniform(0, 250), 2),
        "logged_in": r.random() < 0.4,
        "ab_cohort": r.randint(0, 99),
        "tags": r.sample(TAGS, r.randint(0, 3)),
    }
    if r.random() < 0.2:
        attributes["coupon"] = "WELCOME10"
    return {
        "url": "https://shop.example" + r.choice(PAGES),
        "referrer": r.choice(REFERRERS),
        "user_agent": r.choice(list(USER_AGENTS.values())),
        "locale": r.choice(LOCALES),
        "attributes": attributes,
    }


def build_visitors(prop: Any, n: int, days: float, seed: int) -> tuple[list[Case], dict]:
    """Consent, then the visitors' simulated visits ingested in time order (live signals)."""
    from django.utils import timezone

    from benchmarks.bench_ingest import grant_consent
    from personalization.services.ingest import events_ingest
    from personalization.simulation import visitor_events

    r = random.Random(seed)
    now = timezone.now()
    events: list[dict] = []
    ids = [f"dv-{seed}-{i:06d}" for i in range(n)]
    for visitor in ids:
        events.extend(visitor_events(r, visitor, days, now))  # type: ignore[arg-type]
    events.sort(key=lambda e: e["timestamp"])
    t0 = time.perf_counter()
    grant_consent(prop.pk, ids)
    log(f"consent recorded for {n} visitors in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    accepted = 0
    for i in range(0, len(events), 200):
        accepted += events_ingest(prop=prop, events=events[i : i + 200]).accepted
    log(f"{accepted} of {len(events)} events ingested in {time.perf_counter() - t0:.1f}s")
    latest: dict[str, str] = {}
    for e in events:  # in time order: the last one seen is the latest session
        latest[e["visitor_id"]] = e["session_id"]
    cases = [Case(v, latest[v], make_context(r)) for v in ids if v in latest]
    sessions = len({(e["visitor_id"], e["session_id"]) for e in events})
    return cases, {"visitors": len(cases), "events": accepted, "sessions": sessions}


# --------------------------------------------------------------------------- in-process


@dataclass
class Preloaded:
    consent: dict[str, Any]
    signals: dict[tuple[str, str], dict]
    counters: dict[str, dict[int, Any]]
    budgets: dict[tuple[str, str], Any]
    attributes: dict[str, dict]


def decisions_api() -> Any:
    """The decision pipeline's public entry: ``personalization.decisions``, or on the code
    before it (a "before" run from an exported older commit) ``personalization.engine``."""
    try:
        from personalization import decisions
    except ImportError:
        from personalization import engine as decisions  # type: ignore[no-redef]
    return decisions


def preload(prop: Any, cases: list[Case]) -> Preloaded:
    from django.utils import timezone

    from consent.selectors import consent_effective
    from personalization.attributes import CATALOGUE
    from personalization.ruleset import ruleset_for
    from personalization.selectors import visitor_signals_get

    ruleset = ruleset_for(prop.pk)
    all_rules = [r for rules in ruleset.rules_by_slot.values() for r in rules]
    now = timezone.now()
    loaded = Preloaded({}, {}, {}, {}, {})
    for c in cases:
        loaded.consent[c.visitor_id] = consent_effective(prop.pk, c.visitor_id)
        signals = visitor_signals_get(prop, c.visitor_id, c.session_id, now)
        loaded.signals[(c.visitor_id, c.session_id)] = signals
        # Counters and budget as the engine loads them (Redis hot state, or the database).
        rows, budget = _state_now(prop, c.request(), all_rules)
        loaded.counters[c.visitor_id] = rows
        loaded.budgets[(c.visitor_id, c.session_id)] = budget
        loaded.attributes[c.visitor_id] = CATALOGUE.assemble(
            c.request(), signals, ruleset, prop, now
        )
    return loaded


def _state_now(prop: Any, request: Any, rules: list) -> tuple[dict, Any]:
    """The visitor's counters and session budget as a decision reads them now."""
    from personalization import hotstate

    if hotstate.client() is not None:
        return hotstate.state_get(prop.pk, request.visitor_id, request.session_id)
    from personalization.models import RuleCounter, SessionBudget

    rows = RuleCounter.objects.filter(
        property=prop, visitor_id=request.visitor_id, rule_id__in=[r.id for r in rules]
    )
    budget = SessionBudget.objects.filter(
        property=prop, visitor_id=request.visitor_id, session_id=request.session_id
    ).first()
    return {c.rule_id: c for c in rows}, budget


@contextmanager
def engine_without_io(ruleset: Any, loaded: Preloaded, stub_writes: bool) -> Iterator[Any]:
    """``decide`` with the visitor's state pre-loaded (and, with ``stub_writes``, nothing
    applied or logged), through the pipeline's public seams: ``decide(..., state=,
    ruleset=)``. On the code before those seams (a "before" run), the same by patching the
    old engine's loaders inside this process, restored on exit."""
    decisions = decisions_api()
    if not hasattr(decisions, "engine"):
        with _old_engine_without_io(decisions, ruleset, loaded, stub_writes):
            yield decisions.decide
        return
    from personalization.decisions.state import VisitorState

    class Preloaded_(VisitorState):
        def visitor(self, d: Any) -> tuple[Any, dict | None]:
            consent = loaded.consent[d.request.visitor_id]
            if consent.suppressed:
                return consent, None
            return consent, loaded.signals[(d.request.visitor_id, d.request.session_id)]

        def counters(self, d: Any, rules: Any) -> tuple[dict, Any]:
            budget = loaded.budgets.get((d.request.visitor_id, d.request.session_id))
            return loaded.counters.get(d.request.visitor_id, {}), budget

        if stub_writes:

            def apply_and_log(self, d: Any) -> None:
                return None

    state = Preloaded_()

    def decide(prop: Any, request: Any, **kwargs: Any) -> Any:
        return decisions.decide(prop, request, state=state, ruleset=ruleset, **kwargs)

    yield decide


@contextmanager
def _old_engine_without_io(
    engine: Any, ruleset: Any, loaded: Preloaded, stub_writes: bool
) -> Iterator[None]:
    saved = {
        name: getattr(engine, name)
        for name in ("ruleset_for", "consent_selectors", "visitor_signals_get", "_state_load",
                     "transaction", "_apply_and_log", "_hot_load")
        if hasattr(engine, name)
    }  # fmt: skip
    engine.ruleset_for = lambda property_id: ruleset
    engine._hot_load = lambda prop, request, now: None
    engine.consent_selectors = SimpleNamespace(
        consent_effective=lambda property_id, visitor_id: loaded.consent[visitor_id]
    )

    def signals_get(prop: Any, visitor_id: str, session_id: Any = None, now: Any = None) -> dict:
        return loaded.signals[(visitor_id, session_id)]

    engine.visitor_signals_get = signals_get

    def state_load(prop: Any, request: Any, rules: Any) -> tuple[dict, Any, bool]:
        budget = loaded.budgets.get((request.visitor_id, request.session_id))
        return loaded.counters.get(request.visitor_id, {}), budget, False

    engine._state_load = state_load
    if stub_writes:
        engine.transaction = SimpleNamespace(atomic=contextlib.nullcontext)
        engine._apply_and_log = lambda *a, **kw: None
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(engine, name, value)


def run_pure(prop: Any, cases: list[Case], loaded: Preloaded, iterations: int, warmup: int):
    """(a), (a'), (a0) and (b), interleaved per decision on the same visitors."""
    from growthbook.core import evalCondition

    from personalization.conditions import compile_condition
    from personalization.ruleset import ruleset_for

    ruleset = ruleset_for(prop.pk)
    rules = [r for s in SLOTS for r in ruleset.rules_by_slot.get(s, [])]
    raw = [r.condition.condition for r in rules]
    # Experiment (not the product's setting): the same conditions compiled without the regex
    # time limit, to size what ``regex``'s per-call timeout costs.
    untimed = [compile_condition(c, regex_timeout=None) for c in raw]  # type: ignore[arg-type]
    groups = ruleset.saved_groups
    requests = [c.request() for c in cases]
    attrs = [loaded.attributes[c.visitor_id] for c in cases]
    n = len(cases)

    # Agreement of the two evaluators, and what the conditions select.
    disagree: list[str] = []
    holds = mismatches = 0
    for a in attrs:
        for r, c in zip(rules, raw, strict=True):
            ours = r.condition(a, groups)
            holds += ours
            if ours != evalCondition(a, c):
                mismatches += 1
                if len(disagree) < 5:
                    disagree.append(f"{r.key}: engine {ours}, growthbook {not ours}")

    t_a: list[float] = []
    t_a2: list[float] = []
    t_a0: list[float] = []
    t_a0u: list[float] = []
    t_b: list[float] = []
    personalized = suppressed = 0
    perf = time.perf_counter
    with engine_without_io(ruleset, loaded, stub_writes=False) as decide:
        for i in range(warmup):
            decide(prop, requests[i % n], dry_run=True)
    with engine_without_io(ruleset, loaded, stub_writes=True) as decide:
        for i in range(warmup):
            decide(prop, requests[i % n])
    for i in range(iterations):
        req, a = requests[i % n], attrs[i % n]
        with engine_without_io(ruleset, loaded, stub_writes=False) as decide:
            t0 = perf()
            result = decide(prop, req, dry_run=True)
            t_a.append(perf() - t0)
        personalized += result.personalized
        suppressed += len(result.suppressed)
        with engine_without_io(ruleset, loaded, stub_writes=True) as decide:
            t0 = perf()
            decide(prop, req)
            t_a2.append(perf() - t0)
        t0 = perf()
        for r in rules:
            r.condition(a, groups)
        t_a0.append(perf() - t0)
        t0 = perf()
        for cond in untimed:
            cond(a, groups)
        t_a0u.append(perf() - t0)
        t0 = perf()
        for c in raw:
            evalCondition(a, c)
        t_b.append(perf() - t0)

    try:
        from personalization import visitor_state as sig
    except ImportError:  # (the code before the rooms: a "before" run)
        from personalization import signals as sig  # type: ignore[no-redef]

    t_sig: list[float] = []
    for i in range(min(iterations, 2000)):
        c = cases[i % n]
        t0 = perf()
        sig.signals_for(_STATES[c.visitor_id][0], _STATES[c.visitor_id][1], _NOW[0])
        t_sig.append(perf() - t0)
    return {
        "iterations": iterations,
        "distinct_visitors": n,
        "conditions": len(raw),
        "conditions_holding_per_decision_mean": round(holds / n, 2),
        "personalized_share": round(personalized / iterations, 3),
        "suppressed_per_decision_mean": round(suppressed / iterations, 2),
        "evaluator_disagreements": mismatches,
        "evaluator_disagreement_examples": disagree,
        "a_engine_dry_run_us": us(t_a),
        "a2_engine_no_trace_us": us(t_a2),
        "a0_engine_conditions_only_us": us(t_a0),
        "a0_untimed_regex_us": us(t_a0u),
        "b_growthbook_conditions_us": us(t_b),
        "excluded_signals_for_us": us(t_sig),
    }


_STATES: dict[str, tuple[dict | None, dict | None]] = {}
_NOW: list[datetime] = []


def load_states(prop: Any, cases: list[Case]) -> None:
    """The raw visitor/session states, to time ``signals_for`` (excluded from (a)) apart."""
    from django.utils import timezone

    from personalization.models import Session, Visitor

    _NOW[:] = [timezone.now()]
    for c in cases:
        v = Visitor.objects.filter(property=prop, visitor_id=c.visitor_id).first()
        s = Session.objects.filter(visitor=v, session_id=c.session_id).first() if v else None
        _STATES[c.visitor_id] = (v.state if v else None, s.state if s else None)


def statement_kind(sql: str) -> str:
    """``VERB table`` of a statement, the table read from the top level (not a subquery)."""
    text = sql.replace('"', "")
    verb = text.split(None, 1)[0].upper() if text.strip() else "?"
    depth = 0
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            if ch.isspace():
                if current:
                    words.append("".join(current))
                    current = []
            else:
                current.append(ch)
    if current:
        words.append("".join(current))
    upper = [w.upper() for w in words]
    table = "?"
    for marker in ("INTO", "UPDATE", "FROM"):
        if marker in upper:
            at = upper.index(marker)
            if at + 1 < len(words):
                table = words[at + 1].split("(")[0]
                break
    extra = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
    if verb == "SELECT" and "EXISTS" in sql.upper():
        extra += " (+EXISTS)"
    if "ON CONFLICT" in sql.upper():
        extra += " ON CONFLICT"
    return f"{verb} {table}{extra}"


class _Timers:
    """Wall time of SQL statements, commits and cache calls, for a breakdown of (c)."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}

    def add(self, kind: str, seconds: float) -> None:
        self.spent.setdefault(kind, []).append(seconds)

    @contextmanager
    def installed(self) -> Iterator[None]:
        from django.core.cache import caches
        from django.db import connection

        def sql(execute: Any, sql_text: str, params: Any, many: bool, context: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return execute(sql_text, params, many, context)
            finally:
                self.add("SQL " + statement_kind(sql_text), time.perf_counter() - t0)

        backend = caches["default"]
        wrapped: list[str] = []
        for name in ("get", "set", "delete", "get_many"):
            original = getattr(backend, name)

            def timed(*a: Any, _o: Any = original, _n: str = name, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _o(*a, **kw)
                finally:
                    self.add(f"cache.{_n}", time.perf_counter() - t0)

            setattr(backend, name, timed)
            wrapped.append(name)
        original_commit = connection._commit  # type: ignore[attr-defined]

        def commit() -> Any:
            t0 = time.perf_counter()
            try:
                return original_commit()
            finally:
                self.add("COMMIT", time.perf_counter() - t0)

        connection._commit = commit  # type: ignore[attr-defined]
        from personalization import hotstate

        hot_saved = {n: getattr(hotstate, n) for n in ("state_get", "apply_and_log", "snapshot",
                                                       "fill") if hasattr(hotstate, n)}  # fmt: skip
        for name, label in (("state_get", "Redis read: counters + budget (pipeline)"),
                            ("snapshot", "Redis read: consent, signals, counters, budget"),
                            ("fill", "Redis fill of missed copies (Lua)"),
                            ("apply_and_log", "Redis Lua: apply + queue log entry")):  # fmt: skip
            if name not in hot_saved:
                continue

            def hot_timed(*a: Any, _o: Any = hot_saved[name], _l: str = label, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _o(*a, **kw)
                finally:
                    self.add(_l, time.perf_counter() - t0)

            setattr(hotstate, name, hot_timed)
        try:
            with connection.execute_wrapper(sql):
                yield
        finally:
            del connection._commit  # type: ignore[attr-defined]
            for name, value in hot_saved.items():
                setattr(hotstate, name, value)
            for name in wrapped:
                delattr(backend, name)

    def table(self, n: int, total: float) -> list[str]:
        lines = [f"{'statement / call':<62} {'calls/dec':>9} {'ms/dec':>8} {'share':>6}"]
        io = 0.0
        for kind, times in sorted(self.spent.items(), key=lambda kv: -sum(kv[1])):
            io += sum(times)
            lines.append(
                f"{kind[:62]:<62} {len(times) / n:>9.2f} {sum(times) / n * 1000:>8.3f} "
                f"{sum(times) / total:>6.1%}"
            )
        rest = total - io
        lines.append(
            f"{'(Python outside SQL, commit and cache)':<62} {'':>9} {rest / n * 1000:>8.3f} "
            f"{rest / total:>6.1%}"
        )
        return lines


def _breakdown(prop: Any, cases: list[Case]) -> tuple[list[str], float, float]:
    """Per-statement wall time over these decisions: (table, ms/decision, statements/decision)."""
    decide = decisions_api().decide

    timers = _Timers()
    t0 = time.perf_counter()
    with timers.installed():
        for c in cases:
            decide(prop, c.request())
    total = time.perf_counter() - t0
    n = max(1, len(cases))
    statements = sum(len(v) for k, v in timers.spent.items() if k.startswith("SQL"))
    return timers.table(n, total), round(total / n * 1000, 3), round(statements / n, 2)


def run_full(prop: Any, cases: list[Case], count: int, warmup: int) -> dict[str, Any]:
    """(c): the whole decide() with its I/O, and per-statement breakdowns (first decision of a
    session, later decisions)."""
    decide = decisions_api().decide

    # Warm up on visitors already decided for (even indices), so the odd half keeps sessions
    # that have never been decided for: their first decision takes the write path (budget
    # row, counter upserts); later ones in the same session mostly keep the sticky answers.
    decided = {(c.visitor_id, c.session_id) for c in cases[::2]}
    for i in range(warmup):
        decide(prop, cases[(2 * i) % len(cases)].request())
    fresh = cases[1::2]
    sample_first = fresh[: min(200, len(fresh) // 3)]
    table_first, ms_first, stmts_first = _breakdown(prop, sample_first)
    decided.update((c.visitor_id, c.session_id) for c in sample_first)
    times: list[float] = []
    first: list[float] = []
    later: list[float] = []
    personalized = logged = 0
    cpu0 = time.process_time()
    started = time.perf_counter()
    for i in range(count):
        case = cases[i % len(cases)]
        req = case.request()
        t0 = time.perf_counter()
        result = decide(prop, req)
        spent = time.perf_counter() - t0
        times.append(spent)
        pair = (case.visitor_id, case.session_id)
        (later if pair in decided else first).append(spent)
        decided.add(pair)
        personalized += result.personalized
        logged += result.logged
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    sample_later = [cases[(i * 3) % len(cases)] for i in range(min(count, 400))]
    table_later, ms_later, stmts_later = _breakdown(prop, sample_later)
    from django.conf import settings

    from personalization import hotstate

    # The log entries the decisions queued in Redis, written to PostgreSQL in batches: the
    # work moved off the request path, timed here so its cost per decision is not hidden.
    pending = hotstate.pending_count()
    t0 = time.perf_counter()
    flushed = hotstate.decision_log_flush()
    flush_s = time.perf_counter() - t0
    return {
        "hot_state": bool(settings.DECIDE_REDIS_URL),
        "flush": {
            "pending_before": pending,
            "flushed": flushed,
            "seconds": round(flush_s, 3),
            "us_per_decision": round(flush_s / flushed * 1e6, 1) if flushed else None,
        },
        "decisions": count,
        "latency_ms": ms(times),
        "first_in_session": len(first),
        "first_in_session_latency_ms": ms(first),
        "later_in_session_latency_ms": ms(later),
        "decisions_per_s_one_process": round(count / elapsed, 1),
        "python_cpu_share": round(cpu / elapsed, 3),
        "personalized_share": round(personalized / count, 3),
        "logged_share": round(logged / count, 3),
        "breakdown_first": {
            "decisions": len(sample_first),
            "ms_per_decision": ms_first,
            "sql_statements_per_decision": stmts_first,
            "table": table_first,
        },
        "breakdown_later": {
            "decisions": len(sample_later),
            "ms_per_decision": ms_later,
            "sql_statements_per_decision": stmts_later,
            "table": table_later,
        },
        "cache_backend": _cache_backend(),
    }


def _cache_backend() -> str:
    from django.conf import settings

    return str(settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1])


# --------------------------------------------------------------------------- HTTP


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]
                idle = v[3] + v[4]
                out[int(name[3:])] = (sum(v) - idle, sum(v))
    return out


def busy_share(before: dict, after: dict, core: int) -> float | None:
    if core not in before or core not in after:
        return None
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return round(busy / total, 3) if total else None


def group_cpu_s(*pgids: int) -> float:
    """CPU seconds (user + system) used so far by the processes of process groups (the
    gunicorn master and its workers, the Celery worker flushing the decision log): what the
    server itself spent, whatever else shares its core."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # fields after the command: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def loadgen(
    args: argparse.Namespace, port: int, key: str, bodies: Path, path: str, max_s: float,
    concurrency: int, rate: float = 0.0, server_pgid: int | None = None,
    worker_pgid: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    cmd = [
        "taskset", "-c", str(args.client_core), PYTHON, str(BASE_DIR / "benchmarks/loadgen.py"),
        "--port", str(port), "--key", key, "--bodies", str(bodies), "--path", path,
        "--concurrency", str(concurrency), "--max-seconds", str(max_s),
    ]  # fmt: skip
    if rate:
        cmd += ["--rate", str(rate)]
    before = cpu_times()
    groups = [g for g in (server_pgid, worker_pgid) if g]
    server_before = group_cpu_s(*groups) if server_pgid else 0.0
    worker_before = group_cpu_s(worker_pgid) if worker_pgid else 0.0
    done = subprocess.run(cmd, capture_output=True, timeout=max_s + 90, check=False)
    after = cpu_times()
    server_after = group_cpu_s(*groups) if server_pgid else 0.0
    worker_after = group_cpu_s(worker_pgid) if worker_pgid else 0.0
    if not done.stdout.strip():
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result.pop("totals", None)
    result.pop("events_accepted", None)
    result.pop("events_per_s", None)
    result["server_core_busy"] = busy_share(before, after, args.server_core)
    if server_pgid and result.get("requests"):
        spent = server_after - server_before
        result["server_cpu_s"] = round(spent, 3)
        result["server_cpu_ms_per_request"] = round(spent * 1000 / result["requests"], 3)
        if worker_pgid:  # included in server_cpu_ms_per_request
            worker = (worker_after - worker_before) * 1000 / result["requests"]
            result["flush_worker_cpu_ms_per_request"] = round(worker, 3)
    result["client_core_busy"] = busy_share(before, after, args.client_core)
    return result


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def flush_worker(
    args: argparse.Namespace, env: dict[str, str], logfile: Path
) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """A Celery worker (solo pool) pinned to the server's core, as production flushes the
    decision log: decide enqueues ``decision_log_flush_task`` every FLUSH_AT decisions."""
    cmd = [
        "taskset", "-c", str(args.server_core), str(Path(PYTHON).parent / "celery"),
        "-A", "personalization", "worker", "--pool", "solo", "--concurrency", "1",
        "--loglevel", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip

    def ready(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while b" ready." not in logfile.read_bytes():  # "celery@host ready." (INFO)
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Celery worker did not start: {logfile.read_text()[-3000:]}")
            time.sleep(0.2)

    # Warm shutdown: the flush in hand finishes.
    return spawned("Celery worker", cmd, env, logfile, ready, stop_timeout=30)


def write_bodies(
    path: Path, cases: list[Case], n: int, offset: int = 0, body: str = "body"
) -> None:
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(getattr(cases[(offset + i) % len(cases)], body)() + b"\n")


# --ofrep: OFREP beside decide in the same rounds (label, path, body kind).
OFREP_RUNS = (
    ("ofrep_bulk", "/ofrep/v1/evaluate/flags", "ofrep_body"),
    ("decide_one", "/api/v1/decide", "body_one"),
    ("ofrep_one", f"/ofrep/v1/evaluate/flags/{SLOTS[0]}", "ofrep_body"),
)


def run_http(
    args: argparse.Namespace, env: dict[str, str], key: str, cases: list[Case]
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench_decide_"))
    out: dict[str, Any] = {}
    try:
        # Closed-loop runs last --http-seconds each (more bodies than can be sent).
        n = args.http_bodies
        write_bodies(workdir / "warm.jsonl", cases, args.http_warmup)
        write_bodies(workdir / "bodies.jsonl", cases, n, offset=args.http_warmup)
        endpoints = [("decide", "/api/v1/decide", "bodies.jsonl")]
        endpoints.append(("trivial", "/bench/trivial", "bodies.jsonl"))
        if args.ofrep:
            for label, path, body in OFREP_RUNS:
                write_bodies(workdir / f"{label}.jsonl", cases, n, args.http_warmup, body)
                endpoints.append((label, path, f"{label}.jsonl"))
        port = args.port or free_port()
        logfile = workdir / "gunicorn.log"
        worker_log = workdir / "celery.log"
        with contextlib.ExitStack() as stack:
            worker_pgid = None
            if args.flush == "worker" and env.get("DECIDE_REDIS_URL"):
                env = {**env, "TASKS_IN_PROCESS": "0", "CELERY_BROKER_URL": args.broker_url}
                redis_flush(args.broker_url)
                worker_pgid = stack.enter_context(flush_worker(args, env, worker_log)).pid
            proc = stack.enter_context(gunicorn(args, env, port, logfile))
            pgid = proc.pid  # its own session: the master and workers share this group
            for path in ("/api/v1/decide", "/bench/trivial"):
                loadgen(args, port, key, workdir / "warm.jsonl", path, 60, args.concurrency)
            # Alternate the two endpoints (decide, trivial, decide, trivial): drift shows.
            for rnd in range(args.http_rounds):
                for label, path, bodies in endpoints:
                    log(f"HTTP closed loop {label} (round {rnd + 1}): {args.http_seconds:g}s, "
                        f"concurrency {args.concurrency}")  # fmt: skip
                    r = loadgen(args, port, key, workdir / bodies, path,
                                args.http_seconds, args.concurrency,
                                server_pgid=pgid, worker_pgid=worker_pgid)  # fmt: skip
                    log(f"  {r['requests_per_s']:,.0f} req/s, server CPU "
                        f"{r.get('server_cpu_ms_per_request')} ms/request (flush worker "
                        f"{r.get('flush_worker_cpu_ms_per_request', 0)}), "
                        f"p50 {r['latency_ms']['p50']} ms, "
                        f"p99 {r['latency_ms']['p99']} ms, statuses {r['statuses']}, "
                        f"server core {r['server_core_busy']}, client core "
                        f"{r['client_core_busy']}")  # fmt: skip
                    out.setdefault(label, []).append(r)
            decide_rate = statistics.median(r["requests_per_s"] for r in out["decide"])
            rates = [float(args.paced_rate)]
            half = round(decide_rate * 0.5, -1)
            if half and half < args.paced_rate:
                rates.append(half)
            for rate in rates:
                count = int(rate * args.paced_seconds)
                write_bodies(workdir / "paced.jsonl", cases, count, offset=7)
                log(f"HTTP paced decide at {rate:.0f}/s: {count} requests")
                r = loadgen(args, port, key, workdir / "paced.jsonl", "/api/v1/decide",
                            args.paced_seconds * 1.5 + 2, args.paced_concurrency, rate)  # fmt: skip
                log(f"  achieved {r['achieved_rate']:,.0f}/s, response time p50 "
                    f"{r['response_time_ms']['p50']} ms p99 {r['response_time_ms']['p99']} ms, "
                    f"sent {r['requests']}/{count}, statuses {r['statuses']}")  # fmt: skip
                out.setdefault("paced", []).append(r)
        tail = logfile.read_text(errors="replace")[-2000:].strip()
        if tail:
            out["gunicorn_log_tail"] = tail
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- profiling


def _aggregate(root: Any) -> tuple[dict[str, float], dict[str, float], float]:
    """Self and inclusive time per function from a pyinstrument frame tree."""
    self_t: dict[str, float] = {}
    incl: dict[str, float] = {}

    def name(f: Any) -> str:
        where = f.file_path_short or ""
        return f"{f.function} ({where}:{f.line_no})" if where else f.function

    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        f, seen = stack.pop()
        if f.is_synthetic:  # "[self]" leaves: already in their parent's total_self_time
            continue
        label = name(f)
        self_t[label] = self_t.get(label, 0.0) + f.total_self_time
        if label not in seen:
            incl[label] = incl.get(label, 0.0) + f.time
        for child in f.children:
            stack.append((child, seen | {label}))
    return self_t, incl, root.time


def profile(fn: Callable[[], None], title: str, top: int, interval: float = 0.0002) -> str:
    try:
        from pyinstrument import Profiler
    except ImportError:  # not a project dependency: `.venv/bin/pip install pyinstrument`
        return f"----- {title}: not profiled (pyinstrument is not installed) -----"

    sampler = Profiler(interval=interval)
    sampler.start()
    fn()
    sampler.stop()
    session = sampler.last_session
    root = session.root_frame() if session else None
    if root is None:
        return f"{title}: no samples"
    self_t, incl, total = _aggregate(root)
    lines = [f"----- {title}: {total:.2f}s sampled -----", "top self time:"]
    for label, t in sorted(self_t.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {t / total:6.1%}  {label}")
    lines.append("top inclusive time (project and Django/DRF frames):")
    shown = 0
    for label, t in sorted(incl.items(), key=lambda kv: -kv[1]):
        if shown >= top:
            break
        if any(s in label for s in ("personalization/", "consent/", "django/", "rest_framework/")):
            lines.append(f"  {t / total:6.1%}  {label}")
            shown += 1
    lines.append("call tree (pyinstrument, frames under 2% hidden):")
    tree = sampler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total")
    lines.extend(line for line in tree.splitlines() if line.strip())
    return "\n".join(lines[: 40 + 2 * top + 200])


def cpu_per_request(
    decide_fn: Callable[[int], None],
    trivial_fn: Callable[[int], None],
    m: int,
    top: int,
    labels: tuple[str, str] = ("decide", "trivial"),
) -> str:
    """CPU time (this process only: not Redis, not PostgreSQL) per request in-process, best of
    three, and cProfile's own-time table on the process-time clock: what decide costs the web
    worker beyond the trivial endpoint, without HTTP parsing or sampling noise (``labels``:
    the names of the profiled function and of the one it is compared with)."""
    import cProfile
    import pstats

    def best(fn: Callable[[int], None]) -> float:
        runs = []
        for _ in range(3):
            t0 = time.process_time()
            fn(m)
            runs.append((time.process_time() - t0) / m * 1000)
        return min(runs)

    d, t = best(decide_fn), best(trivial_fn)
    prof = cProfile.Profile(time.process_time)
    prof.runcall(decide_fn, m)
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    lines = [
        f"----- CPU per request in-process: {labels[0]} {d:.3f} ms, {labels[1]} {t:.3f} ms, "
        f"ratio {labels[1]}/{labels[0]} {t / d:.3f}; cProfile (process time, own time, its "
        "overhead included) -----"
    ]
    for (file, line, fn), (_cc, nc, tt, _ct, _callers) in rows:
        short = file.split("site-packages/")[-1].replace(str(BASE_DIR) + "/", "")
        lines.append(f"  {tt / total:6.1%}  {nc / m:6.1f}/req  {fn} ({short}:{line})")
    lines.append("cumulative (project, Django and DRF frames):")
    frames = ("personalization/", "consent/", "django/", "rest_framework/", "redis/")
    cum = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    shown = 0
    for (file, line, fn), (_cc, nc, _tt, ct, _callers) in cum:
        if shown < 2 * top and any(f in file for f in frames):
            short = file.split("site-packages/")[-1].replace(str(BASE_DIR) + "/", "")
            lines.append(f"  {ct / total:6.1%}  {nc / m:6.1f}/req  {fn} ({short}:{line})")
            shown += 1
    return "\n".join(lines)


def run_profiles(
    prop: Any, key: str, cases: list[Case], loaded: Preloaded, args: argparse.Namespace,
    engine_slow: bool, http_slow: bool,
) -> str:  # fmt: skip
    from django.test import Client

    from personalization.ruleset import ruleset_for

    parts: list[str] = []
    ruleset = ruleset_for(prop.pk)
    requests = [c.request() for c in cases]
    if engine_slow or args.profile:

        def pure() -> None:
            with engine_without_io(ruleset, loaded, stub_writes=False) as decide:
                for i in range(args.profile_decisions * 3):
                    decide(prop, requests[i % len(requests)], dry_run=True)

        def pure_no_trace() -> None:
            with engine_without_io(ruleset, loaded, stub_writes=True) as decide:
                for i in range(args.profile_decisions * 3):
                    decide(prop, requests[i % len(requests)])

        parts.append(profile(pure, "(a) engine pure path, dry run, I/O stubbed", args.profile_top))
        parts.append(
            profile(pure_no_trace, "(a') engine pure path, no trace, I/O and writes stubbed",
                    args.profile_top)
        )  # fmt: skip
    if http_slow or args.profile:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        bodies = [c.body() for c in cases]
        m = args.profile_decisions

        def through_django(m: int = m) -> None:
            for i in range(m):
                response = client.post(
                    "/api/v1/decide", bodies[i % len(bodies)], content_type="application/json"
                )
                assert response.status_code == 200, response.content[:300]

        def trivial(m: int = m) -> None:
            for i in range(m):
                client.post("/bench/trivial", bodies[i % len(bodies)],
                            content_type="application/json")  # fmt: skip

        through_django(50)  # warm
        trivial(50)
        timers = _Timers()
        t0 = time.perf_counter()
        with timers.installed():
            through_django()
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        trivial()
        t_trivial = time.perf_counter() - t1
        parts.append(
            f"----- POST /api/v1/decide in-process (Django test client, {m} requests): "
            f"{total / m * 1000:.3f} ms/request; /bench/trivial {t_trivial / m * 1000:.3f} "
            f"ms/request -----\n" + "\n".join(timers.table(m, total))
        )
        parts.append(cpu_per_request(through_django, trivial, m, args.profile_top))
        parts.append(
            profile(through_django, "POST /api/v1/decide, in-process", args.profile_top, 0.001)
        )
        parts.append(
            profile(trivial, "POST /bench/trivial, in-process", args.profile_top // 2, 0.0002)
        )
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- report


def summary_lines(r: dict[str, Any]) -> list[str]:
    p, f, q = r["pure"], r["full"], r["ratios"]
    a, a2, a0, b = (p["a_engine_dry_run_us"], p["a2_engine_no_trace_us"],
                    p["a0_engine_conditions_only_us"], p["b_growthbook_conditions_us"])  # fmt: skip
    s = r["scale"]
    first, later = f["first_in_session_latency_ms"], f["later_in_session_latency_ms"]
    lines = [
        f"date            {r['date']}",
        f"command         {r['command']}",
        f"machine         {r['machine']['cpu']}, {r['machine']['cores']} cores, Python "
        f"{r['machine']['python']}, PostgreSQL {r['machine']['postgres'].get('server_version')}, "
        f"cache {r['cache']}",
        f"code            HEAD {r['code']['head']}; measured modules modified in the working "
        f"tree: {', '.join(r['code']['modified_vs_head']) or 'none'}",
        f"load average    {r['machine']['loadavg_start']} at start, {r['machine']['loadavg_end']} "
        f"at the end (1/5/15 min; 2 cores: other processes share the machine)",
        f"scale           {s['targeting']['slots']} slots, {s['targeting']['rules']} rules "
        f"(clauses/condition {s['targeting']['clauses_per_condition']}, nested $or in "
        f"{s['targeting']['conditions_with_nested_or']}), {s['visitors']['visitors']} visitors, "
        f"{s['visitors']['sessions']} sessions, {s['visitors']['events']} events ingested",
        f"selectivity     {p['conditions_holding_per_decision_mean']} of {p['conditions']} "
        f"conditions hold per decision; {p['personalized_share']:.0%} of decisions personalized; "
        f"{p['suppressed_per_decision_mean']} suppressed candidates/decision; evaluator "
        f"disagreements {p['evaluator_disagreements']}",
        *(
            f"{label:<40} p50 {v['p50']:>8.1f} us  p99 {v['p99']:>8.1f} us"
            for label, v in (
                ("(a)  engine pure work, dry run (trace)", a),
                ("(a') engine pure work, no trace", a2),
                ("(a0) engine: 50 compiled conditions", a0),
                ("     same, without the regex timeout", p["a0_untimed_regex_us"]),
                ("(b)  GrowthBook SDK: 50 conditions", b),
            )
        ),
        f"     (excluded from (a): signals_for p50 {p['excluded_signals_for_us']['p50']} us)",
        f"ratio (a)/(b)   p50 {q['a_over_b_p50']:.3f}  p99 {q['a_over_b_p99']:.3f}  -> engine "
        f"{'FASTER' if q['a_over_b_p50'] < 1 else 'SLOWER'} than GrowthBook; (a')/(b) p50 "
        f"{q['a2_over_b_p50']:.3f}; (a0)/(b) p50 {q['a0_over_b_p50']:.3f}",
        f"(c)  whole decide() with I/O ({f['cache_backend']})  p50 {f['latency_ms']['p50']} ms  "
        f"p90 {f['latency_ms']['p90']} ms  p99 {f['latency_ms']['p99']} ms  max "
        f"{f['latency_ms']['max']} ms over {f['decisions']} decisions; SQL "
        f"statements/decision: {f['breakdown_first']['sql_statements_per_decision']} (first of "
        f"a session), {f['breakdown_later']['sql_statements_per_decision']} (later)",
        f"     first decision of a session ({f['first_in_session']}): p50 {first['p50']} ms "
        f"p99 {first['p99']} ms; later ones: p50 {later['p50']} ms p99 {later['p99']} ms",
        f"(c) p99 < {TARGET_IN_PROCESS_P99_MS:g} ms: "
        f"{'YES' if f['latency_ms']['p99'] < TARGET_IN_PROCESS_P99_MS else 'NO'}",
        f"hot state       {r.get('hot_state', '?')}; log flush after (c): "
        f"{f['flush']['flushed']} entries in {f['flush']['seconds']} s "
        f"({f['flush']['us_per_decision']} us/decision, off the request path)",
    ]
    f0 = r.get("full_db_path")
    if f0:
        lines.append(
            f"(c0) same decisions, database path  p50 {f0['latency_ms']['p50']} ms  p90 "
            f"{f0['latency_ms']['p90']} ms  p99 {f0['latency_ms']['p99']} ms; SQL "
            f"statements/decision {f0['breakdown_first']['sql_statements_per_decision']} / "
            f"{f0['breakdown_later']['sql_statements_per_decision']}; (c)/(c0) p50 "
            f"{f['latency_ms']['p50'] / f0['latency_ms']['p50']:.2f}"
        )
    h = r.get("http")
    if h:
        d = h["decide_median"]
        t = h["trivial_median"]
        http_met = q["http_decide_over_trivial"] >= TARGET_HTTP_RATIO
        lines += [
            f"HTTP decide     {d['requests_per_s']:>8,.0f} req/s (rounds "
            f"{[x['requests_per_s'] for x in h['decide']]}), p50 {d['latency_ms']['p50']} ms, "
            f"p99 {d['latency_ms']['p99']} ms, server core busy {d['server_core_busy']}, "
            f"client core busy {d['client_core_busy']} (loadgen itself "
            f"{d['client_cpu_s'] / d['elapsed_s']:.0%})",
            f"HTTP trivial    {t['requests_per_s']:>8,.0f} req/s (rounds "
            f"{[x['requests_per_s'] for x in h['trivial']]}), p50 {t['latency_ms']['p50']} ms, "
            f"p99 {t['latency_ms']['p99']} ms, server core busy {t['server_core_busy']}, "
            f"client core busy {t['client_core_busy']} (loadgen itself "
            f"{t['client_cpu_s'] / t['elapsed_s']:.0%})",
            f"ratio decide/trivial {q['http_decide_over_trivial']:.3f} (goal >= "
            f"{TARGET_HTTP_RATIO}): {'MET' if http_met else 'NOT MET'}; "
            f"decide vs {TARGET_DECISIONS_PER_S:,}/s target: {q['http_decide_vs_target']:.1%}",
        ]
        if "http_server_cpu_ms_decide" in q:
            lines.append(
                f"server CPU/request  decide {q['http_server_cpu_ms_decide']} ms, trivial "
                f"{q['http_server_cpu_ms_trivial']} ms (gunicorn master + workers"
                + (
                    f", and the Celery worker flushing the log: "
                    f"{q['http_flush_worker_cpu_ms_decide']} ms of decide's"
                    if "http_flush_worker_cpu_ms_decide" in q
                    else "; the log flushed inline"
                )
                + ", all rounds): "
                f"one core's worth = {1000 / q['http_server_cpu_ms_decide']:,.0f} decisions/s; "
                f"rate ratio by CPU {q['http_cpu_decide_over_trivial_rate']:.3f}"
            )
        if "http_cpu_ofrep_bulk_over_decide" in q:
            lines.append(
                f"OFREP server CPU/request  bulk {q['http_server_cpu_ms_ofrep_bulk']} ms "
                f"({q['http_cpu_ofrep_bulk_over_decide']:.3f} x decide, budget 1.1); single flag "
                f"{q['http_server_cpu_ms_ofrep_one']} ms against a one-slot decide "
                f"{q['http_server_cpu_ms_decide_one']} ms "
                f"({q['http_cpu_ofrep_one_over_decide_one']:.3f} x, budget 1.0)"
            )
        fa = h.get("flush_after")
        if fa:
            lines.append(
                f"log after HTTP  {fa['pending']} entries still pending (the rest flushed on "
                f"size during the run), flushed in {fa['seconds']} s"
            )
        for pr in h.get("paced", []):
            rt = pr["response_time_ms"]
            lines.append(
                f"paced decide    offered {pr['offered_rate']:,.0f}/s, achieved "
                f"{pr['achieved_rate']:,.0f}/s, sent {pr['requests']}/{pr['bodies']}, response "
                f"time p50 {rt['p50']} ms p99 {rt['p99']} ms max {rt['max']} ms (service p99 "
                f"{pr['latency_ms']['p99']} ms, send lag p99 {pr['send_lag_ms']['p99']} ms), "
                f"statuses {pr['statuses']}"
            )
        at700 = h["paced"][0]
        met = (
            at700["achieved_rate"] >= 0.97 * at700["offered_rate"]
            and at700["response_time_ms"]["p99"] < TARGET_PACED_P99_MS
        )
        lines.append(
            f"target p99 < {TARGET_PACED_P99_MS:g} ms at {at700['offered_rate']:,.0f}/s: "
            f"{'MET' if met else 'NOT MET'}"
        )
    return lines


def breakdown_lines(full: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, title in (("breakdown_first", "first decision of a session"),
                       ("breakdown_later", "later decisions in a session")):  # fmt: skip
        b = full[key]
        out += [
            f"Breakdown of (c), {title} ({b['decisions']} decisions, {b['ms_per_decision']} "
            "ms each): wall time inside `execute`, `commit` and cache calls, per decision",
            "",
            "```",
            *b["table"],
            "```",
            "",
        ]
    return out


def record(report: dict[str, Any], path: Path) -> None:
    """Write the figures into RESULTS.md, section "Decisions", between the markers (the rest of
    the section and of the file is left as it is)."""
    s = report["scale"]
    block = [
        BEGIN,
        "",
        f"Generated by `bench_decide.py` on {report['date']} (`{report['command']}`).",
        "",
        "```",
        *summary_lines(report),
        "```",
        "",
        f"Targeting: {json.dumps(s['targeting'])}",
        "",
        *breakdown_lines(report["full"]),
        END,
    ]
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + "\n".join(block) + tail
    elif "\n## Decisions" in text:
        head, rest = text.split("\n## Decisions", 1)
        lines = rest.split("\n")
        text = (
            head
            + "\n## Decisions"
            + lines[0]
            + "\n\n"
            + "\n".join(block)
            + "\n"
            + "\n".join(lines[1:])
        )
    else:
        text = text.rstrip("\n") + "\n\n## Decisions\n\n" + "\n".join(block) + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visitors", type=int, default=1000, help="visitors with live signals")
    p.add_argument("--days", type=float, default=14.0, help="their visits spread over N days")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--segments", type=int, default=0, help="segments evaluated per decision")
    p.add_argument("--iterations", type=int, default=5000, help="(a)/(b) decisions")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--full-decisions", type=int, default=2000, help="(c) decisions")
    p.add_argument("--db", default="bench_decide", help="database to create (bench*)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/3",
                   help="cache for the run (flushed first); see --no-redis")  # fmt: skip
    p.add_argument("--no-redis", action="store_true", help="per-process (locmem) cache")
    p.add_argument("--db-path", action="store_true",
                   help="the engine's hot state in the database (DECIDE_REDIS_URL='')")  # fmt: skip
    p.add_argument("--skip-http", action="store_true")
    p.add_argument(
        "--ofrep",
        action="store_true",
        help="OFREP bulk, a one-slot decide and an OFREP single flag in the rounds",
    )
    p.add_argument("--flush", choices=["worker", "inline"], default="worker",
                   help="HTTP: the decision log flushed by a Celery worker on the server's "
                   "core (production), or inside the request that fills a batch "
                   "(TASKS_IN_PROCESS)")  # fmt: skip
    p.add_argument("--broker-url", default="redis://127.0.0.1:6379/4",
                   help="the flush worker's broker (flushed at the start)")  # fmt: skip
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop connections")
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--client-core", type=int, default=0)
    p.add_argument("--http-seconds", type=float, default=6.0, help="per closed-loop run")
    p.add_argument("--http-bodies", type=int, default=30000, help="bodies per closed-loop run")
    p.add_argument("--http-rounds", type=int, default=3, help="decide/trivial alternations")
    p.add_argument("--http-warmup", type=int, default=300)
    p.add_argument("--paced-rate", type=float, default=TARGET_PACED_RATE)
    p.add_argument("--paced-seconds", type=float, default=8.0)
    p.add_argument("--paced-concurrency", type=int, default=32)
    p.add_argument("--profile", action="store_true", help="profile even if the budgets hold")
    p.add_argument("--no-profile", action="store_true", help="never profile")
    p.add_argument("--profile-decisions", type=int, default=300)
    p.add_argument("--profile-top", type=int, default=22)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = p.parse_args(argv)
    if not args.db.startswith("bench"):
        p.error("--db must start with 'bench' (the benchmark drops and recreates it)")
    if args.visitors < 10:
        p.error("--visitors must be at least 10")

    started = datetime.now(UTC)
    args.loadavg_start = [round(x, 2) for x in os.getloadavg()]
    args.code_state = code_state()
    env, db_url = bench_env(args)
    with bench_database(args, env):
        return measure(args, env, db_url, started)


def bench_env(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The environment of a run (the benchmark's settings, its database ``args.db`` on
    ``args.pg``, its Redis ``args.redis_url`` unless ``args.no_redis``, the hot state there
    unless ``args.db_path``) and the database's URL."""
    db_url = f"{args.pg.rstrip('/')}/{args.db}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key",
        "VISITOR_HASH_KEY": "bench-only-visitor-hash-key",
        "TASKS_IN_PROCESS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(BASE_DIR),
        # The rate limits are counted as in production (one Redis round trip a request) but
        # set high enough that the loopback load generator, one address and one key, is
        # never refused: the default 6,000 a minute per address would cap decide at 100/s.
        "RATELIMIT_PER_KEY": "1000000000",
        "RATELIMIT_PER_ADDRESS": "1000000000",
    }
    if args.no_redis:
        env.pop("REDIS_URL", None)
    else:
        env["REDIS_URL"] = args.redis_url
    # The engine's hot state follows REDIS_URL unless --db-path keeps it in the database.
    env["DECIDE_REDIS_URL"] = "" if args.db_path or args.no_redis else args.redis_url
    return env, db_url


@contextmanager
def bench_database(args: argparse.Namespace, env: dict[str, str]) -> Iterator[None]:
    """``args.db`` created and migrated, Django set up on it in this process (``env``), and
    dropped on exit unless ``args.keep_db``."""
    admin_url = f"{args.pg.rstrip('/')}/postgres"
    log(f"creating database {args.db}")
    create_database(admin_url, args.db)
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "--skip-checks", "-v", "0"],
            cwd=BASE_DIR, env=env, check=True, timeout=300,
        )  # fmt: skip
        log(f"migrated in {time.perf_counter() - t0:.1f}s")
        os.environ.update(env)
        import django

        django.setup()
        yield
    finally:
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            drop_database(admin_url, args.db)
            log(f"dropped database {args.db}")


def measure(args: argparse.Namespace, env: dict[str, str], db_url: str, started: datetime) -> int:
    from django.core.cache import cache

    from personalization.models import Property
    from personalization.ruleset import ruleset_for
    from personalization.services.properties import property_create

    cache.clear()  # the run's own cache (Redis db of --redis-url, or this process's locmem)
    prop, keys = property_create(name="Bench decide", origins=["https://shop.example"])
    Property.objects.filter(pk=prop.pk).update(holdout_pct=0)
    prop.refresh_from_db()
    targeting = build_targeting(prop, args.seed, args.segments)
    ruleset = ruleset_for(prop.pk)
    if ruleset.broken:
        log(f"WARNING: rules skipped as invalid: {ruleset.broken}")
    log(f"targeting: {targeting}")
    cases, visitors = build_visitors(prop, args.visitors, args.days, args.seed)
    analyze()
    # Half the visitors get one real decision first: counters, budgets and sticky slots exist.
    decide = decisions_api().decide

    for c in cases[::2]:
        decide(prop, c.request())
    loaded = preload(prop, cases)
    load_states(prop, cases)
    counters = sum(len(v) for v in loaded.counters.values())
    log(f"preloaded {len(cases)} visitors ({counters} counter rows, "
        f"{sum(b is not None for b in loaded.budgets.values())} session budgets)")  # fmt: skip

    log(f"(a)/(b): {args.iterations} decisions, interleaved")
    pure = run_pure(prop, cases, loaded, args.iterations, args.warmup)
    log(f"(a) p50 {pure['a_engine_dry_run_us']['p50']} us, (b) p50 "
        f"{pure['b_growthbook_conditions_us']['p50']} us")  # fmt: skip
    log(f"(c): {args.full_decisions} whole decisions")
    full = run_full(prop, cases, args.full_decisions, 200)
    log(f"(c) p50 {full['latency_ms']['p50']} ms, p99 {full['latency_ms']['p99']} ms")
    full_db = None
    if full["hot_state"]:
        from django.test import override_settings

        log(f"(c0): {args.full_decisions} whole decisions on the database path")
        with override_settings(DECIDE_REDIS_URL=""):
            full_db = run_full(prop, cases, args.full_decisions, 200)
        log(f"(c0) p50 {full_db['latency_ms']['p50']} ms, p99 {full_db['latency_ms']['p99']} ms")

    http = None
    if not args.skip_http:
        from django.db import connections

        connections.close_all()
        raw = run_http(args, env, keys["publishable"], cases)
        from personalization import hotstate

        pending = hotstate.pending_count()
        t0 = time.perf_counter()
        flushed = hotstate.decision_log_flush()
        raw["flush_after"] = {
            "pending": pending,
            "flushed": flushed,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        http = {
            **raw,
            "decide_median": _median_run(raw["decide"]),
            "trivial_median": _median_run(raw["trivial"]),
        }

    a, b = pure["a_engine_dry_run_us"], pure["b_growthbook_conditions_us"]
    ratios: dict[str, float] = {
        "a_over_b_p50": round(a["p50"] / b["p50"], 4),
        "a_over_b_p99": round(a["p99"] / b["p99"], 4),
        "a2_over_b_p50": round(pure["a2_engine_no_trace_us"]["p50"] / b["p50"], 4),
        "a2_over_b_p99": round(pure["a2_engine_no_trace_us"]["p99"] / b["p99"], 4),
        "a0_over_b_p50": round(pure["a0_engine_conditions_only_us"]["p50"] / b["p50"], 4),
    }
    if http:
        d, t = http["decide_median"]["requests_per_s"], http["trivial_median"]["requests_per_s"]
        ratios["http_decide_over_trivial"] = round(d / t, 4) if t else 0.0
        ratios["http_decide_vs_target"] = round(d / TARGET_DECISIONS_PER_S, 4)
        # The servers' own CPU per request (all rounds): on a shared machine the rates
        # depend on what else runs on the server's core; this does not.
        cpu = {}
        for label in ("decide", "trivial", *(run[0] for run in OFREP_RUNS)):
            runs = http.get(label) or []
            spent = sum(x.get("server_cpu_s", 0.0) for x in runs)
            count = sum(x["requests"] for x in runs if "server_cpu_s" in x)
            cpu[label] = spent * 1000 / count if count else 0.0
        runs = http.get("decide") or []
        count = sum(x["requests"] for x in runs if "flush_worker_cpu_ms_per_request" in x)
        if count:
            spent = sum(
                x["flush_worker_cpu_ms_per_request"] * x["requests"]
                for x in runs
                if "flush_worker_cpu_ms_per_request" in x
            )
            ratios["http_flush_worker_cpu_ms_decide"] = round(spent / count, 3)
        if cpu["decide"] and cpu["trivial"]:
            ratios["http_server_cpu_ms_decide"] = round(cpu["decide"], 3)
            ratios["http_server_cpu_ms_trivial"] = round(cpu["trivial"], 3)
            ratios["http_cpu_decide_over_trivial_rate"] = round(cpu["trivial"] / cpu["decide"], 4)
        if cpu.get("ofrep_bulk") and cpu.get("ofrep_one") and cpu.get("decide_one"):
            # Issue budgets: bulk <= 1.1 x decide (same slots), single <= 1.0 x one-slot decide.
            ratios["http_cpu_ofrep_bulk_over_decide"] = round(cpu["ofrep_bulk"] / cpu["decide"], 4)
            ratios["http_cpu_ofrep_one_over_decide_one"] = round(
                cpu["ofrep_one"] / cpu["decide_one"], 4
            )
            for label in ("ofrep_bulk", "decide_one", "ofrep_one"):
                ratios[f"http_server_cpu_ms_{label}"] = round(cpu[label], 3)
    engine_slow = ratios["a_over_b_p50"] >= 1
    http_slow = bool(http) and ratios["http_decide_over_trivial"] < TARGET_HTTP_RATIO

    gunicorn_version = subprocess.run(
        [str(Path(PYTHON).parent / "gunicorn"), "--version"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    from importlib.metadata import version

    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_decide.py", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "gunicorn": gunicorn_version,
            "growthbook": version("growthbook"),
            "django": version("django"),
            "djangorestframework": version("djangorestframework"),
            "psycopg": version("psycopg"),
            "postgres": server_facts(db_url),
            "loadavg_start": args.loadavg_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "code": args.code_state,
        "cache": "Redis " + args.redis_url if not args.no_redis else "locmem (per process)",
        "hot_state": "database" if args.db_path or args.no_redis else "Redis " + args.redis_url,
        "http_setup": {
            "workers": args.workers,
            "worker_class": args.worker_class,
            "server_core": args.server_core,
            "client_core": args.client_core,
            "concurrency": args.concurrency,
            "paced_concurrency": args.paced_concurrency,
        },
        "scale": {"targeting": targeting, "visitors": visitors},
        "pure": pure,
        "full": full,
        "full_db_path": full_db,
        "http": http,
        "ratios": ratios,
    }
    prof = ""
    if not args.no_profile and (engine_slow or http_slow or args.profile):
        log("profiling (pyinstrument)")
        from django.db import connections

        connections.close_all()
        prof = run_profiles(prop, keys["publishable"], cases, loaded, args, engine_slow, http_slow)
        report["profile"] = prof
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n===== Decision benchmark =====")
    print("\n".join(summary_lines(report)))
    print()
    print("\n".join(breakdown_lines(full)))
    if prof:
        print("\n===== profiles =====")
        print(prof)
    if not args.no_record:
        record(report, RESULTS)
        log(f"recorded in {RESULTS.relative_to(BASE_DIR)} (section 'Decisions')")
    return 0


def code_state() -> dict[str, Any]:
    """Which code was measured: HEAD, and whether the measured modules differ from it
    (read-only git commands; other engineers edit the tree while benchmarks run)."""
    import hashlib

    files = [
        "personalization/decisions/engine.py",
        "personalization/decisions/stages.py",
        "personalization/conditions.py",
        "personalization/ruleset.py",
        "personalization/selectors.py",
        "personalization/visitor_state.py",
        "personalization/db.py",
        "personalization/api/views.py",
        "consent/selectors.py",
    ]

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=BASE_DIR, capture_output=True, text=True)
        return done.stdout.rstrip("\n")  # porcelain lines start with a space

    modified = git("status", "--porcelain", "--", *files).splitlines()
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "modified_vs_head": [line[3:] for line in modified],
        "sha256_12": {
            f: hashlib.sha256((BASE_DIR / f).read_bytes()).hexdigest()[:12]
            for f in files
            if (BASE_DIR / f).exists()
        },
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    sys.exit(main())
