"""Dashboard rollups against hand-computed values on a small known dataset.

Decisions, adjustments and events are written as the engine and the ingest store them
(directly through the models, to pin their times); consent, surveys and one decision
go through the project's own services.
"""

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.utils import timezone

from consent import selectors as consent_selectors
from consent import services as consent_services
from dashboard import selectors
from dashboard.models import (
    AdjustmentHourly,
    AttributionWindow,
    ConsentDaily,
    EventFateDaily,
    RetentionCohortDaily,
    RollupState,
    SegmentSizeDaily,
    SurveyScoreDaily,
    SurveySeenDaily,
)
from dashboard.rollups import (
    rollup_consent,
    rollup_fates,
    rollup_hourly,
    rollup_retention,
    rollup_segments,
    rollup_surveys,
    rollups_run,
)
from personalization.models import Adjustment, Decision, Event, IngestStat, Property
from personalization.services.surveys import survey_create, survey_response_submit
from tests.conftest import needs

OUTCOME_FIELDS = (
    "exposures",
    "clicks",
    "conversions",
    "revenue",
    "sessions",
    "session_seconds",
    "bounces",
)
SUPPRESSION_FIELDS = (
    "suppressed_cooldown",
    "suppressed_cap",
    "suppressed_budget",
    "suppressed_conflict",
    "suppressed_consent",
    "suppressed_holdout",
)


def hour_floor(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


class Log:
    """Writes decisions, their answers and events the way the engine and ingest do."""

    def __init__(self, prop: Property) -> None:
        self.prop = prop

    def decide(
        self,
        vid: str,
        sid: str,
        at: datetime,
        answers: list[tuple[str, str, str, str, int | None]],
        *,
        device: str = "mobile",
        holdout: bool = False,
        suppressed: list[dict[str, str]] | None = None,
        segments: list[str] | None = None,
    ) -> Decision:
        consent = consent_selectors.consent_effective(self.prop.pk, vid)
        decision = Decision.objects.create(
            decision_id=uuid.uuid4(),
            property=self.prop,
            visitor_id=vid,
            session_id=sid,
            created_at=at,
            personalized=any(kind != "default" for _, _, kind, _, _ in answers),
            holdout=holdout,
            consent_record_id=consent.record_id,
            signals={
                "session": {"device_type": device},
                "visitor": {},
                "segments": segments or [],
            },
            suppressed=suppressed or [],
        )
        for slot, variant, kind, key, version in answers:
            Adjustment.objects.create(
                decision=decision,
                property=self.prop,
                visitor_id=vid,
                session_id=sid,
                created_at=at,
                slot_key=slot,
                variant_key=variant,
                source_kind=kind,
                source_key=key,
                source_version=version,
                is_default=kind == "default",
            )
        return decision

    def event(
        self,
        type: str,
        vid: str,
        sid: str,
        at: datetime,
        decision: Decision | None = None,
        **properties: Any,
    ) -> Event:
        return Event.objects.create(
            property=self.prop,
            event_id=uuid.uuid4(),
            type=type,
            visitor_id=vid,
            session_id=sid,
            timestamp=at,
            received_at=timezone.now(),
            decision_id=decision.decision_id if decision else None,
            properties=properties,
        )


SHORT = [("headline", "short", "rule", "r-short", 2)]
DEFAULT = [("headline", "default", "default", "", None)]


@pytest.fixture
def known(shop, consent):
    """The small known dataset, in hour T0 (three hours ago)."""
    prop = shop.prop
    for vid in ("p1", "p2", "h1"):
        consent(prop, vid)
    consent(prop, "n1", {"analytics": True, "personalization": False, "granular_tracking": False})
    t0 = hour_floor(timezone.now()) - timedelta(hours=3)
    m = lambda minutes, seconds=0: t0 + timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    log = Log(prop)
    d = {}
    # p1: a click carrying the decision id; a purchase 29 min after (inside the 30 min window)
    d["p1"] = log.decide("p1", "s1", m(10), SHORT, segments=["vip"])
    log.event("page_view", "p1", "s1", m(10))
    log.event("click", "p1", "s1", m(12), d["p1"], element_id="cta")
    log.event("page_view", "p1", "s1", m(15))
    log.event("purchase", "p1", "s1", m(39), revenue=30)
    # p1 again in the same session: an exposure, not a new session; and two suppressions
    d["p1b"] = log.decide(
        "p1",
        "s1",
        m(45),
        SHORT,
        segments=["vip"],
        suppressed=[
            {"slot": "banner", "candidate": "rule:r-promo", "reason": "cooldown"},
            {"slot": "headline", "candidate": "rule:r-long", "reason": "conflict"},
        ],
    )
    # p2 (desktop): a single page, a bounce; a purchase 31 min after (outside the window)
    d["p2"] = log.decide("p2", "s2", m(20), SHORT, device="desktop", segments=["vip", "new"])
    log.event("page_view", "p2", "s2", m(20))
    log.event("purchase", "p2", "s3", m(51), revenue=50)
    # h1: held out; two pages five minutes apart
    d["h1"] = log.decide(
        "h1",
        "s4",
        m(30),
        DEFAULT,
        holdout=True,
        suppressed=[{"slot": "headline", "candidate": "rule:r-short", "reason": "holdout"}],
    )
    log.event("page_view", "h1", "s4", m(30))
    log.event("page_view", "h1", "s4", m(35))
    # n1: did not consent to personalization; clicks a minute later (by decision id)
    d["n1"] = log.decide(
        "n1",
        "s5",
        m(40),
        DEFAULT,
        suppressed=[{"slot": "headline", "candidate": "rule:r-short", "reason": "consent"}],
    )
    log.event("page_view", "n1", "s5", m(40))
    log.event("click", "n1", "s5", m(41), d["n1"], element_id="cta")
    return {"prop": prop, "t0": t0, "log": log, "decisions": d, "m": m}


def hourly_rows(prop: Property, segment: str = "") -> dict[tuple, dict[str, Any]]:
    rows = AdjustmentHourly.objects.filter(property=prop, segment_key=segment).values()
    return {
        (
            r["hour"],
            r["slot_key"],
            r["source_kind"],
            r["source_key"],
            r["source_version"],
            r["variant_key"],
            r["device_type"],
            r["group"],
        ): {k: r[k] for k in (*OUTCOME_FIELDS, *SUPPRESSION_FIELDS, "revenue_sq")}
        for r in rows
    }


def outcomes(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in OUTCOME_FIELDS)


def test_rollup_hourly__known_dataset__hand_computed_rows(known):
    # Given the known dataset  When the hourly rollup runs
    prop, t0 = known["prop"], known["t0"]
    rollup_hourly(property_id=prop.pk)
    rows = hourly_rows(prop)
    # Then per slot × source × variant × device × group (exposures, clicks, conversions,
    # revenue, sessions, session seconds, bounces):
    rule = (t0, "headline", "rule", "r-short", 2, "short")
    default = (t0, "headline", "default", "", 0, "default")
    # p1's two exposures: one click (decision id), the purchase inside the window, one session
    # lasting 29 minutes from the first exposure, not a bounce
    assert outcomes(rows[(*rule, "mobile", "personalized")]) == (2, 1, 1, 30.0, 1, 1740.0, 0)
    assert rows[(*rule, "mobile", "personalized")]["revenue_sq"] == 900.0
    # p2: the purchase 31 minutes later does not count; one page: a bounce
    assert outcomes(rows[(*rule, "desktop", "personalized")]) == (1, 0, 0, 0.0, 1, 0.0, 1)
    # h1 held out: default, two pages five minutes apart
    assert outcomes(rows[(*default, "mobile", "holdout")]) == (1, 0, 0, 0.0, 1, 300.0, 0)
    # n1 not consented: the click carries the decision id; one page
    assert outcomes(rows[(*default, "mobile", "not_consented")]) == (1, 1, 0, 0.0, 1, 60.0, 1)
    # And suppressions by reason, on the suppressed candidate's rows
    suppressed = {
        key[1:4] + key[6:]: {f: v for f, v in row.items() if f.startswith("suppressed") and v}
        for key, row in rows.items()
        if any(row[f] for f in SUPPRESSION_FIELDS)
    }
    assert suppressed == {
        ("banner", "rule", "r-promo", "mobile", "personalized"): {"suppressed_cooldown": 1},
        ("headline", "rule", "r-long", "mobile", "personalized"): {"suppressed_conflict": 1},
        ("headline", "rule", "r-short", "mobile", "holdout"): {"suppressed_holdout": 1},
        ("headline", "rule", "r-short", "mobile", "not_consented"): {"suppressed_consent": 1},
    }
    assert len(rows) == 8


def test_rollup_hourly__segments__rows_again_per_segment_the_decision_placed_them_in(known):
    # Given p1 (segment vip, twice) and p2 (vip and new); h1 and n1 in none
    prop, t0 = known["prop"], known["t0"]
    # When the hourly rollup runs
    rollup_hourly(property_id=prop.pk)
    rule = (t0, "headline", "rule", "r-short", 2, "short")
    vip, new = hourly_rows(prop, "vip"), hourly_rows(prop, "new")
    # Then the vip rows hold p1's and p2's exposures as the all-visitor rows do
    assert outcomes(vip[(*rule, "mobile", "personalized")]) == (2, 1, 1, 30.0, 1, 1740.0, 0)
    assert outcomes(vip[(*rule, "desktop", "personalized")]) == (1, 0, 0, 0.0, 1, 0.0, 1)
    # and p1's second decision's suppressions; nothing of h1 or n1
    assert {
        k[1:4] for k, r in vip.items() if r["suppressed_cooldown"] or r["suppressed_conflict"]
    } == {
        ("banner", "rule", "r-promo"),
        ("headline", "rule", "r-long"),
    }
    assert len(vip) == 4
    # and the new rows p2's alone
    assert list(new) == [(*rule, "desktop", "personalized")]
    # And the dashboards' segment filter reads them: in vip, the three personalized
    # exposures only; for all visitors, the held-out and not-consented ones too
    props = Property.objects.filter(pk=prop.pk)
    day = t0.date()
    in_vip = selectors.group_outcomes(props, selectors.DashboardFilters(day, day, segment="vip"))
    everyone = selectors.group_outcomes(props, selectors.DashboardFilters(day, day))
    assert {g: o.exposures for g, o in in_vip.items()} == {
        "personalized": 3,
        "holdout": 0,
        "not_consented": 0,
    }
    assert {g: o.exposures for g, o in everyone.items()} == {
        "personalized": 3,
        "holdout": 1,
        "not_consented": 1,
    }


def test_rollup_hourly__slot_window_widened__purchase_31_minutes_later_counts(known):
    # Given the headline slot's attribution window set to 45 minutes
    prop, t0 = known["prop"], known["t0"]
    AttributionWindow.objects.create(property=prop, slot_key="headline", seconds=45 * 60)
    # When the rollup runs
    rollup_hourly(property_id=prop.pk)
    # Then p2's purchase 31 minutes after the exposure counts for it
    row = hourly_rows(prop)[
        (t0, "headline", "rule", "r-short", 2, "short", "desktop", "personalized")
    ]
    assert (row["conversions"], row["revenue"]) == (1, 50.0)


def test_rollup_hourly__window_changed_after_a_run__next_incremental_run_recomputes(known):
    # Given rows computed with the default 30-minute window (p2's purchase 31 minutes
    # after the exposure does not count), and nothing new since
    prop, t0 = known["prop"], known["t0"]
    rollup_hourly(property_id=prop.pk)
    key = (t0, "headline", "rule", "r-short", 2, "short", "desktop", "personalized")
    assert hourly_rows(prop)[key]["conversions"] == 0
    assert rollup_hourly(property_id=prop.pk).skipped
    # When marketing widens the slot's window, and the next run is an incremental one
    window = AttributionWindow.objects.create(property=prop, slot_key="headline", seconds=2700)
    result = rollup_hourly(property_id=prop.pk)
    # Then it recomputes every hour with the new window: the purchase counts
    assert not result.skipped and hourly_rows(prop)[key]["conversions"] == 1
    widened = hourly_rows(prop)
    assert rollup_hourly(property_id=prop.pk).skipped  # and once only
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == widened
    # When the window is removed again  Then the next run goes back to the default
    window.delete()
    assert not rollup_hourly(property_id=prop.pk).skipped
    assert hourly_rows(prop)[key]["conversions"] == 0


def test_rollup_hourly__late_event_then_rerun__folded_in_then_nothing_changes(known):
    # Given a first run
    prop, t0, log, m = known["prop"], known["t0"], known["log"], known["m"]
    rollup_hourly(property_id=prop.pk)
    key = (t0, "headline", "rule", "r-short", 2, "short", "desktop", "personalized")
    assert hourly_rows(prop)[key]["clicks"] == 0
    # When a late click carrying p2's decision id arrives, and the next run is incremental
    log.event("click", "p2", "s2", m(25), known["decisions"]["p2"], element_id="cta")
    result = rollup_hourly(property_id=prop.pk)
    # Then it is folded into its hour (which is all the run recomputed)
    assert result.start == t0 - timedelta(hours=3)  # the window and session reach
    assert result.end == t0 + timedelta(hours=1)  # not every hour since
    after = hourly_rows(prop)
    assert after[key]["clicks"] == 1
    assert outcomes(after[key]) == (1, 1, 0, 0.0, 1, 300.0, 1)
    # When it runs again with nothing new, or in full
    again = rollup_hourly(property_id=prop.pk)
    assert again.skipped
    assert hourly_rows(prop) == after
    rollup_hourly(property_id=prop.pk, full=True)
    # Then nothing changes
    assert hourly_rows(prop) == after


def test_rollup_hourly__late_event_a_day_old__only_the_hours_it_can_change(known, consent):
    # Given an exposure 27 hours before T0, rolled up with the rest
    prop, t0, log = known["prop"], known["t0"], known["log"]
    old = t0 - timedelta(hours=27)
    consent(prop, "q1")
    log.decide("q1", "s9", old + timedelta(minutes=5), SHORT, device="desktop")
    rollup_hourly(property_id=prop.pk)
    key = (old, "headline", "rule", "r-short", 2, "short", "desktop", "personalized")
    assert hourly_rows(prop)[key]["clicks"] == 0
    # When a click of that visitor 5 minutes later arrives only now (no decision id)
    log.event("click", "q1", "s9", old + timedelta(minutes=10), element_id="cta")
    result = rollup_hourly(property_id=prop.pk)
    # Then the run recomputes the hours it can change — its own back through the
    # attribution window and session reach — and not every hour since
    assert (result.start, result.end) == (old - timedelta(hours=3), old + timedelta(hours=1))
    assert result.hours == 4
    after = hourly_rows(prop)
    assert after[key]["clicks"] == 1
    # And a full run agrees
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == after


def test_rollup_hourly__new_decision_and_late_event__two_spans_like_a_full_run(known, consent):
    # Given a first run, then a late page view 27 hours back and a new decision now
    prop, t0, log = known["prop"], known["t0"], known["log"]
    old = t0 - timedelta(hours=27)
    consent(prop, "q2")
    log.decide("q2", "s8", old + timedelta(minutes=1), SHORT)
    log.event("page_view", "q2", "s8", old + timedelta(minutes=1))
    rollup_hourly(property_id=prop.pk)
    key = (old, "headline", "rule", "r-short", 2, "short", "mobile", "personalized")
    before = hourly_rows(prop)[key]
    assert (before["session_seconds"], before["bounces"]) == (0.0, 1)  # one page so far
    log.event("page_view", "q2", "s8", old + timedelta(minutes=20))
    log.decide("q3", "s7", timezone.now(), SHORT)
    # When the incremental run folds both in
    result = rollup_hourly(property_id=prop.pk)
    incremental = hourly_rows(prop)
    # Then it spans from the late event's reach to now, and equals a full run
    assert result.start == old - timedelta(hours=3)
    assert result.end == hour_floor(timezone.now()) + timedelta(hours=1)
    assert result.hours < 27  # two spans, not every hour between them
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == incremental
    # and the late second page made the session 19 minutes long and no bounce
    assert (incremental[key]["session_seconds"], incremental[key]["bounces"]) == (19 * 60.0, 0)


def test_rollup_hourly__decision_through_the_engine__row_for_its_device_and_group(shop, consent):
    # Given a consented visitor on a phone (their page view stored), decided by the engine
    from personalization import hotstate
    from personalization.decisions import DecideRequest, decide
    from personalization.services.ingest import events_ingest
    from tests.conftest import make_event
    from tests.targeting import rule, slot

    prop = shop.prop
    prop.holdout_pct = 0
    prop.save()
    consent(prop, "v-eng")
    slot(prop, "headline", {"short": {"text": "x"}})
    rule(prop, "all", "headline", "short")
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    events_ingest(
        prop=prop, events=[make_event(visitor_id="v-eng", context={"user_agent": iphone})]
    )
    result = decide(prop, DecideRequest("v-eng", "s-1", ["headline"], {"user_agent": iphone}))
    hotstate.decision_log_flush()
    Log(prop).event("click", "v-eng", "s-1", timezone.now(), None, element_id="cta")
    # When the rollup runs
    rollup_hourly(property_id=prop.pk)
    # Then one personalized exposure of the rule on a mobile device, clicked within the window
    row = AdjustmentHourly.objects.get(property=prop)
    assert result.answers["headline"].variant == "short"
    assert (row.source_kind, row.source_key, row.variant_key) == ("rule", "all", "short")
    assert (row.device_type, row.group, row.exposures, row.clicks) == (
        "mobile",
        "personalized",
        1,
        1,
    )


def test_selectors__known_dataset__group_outcomes_and_rule_suppressions(known):
    # Given the rolled-up dataset
    prop = known["prop"]
    rollup_hourly(property_id=prop.pk)
    props = Property.objects.filter(pk=prop.pk)
    filters = selectors.DashboardFilters(
        start=known["t0"].date() - timedelta(days=1), end=timezone.now().date()
    )
    # When the overview and rules pages read them
    groups = selectors.group_outcomes(props, filters)
    rules = selectors.suppressions(props, filters)
    daily = selectors.adjustments_daily(props, filters)
    # Then personalized: 3 exposures, 1 click; holdout 1 exposure; each with an interval
    assert (groups["personalized"].exposures, groups["personalized"].clicks) == (3, 1)
    assert groups["personalized"].click_through.estimate == pytest.approx(1 / 3)
    assert 0 < groups["personalized"].click_through.low < 1 / 3
    assert groups["holdout"].session_duration.estimate == 300.0
    short = next(r for r in rules if r["source_key"] == "r-short")
    assert (short["holdout"], short["consent"], short["conflict"]) == (1, 1, 0)
    assert sum(r["adjustments"] for r in daily) == 3  # the non-default exposures
    # And a device filter narrows the hourly rows
    desktop = selectors.group_outcomes(
        props, selectors.DashboardFilters(filters.start, filters.end, device_type="desktop")
    )
    assert desktop["personalized"].exposures == 1


def test_rollup_retention__weeks_of_decisions__cohorts_split_by_group(shop, consent):
    # Given visitors first seen in week W0 (and one in W1), active in later weeks
    prop = shop.prop
    for vid in ("p1", "p2", "h1"):
        consent(prop, vid)
    today = timezone.now().date()
    w0 = today - timedelta(days=today.weekday() + 21)

    def at(week: int, day: int = 1) -> datetime:
        midnight = datetime.combine(w0 + timedelta(weeks=week, days=day), datetime.min.time())
        return midnight.replace(tzinfo=UTC) + timedelta(hours=10)

    log = Log(prop)
    log.decide("p1", "a", at(0), SHORT)
    log.decide("p1", "b", at(0, 3), SHORT)
    log.decide("p1", "c", at(1), SHORT)
    log.decide("h1", "a", at(0), DEFAULT, holdout=True)
    log.decide("n1", "a", at(0), DEFAULT)
    log.decide("n1", "b", at(2, 6), DEFAULT)
    log.decide("p2", "a", at(1, 2), SHORT)
    # When the retention rollup runs (twice: the same rows)
    rollup_retention(property_id=prop.pk)
    rollup_retention(property_id=prop.pk)
    rows = set(
        RetentionCohortDaily.objects.filter(property=prop).values_list(
            "cohort_week", "weeks_since", "group", "cohort_size", "active"
        )
    )
    # Then
    w1 = w0 + timedelta(weeks=1)
    assert rows == {
        (w0, 0, "personalized", 1, 1),
        (w0, 1, "personalized", 1, 1),
        (w0, 0, "holdout", 1, 1),
        (w0, 0, "not_consented", 1, 1),
        (w0, 2, "not_consented", 1, 1),
        (w1, 0, "personalized", 1, 1),
    }
    curves = selectors.retention_curves(
        Property.objects.filter(pk=prop.pk), selectors.DashboardFilters(w0, today)
    )
    # every cohort that reached a week counts in its denominator, returned or not (W0 has
    # reached week 3, W1 week 2): weeks nobody came back in are zeros, not missing
    assert [(p["weeks_since"], p["cohort_size"], p["active"]) for p in curves["personalized"]] == [
        (0, 2, 2),
        (1, 2, 1),
        (2, 2, 0),
        (3, 1, 0),
    ]


def test_rollup_surveys__answers_by_exposure__counts_sums_nps_and_seen_pairs(known):
    # Given an NPS survey answered by p1 (shown rule r-short twice), h1 and n1 (shown nothing)
    prop = known["prop"]
    survey_create(
        prop=prop,
        key="nps",
        title="NPS",
        questions=[
            {"key": "recommend", "type": "nps", "text": "Recommend us?"},
            {"key": "why", "type": "text", "text": "Why?"},
        ],
    )
    now = timezone.now()
    for vid, score in (("p1", 10), ("h1", 6), ("n1", 8)):
        survey_response_submit(
            prop=prop,
            survey_key="nps",
            visitor_id=vid,
            session_id="s-x",
            answers={"recommend": score, "why": f"because {vid}"},
            now=now,
        )
    # When the survey rollup runs
    rollup_surveys(property_id=prop.pk)
    # Then per exposure: answers, Σ, Σ², promoters / passives / detractors
    scores = {
        (r.exposure_kind, r.exposure_key): (
            r.answers,
            r.total,
            r.total_sq,
            r.promoters,
            r.passives,
            r.detractors,
        )
        for r in SurveyScoreDaily.objects.filter(property=prop, question_key="recommend")
    }
    assert scores == {
        ("all", ""): (3, 24.0, 200.0, 1, 1, 1),
        ("rule", "r-short"): (1, 10.0, 100.0, 1, 0, 0),
        ("none", ""): (2, 14.0, 100.0, 0, 1, 1),
    }
    # And adjustments seen (x: 2, 0, 0) against the score, for the correlation
    pair = SurveySeenDaily.objects.get(property=prop, bucket="")
    assert (pair.n, pair.sum_x, pair.sum_y, pair.sum_xx, pair.sum_yy, pair.sum_xy) == (
        3,
        2.0,
        24.0,
        4.0,
        200.0,
        20.0,
    )
    buckets = dict(
        SurveySeenDaily.objects.filter(property=prop)
        .exclude(bucket="")
        .values_list("bucket", "sum_y")
    )
    assert buckets == {"2": 10.0, "0": 14.0}
    # And the feedback selectors compare exposed with not exposed
    props = Property.objects.filter(pk=prop.pk)
    filters = selectors.DashboardFilters.last_days(2)
    rule_row = next(r for r in selectors.survey_scores(props, filters) if r.exposure_key)
    assert (rule_row.answers, rule_row.complement_answers) == (1, 2)
    assert rule_row.complement_mean.estimate == 7.0
    assert rule_row.nps.estimate == 100.0
    assert (rule_row.total, rule_row.total_sq) == (10.0, 100.0)
    corr = selectors.survey_seen_correlation(props, filters)[0]
    # x = (2, 0, 0), y = (10, 6, 8): cov 4, Σ(x-x̄)² 8/3, Σ(y-ȳ)² 8, r = 4 / √(64/3) = √3/2
    assert corr["correlation"].estimate == pytest.approx(3**0.5 / 2)
    texts = selectors.recent_free_text(props, filters)
    p1_text = next(t for t in texts if t["answers"] == {"why": "because p1"})
    assert [a["source_key"] for a in p1_text["adjustments"]] == ["r-short"]


def test_rollup_segments_fates_consent__known_inputs__daily_rows(known):
    # Given ingest counts of yesterday, and a GPC opt-out today
    prop, t0 = known["prop"], known["t0"]
    yesterday = hour_floor(timezone.now()).replace(hour=12) - timedelta(days=1)
    for hour, event_type, fate, count in (
        (yesterday, "page_view", "accepted", 5),
        (yesterday + timedelta(hours=1), "page_view", "accepted", 3),
        (yesterday, "click", "quarantined", 2),
        (yesterday, "click", "dropped_no_consent", 4),
    ):
        IngestStat.objects.create(
            property=prop, event_type=event_type, hour=hour, fate=fate, count=count
        )
    consent_services.consent_record(
        property_id=prop.pk,
        visitor_id="g1",
        policy_version=1,
        purposes={"analytics": False, "personalization": False, "granular_tracking": False},
        method="gpc",
        gpc=True,
    )
    # When the daily rollups run
    rollup_segments(property_id=prop.pk)
    rollup_fates(property_id=prop.pk)
    rollup_consent(property_id=prop.pk)
    # Then distinct visitors per segment on the day of the decisions
    assert set(
        SegmentSizeDaily.objects.filter(property=prop).values_list("day", "segment_key", "size")
    ) == {(t0.date(), "vip", 2), (t0.date(), "new", 1)}
    # And fates per day and type
    assert set(
        EventFateDaily.objects.filter(property=prop).values_list(
            "day", "event_type", "fate", "count"
        )
    ) == {
        (yesterday.date(), "page_view", "accepted", 8),
        (yesterday.date(), "click", "quarantined", 2),
        (yesterday.date(), "click", "dropped_no_consent", 4),
    }
    # And consent records per purpose (3 granted, 1 refused personalization) and GPC share
    today = {
        purpose: (records, granted)
        for purpose, records, granted in ConsentDaily.objects.filter(property=prop).values_list(
            "purpose", "records", "granted"
        )
    }
    assert today["personalization"] == (5, 3)
    assert today["analytics"] == (5, 4)
    assert today[""] == (5, 1)


def test_dashboard_rollup_command__twice__second_run_changes_nothing(known):
    # Given the known dataset  When the command runs, then again
    prop = known["prop"]
    call_command("dashboard_rollup", "--property", prop.slug, stdout=None)
    first = hourly_rows(prop)
    counts = {
        m.__name__: m.objects.filter(property=prop).count()
        for m in (RetentionCohortDaily, SegmentSizeDaily)
    }
    call_command("dashboard_rollup", stdout=None)
    # Then the rows are the same, and each kind has its watermark
    assert hourly_rows(prop) == first
    assert counts == {
        m.__name__: m.objects.filter(property=prop).count()
        for m in (RetentionCohortDaily, SegmentSizeDaily)
    }
    assert set(RollupState.objects.filter(property=prop).values_list("kind", flat=True)) == {
        "hourly",
        "surveys",
        "segments",
        "fates",
        "consent",
        "retention",
    }


def test_dashboard_rollup_command__unknown_property__error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No property"):
        call_command("dashboard_rollup", "--property", "nope")


def test_rollups_run__all_properties__each_rolled_up(known, make_shop):
    # Given a second property without data
    other = make_shop("Other").prop
    # When every property is rolled up
    results = rollups_run()
    # Then both have state, and only the first has rows
    assert {r.property_id for r in results} == {known["prop"].pk, other.pk}
    assert AdjustmentHourly.objects.filter(property=other).count() == 0
    assert AdjustmentHourly.objects.filter(property=known["prop"], segment_key="").count() == 8


@pytest.mark.django_db(transaction=True)
def test_dashboard_rollups_task__real_worker__rows_written(make_shop):
    from personalization.celery import app as celery_app
    from tests.personalization.test_tasks import broker_ready

    needs(broker_ready(), "needs a reachable CELERY_BROKER_URL (Redis) without TASKS_IN_PROCESS")
    from dashboard.tasks import dashboard_retention_task, dashboard_rollups_task

    # Given one decision an hour ago
    prop = make_shop().prop
    Log(prop).decide("v1", "s1", timezone.now() - timedelta(hours=1), SHORT)
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # When beat's tasks are sent to the worker (no result backend: the rows are the result)
        dashboard_rollups_task.delay()
        dashboard_retention_task.delay()
        # Then the rows appear
        assert wait_for(lambda: RollupState.objects.filter(property=prop).count() == 6)
    assert AdjustmentHourly.objects.get(property=prop).exposures == 1
    assert RetentionCohortDaily.objects.filter(property=prop, weeks_since=0).count() == 1


def wait_for(condition: Any, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_dashboard_rollups_task__another_run_holds_the_lock__skips(known):
    # Given a run in progress (its lock held)
    from dashboard.tasks import dashboard_rollups_task, exclusive

    with exclusive("rollups") as held:
        assert held
        # When beat starts another  Then it does nothing
        assert dashboard_rollups_task() == {"skipped": "another run holds the lock"}
        assert not AdjustmentHourly.objects.exists()
        # nor does the command
        from django.core.management.base import CommandError

        with pytest.raises(CommandError, match="holds the lock"):
            call_command("dashboard_rollup")
    # And once the lock is released a run rolls up
    assert dashboard_rollups_task()["runs"] == 5
    assert AdjustmentHourly.objects.filter(segment_key="").count() == 8


def test_rollup_lock__holder_killed__lock_released(postgres_only, db):
    # Given a rollup run in another process holding the lock (a worker mid-rollup)
    import signal
    import subprocess
    import sys

    from django.db import connection

    from dashboard.tasks import exclusive

    params = connection.get_connection_params()
    dsn = " ".join(f"{k}={params[k]}" for k in ("host", "port", "user", "dbname") if params.get(k))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, psycopg\n"
            "c = psycopg.connect(sys.argv[1], autocommit=True)\n"
            "c.execute(\"SELECT pg_advisory_lock(hashtext('dashboard:lock:rollups'))\")\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            dsn,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with exclusive("rollups") as held:
            assert not held  # a second run is refused while the first lives
        # When that worker is killed (no chance to release anything)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # Then the next run takes the lock (the server ended the dead session's lock)
        assert wait_for(lambda: _lock_free(exclusive), 10)
    finally:
        holder.kill()


def _lock_free(exclusive: Any) -> bool:
    with exclusive("rollups") as held:
        return bool(held)


def test_earliest_new__cursor_floor_and_slack__only_rows_that_count(known):
    """New input since the cursor, the late-events floor, and rows that committed late
    with a smaller id (the slack) decide where an incremental run starts."""
    from dashboard.rollups import state

    prop, log, m = known["prop"], known["log"], known["m"]
    now = timezone.now()
    floor, since = now - timedelta(hours=72), now - timedelta(minutes=5)
    cursor = state.max_id(Event)

    def earliest(after: int) -> datetime | None:
        return state.earliest_new(
            Event, prop.pk, "timestamp", after, state.max_id(Event), floor, since
        )

    assert earliest(cursor) is None  # nothing new
    too_late = log.event("page_view", "p1", "s1", now - timedelta(hours=80))
    assert earliest(cursor) is None  # new, but stamped before the floor
    inside = log.event("page_view", "p1", "s1", m(5))
    assert earliest(cursor) == m(5)
    # Seen as of the cursor after `inside`: the slack looks back at rows stamped after the
    # previous run began (`since`), not at older ones.
    recent = log.event("page_view", "p2", "s2", now - timedelta(minutes=1))
    after_recent = state.max_id(Event)
    log.event("page_view", "p2", "s2", now)
    assert earliest(after_recent) == now - timedelta(minutes=1)
    assert recent.pk > inside.pk > too_late.pk


def test_rollup_hourly__decision_without_answers_before_the_first__full_run_keeps_it(known):
    # Given a first run, then a late decision (no answers, one suppression) two hours
    # before the first adjustment
    prop, t0, log = known["prop"], known["t0"], known["log"]
    rollup_hourly(property_id=prop.pk)
    early = t0 - timedelta(hours=2)
    suppressed = [{"slot": "banner", "candidate": "rule:r-promo", "reason": "cooldown"}]
    log.decide("p1", "s0", early + timedelta(minutes=5), [], suppressed=suppressed)
    # When the incremental run folds it in
    rollup_hourly(property_id=prop.pk)
    incremental = hourly_rows(prop)
    key = (early, "banner", "rule", "r-promo", 0, "", "mobile", "personalized")
    assert incremental[key]["suppressed_cooldown"] == 1
    # Then a full run keeps its hour (it starts at the earliest decision, not adjustment)
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == incremental


def test_rollup_hourly__page_view_hours_into_a_long_session__exposure_hour_recomputed(
    known, consent
):
    # Given an exposure five hours ago (beyond the window and session reach), rolled up
    prop, log = known["prop"], known["log"]
    consent(prop, "q4")
    at = hour_floor(timezone.now()) - timedelta(hours=5) + timedelta(minutes=10)
    log.decide("q4", "s-long", at, SHORT)
    log.event("page_view", "q4", "s-long", at)
    rollup_hourly(property_id=prop.pk)
    key = (hour_floor(at), "headline", "rule", "r-short", 2, "short", "mobile", "personalized")
    assert (hourly_rows(prop)[key]["session_seconds"], hourly_rows(prop)[key]["bounces"]) == (
        0.0,
        1,
    )
    # When a page view of the same session arrives now (the session goes on)
    log.event("page_view", "q4", "s-long", at + timedelta(hours=4, minutes=30))
    rollup_hourly(property_id=prop.pk)
    # Then the exposure's hour is recomputed: a 4.5 hour session, no bounce
    incremental = hourly_rows(prop)
    assert (incremental[key]["session_seconds"], incremental[key]["bounces"]) == (16200.0, 0)
    # And a full run agrees
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == incremental


def test_rollups__segments_null_or_not_a_list__counted_for_all_visitors_only(known):
    # Given decisions whose signals hold segments as a JSON null, a string, and a list of
    # an empty key and a null
    prop, t0, log = known["prop"], known["t0"], known["log"]
    for sid, segments in (("s-null", None), ("s-text", "vip"), ("s-empty", ["", None])):
        decision = log.decide("p1", sid, t0 + timedelta(minutes=50), SHORT)
        decision.signals["segments"] = segments
        decision.save(update_fields=["signals"])
    # When the hourly and segment rollups run  Then they run (no error on either backend)
    rollup_hourly(property_id=prop.pk)
    rollup_segments(property_id=prop.pk)
    # and those exposures count for all visitors, in no segment
    rule = (t0, "headline", "rule", "r-short", 2, "short", "mobile", "personalized")
    assert hourly_rows(prop)[rule]["exposures"] == 5
    assert hourly_rows(prop, "vip")[rule]["exposures"] == 2
    assert set(
        SegmentSizeDaily.objects.filter(property=prop).values_list("segment_key", "size")
    ) == {("vip", 2), ("new", 1)}


def test_rollup_hourly__old_stamped_event_committed_late_with_a_smaller_id__folded_in(known):
    """An ingest transaction takes its id before a run reads the newest id, and commits
    after it: its event (stamped hours ago by the client) has an id below the cursor."""
    prop, t0, log, d = known["prop"], known["t0"], known["log"], known["decisions"]
    too_old = timezone.now() - timedelta(hours=80)  # events that count for no hour
    gap = log.event("page_view", "p2", "s-gap", too_old)
    log.event("page_view", "p2", "s-gap", too_old)
    gap_id = gap.pk
    gap.delete()  # the id the in-flight transaction holds
    rollup_hourly(property_id=prop.pk)
    key = (t0, "headline", "rule", "r-short", 2, "short", "desktop", "personalized")
    assert hourly_rows(prop)[key]["clicks"] == 0
    # When that transaction commits: a click on p2's exposure (by its decision id), stamped
    # at T0 by the client and received a minute ago; and the property's traffic goes on
    # (an event too old to count itself, so that only the late one reaches hour T0)
    Event.objects.create(
        pk=gap_id,
        property=prop,
        event_id=uuid.uuid4(),
        type="click",
        visitor_id="p2",
        session_id="s2",
        timestamp=known["m"](21),
        received_at=timezone.now() - timedelta(minutes=1),
        decision_id=d["p2"].decision_id,
        properties={},
    )
    log.event("page_view", "p1", "s-now", too_old)
    result = rollup_hourly(property_id=prop.pk)
    assert result.start == t0 - timedelta(hours=3)  # the late click's reach
    # Then the next incremental run folds it in, as a full run does
    incremental = hourly_rows(prop)
    assert incremental[key]["clicks"] == 1
    rollup_hourly(property_id=prop.pk, full=True)
    assert hourly_rows(prop) == incremental
