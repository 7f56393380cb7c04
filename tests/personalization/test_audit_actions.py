"""Configuration actions audit themselves (issue 16 part 6): each state-changing service
writes one entry of its ``AuditAction``, in its own transaction, whoever calls it; the
admin action only calls the service (one entry, not two); the automatic guardrail pause
and the learning jobs are entries of the "system" actor."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from consent.models import AuditEntry
from personalization.learning import clustering, feedback, propensity
from personalization.learning.maintenance import cluster_rerun
from personalization.models import (
    ApiKey,
    Experiment,
    ExperimentGoal,
    Goal,
    GuardrailCheck,
    Rollout,
    Rule,
    Slot,
    VersionStatus,
)
from personalization.permissions import MARKETING
from personalization.services.audit import AuditAction
from personalization.services.experiments import (
    experiment_promote,
    experiment_save,
    experiment_start,
    experiment_stop,
    rollout_kill,
)
from personalization.services.keys import api_key_revoke
from personalization.services.rules import rule_restore, rule_save, rule_status_set
from tests.learning import cta_model, log_answers, planted_visitors
from tests.personalization.learning.test_learning import guarded_rule, harmful
from tests.targeting import rule, slot

RAW_VERBS = (".added", ".changed", ".deleted")  # the admin hooks' entries, not actions


@pytest.fixture
def lab(shop):
    slot(shop.prop, "cta", {"b": {"label": "Buy now"}})
    shop.click = Goal.objects.create(
        property=shop.prop, key="cta-click", kind="binary", event_type="click", element_id="cta"
    )
    return shop


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def entries_after(mark: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind="configuration", pk__gt=mark).order_by("id"))


def last_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def experiment(lab, *, started: bool = False, stopped: bool = False) -> Experiment:
    exp = Experiment.objects.create(
        property=lab.prop,
        key="cta-test",
        slot=Slot.objects.get(property=lab.prop, key="cta"),
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
    )
    ExperimentGoal.objects.create(experiment=exp, goal=lab.click, role="primary")
    if started or stopped:
        experiment_start(experiment=exp)
    if stopped:
        experiment_stop(experiment=exp)
    return exp


def reweighted(exp: Experiment) -> Experiment:
    exp.variants = [{"variant": "default", "weight": 0.7}, {"variant": "b", "weight": 0.3}]
    return exp


def changed_twice(lab) -> Rule:
    r = rule(lab.prop, "r-1", "cta", "b")
    r.priority = 7
    return rule_save(rule=r)


def flagged_check(lab) -> GuardrailCheck:
    r = rule(lab.prop, "r-1", "cta", "b")
    return GuardrailCheck.objects.create(
        rule=r, verdict="worse", action="flagged", evidence={"goal": "cta-click", "lift": -0.5}
    )


# (set up what the action acts on, run the service as ``user``, the entry it writes)
Case = tuple[Callable[[Any], Any], Callable[[Any, Any], Any], AuditAction]
SERVICE_CASES: dict[str, Case] = {
    "rule pause": (
        lambda lab: rule(lab.prop, "r-1", "cta", "b"),
        lambda r, user: rule_status_set(rule=r, status="paused", user=user),
        AuditAction.RULE_PAUSED,
    ),
    "rule activate": (
        lambda lab: rule(lab.prop, "r-1", "cta", "b", status="paused"),
        lambda r, user: rule_status_set(rule=r, status="active", user=user),
        AuditAction.RULE_ACTIVATED,
    ),
    "rule restore": (
        changed_twice,
        lambda r, user: rule_restore(rule=r, version=1, user=user),
        AuditAction.RULE_RESTORED,
    ),
    "rule pause on a guardrail check": (
        flagged_check,
        lambda check, user: feedback.rule_pause_on_check(check=check, user=user),
        AuditAction.RULE_PAUSED_ON_CHECK,
    ),
    "experiment start": (
        experiment,
        lambda exp, user: experiment_start(experiment=exp, user=user),
        AuditAction.EXPERIMENT_STARTED,
    ),
    "experiment stop": (
        lambda lab: experiment(lab, started=True),
        lambda exp, user: experiment_stop(experiment=exp, user=user),
        AuditAction.EXPERIMENT_STOPPED,
    ),
    "experiment promote to rule": (
        lambda lab: experiment(lab, stopped=True),
        lambda exp, user: experiment_promote(experiment=exp, variant="b", to="rule", user=user),
        AuditAction.EXPERIMENT_PROMOTED_TO_RULE,
    ),
    "experiment promote to default": (
        lambda lab: experiment(lab, stopped=True),
        lambda exp, user: experiment_promote(experiment=exp, variant="b", to="default", user=user),
        AuditAction.EXPERIMENT_PROMOTED_TO_DEFAULT,
    ),
    "experiment new phase": (
        lambda lab: reweighted(experiment(lab, started=True)),
        lambda exp, user: experiment_save(experiment=exp, user=user, new_phase=True),
        AuditAction.EXPERIMENT_NEW_PHASE,
    ),
    "rollout kill": (
        lambda lab: Rollout.objects.create(
            property=lab.prop, key="all", slot=Slot.objects.get(key="cta"), variant="b"
        ),
        lambda rollout, user: rollout_kill(rollout=rollout, user=user),
        AuditAction.ROLLOUT_KILLED,
    ),
    "api key revoke": (
        lambda lab: ApiKey.objects.filter(property=lab.prop).first(),
        lambda key, user: api_key_revoke(key=key, user=user),
        AuditAction.API_KEY_REVOKED,
    ),
}


@pytest.mark.parametrize("name", SERVICE_CASES)
def test_audit_action__service_called__exactly_one_entry_of_its_kind(lab, staff, name):
    # Given what the action acts on, and a marketer
    setup, act, expected = SERVICE_CASES[name]
    subject = setup(lab)
    user = staff(MARKETING, lab.prop)
    mark = last_id()
    # When the service runs (not the admin)
    act(subject, user)
    # Then it wrote exactly one configuration entry: its action, its actor, its property
    entries = entries_after(mark)
    assert [e.action for e in entries] == [expected.value]
    entry = entries[0]
    assert (entry.actor, entry.actor_label, entry.property_id) == (user, user.username, lab.prop.pk)
    assert entry.target == f"{subject._meta.label_lower}:{subject.pk}"


@pytest.mark.parametrize("name", SERVICE_CASES)
def test_audit_action__caller_rolls_back__no_entry_and_no_change(lab, staff, name):
    # Given what the action acts on
    setup, act, _ = SERVICE_CASES[name]
    subject = setup(lab)
    user = staff(MARKETING, lab.prop)
    before = type(subject).objects.filter(pk=subject.pk).values().get()
    mark = last_id()
    # When the service runs inside a transaction that then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        act(subject, user)
        assert len(entries_after(mark)) == 1  # written inside the transaction...
        raise RuntimeError("the caller fails after the action")
    # Then neither the entry nor the change it records remain
    assert entries_after(mark) == []
    assert type(subject).objects.filter(pk=subject.pk).values().get() == before


ADMIN_CASES: dict[str, tuple[Callable[[Any], Any], str, str, AuditAction]] = {
    "rule pause": (
        lambda lab: rule(lab.prop, "r-1", "cta", "b"),
        "rule",
        "pause",
        AuditAction.RULE_PAUSED,
    ),
    "rule activate": (
        lambda lab: rule(lab.prop, "r-1", "cta", "b", status="paused"),
        "rule",
        "activate",
        AuditAction.RULE_ACTIVATED,
    ),
    "guardrail check pause": (
        flagged_check,
        "guardrailcheck",
        "pause_rules",
        AuditAction.RULE_PAUSED_ON_CHECK,
    ),
    "experiment start": (experiment, "experiment", "start", AuditAction.EXPERIMENT_STARTED),
    "experiment stop": (
        lambda lab: experiment(lab, started=True),
        "experiment",
        "stop",
        AuditAction.EXPERIMENT_STOPPED,
    ),
    "rollout kill": (
        SERVICE_CASES["rollout kill"][0],
        "rollout",
        "kill",
        AuditAction.ROLLOUT_KILLED,
    ),
    "api key revoke": (
        SERVICE_CASES["api key revoke"][0],
        "apikey",
        "revoke_keys",
        AuditAction.API_KEY_REVOKED,
    ),
}


@pytest.mark.parametrize("name", ADMIN_CASES)
def test_audit_action__admin_list_action__one_entry_not_two(lab, staff, name):
    # Given what the action acts on, and a marketer in the admin
    setup, model, action, expected = ADMIN_CASES[name]
    subject = setup(lab)
    user = staff(MARKETING, lab.prop)
    mark = last_id()
    # When they run the list action on it
    response = login(user).post(
        f"/admin/personalization/{model}/",
        {"action": action, "_selected_action": [subject.pk]},
    )
    # Then the service's entry is the only one
    assert response.status_code == 302
    entries = entries_after(mark)
    assert [(e.action, e.actor) for e in entries] == [(expected.value, user)]


def test_audit_action__admin_restore_view__one_entry_not_two(lab, staff):
    # Given a rule changed once since its first version
    r = changed_twice(lab)
    user = staff(MARKETING, lab.prop)
    mark = last_id()
    # When a marketer restores version 1 from its page
    response = login(user).post(f"/admin/personalization/rule/{r.pk}/restore/1/")
    # Then one "restored" entry records it, naming the version
    assert response.status_code == 302
    entries = entries_after(mark)
    assert [(e.action, e.actor) for e in entries] == [(AuditAction.RULE_RESTORED.value, user)]
    assert entries[0].details["version"] == 1


def test_audit_action__rule_already_paused__no_version_no_entry(lab, staff):
    # Given a paused rule
    r = rule(lab.prop, "r-1", "cta", "b", status="paused")
    mark = last_id()
    # When it is paused again
    rule_status_set(rule=r, status="paused", user=staff(MARKETING, lab.prop))
    # Then nothing changed, so nothing is recorded
    assert entries_after(mark) == []
    assert r.versions.count() == 1


def test_audit_action__automatic_guardrail_pause__one_entry_by_system(shop, consent):
    # Given a rule allowed to pause itself, whose variant does far worse than the default
    cta_model(shop.prop)
    r = guarded_rule(shop.prop, autopause=True)
    log_answers(shop.prop, consent, 400, click=harmful)
    mark = last_id()
    # When the scheduled guardrail check runs
    check = feedback.rule_guardrail_check(rule=r)
    # Then the pause is one entry of the system actor, with the evidence
    assert check is not None and check.action == feedback.PAUSED
    entries = entries_after(mark)
    assert [e.action for e in entries] == [AuditAction.RULE_PAUSED_BY_GUARDRAIL.value]
    entry = entries[0]
    assert (entry.actor, entry.actor_label) == (None, "system")
    assert entry.target == f"personalization.rule:{r.pk}" and entry.property_id == shop.prop.pk
    assert entry.details["p_value"] < 0.05 and entry.details["goal"] == "cta-click"


def test_audit_action__model_trained_promoted_then_retired__entries_by_system(shop, consent):
    # Given a model with logged answers of a planted effect
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 400)
    mark = last_id()
    # When a scheduled training starts, promotes the version, and the version is retired
    version = propensity.version_start(model=model)
    version = propensity.version_train(version_id=version.pk)
    assert version.status == VersionStatus.PROMOTED, version.message
    propensity.version_retire(version=version, reason="retired: a test")
    # Then each step is one entry of the system actor
    entries = entries_after(mark)
    assert [e.action for e in entries] == [
        AuditAction.MODEL_TRAINING_STARTED.value,
        AuditAction.MODEL_VERSION_PROMOTED.value,
        AuditAction.MODEL_VERSION_RETIRED.value,
    ]
    assert {(e.actor, e.actor_label, e.property_id) for e in entries} == {
        (None, "system", shop.prop.pk)
    }
    assert entries[1].target == entries[2].target == f"personalization.modelversion:{version.pk}"
    assert entries[2].details["was_promoted"] is True


def test_audit_action__cluster_rerun_and_adopt__one_entry_each(shop, staff, consent):
    # Given a finished clustering run and a marketer
    planted_visitors(shop.prop, consent, per_persona=6)
    run = clustering.cluster_run_create(property_id=shop.prop.pk, k_min=2, k_max=3)
    run = clustering.cluster_run_execute(run_id=run.pk)
    cluster = run.clusters.first()
    user = staff(MARKETING, shop.prop)
    client = login(user)
    mark = last_id()
    # When they run it again and adopt one of its clusters in the admin
    client.post(
        "/admin/personalization/clusterrun/",
        {"action": "run_clustering", "_selected_action": [run.pk]},
    )
    client.post(
        "/admin/personalization/cluster/", {"action": "adopt", "_selected_action": [cluster.pk]}
    )
    # Then each is one entry, by them
    entries = entries_after(mark)
    assert [(e.action, e.actor) for e in entries] == [
        (AuditAction.CLUSTER_RUN_QUEUED.value, user),
        (AuditAction.CLUSTER_ADOPTED.value, user),
    ]
    assert entries[0].details["rerun_of"] == run.pk
    assert entries[1].details["segment"] == f"cluster-{run.pk}-{cluster.index}"
    # and a scheduled re-run (no user) is the system's
    cluster_rerun(run=run)
    assert entries_after(entries[1].pk)[0].actor_label == "system"


def test_audit_action__every_action_written__a_member_of_the_enum(lab, staff):
    user = staff(MARKETING, lab.prop)
    client = login(user)

    def admin_action(model: str, action: str) -> Callable[[Any, Any], Any]:
        return lambda subject, _: client.post(
            f"/admin/personalization/{model}/", {"action": action, "_selected_action": [subject.pk]}
        )

    runs = [(setup, act) for setup, act, _ in SERVICE_CASES.values()] + [
        (setup, admin_action(model, action)) for setup, model, action, _ in ADMIN_CASES.values()
    ]
    written: set[str] = set()
    # When every action runs, through its service and through the admin
    for setup, act in runs:
        with transaction.atomic():
            act(setup(lab), user)
            written |= {e.action for e in AuditEntry.objects.filter(kind="configuration")}
            transaction.set_rollback(True)  # each starts from the same configuration
    # Then every entry that is not a raw add/change/delete is an AuditAction
    actions = {a for a in written if not a.endswith(RAW_VERBS)}
    assert actions - set(AuditAction.values) == set()
    assert {case[2].value for case in SERVICE_CASES.values()} <= actions
