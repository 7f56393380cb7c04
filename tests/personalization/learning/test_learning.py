"""Learning from the log: segment discovery, propensity models, scores in decisions, the
feedback loop, and the privacy rules around them — on small datasets of known structure."""

import random
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from consent.hashing import visitor_key
from consent.services.retention import retention_purge
from personalization.celery import app as celery_app
from personalization.decisions import DecideRequest, decide
from personalization.learning import clustering, feedback, propensity, scoring
from personalization.learning.privacy import eligible
from personalization.models import (
    ClusterRun,
    Decision,
    Goal,
    GuardrailCheck,
    ModelVersion,
    Rule,
    RuleVersion,
    RunStatus,
    Segment,
    Slot,
    TrainingMember,
    VersionStatus,
)
from personalization.permissions import PRIVACY_OFFICERS
from tests.conftest import hot_state_use, needs
from tests.learning import cta_model, log_answers, planted_visitors, visitor_with
from tests.personalization.test_tasks import broker_ready
from tests.privacy import request_made, run_work
from tests.targeting import rule, slot


def finished_run(prop, **settings) -> ClusterRun:
    run = clustering.cluster_run_create(property_id=prop.pk, **settings)
    return clustering.cluster_run_execute(run_id=run.pk)


def trained(model, **kwargs) -> ModelVersion:
    version = propensity.version_start(model=model)
    return propensity.version_train(version_id=version.pk, **kwargs)


# --- clustering ------------------------------------------------------------------------------


def test_clustering__three_planted_personas__finds_them_by_silhouette(shop, consent):
    # Given 3 × 25 visitors of three planted behaviours
    personas = planted_visitors(shop.prop, consent)
    # When clustering with k chosen between 2 and 6
    run = finished_run(shop.prop, k_min=2, k_max=6)
    # Then k=3 wins the silhouette, and each cluster is one persona, whole
    assert run.status == RunStatus.DONE, run.message
    assert run.k == 3 and run.rows == 75
    assert run.silhouette == max(run.silhouettes.values())
    assert sorted(c.size for c in run.clusters.all()) == [25, 25, 25]
    # and the skimmers' cluster is described in plain words from its centroid
    words = [c.description for c in run.clusters.all()]
    assert any("mostly mobile" in w and "fast scrolling" in w for w in words), words
    assert any("buys often" in w for w in words), words
    # and the projection has a point per visitor (no ids), coloured by cluster
    assert len(run.projection["x"]) == 75 and set(run.projection["cluster"]) == {0, 1, 2}
    assert len(personas) == 75


def test_clustering__consent_and_erasure__only_consenting_unerased_visitors_used(
    shop, consent, staff
):
    # Given 30 consenting visitors, 5 granting analytics only, 5 with no record, 1 erased
    rng = random.Random(3)
    for i in range(30):
        consent(shop.prop, f"ok-{i}")
        visitor_with(shop.prop, f"ok-{i}", ["skimmer", "reader"][i % 2], rng)
    for i in range(5):
        consent(shop.prop, f"analytics-{i}", {"analytics": True, "personalization": False})
        visitor_with(shop.prop, f"analytics-{i}", "buyer", rng)
        visitor_with(shop.prop, f"silent-{i}", "buyer", rng)
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    run_work(request_made(shop, "ok-0", "erasure", officer))
    # When clustering
    run = finished_run(shop.prop, k_min=2, k_max=3)
    # Then only the 29 consenting, unerased visitors were used
    assert run.status == RunStatus.DONE, run.message
    assert run.rows == 29
    keys = set(TrainingMember.objects.filter(cluster_run=run).values_list("visitor_key", flat=True))
    assert visitor_key(shop.prop.pk, "ok-1") in keys
    for excluded in ("ok-0", "analytics-0", "silent-0"):
        assert visitor_key(shop.prop.pk, excluded) not in keys
    assert "ok-0" not in eligible(shop.prop.pk, ["ok-0", "ok-1"])


@pytest.mark.parametrize(
    ("visitors", "k_max", "expected"),
    [(4, 3, "clustering needs at least 10"), (12, 15, "lower k_max below 12")],
)
def test_clustering__too_little_data__run_fails_with_clear_message(
    shop, consent, visitors, k_max, expected
):
    # Given fewer visitors than the run can work with
    rng = random.Random(1)
    for i in range(visitors):
        consent(shop.prop, f"v-{i}")
        visitor_with(shop.prop, f"v-{i}", "reader", rng)
    # When clustering  Then the run fails and says why (no exception)
    run = finished_run(shop.prop, k_min=2, k_max=k_max)
    assert run.status == RunStatus.FAILED and expected in run.message


def test_clustering__rerun_on_shifted_behaviour__drift_flagged(shop, consent):
    # Given a finished run over three personas
    planted_visitors(shop.prop, consent)
    first = finished_run(shop.prop, k_min=3, k_max=3)
    same = finished_run(shop.prop, k_min=3, k_max=3)
    # When the skimmers become half of everyone (60 more)  and the run is repeated
    rng = random.Random(9)
    for i in range(60):
        consent(shop.prop, f"new-skimmer-{i}")
        visitor_with(shop.prop, f"new-skimmer-{i}", "skimmer", rng)
    moved = finished_run(shop.prop, k_min=3, k_max=3, drift_share=0.1)
    # Then an unchanged re-run shows no drift, the shifted one is flagged with its evidence
    assert same.previous_id == first.pk and same.drifted is False
    assert moved.drifted is True
    assert max(abs(m["share_change"]) for m in moved.drift["clusters"]) > 0.1


def test_cluster_segment__adopted__membership_by_nearest_centroid_at_decision(shop, consent):
    # Given a run over three personas, the skimmers' cluster adopted as a segment
    planted_visitors(shop.prop, consent)
    run = finished_run(shop.prop, k_min=3, k_max=3)
    skimmers = next(c for c in run.clusters.all() if "mostly mobile" in c.description)
    segment = clustering.cluster_adopt(cluster=skimmers, key="skimmers")
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    rule(shop.prop, "short-for-skimmers", "headline", "short", {"segments": "skimmers"})
    shop.prop.holdout_pct = 0
    shop.prop.save()
    # When a skimmer and a reader (new visitors, not in the run) ask for a decision
    rng = random.Random(5)
    for vid, persona in (("late-skimmer", "skimmer"), ("late-reader", "reader")):
        consent(shop.prop, vid)
        visitor_with(shop.prop, vid, persona, rng)
    skim = decide(shop.prop, DecideRequest("late-skimmer", "s-late-skimmer", ["headline"]))
    read = decide(shop.prop, DecideRequest("late-reader", "s-late-reader", ["headline"]))
    # Then the skimmer is a member and gets the rule's variant; the reader is not
    assert segment.cluster_id == skimmers.pk
    assert skim.answers["headline"].variant == "short"
    assert read.answers["headline"].variant == "default"


def test_cluster_adopt__twice_same_key__refused_with_message(shop, consent):
    planted_visitors(shop.prop, consent, per_persona=6)
    run = finished_run(shop.prop, k_min=2, k_max=3)
    cluster = run.clusters.first()
    clustering.cluster_adopt(cluster=cluster, key="found")
    with pytest.raises(clustering.ApplicationError, match="already exists"):
        clustering.cluster_adopt(cluster=cluster, key="found")
    assert Segment.objects.filter(key="found").count() == 1


# --- propensity models -----------------------------------------------------------------------


def test_propensity__planted_effect__learned_and_beats_constant_on_held_out(shop, consent):
    # Given 400 logged answers where mobile visitors shown b click far more often
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 400)
    # When training
    version = trained(model)
    # Then the first version is promoted: held-out AUC well above a constant's 0.5
    assert version.status == VersionStatus.PROMOTED, version.message
    assert version.auc is not None and version.auc > 0.75
    assert version.baseline_auc == 0.5
    assert version.rows == 400 and version.artifact and len(version.digest) == 64
    # and the signals that carry the effect rank first among the importances
    top = {d["feature"] for d in version.importances[:2]}
    assert top == {"device.mobile", "variant"}, version.importances
    # and it predicts the planted effect for one visitor
    compiled = scoring.compiled_models(shop.prop.pk, ["cta-click"])["cta-click"]
    mobile = scoring.scores({"cta-click": compiled}, {"session": {"device_type": "mobile"}})
    desktop = scoring.scores({"cta-click": compiled}, {"session": {"device_type": "desktop"}})
    assert mobile["cta-click"]["best"] == "b"
    assert mobile["cta-click"]["variants"]["b"] > 0.6 > desktop["cta-click"]["variants"]["b"]
    assert len(version.calibration) >= 2


def test_propensity__new_version_not_better__kept_and_marked_current_stays(shop, consent):
    # Given a promoted version learned from the planted effect
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 400)
    first = trained(model)
    # When the outcomes turn to noise (the effect gone) and a new version is trained
    log_answers(
        shop.prop,
        consent,
        400,
        seed=11,
        prefix="noise",
        click=lambda mobile, variant, r: r.random() < 0.3,
        start=timezone.now() - timedelta(days=1),
    )
    second = trained(model)
    # Then the worse one is kept and marked, and the first keeps scoring
    first.refresh_from_db()
    assert second.status == VersionStatus.KEPT, second.message
    assert second.auc is not None and second.baseline_auc is not None
    assert second.auc <= second.baseline_auc
    assert "kept, not promoted" in second.message
    assert first.status == VersionStatus.PROMOTED
    assert scoring.compiled_models(shop.prop.pk, ["cta-click"])["cta-click"].version == 1


@pytest.mark.parametrize(
    ("rows", "click", "expected"),
    [
        (30, None, "training needs 50"),
        (80, lambda mobile, variant, r: False, "same outcome"),
    ],
)
def test_propensity__too_few_rows_or_one_class__fails_with_message(
    shop, consent, rows, click, expected
):
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, rows, click=click)
    version = trained(model)
    assert version.status == VersionStatus.FAILED and expected in version.message
    assert not version.artifact
    assert scoring.compiled_models(shop.prop.pk, ["cta-click"]) == {}


def test_propensity__visitors_without_consent__not_in_training_set(shop, consent):
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 60)
    log_answers(
        shop.prop,
        lambda prop, vid: consent(prop, vid, {"analytics": True, "personalization": False}),
        20,
        prefix="no-perso",
    )
    data = propensity.training_set(model)
    assert len(data.y) == 60
    assert not any(v.startswith("no-perso") for v in data.visitors)


def test_propensity__answers_fired_in_the_page__not_in_training_set(shop, consent):
    # Given 60 page-load answers, and 10 of them whose decisions are firings in the page
    # (logged with the page's signals, not the features the model reads)
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 60)
    fired = Decision.objects.filter(property=shop.prop).order_by("pk")[:10]
    Decision.objects.filter(pk__in=[d.pk for d in fired]).update(
        trigger="page", signals={"page": {"page.scroll_speed": 3000}}
    )
    # When the training set is read  Then it holds the page-load answers only
    data = propensity.training_set(model)
    assert len(data.y) == 50


# --- scores in decisions ---------------------------------------------------------------------


def score_rule(prop, condition) -> Rule:
    slot(prop, "headline", {"short": {"text": "Quick"}})
    prop.holdout_pct = 0
    prop.save()
    return rule(prop, "by-score", "headline", "short", condition)


def test_decide__score_condition_and_no_model__clause_does_not_hold_no_crash(shop, consent):
    # Given a rule on a model score below 0.5 — which a missing number (0) would satisfy
    cta_model(shop.prop)
    score_rule(shop.prop, {"model.cta-click.score": {"$lt": 0.5}})
    consent(shop.prop, "v-1")
    # When deciding while the model has no promoted version
    result = decide(shop.prop, DecideRequest("v-1", "s-1", ["headline", "cta"]))
    # Then the clause does not hold: defaults, and the decision is logged normally
    assert result.answers["headline"].variant == "default"
    assert result.answers["cta"].variant == "default"
    assert result.logged


def test_decide__score_condition_with_promoted_model__served_by_prediction(shop, consent):
    # Given a promoted model and a rule "show short when the CTA-click chance with b is over 0.5"
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 400)
    assert trained(model).status == VersionStatus.PROMOTED
    score_rule(shop.prop, {"model.cta-click.variants.b": {"$gt": 0.5}})
    # When a mobile and a desktop visitor ask
    rng = random.Random(2)
    for vid, persona in (("phone", "skimmer"), ("desk", "reader")):
        consent(shop.prop, vid)
        visitor_with(shop.prop, vid, persona, rng)
    phone = decide(shop.prop, DecideRequest("phone", "s-phone", ["headline"]))
    desk = decide(shop.prop, DecideRequest("desk", "s-desk", ["headline"]))
    # Then only the visitor the model scores high gets the rule
    assert phone.answers["headline"].variant == "short"
    assert desk.answers["headline"].variant == "default"


def test_decide__slot_serving_best_variant__model_answer_and_default_without_model(shop, consent):
    # Given the slot "cta" set to serve the variant with the highest predicted probability
    model = cta_model(shop.prop)
    Slot.objects.filter(pk=model.slot_id).update(serve_model=model)
    Slot.objects.get(pk=model.slot_id).save()  # a configuration change: recompiled
    shop.prop.holdout_pct = 0
    shop.prop.save()
    rng = random.Random(4)
    consent(shop.prop, "phone")
    visitor_with(shop.prop, "phone", "skimmer", rng)
    # When no version is promoted yet  Then the default
    before = decide(shop.prop, DecideRequest("phone", "s-phone", ["cta"]))
    assert before.answers["cta"].variant == "default"
    # When a version is promoted  Then the mobile visitor gets b, sourced to the model
    log_answers(shop.prop, consent, 400)
    version = trained(model)
    after = decide(shop.prop, DecideRequest("phone", "s-phone", ["cta"]))
    assert after.answers["cta"].variant == "b"
    assert after.answers["cta"].source() == {
        "kind": "model",
        "key": "cta-click",
        "version": version.version,
    }


@pytest.mark.parametrize("hot_state", ["database", "redis"])
def test_decide__model_answer__takes_the_session_budget_and_sticks(
    shop, consent, settings, monkeypatch, hot_state
):
    hot_state_use(settings, hot_state)
    # Given "cta" served by a promoted model (b for the mobile visitor), a rule on another
    # slot for everyone, and one adjustment a session
    model = cta_model(shop.prop)
    Slot.objects.filter(pk=model.slot_id).update(serve_model=model)
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    rule(shop.prop, "everyone", "headline", "short")
    shop.prop.holdout_pct = 0
    shop.prop.max_adjustments_per_session = 1
    shop.prop.save()
    consent(shop.prop, "phone")
    visitor_with(shop.prop, "phone", "skimmer", random.Random(4))
    log_answers(shop.prop, consent, 400)
    version = trained(model)
    first = decide(shop.prop, DecideRequest("phone", "s-phone", ["cta"]))
    assert first.answers["cta"].variant == "b" and first.answers["cta"].kind == "model"
    # When the same session asks for the other slot
    second = decide(shop.prop, DecideRequest("phone", "s-phone", ["headline"]))
    # Then the model's answer took the session's one adjustment: the rule waits
    assert second.answers["headline"].variant == "default"
    assert second.suppressed == [
        {"slot": "headline", "candidate": "rule:everyone", "reason": "session_budget"}
    ]
    # When the model would now answer otherwise (its scores moved)
    monkeypatch.setattr(
        "personalization.decisions.stages.model_answer", lambda slot, attributes: None
    )
    again = decide(shop.prop, DecideRequest("phone", "s-phone", ["cta"]))
    # Then the session keeps what it showed, from the model, without another adjustment
    assert again.answers["cta"].variant == "b"
    assert again.answers["cta"].source() == {
        "kind": "model",
        "key": "cta-click",
        "version": version.version,
        "sticky": True,
    }
    assert again.personalized is True
    # while a new session gets the model's new answer (here: the default)
    fresh = decide(shop.prop, DecideRequest("phone", "s-phone-2", ["cta"]))
    assert fresh.answers["cta"].variant == "default"


def test_scoring__artifact_unreadable__no_score_and_decide_serves_defaults(shop, consent):
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 200)
    version = trained(model)
    ModelVersion.objects.filter(pk=version.pk).update(artifact=b"not a model", digest="0" * 64)
    score_rule(shop.prop, {"model.cta-click.score": {"$gte": 0}})
    result = decide(shop.prop, DecideRequest("p-1", "s-p-1", ["headline"]))
    assert result.answers["headline"].variant == "default"


def test_guard__model_clauses__missing_score_fails_only_that_clause():
    condition = {"$or": [{"model.m.score": {"$lt": 0.5}}, {"plan": "pro"}]}
    compiled = scoring.guard(condition)
    from personalization.conditions import compile_condition

    check = compile_condition(compiled)
    assert check({"plan": "pro"}) is True
    assert check({"plan": "free"}) is False
    assert check({"plan": "free", "model": {"m": {"score": 0.2}}}) is True
    assert scoring.guard({"plan": "pro"}) == {"plan": "pro"}


# --- privacy: erasure then retention retrains --------------------------------------------------


def test_erasure_then_retention__clustering_and_model_retrained_without_visitor(
    shop, consent, staff
):
    # Given a clustering run and a promoted model both trained on visitor "p-3"
    planted_visitors(shop.prop, consent, per_persona=8)
    rng = random.Random(8)
    visitor_with(shop.prop, "p-3", "reader", rng)
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 300)
    run = finished_run(shop.prop, k_min=2, k_max=4)
    first = trained(model)
    key = visitor_key(shop.prop.pk, "p-3")
    assert TrainingMember.objects.filter(visitor_key=key).count() == 2
    rows_before = run.rows
    # When the visitor is erased
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    run_work(request_made(shop, "p-3", "erasure", officer))
    run.refresh_from_db()
    first.refresh_from_db()
    # Then what was learned from them is marked stale, their membership forgotten
    assert run.stale and first.stale
    assert not TrainingMember.objects.filter(visitor_key=key).exists()
    # When the retention purge next runs for the property
    retention_purge(property_id=shop.prop.pk)
    # Then the run is recomputed without them and the model replaced by a new version
    run.refresh_from_db()
    first.refresh_from_db()
    assert not run.stale and run.status == RunStatus.DONE and run.rows == rows_before - 1
    assert first.status == VersionStatus.RETIRED and not first.artifact
    newest = model.versions.order_by("-version").first()
    assert newest.version == 2 and newest.status == VersionStatus.PROMOTED
    assert newest.rows == first.rows - 1
    assert not TrainingMember.objects.filter(visitor_key=key).exists()


# --- the feedback loop -----------------------------------------------------------------------


def guarded_rule(prop, autopause: bool) -> Rule:
    goal = Goal.objects.get(property=prop, key="cta-click")
    return rule(prop, "show-b", "cta", "b", {}, guardrail=goal, guardrail_autopause=autopause)


def harmful(mobile, variant, r):
    return r.random() < (0.05 if variant == "b" else 0.4)


@pytest.mark.parametrize("autopause", [False, True])
def test_guardrail__variant_significantly_worse__flagged_or_paused_with_evidence(
    shop, consent, autopause
):
    # Given a rule whose variant b is clicked far less than the slot default
    cta_model(shop.prop)
    r = guarded_rule(shop.prop, autopause)
    log_answers(shop.prop, consent, 400, click=harmful)
    # When its guardrail is checked
    check = feedback.rule_guardrail_check(rule=r)
    # Then it is flagged (suggest pausing) — or, when allowed, paused with the evidence
    assert check is not None and check.verdict == feedback.WORSE
    assert check.evidence["p_value"] < 0.05 and check.evidence["lift"] < 0
    assert check.evidence["served_users"] == 200 == check.evidence["default_users"]
    r.refresh_from_db()
    if autopause:
        assert check.action == feedback.PAUSED and r.status == "paused"
        version = RuleVersion.objects.filter(rule=r).order_by("-version").first()
        assert "guardrail" in version.note and version.evidence["p_value"] < 0.05
        assert version.changes == ["status"]
    else:
        assert check.action == feedback.FLAGGED and r.status == "active"
        assert feedback.flagged_rules([shop.prop.pk]) == [check]
        # and a second check records nothing new (one suggestion, not one an hour)
        assert feedback.rule_guardrail_check(rule=r) is None


def test_guardrail__no_difference__not_flagged(shop, consent):
    cta_model(shop.prop)
    r = guarded_rule(shop.prop, True)
    log_answers(shop.prop, consent, 400, click=lambda m, v, rng: rng.random() < 0.3)
    check = feedback.rule_guardrail_check(rule=r)
    r.refresh_from_db()
    assert check is not None and check.verdict == feedback.INCONCLUSIVE and not check.action
    assert r.status == "active"


def test_guardrail__too_few_visitors__no_verdict(shop, consent):
    cta_model(shop.prop)
    r = guarded_rule(shop.prop, True)
    log_answers(shop.prop, consent, 40, click=harmful)
    check = feedback.rule_guardrail_check(rule=r)
    assert check is not None and check.verdict == feedback.TOO_FEW
    assert GuardrailCheck.objects.filter(rule=r, action="paused").count() == 0


# --- the task on a real worker -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_model_train_task__real_worker__version_trained_and_promoted(make_shop, consent):
    needs(broker_ready(), "needs a reachable CELERY_BROKER_URL (Redis) without TASKS_IN_PROCESS")
    # Given logged answers with a planted effect and a worker on the broker
    shop = make_shop()
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 200)
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # When training is requested (enqueued on commit)
        version = propensity.version_start(model=model, enqueue=True)
        # Then the worker trains and promotes it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            version.refresh_from_db()
            if version.status != VersionStatus.TRAINING:
                break
            time.sleep(0.3)
    assert version.status == VersionStatus.PROMOTED, version.message
    assert version.progress == 100 and version.auc > 0.7
    assert Counter(ModelVersion.objects.values_list("status", flat=True)) == {"promoted": 1}
