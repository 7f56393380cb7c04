"""A configuration change reaches every server process's next decision within one second,
in production mode (DEBUG off), whichever way it is made: a service call (save), a bulk
update, an admin-style delete. The server is real (gunicorn, two workers); the change is
made from this, another, process.

Django holds signal receivers by weak reference: a receiver that dies with its closure
(as the configuration bump once did, alive only in debug mode) fails here."""

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from personalization.hotstate import decision_log_flush
from personalization.models import (
    Adjustment,
    Decision,
    Experiment,
    ExperimentGoal,
    Goal,
    Rollout,
    Rule,
    Slot,
    Variant,
)
from personalization.services.experiments import experiment_start, experiment_stop, rollout_kill
from personalization.services.rules import rule_save
from tests import targeting
from tests.conftest import is_postgres, needs
from tests.servers import gunicorn, post_json, production_env, suite_database_url
from tests.targeting import rule, slot

SLOTS = ["headline", "cta", "banner", "footer"]
REACH_SECONDS = 1.0
CONFIG_MODELS = ("Slot", "Variant", "Segment", "SegmentMember", "Rule", "Experiment", "Rollout")


def test_config_receivers__production_mode__alive_after_startup():
    # Given the app loaded with DEBUG off (the suite's own mode)
    assert settings.DEBUG is False
    # Then every configuration model has a live post_save and post_delete receiver
    from django.apps import apps

    for name in (*CONFIG_MODELS, "Goal"):
        model = apps.get_model("personalization", name)
        for signal in (post_save, post_delete):
            live = [r for r in signal._live_receivers(model)[0] if r is not None]
            assert any(getattr(r, "__name__", "") == "on_config_saved" for r in live), (
                name,
                signal,
            )


@pytest.fixture(params=["redis", "database"])
def server(request, shop, consent, tmp_path) -> Iterator[tuple[int, Any]]:
    """gunicorn with two workers on the test database; its cache and hot state in Redis
    (shared between processes) or per process with the hot state in the database."""
    needs(is_postgres(), "a server process shares the test database: needs PostgreSQL")
    variables = {"DATABASE_URL": suite_database_url(), "TASKS_IN_PROCESS": "1"}
    if request.param == "redis":
        needs(bool(settings.REDIS_URL), "this test needs Redis (set REDIS_URL=redis://…)")
        variables["REDIS_URL"] = settings.REDIS_URL
    shop.prop.holdout_pct = 0
    shop.prop.max_adjustments_per_session = 0
    shop.prop.save()
    consent(shop.prop, "v-1")
    with gunicorn(production_env(**variables), tmp_path / "gunicorn.log") as port:
        yield port, shop


def ask(port: int, shop: Any) -> dict:
    # a new session each time: stickiness must not hide what the configuration says now
    body = {"visitor_id": "v-1", "session_id": f"s-{uuid.uuid4().hex[:8]}", "slots": SLOTS}
    status, answer = post_json(port, "/api/v1/decide", body, shop.pk)
    assert status == 200, answer
    return answer


def reaches(port: int, shop: Any, holds: Callable[[dict], bool]) -> float:
    """Seconds until a decision shows the change; from one second after it, every decision
    (whichever worker answers) does."""
    start = time.monotonic()
    while not holds(ask(port, shop)):
        assert time.monotonic() - start < 5, "the change never reached decide"
        time.sleep(0.05)
    reached = time.monotonic() - start
    time.sleep(max(0.0, start + REACH_SECONDS - time.monotonic()))
    for _ in range(12):
        answer = ask(port, shop)
        assert holds(answer), answer
    return reached


def warm(port: int, shop: Any, holds: Callable[[dict], bool]) -> None:
    """Each worker has compiled today's rules (and answers as configured)."""
    for _ in range(12):
        answer = ask(port, shop)
        assert holds(answer), answer


@pytest.mark.django_db(transaction=True)
def test_config_change__every_kind__reaches_the_servers_next_decisions_within_1s(server):
    port, shop = server
    # Given a rule, an experiment, a rollout and a rule about to be deleted, all serving
    slot(shop.prop, "headline", {"short": {"text": "Quick picks"}})
    slot(shop.prop, "cta", {"b": {"label": "Buy now"}})
    slot(shop.prop, "banner", {"sale": {"text": "Sale"}})
    slot(shop.prop, "footer", {"slim": {"text": "Slim"}})
    paused = rule(shop.prop, "quick", "headline", "short")
    doomed = rule(shop.prop, "slim-footer", "footer", "slim")
    goal = Goal.objects.create(property=shop.prop, key="buy", kind="binary", event_type="click")
    experiment = Experiment.objects.create(
        property=shop.prop,
        key="cta-test",
        slot=Slot.objects.get(property=shop.prop, key="cta"),
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
    )
    ExperimentGoal.objects.create(experiment=experiment, goal=goal, role="primary")
    experiment_start(experiment=experiment)
    rollout = targeting.rollout(shop.prop, "sale", "banner", "sale")

    def kind(slot_key: str) -> Callable[[dict], str]:
        return lambda answer: answer["slots"][slot_key]["source"]["kind"]

    warm(port, shop, lambda a: kind("headline")(a) == "rule" and kind("cta")(a) == "experiment")
    warm(port, shop, lambda a: kind("banner")(a) == "rollout" and kind("footer")(a) == "rule")
    reached: dict[str, float] = {}

    # When a marketer edits a variant's content (a bulk update: no model signal)
    Variant.objects.filter(slot__property=shop.prop, key="short").update(
        content={"text": "Fresh picks"}
    )
    # Then the next decisions serve the new content
    reached["content edit"] = reaches(
        port, shop, lambda a: a["slots"]["headline"]["content"] == {"text": "Fresh picks"}
    )

    # When the rule is paused (the service staff use)
    paused.status = "paused"
    rule_save(rule=paused)
    reached["pause"] = reaches(port, shop, lambda a: kind("headline")(a) == "default")

    # When the experiment is stopped
    experiment_stop(experiment=Experiment.objects.get(pk=experiment.pk))
    reached["stop"] = reaches(port, shop, lambda a: kind("cta")(a) == "default")

    # When the rollout is killed (the kill switch)
    rollout_kill(rollout=Rollout.objects.get(pk=rollout.pk))
    reached["kill"] = reaches(port, shop, lambda a: kind("banner")(a) == "default")

    # When a rule that has served answers is deleted
    served_before = Adjustment.objects.filter(source_key="slim-footer").count()
    Rule.objects.get(pk=doomed.pk).delete()
    reached["delete"] = reaches(port, shop, lambda a: kind("footer")(a) == "default")

    # Then each change reached every worker's next decisions within a second
    assert all(seconds < REACH_SECONDS for seconds in reached.values()), reached
    # and the log kept every decision, the deleted rule's answers included
    decision_log_flush()
    assert Adjustment.objects.filter(source_key="slim-footer").count() >= served_before
    recent = Decision.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=5))
    assert recent.count() >= 7 * 12


def _version(shop: Any) -> int:
    return type(shop.prop).objects.get(pk=shop.prop.pk).config_version


def test_config_bulk_writes__update_bulk_update_bulk_create_delete__each_bumps_the_version(shop):
    # Given a property's slot, variant and rule
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    r = rule(shop.prop, "quick", "headline", "short")
    writes = {
        "update": lambda: Rule.objects.filter(pk=r.pk).update(status="paused"),
        "bulk_update": lambda: Variant.objects.bulk_update(
            [Variant(pk=v.pk, content={"text": "New"}) for v in Variant.objects.all()],
            ["content"],
        ),
        "bulk_create": lambda: Goal.objects.bulk_create(
            [Goal(property=shop.prop, key="g", kind="binary", event_type="click")]
        ),
        "queryset delete": lambda: Goal.objects.filter(property=shop.prop).delete(),
    }
    for name, write in writes.items():
        before = _version(shop)
        # When configuration is written without a model's save()
        write()
        # Then the property's configuration version moved on (every process recompiles)
        assert _version(shop) > before, name


@pytest.mark.parametrize("hot_state", ["database", "redis"])
@pytest.mark.django_db(transaction=True)
def test_rule_deleted__process_still_holds_it_compiled__decision_logged_other_slots_kept(
    shop, consent, settings, hot_state
):
    from django.db import connection

    from personalization.decisions import DecideRequest, decide
    from tests.conftest import hot_state_use

    hot_state_use(settings, hot_state)
    shop.prop.holdout_pct = 0
    shop.prop.save()
    consent(shop.prop, "v-1")
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    slot(shop.prop, "footer", {"slim": {"text": "Slim"}})
    rule(shop.prop, "quick", "headline", "short")
    doomed = rule(shop.prop, "slim-footer", "footer", "slim")
    first = decide(shop.prop, DecideRequest("v-1", "s-1", ["headline", "footer"]))
    assert first.answers["footer"].key == "slim-footer"
    # Given the rule deleted by another process, before this one learns of it
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM personalization_rulecounter WHERE rule_id = %s", [doomed.pk])
        cursor.execute("DELETE FROM personalization_ruleversion WHERE rule_id = %s", [doomed.pk])
        cursor.execute("DELETE FROM personalization_rule WHERE id = %s", [doomed.pk])
    # When this process decides with the rule still compiled
    answer = decide(shop.prop, DecideRequest("v-1", "s-2", ["headline", "footer"]))
    # Then the other slot keeps its adjustment (within the moment before this process
    # recompiles, the Redis path may still serve the deleted rule: the log names rules by key
    # and version, never by a row that could be gone; the database path counts nothing for a
    # rule that is gone, so does not serve it)
    assert answer.answers["headline"].key == "quick"
    if hot_state == "database":
        assert answer.answers["footer"].key != "slim-footer"
    # and the decision is logged like any other
    decision_log_flush()
    logged = Adjustment.objects.filter(decision__decision_id=answer.decision_id)
    assert {a.slot_key: a.source_key for a in logged} == {
        "headline": "quick",
        "footer": answer.answers["footer"].key,
    }
