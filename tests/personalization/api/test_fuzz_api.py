"""The schema-driven fuzzer (schemathesis) against every operation of ``/api/v1/schema/``.

The app runs on pytest-django's live server (real HTTP, a timeout on every request, so a
hang fails); requests carry a secret key of a property that has a consent policy, a survey
and an experiment, so the generated cases reach the code behind authentication. Each
operation gets ``EXAMPLES`` generated cases (positive and negative); the checks are: no 5xx,
every answer's status and body documented in the schema, and the error shape on every
refusal. ``FUZZ_EXAMPLES=200`` runs a longer session by hand.
"""

import json
import os
import zlib

import pytest
import requests
import schemathesis
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from personalization.services.surveys import survey_create
from tests.targeting import slot

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT = 10  # seconds: a request that takes longer counts as a hang
SURVEY = "nps"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_site(make_shop):
    shop = make_shop("Fuzzed", origins=[])
    slot(shop.prop, "headline", {"short": {"text": "Quick picks"}})
    survey_create(
        prop=shop.prop,
        key=SURVEY,
        title="One question",
        questions=[{"key": "q", "type": "text", "text": "Anything?"}],
    )
    return shop


def served_schema() -> dict:
    """The document ``/api/v1/schema/`` serves (the same view, asked in-process)."""
    response = Client().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


schema = schemathesis.openapi.from_dict(served_schema())


def assert_error_shape(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db(transaction=True)
def test_fuzz__every_operation__no_5xx_and_answers_as_documented(case, live_server, fuzz_site):
    # Given a generated request (valid or not) with a secret key; half the survey requests
    # name the real survey, so its answers are exercised too
    params = case.path_parameters or {}
    if "surveys" in case.path and zlib.crc32(str(params.get("key")).encode()) % 2 == 0:
        params["key"] = SURVEY
    headers = {"Authorization": f"Bearer {fuzz_site.sk}"}
    # When it is sent  Then no 5xx, the status, content type and body are documented,
    # and a refusal is in the error shape
    response = case.call(base_url=live_server.url, headers=headers, timeout=REQUEST_TIMEOUT)
    case.validate_response(response, checks=CHECKS, headers=headers)
    assert_error_shape(response)
