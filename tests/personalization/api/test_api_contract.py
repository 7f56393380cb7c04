"""The API's error contract, whoever answers: every error under /api/ is
``{"error": {"code", "message", "details"}}`` with ``details`` always an object (the problems
of a refused request under ``details.errors``, each ``{"path", "code", "message"}``); query
parameters out of range are the client's mistake (400), never a 500; and an expected refusal
is one concise line in the server's log."""

import io
import logging
from collections.abc import Iterator

import pytest
from django.test import Client

from personalization.models import Experiment, ExperimentGoal, Goal
from personalization.permissions import MARKETING
from tests.conftest import make_event
from tests.targeting import slot


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    """The one error shape; returns ``details``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    details = error["details"]
    assert isinstance(details, dict), details
    for problem in details.get("errors", []):
        assert set(problem) == {"path", "code", "message"}, problem
        assert all(isinstance(value, str) for value in problem.values()), problem
    return details


def paths(details: dict) -> list[tuple[str, str]]:
    return [(p["path"], p["code"]) for p in details["errors"]]


@pytest.fixture
def experiment(shop) -> Experiment:
    headline = slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    goal = Goal.objects.create(
        property=shop.prop, key="cta-click", kind="binary", event_type="click", window_hours=24
    )
    found = Experiment.objects.create(
        property=shop.prop,
        key="headline-test",
        slot=headline,
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "short", "weight": 0.5}],
    )
    ExperimentGoal.objects.create(experiment=found, goal=goal, role="primary")
    return found


# ---- ?at= of experiment results ----------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 once in UTC
    ],
)
def test_experiment_results__at_out_of_range_once_in_utc__400_pointing_at_at(shop, experiment, at):
    # Given an experiment, and a time whose offset puts it outside what a datetime holds
    # When its results are asked for at that time
    response = shop.client(shop.sk).get(f"/api/v1/experiments/{experiment.key}/results", {"at": at})
    # Then the client's mistake is a 400 in the error shape that names the parameter
    details = assert_error_shape(response, 400, "invalid_request")
    assert paths(details) == [("at", "invalid")]


@pytest.mark.parametrize("at", ["yesterday", "2026-02-30", "2026-13-01T00:00:00Z"])
def test_experiment_results__at_unparsable__400_pointing_at_at(shop, experiment, at):
    # Given an experiment  When its results are asked for at something that is not a time
    response = shop.client(shop.sk).get(f"/api/v1/experiments/{experiment.key}/results", {"at": at})
    # Then a 400 whose details point at the parameter
    details = assert_error_shape(response, 400, "invalid_request")
    assert paths(details) == [("at", "invalid")]


# ---- every error in the one shape ------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make run (DEBUG)"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/events/extra", "/api/v1/"])
def test_api__unknown_path__404_in_error_shape(db, settings, debug, path):
    # Given the server in production mode, or in DEBUG as `make run` serves it
    settings.DEBUG = debug
    # When a client asks for a path the API does not have
    response = Client().get(path)
    # Then the answer is JSON in the error shape, not Django's HTML page
    assert assert_error_shape(response, 404, "not_found") == {}


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make run (DEBUG)"])
def test_api__method_not_allowed__405_in_error_shape_with_allow(shop, settings, debug):
    settings.DEBUG = debug
    # When endpoints are called with a method they do not take: a storefront endpoint, the
    # OpenAPI document (rendered as YAML) and the docs page (rendered as HTML)
    answers = [
        shop.client().put("/api/v1/consent", {}, format="json"),
        Client().post("/api/v1/schema/"),
        Client().post("/api/v1/docs/"),
    ]
    # Then each is a 405 in the error shape, still saying which methods are allowed
    for response in answers:
        assert assert_error_shape(response, 405, "method_not_allowed") == {}
        assert "GET" in response["Allow"] or "POST" in response["Allow"]


def test_api__host_not_allowed__400_in_error_shape(db):
    # When a request names a host the server does not serve
    response = Client().get("/api/v1/consent-policy", HTTP_HOST="evil.example")
    # Then the refusal is in the error shape too
    assert assert_error_shape(response, 400, "bad_request") == {}


def test_api_errors__refusals_without_problems__details_an_empty_object(shop):
    # Given refusals that have nothing to add: no key, an unknown key, the wrong kind of key,
    # an origin not allowed, an unknown object, a body that is not JSON
    answers = {
        "missing_api_key": Client().get("/api/v1/consent-policy"),
        "invalid_api_key": shop.client("pk_unknown").get("/api/v1/consent-policy"),
        "permission_denied": shop.client().post("/api/v1/privacy-requests", {}, format="json"),
        "origin_not_allowed": shop.client(HTTP_ORIGIN="https://evil.example").get(
            "/api/v1/consent-policy"
        ),
        "not_found": shop.client(shop.sk).get(
            "/api/v1/privacy-requests/00000000-0000-0000-0000-000000000000"
        ),
        "malformed_json": shop.client().post(
            "/api/v1/events", data="{nope", content_type="application/json"
        ),
    }
    statuses = {"missing_api_key": 401, "invalid_api_key": 401, "not_found": 404}
    # Then every details is {} (an object, never null)
    for code, response in answers.items():
        status = statuses.get(code, 403 if "denied" in code or "origin" in code else 400)
        assert assert_error_shape(response, status, code) == {}, code


def test_api_errors__serializer_refusal__every_problem_listed_by_path(shop):
    # Given a privacy request with a bad kind, an empty visitor id and no regulation
    body = {"kind": "everything", "visitor_id": "", "contact": "a@b.example"}
    # When it is submitted
    response = shop.client(shop.sk).post("/api/v1/privacy-requests", body, format="json")
    # Then each problem is listed by its path, in the same shape as every other endpoint's
    details = assert_error_shape(response, 400, "invalid_request")
    assert paths(details) == [
        ("kind", "invalid"),
        ("visitor_id", "invalid"),
        ("regulation", "required"),
    ]
    assert response.json()["error"]["message"].startswith("kind: ")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"visitor_id": "v-1", "session_id": "s-1"}, [("slots", "required")]),
        (
            {"visitor_id": "v-1", "session_id": "s-1", "slots": ["cta"], "zzz": 1, "aaa": 2},
            [("aaa", "unknown_field"), ("zzz", "unknown_field")],
        ),
        ({"visitor_id": "v-1", "session_id": "s-1", "slots": [7]}, [("slots.0", "invalid")]),
        (
            {"visitor_id": "v-1", "session_id": "s-1", "slots": ["cta"], "context": {"x": 1}},
            [("context.x", "unknown_field")],
        ),
    ],
)
def test_api_errors__schema_refusal__points_at_the_field(shop, body, expected):
    # When a decision is asked for with a body its schema refuses
    response = shop.client().post("/api/v1/decide", body, format="json")
    # Then the problems point at the field itself (a missing or unknown one by its own path)
    details = assert_error_shape(response, 400, "invalid_request")
    assert paths(details) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"batch": []}, [("events", "required")]),
        ({"events": {}}, [("events", "invalid")]),
        ({"events": []}, [("events", "invalid")]),
        (["not", "an", "object"], [("", "invalid")]),
    ],
)
def test_api_errors__events_envelope_refused__problem_listed(shop, body, expected):
    # When a batch's envelope is not {"events": [...]}
    response = shop.client().post("/api/v1/events", body, format="json")
    # Then the refusal lists where it is wrong
    details = assert_error_shape(response, 400, "invalid_envelope")
    assert paths(details) == expected


def test_api_errors__events_unknown_top_level_field__each_listed(shop, consent):
    consent(shop.prop, "v-1")
    body = {"events": [make_event()], "sent_at": "now", "batch": 1}
    response = shop.client().post("/api/v1/events", body, format="json")
    details = assert_error_shape(response, 400, "invalid_envelope")
    assert paths(details) == [("batch", "unknown_field"), ("sent_at", "unknown_field")]


def test_api_errors__visitor_id_too_long__problem_at_visitor_id(shop):
    response = shop.client().get(f"/api/v1/consent/{'v' * 129}")
    details = assert_error_shape(response, 400, "invalid_visitor_id")
    assert paths(details) == [("visitor_id", "invalid")]


def test_openapi__error_details__documented_as_an_object_listing_problems(db):
    # When the OpenAPI document is read
    document = Client().get("/api/v1/schema/?format=json").json()
    schemas = document["components"]["schemas"]
    # Then an error's details are an object (never null) that may list problems by path
    details_ref = schemas["ErrorBody"]["properties"]["details"]["$ref"]
    details = schemas[details_ref.rsplit("/", 1)[1]]
    assert details["type"] == "object" and not details.get("nullable")
    assert "details" in schemas["ErrorBody"]["required"]
    problem_ref = details["properties"]["errors"]["items"]["$ref"]
    problem = schemas[problem_ref.rsplit("/", 1)[1]]
    assert set(problem["required"]) == {"path", "code", "message"}


# ---- expected refusals in the server's log -------------------------------------------------


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What the configured console handlers print (in `make run` and in production), caught:
    every plain StreamHandler of every logger writes here for the test."""
    stream = io.StringIO()
    loggers = [logging.getLogger()] + [
        found
        for found in logging.Logger.manager.loggerDict.values()
        if isinstance(found, logging.Logger)
    ]
    handlers = {h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler}
    saved = [(h, h.stream) for h in handlers]
    for handler in handlers:
        handler.setStream(stream)
    yield stream
    for handler, old in saved:
        handler.setStream(old)


def _lines(log: io.StringIO, needle: str) -> list[str]:
    return [line for line in log.getvalue().splitlines() if needle in line]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make run (DEBUG)"])
def test_logging__expected_api_403__one_line_without_traceback(shop, settings, server_log, debug):
    # Given the server as it runs in production, or in DEBUG as `make run` serves it
    settings.DEBUG = debug
    # When a publishable key asks for what only a secret key may read (an expected 403)
    response = shop.client().get("/api/v1/privacy-requests/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 403
    # Then the log has one line about it, and no traceback
    assert len(_lines(server_log, "/api/v1/privacy-requests/")) == 1, server_log.getvalue()
    assert "Traceback" not in server_log.getvalue()


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make run (DEBUG)"])
def test_logging__expected_staff_page_403__one_line_without_traceback(
    shop, staff, settings, server_log, debug
):
    settings.DEBUG = debug
    # Given a marketer (no privacy role)  When they open the privacy officer's page
    client = Client()
    client.force_login(staff(MARKETING, shop.prop))
    response = client.get("/privacy/consent-history/")
    assert response.status_code == 403
    # Then one concise line says so: Django's PermissionDenied traceback is not printed
    assert len(_lines(server_log, "/privacy/consent-history/")) == 1, server_log.getvalue()
    assert "Traceback" not in server_log.getvalue()


def test_logging__server_error__traceback_kept(shop, settings, server_log, monkeypatch):
    # Given a bug behind an endpoint (a guard: only expected refusals lose their traceback)
    from consent import selectors

    def broken(property_id: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "policy_current", broken)
    # When it is called
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
    response = client.get("/api/v1/consent-policy")
    # Then a 500 in the error shape, and its traceback is in the log
    assert_error_shape(response, 500, "internal_error")
    assert "Traceback" in server_log.getvalue() and "RuntimeError: a bug" in server_log.getvalue()
