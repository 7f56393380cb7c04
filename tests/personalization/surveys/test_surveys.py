"""Feedback surveys: the storefront API, the staff admin, the consent registry and the demo."""

import random
import statistics
import uuid

import pytest
from django.db.models import RestrictedError
from django.test import Client

from consent import registry
from personalization.models import (
    Decision,
    Survey,
    SurveyQuestion,
    SurveyResponse,
)
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from personalization.services.surveys import survey_create, survey_response_submit
from personalization.simulation import PERSONAS, Visit, demo_targeting, simulate
from tests.privacy import media_root, raw_id, request_made, run_work
from tests.targeting import slot

REASONS = ["Search", "A friend", "An ad"]
TOPICS = ["Price", "Choice", "Delivery"]
QUESTIONS = [
    {"key": "recommend", "type": "nps", "text": "How likely are you to recommend us?"},
    {"key": "visit", "type": "rating", "text": "Rate your visit"},
    {"key": "reason", "type": "single", "text": "What brought you here?", "choices": REASONS},
    {"key": "liked", "type": "multiple", "text": "What did you like?", "choices": TOPICS},
    {"key": "comment", "type": "text", "text": "Anything to add?"},
]
GOOD = {"recommend": 9, "visit": 4, "reason": "A friend", "liked": ["Price", "Delivery"]}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(shop, answers, key="nps", visitor_id="v-1", **extra):
    body = {"visitor_id": visitor_id, "session_id": "s-1", "answers": answers, **extra}
    return shop.client().post(f"/api/v1/surveys/{key}/responses", body, format="json")


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def surveyed(shop, consent):
    """A shop with an NPS survey (the NPS question required) and a visitor who consented."""
    questions = [dict(q) for q in QUESTIONS]
    questions[0]["required"] = True
    survey_create(prop=shop.prop, key="nps", title="Before you go", questions=questions)
    consent(shop.prop, "v-1")
    return shop


# GET /api/v1/surveys/<key> ---------------------------------------------------------------


def test_survey_get__active__questions_in_order_with_their_scales(surveyed):
    # Given an active survey  When the storefront reads it
    response = surveyed.client().get("/api/v1/surveys/nps")
    # Then it gets its questions in order; NPS and rating offer their scales as choices
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["key"], body["title"]) == ("nps", "Before you go")
    assert [q["key"] for q in body["questions"]] == [q["key"] for q in QUESTIONS]
    by_key = {q["key"]: q for q in body["questions"]}
    assert by_key["recommend"] == {
        "key": "recommend",
        "type": "nps",
        "text": "How likely are you to recommend us?",
        "choices": list(range(11)),
        "required": True,
    }
    assert by_key["visit"]["choices"] == [1, 2, 3, 4, 5]
    assert by_key["reason"]["choices"] == REASONS and by_key["liked"]["type"] == "multiple"
    assert by_key["comment"]["choices"] == [] and by_key["comment"]["required"] is False


def test_survey_get__two_queries_whatever_the_questions(surveyed, django_assert_max_num_queries):
    # Given the key is known (its authentication is one lookup)  When the survey is read
    # Then the survey and its questions take two queries, plus the key's
    with django_assert_max_num_queries(4):
        assert surveyed.client().get("/api/v1/surveys/nps").status_code == 200


@pytest.mark.parametrize("key", ["unknown", "inactive", "elsewhere"])
def test_survey_get__unknown_inactive_or_another_propertys__404(surveyed, make_shop, key):
    # Given an inactive survey, and a survey of another property
    survey_create(
        prop=surveyed.prop, key="inactive", title="Old", questions=QUESTIONS[:1], active=False
    )
    survey_create(prop=make_shop("Other").prop, key="elsewhere", title="X", questions=QUESTIONS)
    # When the storefront reads it  Then it is not found
    assert_error(surveyed.client().get(f"/api/v1/surveys/{key}"), 404, "unknown_survey")


def test_survey_get__publishable_key_from_a_foreign_origin__403(surveyed):
    response = surveyed.client(HTTP_ORIGIN="https://evil.example").get("/api/v1/surveys/nps")
    assert_error(response, 403, "origin_not_allowed")


# POST /api/v1/surveys/<key>/responses ----------------------------------------------------


def test_survey_post__valid_answers__201_and_stored(surveyed):
    # Given a visitor who was shown the survey by a decision
    decision_id = str(uuid.uuid4())
    # When the storefront posts their answers
    response = post(surveyed, {**GOOD, "comment": "Lovely shoes"}, decision_id=decision_id)
    # Then they are stored as sent, with the decision that showed the survey
    assert response.status_code == 201, response.content
    assert response.json()["survey"] == "nps"
    stored = SurveyResponse.objects.get()
    assert stored.survey.key == "nps" and stored.property == surveyed.prop
    assert (stored.visitor_id, stored.session_id) == ("v-1", "s-1")
    assert str(stored.decision_id) == decision_id and stored.submitted_at is not None
    assert stored.answers == {**GOOD, "comment": "Lovely shoes"}
    assert response.json()["answers"] == stored.answers


def test_survey_post__only_required_question__201_optional_blank_text_not_kept(surveyed):
    response = post(surveyed, {"recommend": 0, "comment": "   "}, decision_id=None)
    assert response.status_code == 201, response.content
    stored = SurveyResponse.objects.get()
    assert stored.answers == {"recommend": 0} and stored.decision_id is None


def test_survey_post__edges_of_the_scales__accepted(surveyed):
    for answers in ({"recommend": 10, "visit": 1}, {"recommend": 0, "visit": 5}):
        assert post(surveyed, answers).status_code == 201
    assert SurveyResponse.objects.count() == 2


TOO_LONG = "x" * 2001
BAD_ANSWERS = [
    # (name, answers, code, path)
    ("nps 11", {"recommend": 11}, "invalid_answer", "answers.recommend"),
    ("nps -1", {"recommend": -1}, "invalid_answer", "answers.recommend"),
    ("nps as text", {"recommend": "9"}, "invalid_answer", "answers.recommend"),
    ("nps fraction", {"recommend": 8.5}, "invalid_answer", "answers.recommend"),
    ("nps boolean", {"recommend": True}, "invalid_answer", "answers.recommend"),
    ("nps null", {"recommend": None}, "invalid_answer", "answers.recommend"),
    ("rating 0", {"recommend": 5, "visit": 0}, "invalid_answer", "answers.visit"),
    ("rating 6", {"recommend": 5, "visit": 6}, "invalid_answer", "answers.visit"),
    ("unknown question", {"recommend": 5, "colour": "red"}, "unknown_question", "answers.colour"),
    ("choice not offered", {"recommend": 5, "reason": "TV"}, "invalid_answer", "answers.reason"),
    ("single as list", {"recommend": 5, "reason": ["Search"]}, "invalid_answer", "answers.reason"),
    ("multiple empty", {"recommend": 5, "liked": []}, "invalid_answer", "answers.liked"),
    ("multiple as text", {"recommend": 5, "liked": "Price"}, "invalid_answer", "answers.liked"),
    (
        "multiple repeated",
        {"recommend": 5, "liked": ["Price", "Price"]},
        "invalid_answer",
        "answers.liked",
    ),
    ("multiple not offered", {"recommend": 5, "liked": ["Fun"]}, "invalid_answer", "answers.liked"),
    ("text too long", {"recommend": 5, "comment": TOO_LONG}, "invalid_answer", "answers.comment"),
    ("text as number", {"recommend": 5, "comment": 3}, "invalid_answer", "answers.comment"),
    ("required missing", {"visit": 4}, "missing_answer", "answers.recommend"),
    ("required as blank text", {"recommend": " "}, "invalid_answer", "answers.recommend"),
    ("nothing answered", {}, "missing_answer", "answers.recommend"),
]


@pytest.mark.parametrize(
    ("answers", "code", "path"),
    [case[1:] for case in BAD_ANSWERS],
    ids=[case[0] for case in BAD_ANSWERS],
)
def test_survey_post__bad_answer__400_in_the_error_shape_and_nothing_stored(
    surveyed, answers, code, path
):
    # Given a survey  When answers that do not fit its questions are posted
    error = assert_error(post(surveyed, answers), 400, code)
    # Then the details point at the question, list the survey's questions, and nothing is kept
    if path is not None:
        assert path in [e["path"] for e in error["details"]["errors"]]
    assert error["details"]["questions"] == [q["key"] for q in QUESTIONS]
    assert not SurveyResponse.objects.exists()


def test_survey_post__several_problems__all_reported_unknown_first(surveyed):
    error = assert_error(post(surveyed, {"visit": 9, "colour": "red"}), 400, "unknown_question")
    assert [(e["path"], e["code"]) for e in error["details"]["errors"]] == [
        ("answers.colour", "unknown_question"),
        ("answers.visit", "invalid_answer"),
        ("answers.recommend", "missing_answer"),
    ]


def test_survey_post__required_text_left_blank__400_missing_answer(shop, consent):
    questions = [{"key": "comment", "type": "text", "text": "Why?", "required": True}]
    survey_create(prop=shop.prop, key="why", title="T", questions=questions)
    consent(shop.prop, "v-1")
    error = assert_error(post(shop, {"comment": "  "}, key="why"), 400, "missing_answer")
    assert error["details"]["errors"][0]["path"] == "answers.comment"
    assert not SurveyResponse.objects.exists()


def test_survey_post__no_required_question_and_nothing_answered__400(shop, consent):
    survey_create(prop=shop.prop, key="nps", title="T", questions=QUESTIONS)
    consent(shop.prop, "v-1")
    error = assert_error(post(shop, {"comment": " "}), 400, "missing_answer")
    assert error["details"]["errors"][0]["path"] == "answers"
    assert not SurveyResponse.objects.exists()


BAD_BODIES = [
    ("answers not an object", {"visitor_id": "v-1", "session_id": "s-1", "answers": [9]}),
    ("answers missing", {"visitor_id": "v-1", "session_id": "s-1"}),
    ("visitor_id missing", {"session_id": "s-1", "answers": GOOD}),
    ("visitor_id empty", {"visitor_id": "", "session_id": "s-1", "answers": GOOD}),
    ("visitor_id too long", {"visitor_id": "v" * 129, "session_id": "s-1", "answers": GOOD}),
    ("visitor_id a number", {"visitor_id": 12, "session_id": "s-1", "answers": GOOD}),
    ("session_id too long", {"visitor_id": "v-1", "session_id": "s" * 129, "answers": GOOD}),
    (
        "decision_id not a uuid",
        {"visitor_id": "v-1", "session_id": "s-1", "answers": GOOD, "decision_id": "d-1"},
    ),
    ("unknown field", {"visitor_id": "v-1", "session_id": "s-1", "answers": GOOD, "x": 1}),
    ("not an object", [GOOD]),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
def test_survey_post__malformed_body__400_invalid_request_and_nothing_stored(surveyed, body):
    response = surveyed.client().post("/api/v1/surveys/nps/responses", body, format="json")
    assert_error(response, 400, "invalid_request")
    assert not SurveyResponse.objects.exists()


def test_survey_post__not_json__400(surveyed):
    response = surveyed.client().post(
        "/api/v1/surveys/nps/responses", "{nope", content_type="application/json"
    )
    assert_error(response, 400, "malformed_json")
    assert not SurveyResponse.objects.exists()


@pytest.mark.parametrize("key", ["unknown", "inactive"])
def test_survey_post__unknown_or_inactive_survey__404_and_nothing_stored(surveyed, key):
    Survey.objects.filter(key="nps").update(active=False)
    assert_error(
        post(surveyed, GOOD, key="nps" if key == "inactive" else key), 404, "unknown_survey"
    )
    assert not SurveyResponse.objects.exists()


@pytest.mark.parametrize(
    "purposes",
    [None, {"analytics": False, "personalization": True, "granular_tracking": True}],
    ids=["no consent record", "analytics refused"],
)
def test_survey_post__visitor_without_analytics__409_no_consent_and_nothing_stored(
    surveyed, consent, purposes
):
    # Given a visitor who never consented, or refused analytics
    if purposes is not None:
        consent(surveyed.prop, "v-2", purposes)
    # When their answers are posted  Then they are refused and not kept
    error = assert_error(post(surveyed, GOOD, visitor_id="v-2"), 409, "no_consent")
    assert error["details"] == {"purpose": "analytics"}
    assert not SurveyResponse.objects.exists()


def test_survey_post__erased_visitor__409_and_nothing_stored(surveyed, staff, settings, tmp_path):
    # Given a visitor who consented, then was erased (they stay suppressed)
    media_root(settings, tmp_path)
    vid = raw_id()
    from consent.services import consent_record
    from tests.conftest import ALL_PURPOSES

    consent_record(
        property_id=surveyed.prop.pk,
        visitor_id=vid,
        policy_version=1,
        purposes=ALL_PURPOSES,
        method="banner",
    )
    assert post(surveyed, GOOD, visitor_id=vid).status_code == 201
    run_work(request_made(surveyed, vid, "erasure", staff(PRIVACY_OFFICERS, surveyed.prop)))
    assert not SurveyResponse.objects.filter(visitor_id=vid).exists()
    # When the storefront posts their answers again  Then nothing is kept
    assert_error(post(surveyed, GOOD, visitor_id=vid), 409, "no_consent")
    assert not SurveyResponse.objects.filter(visitor_id=vid).exists()


def test_survey_post__publishable_key_from_a_foreign_origin__403_and_nothing_stored(surveyed):
    body = {"visitor_id": "v-1", "session_id": "s-1", "answers": GOOD}
    response = surveyed.client(HTTP_ORIGIN="https://evil.example").post(
        "/api/v1/surveys/nps/responses", body, format="json"
    )
    assert_error(response, 403, "origin_not_allowed")
    assert not SurveyResponse.objects.exists()


def test_survey_post__from_the_propertys_origin__201(surveyed):
    body = {"visitor_id": "v-1", "session_id": "s-1", "answers": GOOD}
    response = surveyed.client(HTTP_ORIGIN="https://shop.example").post(
        "/api/v1/surveys/nps/responses", body, format="json"
    )
    assert response.status_code == 201, response.content


def test_survey_post__no_key__401_and_nothing_stored(surveyed):
    from rest_framework.test import APIClient

    body = {"visitor_id": "v-1", "session_id": "s-1", "answers": GOOD}
    response = APIClient().post("/api/v1/surveys/nps/responses", body, format="json")
    assert_error(response, 401, "missing_api_key")
    assert not SurveyResponse.objects.exists()


# The model ---------------------------------------------------------------------------------


def test_survey_delete__with_answers__refused_without__deleted_with_its_questions(surveyed):
    # Given a survey with answers  When it is deleted  Then that is refused (deactivate it)
    assert post(surveyed, GOOD).status_code == 201
    with pytest.raises(RestrictedError):
        Survey.objects.get(key="nps").delete()
    # and a survey nobody answered goes with its questions
    survey_create(prop=surveyed.prop, key="draft", title="Draft", questions=QUESTIONS)
    Survey.objects.get(key="draft").delete()
    assert not SurveyQuestion.objects.filter(survey__key="draft").exists()
    assert SurveyResponse.objects.count() == 1


def test_survey_create__choices_that_do_not_suit_the_type__refused(shop):
    from personalization.exceptions import ApplicationError

    for question in (
        {"key": "q", "type": "single", "text": "?"},
        {"key": "q", "type": "nps", "text": "?", "choices": ["a"]},
        {"key": "q", "type": "multiple", "text": "?", "choices": ["a", "a"]},
        {"key": "q", "type": "multiple", "text": "?", "choices": ["a", " "]},
        {"key": "q", "type": "colour", "text": "?"},
    ):
        with pytest.raises(ApplicationError):
            survey_create(prop=shop.prop, key="s", title="S", questions=[question])
    assert not Survey.objects.exists()


# Admin -----------------------------------------------------------------------------------


def survey_form(shop, questions, **overrides):
    data = {
        "property": shop.prop.pk,
        "key": "exit",
        "title": "Before you go",
        "active": "on",
        "questions-TOTAL_FORMS": len(questions),
        "questions-INITIAL_FORMS": 0,
        "questions-MIN_NUM_FORMS": 0,
        "questions-MAX_NUM_FORMS": 1000,
    }
    for i, q in enumerate(questions):
        data.update(
            {
                f"questions-{i}-order": i,
                f"questions-{i}-key": q["key"],
                f"questions-{i}-type": q["type"],
                f"questions-{i}-text": q["text"],
                f"questions-{i}-choices": q.get("choices", ""),
            }
        )
        if q.get("required"):
            data[f"questions-{i}-required"] = "on"
    data.update(overrides)
    return data


def test_survey_admin__marketing_adds_a_survey__questions_saved_in_order(shop, staff):
    # Given a marketing user of the property
    client = login(staff(MARKETING, shop.prop))
    questions = [
        {"key": "recommend", "type": "nps", "text": "Recommend us?", "required": True},
        {"key": "reason", "type": "single", "text": "Why?", "choices": "Search\n\nA friend\n"},
        {"key": "comment", "type": "text", "text": "Anything to add?"},
    ]
    # When they add a survey with its questions
    response = client.post("/admin/personalization/survey/add/", survey_form(shop, questions))
    # Then it is saved, choices one per line (blank lines ignored)
    assert response.status_code == 302, response.content.decode()[:3000]
    survey = Survey.objects.get(key="exit")
    rows = list(survey.questions.values_list("key", "type", "choices", "required"))
    assert rows == [
        ("recommend", "nps", [], True),
        ("reason", "single", ["Search", "A friend"], False),
        ("comment", "text", [], False),
    ]
    # and its page lists it with its counts, and says no slot shows it yet
    assert "exit" in client.get("/admin/personalization/survey/").content.decode()
    page = client.get(f"/admin/personalization/survey/{survey.pk}/change/").content.decode()
    assert "No slot shows it yet" in page


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ({"key": "q", "type": "single", "text": "?"}, "needs its choices"),
        ({"key": "q", "type": "multiple", "text": "?", "choices": "A\nB\nA"}, "must be distinct"),
        ({"key": "q", "type": "nps", "text": "?", "choices": "1\n2"}, "Only single and multiple"),
        ({"key": "q", "type": "text", "text": "?", "choices": "x"}, "Only single and multiple"),
        ({"key": "q", "type": "single", "text": "?", "choices": '["A", 3]'}, "non-empty text"),
    ],
)
def test_survey_admin__choices_that_do_not_suit_the_type__form_error_nothing_saved(
    shop, staff, question, message
):
    client = login(staff(MARKETING, shop.prop))
    response = client.post("/admin/personalization/survey/add/", survey_form(shop, [question]))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Survey.objects.exists() and not SurveyQuestion.objects.exists()


def test_survey_admin__active_survey_without_questions__refused(shop, staff):
    client = login(staff(MARKETING, shop.prop))
    response = client.post("/admin/personalization/survey/add/", survey_form(shop, []))
    assert response.status_code == 200
    assert "needs at least one question" in response.content.decode()
    assert not Survey.objects.exists()


def test_survey_admin__duplicate_question_keys__refused(shop, staff):
    client = login(staff(MARKETING, shop.prop))
    q = {"key": "q", "type": "text", "text": "?"}
    response = client.post("/admin/personalization/survey/add/", survey_form(shop, [q, q]))
    assert response.status_code == 200
    assert not Survey.objects.exists()


def test_survey_admin__shown_through_a_slot__listed_on_its_page(surveyed, staff):
    slot(surveyed.prop, "exit_survey", {"ask": {"survey": "nps"}})
    survey = Survey.objects.get(key="nps")
    client = login(staff(MARKETING, surveyed.prop))
    page = client.get(f"/admin/personalization/survey/{survey.pk}/change/").content.decode()
    assert "<code>exit_survey:ask</code>" in page


def test_survey_admin__analyst_reads_but_cannot_change(surveyed, staff):
    survey = Survey.objects.get(key="nps")
    client = login(staff(ANALYSTS, surveyed.prop))
    url = f"/admin/personalization/survey/{survey.pk}/change/"
    assert client.get(url).status_code == 200
    client.post(url, survey_form(surveyed, QUESTIONS[:1], key="renamed"))
    assert Survey.objects.get(pk=survey.pk).key == "nps"
    assert client.get("/admin/personalization/survey/add/").status_code == 403


def test_survey_admin__other_propertys_staff__see_nothing(surveyed, make_shop, staff):
    other = make_shop("Other")
    survey = Survey.objects.get(key="nps")
    client = login(staff(MARKETING, other.prop))
    assert "Before you go" not in client.get("/admin/personalization/survey/").content.decode()
    assert client.get(f"/admin/personalization/survey/{survey.pk}/change/").status_code in (
        302,
        403,
        404,
    )


# The consent registry ----------------------------------------------------------------------


def test_registry__survey_answers__registered_with_their_retention(surveyed):
    store = registry.store_get("personalization.survey_responses")
    assert store is not None and store.model is SurveyResponse
    assert (store.visitor_field, store.time_field, store.retention) == (
        "visitor_id",
        "submitted_at",
        "survey_answers",
    )
    assert post(surveyed, GOOD).status_code == 201
    assert store.queryset_for(surveyed.prop.pk, "v-1").count() == 1
    assert store.queryset_for(surveyed.prop.pk, "v-2").count() == 0


def test_retention__survey_answers_older_than_the_period__purged(surveyed):
    from datetime import timedelta

    from django.utils import timezone

    from consent.services.retention import retention_purge

    now = timezone.now()
    for days in (800, 10):
        survey_response_submit(
            prop=surveyed.prop,
            survey_key="nps",
            visitor_id="v-1",
            session_id=f"s-{days}",
            answers={"recommend": 7},
            now=now - timedelta(days=days),
        )
    retention_purge(property_id=surveyed.prop.pk)
    assert list(SurveyResponse.objects.values_list("session_id", flat=True)) == ["s-10"]


# The demo ----------------------------------------------------------------------------------


def test_demo_visit__adjusted_headline_and_cta__higher_nps_on_average():
    # Given the same visitors with and without the adjusted headline and CTA
    def scores(adjusted: bool) -> list[int]:
        rng = random.Random(5)
        out = []
        for n in range(400):
            persona = PERSONAS[n % len(PERSONAS)]
            from django.utils import timezone

            visit = Visit(rng, f"v-{n}", persona, timezone.now(), persona.devices[0], True)
            if adjusted:
                visit.answers = {"headline": "short", "cta": "b"}
            out.append(visit.survey_answers()["recommend"])
        return out

    plain, adjusted = scores(False), scores(True)
    # Then every score is on the scale, and the adjusted ones are higher on average
    assert all(0 <= s <= 10 for s in plain + adjusted)
    assert statistics.mean(adjusted) > statistics.mean(plain) + 1.5


def test_simulate__returning_visitors_answer_the_exit_survey_through_the_service(shop):
    # Given the demo's targeting: the exit survey shown to returning visitors
    shop.prop.holdout_pct = 0
    shop.prop.save()
    demo_targeting(shop.prop)
    survey = Survey.objects.get(property=shop.prop, key="nps")
    assert [q.type for q in survey.questions.all()] == ["nps", "rating", "single", "text"]
    # When traffic with decisions is simulated
    totals = simulate(prop=shop.prop, visitors=150, days=30, seed=11, personalize=True)
    # Then some visitors answered, each response valid and tied to the decision that asked
    responses = list(SurveyResponse.objects.filter(property=shop.prop))
    assert totals.survey_responses == len(responses) > 0
    decisions = {
        str(d.decision_id): d
        for d in Decision.objects.filter(
            decision_id__in=[r.decision_id for r in responses]
        ).prefetch_related("answers")
    }
    for r in responses:
        assert 0 <= r.answers["recommend"] <= 10
        answers = {a.slot_key: a.variant_key for a in decisions[str(r.decision_id)].answers.all()}
        assert answers["exit_survey"] == "ask"
    # and the survey was not asked again within 30 days of the last time
    by_visitor: dict[str, list] = {}
    for r in sorted(responses, key=lambda r: r.submitted_at):
        by_visitor.setdefault(r.visitor_id, []).append(r.submitted_at)
    for times in by_visitor.values():
        assert all((b - a).days >= 29 for a, b in zip(times, times[1:], strict=False))
