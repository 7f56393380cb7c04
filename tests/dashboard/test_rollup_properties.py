"""Property-based test (hypothesis) of the incremental hourly rollup.

Whatever small history of decisions, answers and events arrives, in whatever batches
(later batches holding input stamped in the past: late events, late-flushed decisions),
an incremental ``rollup_hourly`` after each batch leaves exactly the rows a ``full=True``
run computes, and a rerun with nothing new is skipped and changes nothing.

Bounded by the ``micro-adjust`` profile of tests/personalization/test_properties.py (25
examples here; ``HYPOTHESIS_PROFILE=thorough`` or ``ROLLUP_EXAMPLES=1000`` for a long run).
Each example runs in a savepoint that is rolled back, so examples never see each other's
rows.
"""

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.models import AdjustmentHourly, AttributionWindow
from dashboard.rollups import rollup_hourly
from personalization.models import Property
from tests.dashboard.test_dashboard_rollups import Log
from tests.personalization import test_properties  # noqa: F401  (registers and loads the profiles)

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
VISITORS = ("v0", "v1", "v2", "v3")  # v0, v1 consented; v2 refused personalization; v3 none
SESSIONS = ("s0", "s1", "s2")
SLOTS = ("headline", "banner")
SEGMENTS = ("vip", "new")
ANSWERS = (
    ("rule", "r-short", 2, "short"),
    ("rule", "r-long", 1, "long"),
    ("experiment", "x", 3, "b"),
    ("default", "", None, "default"),
)
HORIZON = 30 * 3600  # inputs are stamped up to this many seconds ago


@dataclass(frozen=True)
class Decide:
    prop: int  # 0: the property under test, 1: another one (its ids interleave)
    visitor: str
    session: str
    ago: int  # seconds before now
    answers: tuple[tuple[str, int], ...]  # (slot, index into ANSWERS)
    segments: tuple[str, ...] | str  # "missing": no "segments" key; "null": a JSON null
    suppressed: tuple[tuple[str, str], ...]  # (slot, reason)
    device: str


@dataclass(frozen=True)
class Happen:
    prop: int
    type: str
    visitor: str
    session: str
    ago: int
    decision: int | None  # index into the decisions generated so far (or later): carried id
    revenue: int


# Seconds ago: mostly whole minutes (ties and window edges happen), sometimes any second.
agos = st.one_of(
    st.integers(0, HORIZON // 60).map(lambda m: m * 60),
    st.integers(0, HORIZON),
)
decides = st.builds(
    Decide,
    prop=st.sampled_from([0, 0, 0, 1]),
    visitor=st.sampled_from(VISITORS),
    session=st.sampled_from(SESSIONS),
    ago=agos,
    answers=st.lists(
        st.tuples(st.sampled_from(SLOTS), st.integers(0, len(ANSWERS) - 1)),
        max_size=2,
        unique_by=lambda a: a[0],
    ).map(tuple),
    segments=st.sampled_from(["missing", "null"])
    | st.lists(st.sampled_from(SEGMENTS), unique=True).map(tuple),
    suppressed=st.lists(
        st.tuples(st.sampled_from(SLOTS), st.sampled_from(["cooldown", "conflict", "holdout"])),
        max_size=2,
    ).map(tuple),
    device=st.sampled_from(["mobile", "desktop"]),
)
happens = st.builds(
    Happen,
    prop=st.sampled_from([0, 0, 0, 1]),
    type=st.sampled_from(["page_view", "page_view", "click", "purchase"]),
    visitor=st.sampled_from(VISITORS),
    session=st.sampled_from(SESSIONS),
    ago=agos,
    decision=st.none() | st.integers(0, 7),
    revenue=st.integers(1, 100),
)
# A history: inputs, each with the batch it arrives in (a run follows every batch).
histories = st.lists(
    st.tuples(st.integers(0, 3), decides | happens), min_size=1, max_size=14 if THOROUGH else 10
)
windows = st.dictionaries(
    st.sampled_from(SLOTS), st.sampled_from([60, 600, 3600, 4 * 3600]), max_size=2
)


def rows(prop: Property) -> list[tuple[Any, ...]]:
    """Every column of the property's hourly rows (all segment keys), sorted."""
    fields = [f.attname for f in AdjustmentHourly._meta.concrete_fields if f.attname not in ("id",)]
    return sorted(
        AdjustmentHourly.objects.filter(property=prop).values_list(*fields),
        key=lambda r: tuple(str(v) for v in r),
    )


class Rollback(Exception):
    pass


def apply(props: list[Property], history: list[tuple[int, Any]], now: datetime) -> None:
    logs = [Log(p) for p in props]
    # Decision ids are known up front: an event may carry the id of a decision that is
    # logged in a later batch (the decision log is flushed after the event is stored).
    ids = [uuid.uuid4() for _, item in history if isinstance(item, Decide)]
    order = iter(ids)
    for batch in sorted({b for b, _ in history}):
        for b, item in history:
            at = now - timedelta(seconds=item.ago)
            log = logs[item.prop]
            if isinstance(item, Decide):
                decision_id = next(order)
                if b != batch:
                    continue
                answers = [
                    (slot, ANSWERS[i][3], ANSWERS[i][0], ANSWERS[i][1], ANSWERS[i][2])
                    for slot, i in item.answers
                ]
                decision = log.decide(
                    item.visitor,
                    item.session,
                    at,
                    answers,
                    device=item.device,
                    suppressed=[
                        {"slot": slot, "candidate": "rule:r-short", "reason": reason}
                        for slot, reason in item.suppressed
                    ],
                    segments=[] if isinstance(item.segments, str) else list(item.segments),
                )
                decision.decision_id = decision_id
                if item.segments == "missing":  # decisions logged before segments were
                    decision.signals.pop("segments")
                elif item.segments == "null":
                    decision.signals["segments"] = None
                decision.save(update_fields=["decision_id", "signals"])
            elif b == batch:
                carried = (
                    SimpleNamespace(decision_id=ids[item.decision % len(ids)])
                    if item.decision is not None and ids
                    else None
                )
                log.event(
                    item.type,
                    item.visitor,
                    item.session,
                    at,
                    carried,  # type: ignore[arg-type]
                    **({"revenue": item.revenue} if item.type == "purchase" else {}),
                )
        order = iter(ids)
        for prop in props:
            rollup_hourly(property_id=prop.pk)


@pytest.fixture
def pair(make_shop, consent) -> list[Property]:
    """Two properties (the second's input interleaves ids with the first's), each with
    two consented visitors, one who refused personalization and one without a record."""
    props = [make_shop("Main").prop, make_shop("Other").prop]
    for prop in props:
        for vid in ("v0", "v1"):
            consent(prop, vid)
        consent(
            prop, "v2", {"analytics": True, "personalization": False, "granular_tracking": False}
        )
    return props


@settings(
    max_examples=int(os.environ.get("ROLLUP_EXAMPLES", 150 if THOROUGH else 25)), deadline=None
)
@given(history=histories, custom=windows)
def test_rollup_hourly__any_history_in_any_batches__incremental_equals_full(pair, history, custom):
    try:
        with transaction.atomic():
            for slot, seconds in custom.items():
                AttributionWindow.objects.create(property=pair[0], slot_key=slot, seconds=seconds)
            # Given the history applied batch by batch, an incremental run after each
            apply(pair, history, timezone.now())
            incremental = {p.pk: rows(p) for p in pair}
            # When it runs again with nothing new  Then it is skipped and nothing changes
            for prop in pair:
                assert rollup_hourly(property_id=prop.pk).skipped
                assert rows(prop) == incremental[prop.pk]
            # When a full run recomputes everything  Then it agrees with the incremental rows
            for prop in pair:
                rollup_hourly(property_id=prop.pk, full=True)
                assert rows(prop) == incremental[prop.pk], f"property {pair.index(prop)}"
            raise Rollback
    except Rollback:
        pass
