"""Experiments and rollouts: assignment, exclusion, ramps, kill switch, guardrails,
promotion, snapshots, results over the API, and the SQL summaries against Python."""

import json
import random
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from personalization import bucketing
from personalization.decisions import DecideRequest, decide
from personalization.hotstate import decision_log_flush
from personalization.models import (
    Adjustment,
    Experiment,
    ExperimentGoal,
    Goal,
    History,
    Rollout,
    Rule,
    Slot,
)
from personalization.services.experiments import (
    experiment_promote,
    experiment_results,
    experiment_snapshot,
    experiment_start,
    experiment_stop,
    rollout_guardrail_check,
    rollout_kill,
    summaries_python,
    summaries_sql,
)
from personalization.services.ingest import events_ingest
from tests.conftest import ALL_PURPOSES, is_postgres, make_event
from tests.targeting import rule, slot


@pytest.fixture
def lab(shop):
    shop.prop.holdout_pct = 0
    shop.prop.max_adjustments_per_session = 0
    shop.prop.save()
    slot(shop.prop, "cta", {"b": {"label": "Buy now"}, "c": {"label": "Get it"}})
    shop.click = Goal.objects.create(
        property=shop.prop,
        key="cta-click",
        kind="binary",
        event_type="click",
        element_id="cta",
        window_hours=24,
    )
    return shop


def consent_all(prop, visitors):
    from consent.services import consent_record

    for v in visitors:
        consent_record(
            property_id=prop.pk,
            visitor_id=v,
            policy_version=1,
            purposes=ALL_PURPOSES,
            method="banner",
        )


def make_experiment(shop, key="cta-test", variants=None, **fields):
    exp = Experiment.objects.create(
        property=shop.prop,
        key=key,
        slot=Slot.objects.get(property=shop.prop, key="cta"),
        variants=variants
        or [{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
        **fields,
    )
    ExperimentGoal.objects.create(experiment=exp, goal=shop.click, role="primary")
    return experiment_start(experiment=exp)


def ask(shop, visitor, session="s-1", now=None):
    return decide(shop.prop, DecideRequest(visitor, session, ["cta"]), now=now)


def test_experiment__assignment__deterministic_sticky_and_gb_compatible(lab):
    visitors = [f"v-{n}" for n in range(60)]
    consent_all(lab.prop, visitors)
    make_experiment(lab)
    first = {v: ask(lab, v).answers["cta"].variant for v in visitors}
    again = {v: ask(lab, v, session="s-2").answers["cta"].variant for v in visitors}
    assert first == again and set(first.values()) == {"default", "b"}
    # the same bucketing recomputed in another process, as any GrowthBook SDK would
    code = (
        "import json,sys; from personalization import bucketing as b;"
        "r=b.get_bucket_ranges(2,1.0,[0.5,0.5]);"
        "print(json.dumps({v: ['default','b'][b.choose_variation(b.hash('cta-test',v,2),r)]"
        " for v in json.loads(sys.argv[1])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(visitors)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == first
    answer = ask(lab, "v-1").answers["cta"]
    assert (answer.kind, answer.key) == ("experiment", "cta-test")


def test_experiment__control_assignment__logged_as_exposure(lab):
    visitors = [f"c-{n}" for n in range(20)]
    consent_all(lab.prop, visitors)
    make_experiment(lab)
    for v in visitors:
        ask(lab, v)
    decision_log_flush()
    kinds = set(Adjustment.objects.values_list("source_kind", "is_default"))
    assert kinds == {("experiment", False)}
    assert Adjustment.objects.filter(variant_key="default").exists()


def test_experiments__same_namespace_disjoint_ranges__mutually_exclusive(lab):
    visitors = [f"n-{n}" for n in range(80)]
    consent_all(lab.prop, visitors)
    slot(lab.prop, "headline", {"short": {"text": "x"}})
    make_experiment(lab, namespace=["page", 0.0, 0.5])
    other = Experiment.objects.create(
        property=lab.prop,
        key="headline-test",
        slot=Slot.objects.get(key="headline"),
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "short", "weight": 0.5}],
        namespace=["page", 0.5, 1.0],
    )
    ExperimentGoal.objects.create(experiment=other, goal=lab.click)
    experiment_start(experiment=other)
    both = 0
    in_any = 0
    for v in visitors:
        result = decide(lab.prop, DecideRequest(v, "s", ["cta", "headline"]))
        kinds = [a.kind for a in result.answers.values()]
        both += kinds.count("experiment") == 2
        in_any += "experiment" in kinds
    assert both == 0 and in_any == len(visitors)


def test_experiment__beats_rules_of_its_slot__rule_suppressed_conflict(lab):
    consent_all(lab.prop, ["v-1"])
    rule(lab.prop, "r", "cta", "c")
    make_experiment(lab)
    result = ask(lab, "v-1")
    assert result.answers["cta"].kind == "experiment"
    assert {"slot": "cta", "candidate": "rule:r", "reason": "conflict"} in result.suppressed


def test_experiment__no_consent__default_and_suppressed(lab, consent):
    consent(lab.prop, "v-x", {"analytics": True})
    make_experiment(lab)
    result = ask(lab, "v-x")
    assert result.answers["cta"].is_default
    assert result.suppressed == [
        {"slot": "cta", "candidate": "experiment:cta-test", "reason": "consent"}
    ]


@pytest.mark.parametrize(
    ("variants", "namespace", "message"),
    [
        (
            [{"variant": "default", "weight": 0.6}, {"variant": "b", "weight": 0.6}],
            None,
            "sum to 1",
        ),
        (
            [{"variant": "default", "weight": 0.5}, {"variant": "zz", "weight": 0.5}],
            None,
            "no variant zz",
        ),
        ([{"variant": "default", "weight": 1.0}], None, "at least one treatment"),
        (None, ["ns", 0.5, 1.5], "within [0, 1]"),
    ],
)
def test_experiment_start__invalid_settings__refused_with_reason(lab, variants, namespace, message):
    from personalization.exceptions import ApplicationError

    exp = Experiment.objects.create(
        property=lab.prop,
        key="bad",
        slot=Slot.objects.get(key="cta"),
        variants=variants
        or [{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
        namespace=namespace,
    )
    ExperimentGoal.objects.create(experiment=exp, goal=lab.click)
    with pytest.raises(ApplicationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        experiment_start(experiment=exp)
    exp.refresh_from_db()
    assert exp.status == "draft"


def test_rollout__ramp_schedule__serves_growing_share(lab):
    visitors = [f"r-{n}" for n in range(400)]
    consent_all(lab.prop, visitors)
    t0 = timezone.now()
    Rollout.objects.create(
        property=lab.prop,
        key="new-cta",
        slot=Slot.objects.get(key="cta"),
        variant="b",
        percent=5,
        schedule=[
            {"at": (t0 + timedelta(days=1)).isoformat(), "percent": 50},
            {"at": (t0 + timedelta(days=2)).isoformat(), "percent": 100},
        ],
    )

    def share(now):
        served = sum(
            ask(lab, v, session=f"s-{now:%d%H}", now=now).answers["cta"].kind == "rollout"
            for v in visitors
        )
        return served / len(visitors)

    early, middle, full = (
        share(t0),
        share(t0 + timedelta(days=1, hours=1)),
        share(t0 + timedelta(days=2, hours=1)),
    )
    assert 0.01 < early < 0.12 and 0.4 < middle < 0.6 and full == 1.0
    # sticky: everyone served at 5% is still served at 50%
    early_set = {v for v in visitors if bucketing.hash("rollout-new-cta", v, 2) < 0.05}
    assert all(
        ask(lab, v, session="z", now=t0 + timedelta(days=1, hours=2)).answers["cta"].kind
        == "rollout"
        for v in early_set
    )


def test_rollout__kill_switch__next_decision_stops_serving(lab):
    consent_all(lab.prop, ["v-1"])
    rollout = Rollout.objects.create(
        property=lab.prop, key="all", slot=Slot.objects.get(key="cta"), variant="b", percent=100
    )
    assert ask(lab, "v-1").answers["cta"].kind == "rollout"
    rollout_kill(rollout=rollout)
    assert ask(lab, "v-1").answers["cta"].is_default
    assert History.objects.get(rollout=rollout).action == "killed"


def test_rollout__guardrail_degrades__halted_with_evidence_and_mail(lab, staff, settings):
    # Given a rollout to half the visitors whose CTA is never clicked; half the others click
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    owner = staff()
    owner.email = "owner@shop.example"
    owner.save()
    visitors = [f"g-{n}" for n in range(120)]
    consent_all(lab.prop, visitors)
    rollout = Rollout.objects.create(
        property=lab.prop,
        key="bad-cta",
        slot=Slot.objects.get(key="cta"),
        variant="b",
        percent=50,
        guardrail=lab.click,
        owner=owner,
    )
    t = timezone.now() - timedelta(hours=2)
    clicks = []
    for n, v in enumerate(visitors):
        if ask(lab, v, now=t).answers["cta"].kind != "rollout" and n % 2:
            clicks.append(
                make_event(
                    "click",
                    visitor_id=v,
                    properties={"element_id": "cta"},
                    at=t + timedelta(minutes=1),
                )
            )
    events_ingest(prop=lab.prop, events=clicks)
    # When the guardrail check runs
    assert rollout_guardrail_check(rollout=rollout) is True
    # Then the ramp is halted, the evidence recorded, and the owner told
    rollout.refresh_from_db()
    assert rollout.status == "halted"
    evidence = History.objects.get(rollout=rollout).evidence
    assert evidence["goal"] == "cta-click" and evidence["served_mean"] == 0.0
    assert len(mail.outbox) == 1 and "bad-cta" in mail.outbox[0].subject
    assert ask(lab, "g-0").answers["cta"].kind != "rollout"


def test_experiment_promote__winner_becomes_rule_or_default(lab):
    exp = make_experiment(lab)
    from personalization.exceptions import ApplicationError

    with pytest.raises(ApplicationError, match="Stop the experiment"):
        experiment_promote(experiment=exp, variant="b")
    experiment_stop(experiment=exp)
    experiment_promote(experiment=exp, variant="b", to="rule")
    promoted = Rule.objects.get(key="cta-test-winner")
    assert (promoted.variant.key, promoted.status) == ("b", "active")
    experiment_promote(experiment=exp, variant="b", to="default")
    assert Slot.objects.get(key="cta").default_variant == "b"
    assert [h.action for h in History.objects.filter(experiment=exp).order_by("at", "id")] == [
        "started",
        "stopped",
        "promoted to rule",
        "promoted to default",
    ]


def _run_experiment(lab, n=200, lift=0.15, seed=3):
    """Expose n visitors; treatment visitors click more often (a planted effect)."""
    rng = random.Random(seed)
    visitors = [f"e-{i}" for i in range(n)]
    consent_all(lab.prop, visitors)
    t = timezone.now() - timedelta(hours=3)
    events = []
    for v in visitors:
        variant = ask(lab, v, now=t).answers["cta"].variant
        rate = 0.2 + (lift if variant == "b" else 0)
        if rng.random() < rate:
            events.append(
                make_event(
                    "click",
                    visitor_id=v,
                    properties={"element_id": "cta"},
                    at=t + timedelta(minutes=5),
                )
            )
        if rng.random() < 0.1:  # a click outside the window does not count
            events.append(
                make_event(
                    "click",
                    visitor_id=v,
                    properties={"element_id": "cta"},
                    at=t - timedelta(hours=1),
                )
            )
    events_ingest(prop=lab.prop, events=events)


def test_results__no_exposures__not_enough_data(lab):
    exp = make_experiment(lab)
    results = experiment_results(experiment=exp)
    assert results["goals"] == [] and results["recommendation"] == "keep running"
    assert "Not enough data" in results["recommendation_detail"]


def test_results__planted_effect__shape_and_verdict(lab):
    exp = make_experiment(lab, min_users=20)
    _run_experiment(lab, n=400, lift=0.3)
    results = experiment_results(experiment=exp)
    goal = results["goals"][0]
    # clicks before exposure exist (see _run_experiment): CUPED applies
    assert (goal["key"], goal["kind"], goal["role"], goal["cuped"]) == (
        "cta-click",
        "binary",
        "primary",
        True,
    )
    control, treatment = goal["variants"]
    assert control["users"] + treatment["users"] == 400
    assert treatment["rate"] > control["rate"]
    assert (
        treatment["lift"]["ci_low"] < treatment["lift"]["relative"] < treatment["lift"]["ci_high"]
    )
    assert treatment["p_value"] < 0.05 and treatment["chance_to_win"] > 0.95
    assert results["recommendation"] == "ship" and results["warnings"] == []
    assert results["recommendation_detail"].startswith("b beats")
    diff = treatment["difference"]  # CUPED-adjusted: close to, not equal to, the raw gap
    assert diff["ci_low"] < diff["absolute"] < diff["ci_high"]
    assert diff["absolute"] == pytest.approx(treatment["rate"] - control["rate"], abs=0.02)
    assert 0 <= results["srm_p_value"] <= 1


def test_results__snapshots__at_returns_the_one_in_force(lab):
    exp = make_experiment(lab, min_users=5)
    _run_experiment(lab, n=30)
    first = experiment_snapshot(experiment=exp, now=timezone.now() - timedelta(days=2))
    experiment_snapshot(experiment=exp)
    old = experiment_results(experiment=exp, at=timezone.now() - timedelta(days=1))
    assert old["snapshot_at"] == first.results["snapshot_at"]


def test_results_api__secret_key_publishable_key_and_staff(lab, staff):
    from django.test import Client

    from personalization.permissions import ANALYSTS, PRIVACY_OFFICERS

    make_experiment(lab)
    url = "/api/v1/experiments/cta-test/results"
    assert lab.client(lab.sk).get(url).status_code == 200
    denied = lab.client(lab.pk).get(url)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert lab.client(lab.sk).get("/api/v1/experiments/nope/results").status_code == 404
    analyst = Client()
    analyst.force_login(staff(ANALYSTS, lab.prop))
    assert analyst.get(url).json()["experiment"] == "cta-test"
    officer = Client()
    officer.force_login(staff(PRIVACY_OFFICERS, lab.prop))
    assert officer.get(url).status_code == 404
    assert Client().get(url).status_code == 401


def test_summaries__sql_and_python__agree(postgres_only, lab):
    exp = make_experiment(lab, min_users=5)
    revenue = Goal.objects.create(
        property=lab.prop,
        key="rev",
        kind="continuous",
        metric="revenue",
        event_type="purchase",
        window_hours=24,
    )
    back = Goal.objects.create(property=lab.prop, key="back", kind="retention", retention_days=7)
    _run_experiment(lab, n=60)
    t = timezone.now() - timedelta(hours=2)
    events_ingest(
        prop=lab.prop,
        events=[
            make_event("purchase", visitor_id=f"e-{i}", properties={"revenue": 10.0 + i}, at=t)
            for i in range(0, 60, 3)
        ]
        + [
            make_event(visitor_id=f"e-{i}", session_id="later", at=t + timedelta(hours=1))
            for i in range(0, 60, 4)
        ],
    )
    now = timezone.now()
    for goal in (lab.click, revenue, back):
        sql, python = summaries_sql(exp, goal, now), summaries_python(exp, goal, now)
        assert sql.keys() == python.keys()
        for key in sql:
            assert sql[key] == pytest.approx(python[key]), (goal.key, key)
        assert any(sums[1] > 0 for sums in sql.values()), goal.key
    assert is_postgres()


def test_experiment_save__running_reweighted__refused_unless_a_new_phase_counted_alone(
    postgres_only, lab
):
    from personalization.exceptions import ApplicationError
    from personalization.services.experiments import experiment_save

    # Given a running 50/50 experiment that 60 visitors saw three hours ago
    exp = make_experiment(lab, min_users=5)
    _run_experiment(lab, n=60)
    # When it is re-weighted without confirming a new phase
    exp.variants = [{"variant": "default", "weight": 0.7}, {"variant": "b", "weight": 0.3}]
    with pytest.raises(ApplicationError, match="would bias its results") as refused:
        experiment_save(experiment=exp)
    # Then nothing is saved
    assert refused.value.code == "new_phase_required"
    assert refused.value.details == {"fields": ["variants"]}
    stored = Experiment.objects.get(pk=exp.pk)
    assert [v["weight"] for v in stored.variants] == [0.5, 0.5] and stored.phase == 1
    # When it is confirmed, and 8 visitors (2 of them seen before) are exposed afterwards
    experiment_save(experiment=exp, new_phase=True)
    later = ["e-0", "e-1", *(f"n-{i}" for i in range(6))]
    consent_all(lab.prop, later[2:])
    for v in later:
        ask(lab, v)
    # Then phase 2 counts only those 8, each from their exposure in it, on both paths
    now = timezone.now()
    sql, python = summaries_sql(exp, lab.click, now), summaries_python(exp, lab.click, now)
    assert sql.keys() == python.keys()
    for key in sql:
        assert sql[key] == pytest.approx(python[key])
    assert sum(sums[0] for sums in sql.values()) == len(later)
    history = History.objects.get(experiment=exp, action="new_phase")
    assert history.evidence["phase"] == 2 and list(history.evidence["changes"]) == ["variants"]
    assert experiment_results(experiment=exp)["phase"] == 2


def test_bandit__reallocation__moves_traffic_to_the_better_arm(lab):
    from personalization.services.experiments import experiment_reallocate

    exp = make_experiment(lab, min_users=5, bandit=True, bandit_min_share=0.1)
    _run_experiment(lab, n=300, lift=0.3)
    weights = experiment_reallocate(experiment=exp, results=experiment_results(experiment=exp))
    assert weights[1] > 0.8 and weights[0] >= 0.1 - 1e-9
    assert abs(sum(weights) - 1) < 1e-6
    exp.refresh_from_db()
    assert [v["weight"] for v in exp.variants] == weights
    assert History.objects.filter(experiment=exp, action="reallocated").exists()


def test_results__sample_ratio_mismatch__warning_and_no_recommendation(lab):
    # Given a 50/50 test whose log holds far more control than treatment exposures
    exp = make_experiment(lab, min_users=5)
    visitors = [f"m-{n}" for n in range(400)]
    consent_all(lab.prop, visitors)
    for v in visitors:
        ask(lab, v)
    decision_log_flush()
    Adjustment.objects.filter(variant_key="b").exclude(visitor_id__in=visitors[:60]).delete()
    # When the results are computed
    results = experiment_results(experiment=exp)
    # Then they carry a warning and no recommendation
    assert results["srm_p_value"] < 0.001 and results["recommendation"] is None
    assert "Sample ratio mismatch" in results["warnings"][0]


def test_results__pre_exposure_values__cuped_applied_and_narrows_interval(lab):
    # Given visitors whose clicks before exposure predict their clicks after it
    exp = make_experiment(lab, min_users=5, cuped=True)
    rng = random.Random(5)
    visitors = [f"p-{n}" for n in range(300)]
    consent_all(lab.prop, visitors)
    t = timezone.now() - timedelta(hours=3)
    events = []
    for v in visitors:
        ask(lab, v, now=t)
        keen = rng.random() < 0.3
        if keen:
            events.append(
                make_event(
                    "click",
                    visitor_id=v,
                    properties={"element_id": "cta"},
                    at=t - timedelta(hours=2),
                )
            )
        if rng.random() < (0.8 if keen else 0.1):
            events.append(
                make_event(
                    "click",
                    visitor_id=v,
                    properties={"element_id": "cta"},
                    at=t + timedelta(minutes=5),
                )
            )
    events_ingest(prop=lab.prop, events=events)
    with_cuped = experiment_results(experiment=exp)["goals"][0]
    exp.cuped = False
    exp.save()
    without = experiment_results(experiment=exp)["goals"][0]
    # Then CUPED is applied and reported, and the interval is narrower
    assert with_cuped["cuped"] is True and without["cuped"] is False

    def width(goal):
        lift = goal["variants"][1]["lift"]
        return lift["ci_high"] - lift["ci_low"]

    assert width(with_cuped) < width(without)


def test_experiment_admin__shows_latest_results_and_power(lab, staff):
    from django.test import Client

    from personalization.permissions import MARKETING

    exp = make_experiment(lab, min_users=5)
    _run_experiment(lab, n=60)
    experiment_snapshot(experiment=exp)
    client = Client()
    client.force_login(staff(MARKETING, lab.prop))
    page = client.get(f"/admin/personalization/experiment/{exp.pk}/change/").content.decode()
    assert "cta-click" in page and "chance to win" in page
    power = client.get(
        "/admin/personalization/experiment/power/",
        {
            "property": lab.prop.pk,
            "baseline_rate": 0.05,
            "minimum_effect": 0.1,
            "power": 0.8,
            "confidence": 0.95,
            "variants": 2,
        },
    ).content.decode()
    assert "Visitors per variant" in power and "31" in power
