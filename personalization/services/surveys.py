"""Surveys: defining them (the demo, tests and scripts; staff use the admin) and taking
a visitor's answers, checked against the survey's questions and the visitor's consent."""

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent import selectors as consent_selectors

from ..exceptions import ApplicationError
from ..models import Property, QuestionType, Survey, SurveyQuestion, SurveyResponse
from ..models.surveys import MAX_TEXT_ANSWER, NPS_SCALE, RATING_SCALE, question_choices_problem
from ..selectors import survey_active

# The purpose a visitor must grant before their answers are kept.
SURVEY_PURPOSE = "analytics"


@transaction.atomic
def survey_create(
    *,
    prop: Property,
    key: str,
    title: str,
    questions: Iterable[Mapping[str, Any]],
    active: bool = True,
) -> Survey:
    """A survey with its questions, in order: each ``{"key", "type", "text", "choices"?,
    "required"?}``. Refuses choices that do not suit the question's type."""
    survey = Survey.objects.create(property=prop, key=key, title=title, active=active)
    rows = []
    for order, q in enumerate(questions):
        choices = list(q.get("choices") or [])
        if q["type"] in QuestionType.values:
            problem = question_choices_problem(q["type"], choices)
        else:
            problem = f"unknown question type {q['type']!r}"
        if problem:
            raise ApplicationError("invalid_question", f"{q['key']}: {problem}")
        rows.append(
            SurveyQuestion(
                survey=survey,
                key=q["key"],
                type=q["type"],
                text=q["text"],
                choices=choices,
                required=bool(q.get("required", False)),
                order=order,
            )
        )
    SurveyQuestion.objects.bulk_create(rows)
    return survey


@dataclass(frozen=True)
class AnswerProblem:
    code: str  # unknown_question | invalid_answer | missing_answer
    question: str | None
    message: str

    def as_detail(self) -> dict[str, Any]:
        path = f"answers.{self.question}" if self.question else "answers"
        return {"path": path, "code": self.code, "message": self.message}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _answer_problem(question: SurveyQuestion, value: Any) -> str | None:
    """Why ``value`` is not an answer to ``question`` (None when it is)."""
    kind = question.type
    if kind == QuestionType.NPS:
        if not (_is_int(value) and value in NPS_SCALE):
            return "must be an integer from 0 to 10"
    elif kind == QuestionType.RATING:
        if not (_is_int(value) and value in RATING_SCALE):
            return "must be an integer from 1 to 5"
    elif kind == QuestionType.SINGLE:
        if not (isinstance(value, str) and value in question.choices):
            return f"must be one of the choices: {', '.join(question.choices)}"
    elif kind == QuestionType.MULTIPLE:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of the choices"
        if any(not isinstance(v, str) or v not in question.choices for v in value):
            return f"each must be one of the choices: {', '.join(question.choices)}"
        if len(set(value)) != len(value):
            return "must not repeat a choice"
    elif kind == QuestionType.TEXT:
        if not isinstance(value, str):
            return "must be text"
        if len(value) > MAX_TEXT_ANSWER:
            return f"must be at most {MAX_TEXT_ANSWER} characters"
    return None


def _answered(value: Any) -> bool:
    return not (isinstance(value, str) and not value.strip())


def survey_answers_check(
    questions: Iterable[SurveyQuestion], answers: Mapping[str, Any]
) -> list[AnswerProblem]:
    """Every problem with a response's answers, unknown questions first, then bad values,
    then required questions left unanswered (blank text counts as unanswered)."""
    by_key = {q.key: q for q in questions}
    problems = [
        AnswerProblem("unknown_question", key, "is not a question of this survey")
        for key in answers
        if key not in by_key
    ]
    for key, value in answers.items():
        question = by_key.get(key)
        problem = _answer_problem(question, value) if question is not None else None
        if problem:
            problems.append(AnswerProblem("invalid_answer", key, problem))
    for key, question in by_key.items():
        if question.required and not (key in answers and _answered(answers[key])):
            problems.append(AnswerProblem("missing_answer", key, "is required"))
    if not problems and not any(_answered(v) for v in answers.values()):
        problems.append(AnswerProblem("missing_answer", None, "answer at least one question"))
    return problems


def _problems_error(survey: Survey, problems: list[AnswerProblem]) -> ApplicationError:
    first = problems[0]
    where = f"answers.{first.question}" if first.question else "answers"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApplicationError(
        first.code,
        f"{where}: {first.message}{more}.",
        details={
            "errors": [p.as_detail() for p in problems],
            "questions": [q.key for q in survey.questions.all()],
        },
    )


def survey_response_submit(
    *,
    prop: Property,
    survey_key: str,
    visitor_id: str,
    session_id: str,
    answers: Mapping[str, Any],
    decision_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> SurveyResponse:
    """Keep a visitor's answers to an active survey of the property.

    Refused, with nothing stored: an unknown or inactive survey (404), answers that do not
    fit its questions (400), a visitor who has not granted analytics or was erased (409).
    """
    survey = survey_active(prop.pk, survey_key)
    if survey is None:
        raise ApplicationError(
            "unknown_survey", f"No active survey {survey_key!r} on this property.", status=404
        )
    problems = survey_answers_check(survey.questions.all(), answers)
    if problems:
        raise _problems_error(survey, problems)
    consent = consent_selectors.consent_effective(prop.pk, visitor_id)
    if consent.suppressed or not consent.allows(SURVEY_PURPOSE):
        raise ApplicationError(
            "no_consent",
            f"The visitor has not granted {SURVEY_PURPOSE}: their answers are not kept.",
            details={"purpose": SURVEY_PURPOSE},
            status=409,
        )
    return SurveyResponse.objects.create(
        property=prop,
        survey=survey,
        visitor_id=visitor_id,
        session_id=session_id,
        decision_id=uuid.UUID(str(decision_id)) if decision_id else None,
        submitted_at=now or timezone.now(),
        # Blank text is no answer: the dashboards count only what was said.
        answers={key: value for key, value in answers.items() if _answered(value)},
    )
