"""Two web processes, one database, one Redis (one server, or a cluster when REDIS_URL is
``redis+cluster://…``: CI runs this file in both layouts): the guard rails hold across the
processes, and a configuration change made through one reaches the other's next decision
within a second. Real gunicorn servers in production mode; the test drives them over HTTP."""

import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings

from personalization.hotstate import decision_log_flush
from personalization.models import Decision, Rollout, RolloutStatus
from tests import targeting
from tests.conftest import is_postgres, needs
from tests.servers import gunicorn, post_json, production_env, suite_database_url
from tests.targeting import rule, slot

REACH_SECONDS = 1.0
BUDGET = 2


@pytest.fixture
def two_servers(shop, consent, tmp_path) -> Iterator[tuple[list[int], Any]]:
    needs(is_postgres(), "server processes share the test database: needs PostgreSQL")
    needs(bool(settings.REDIS_URL), "two servers share Redis (set REDIS_URL=redis://…)")
    variables = {
        "DATABASE_URL": suite_database_url(),
        "TASKS_IN_PROCESS": "1",
        "REDIS_URL": settings.REDIS_URL,
        "SECURE_COOKIES": "0",  # the admin over plain http on loopback
    }
    shop.prop.holdout_pct = 0
    shop.prop.max_adjustments_per_session = BUDGET
    shop.prop.save()
    for visitor in ("v-budget", "v-cap", "v-cool", "v-1"):
        consent(shop.prop, visitor)
    env = production_env(**variables)
    with (
        gunicorn(env, tmp_path / "a.log", workers=2) as a,
        gunicorn(env, tmp_path / "b.log", workers=2) as b,
    ):
        yield [a, b], shop


def decide(port: int, shop: Any, visitor: str, session: str, slots: list[str]) -> dict:
    body = {"visitor_id": visitor, "session_id": session, "slots": slots}
    status, answer = post_json(port, "/api/v1/decide", body, shop.pk)
    assert status == 200, answer
    return answer


def kind(answer: dict, slot_key: str) -> str:
    return answer["slots"][slot_key]["source"]["kind"]


@pytest.mark.django_db(transaction=True)
def test_two_servers__concurrent_decisions_for_one_visitor__caps_cooldown_budget_hold(
    two_servers,
):
    ports, shop = two_servers
    # Given four slots with a rule each, a session budget of two adjustments, a rule capped
    # at three a day and a rule with an hour's cooldown
    for key in ("s1", "s2", "s3", "s4", "capped", "cool"):
        slot(shop.prop, key, {"b": {"text": key}})
    for key in ("s1", "s2", "s3", "s4"):
        rule(shop.prop, f"r-{key}", key, "b")
    rule(shop.prop, "r-capped", "capped", "b", cap_per_day=3)
    rule(shop.prop, "r-cool", "cool", "b", cooldown_seconds=3600)
    # (each server's workers have compiled the rules)
    for port in ports * 4:
        decide(port, shop, "v-1", uuid.uuid4().hex, ["s1"])

    # When 24 decisions of each kind, for one visitor, hit both servers at once
    def budget_call(i: int) -> dict:
        slots = [["s1", "s2"], ["s3", "s4"], ["s2", "s3"], ["s4", "s1"]][i % 4]
        return decide(ports[i % 2], shop, "v-budget", "one-session", slots)

    def cap_call(i: int) -> dict:
        return decide(ports[i % 2], shop, "v-cap", f"session-{i}", ["capped"])

    def cool_call(i: int) -> dict:
        return decide(ports[i % 2], shop, "v-cool", f"session-{i}", ["cool"])

    with ThreadPoolExecutor(12) as pool:
        budget = list(pool.map(budget_call, range(24)))
        capped = list(pool.map(cap_call, range(24)))
        cooled = list(pool.map(cool_call, range(24)))

    # Then one session's adjustments stayed within its budget (sticky answers repeat them)
    adjusted = {s for a in budget for s in a["slots"] if kind(a, s) == "rule"}
    assert 1 <= len(adjusted) <= BUDGET, adjusted
    # and the capped rule applied three times, the cooled one once, across both servers
    assert sum(kind(a, "capped") == "rule" for a in capped) == 3
    assert sum(kind(a, "cool") == "rule" for a in cooled) == 1
    # and every acknowledged decision is in the log, once
    decision_log_flush()
    ids = {a["decision_id"] for a in budget + capped + cooled}
    logged = Decision.objects.filter(decision_id__in=ids)
    assert logged.count() == len(ids) == 72


class Admin:
    """A staff member's browser on one server: the admin's login, its CSRF cookie."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = None
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if form is not None:
            form = {**form, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request, timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        for header in response.headers.get_all("Set-Cookie") or []:
            name, value = header.split(";", 1)[0].split("=", 1)
            self.cookies[name.strip()] = value.strip()
        return response.status, response.read().decode(errors="replace")

    def login(self, username: str, password: str) -> None:
        self.request("/admin/login/")
        status, _ = self.request(
            "/admin/login/?next=/admin/",
            {"username": username, "password": password, "next": "/admin/"},
        )
        assert status == 302 and "sessionid" in self.cookies, status


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.django_db(transaction=True)
def test_two_servers__rollout_killed_through_one__other_serves_default_within_1s(
    two_servers, staff
):
    ports, shop = two_servers
    # Given a rollout serving on both servers, and an administrator signed in on the first
    slot(shop.prop, "banner", {"sale": {"text": "Sale"}})
    rollout = targeting.rollout(shop.prop, "sale", "banner", "sale")
    for port in ports * 6:
        assert kind(decide(port, shop, "v-1", uuid.uuid4().hex, ["banner"]), "banner") == (
            "rollout"
        )
    admin = Admin(ports[0])
    admin.login(staff(None, superuser=True).username, "pw-Long-enough-123")
    # When it is killed with the admin's action, through the first server
    status, _ = admin.request(
        "/admin/personalization/rollout/", {"action": "kill", "_selected_action": str(rollout.pk)}
    )
    assert status == 302
    killed_at = time.monotonic()
    # Then the second server's decisions serve the default within a second, and from then on
    while kind(decide(ports[1], shop, "v-1", uuid.uuid4().hex, ["banner"]), "banner") != (
        "default"
    ):
        assert time.monotonic() - killed_at < 5, "the kill never reached the second server"
        time.sleep(0.02)
    reached = time.monotonic() - killed_at
    time.sleep(max(0.0, killed_at + REACH_SECONDS - time.monotonic()))
    for port in [ports[1]] * 8 + [ports[0]] * 4:
        answer = decide(port, shop, "v-1", uuid.uuid4().hex, ["banner"])
        assert kind(answer, "banner") == "default", answer
    assert reached < REACH_SECONDS, reached
    assert Rollout.objects.get(pk=rollout.pk).status == RolloutStatus.KILLED
