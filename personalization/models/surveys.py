"""Feedback surveys staff define per property, and the answers visitors send.

A survey is shown through a slot: a variant whose content is ``{"survey": "<key>"}``,
so rules, timing, cooldowns and consent apply to it as to any adjustment.
"""

from typing import Any

from django.db import models

from .properties import Property

# The values an NPS and a rating question accept (the API offers them as the choices).
NPS_SCALE = list(range(0, 11))
RATING_SCALE = list(range(1, 6))
MAX_CHOICES = 50
MAX_CHOICE_LENGTH = 200
MAX_TEXT_ANSWER = 2000


class QuestionType(models.TextChoices):
    NPS = "nps", "NPS (0–10)"
    RATING = "rating", "Rating (1–5)"
    SINGLE = "single", "Single choice"
    MULTIPLE = "multiple", "Multiple choice"
    TEXT = "text", "Free text"


CHOICE_TYPES = {QuestionType.SINGLE, QuestionType.MULTIPLE}


def question_choices_problem(question_type: str, choices: Any) -> str | None:
    """Why ``choices`` do not suit a question of ``question_type`` (None when they do).

    The admin and the services both ask this, so a survey cannot be saved either way
    with choices its answers could not be checked against.
    """
    if question_type not in CHOICE_TYPES:
        if choices:
            return "Only single and multiple choice questions have choices."
        return None
    if not isinstance(choices, list) or not choices:
        return "A single or multiple choice question needs its choices."
    if len(choices) > MAX_CHOICES:
        return f"At most {MAX_CHOICES} choices."
    for choice in choices:
        if not isinstance(choice, str) or not choice.strip():
            return "Each choice is a non-empty text."
        if len(choice) > MAX_CHOICE_LENGTH:
            return f"A choice has at most {MAX_CHOICE_LENGTH} characters: {choice[:40]}…"
    duplicates = sorted({c for c in choices if choices.count(c) > 1})
    if duplicates:
        return f"Choices must be distinct: {', '.join(duplicates)}."
    return None


class Survey(models.Model):
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="surveys")
    key = models.SlugField(
        max_length=64,
        help_text='Show it through a slot: a variant whose content is {"survey": "<key>"}.',
    )
    title = models.CharField(max_length=200)
    active = models.BooleanField(
        default=True, help_text="An inactive survey is not served and takes no answers."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="survey_key")]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key


class SurveyQuestion(models.Model):
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="questions")
    key = models.SlugField(max_length=64, help_text="The answer's key in a response.")
    type = models.CharField(max_length=16, choices=QuestionType.choices)
    text = models.CharField(max_length=500)
    choices = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "key"], name="survey_question_key")
        ]
        ordering = ["survey", "order", "id"]

    def __str__(self) -> str:
        return f"{self.survey_id}:{self.key}"

    def offered(self) -> list[Any]:
        """What the storefront may answer: the scale of NPS and rating, else the choices."""
        if self.type == QuestionType.NPS:
            return list(NPS_SCALE)
        if self.type == QuestionType.RATING:
            return list(RATING_SCALE)
        return list(self.choices or [])


class SurveyResponse(models.Model):
    """One visitor's answers to a survey: ``{"<question key>": <value>}``, validated."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE)
    # RESTRICT: a survey with answers is deactivated, not deleted (the dashboards read them);
    # deleting the whole property still removes both.
    survey = models.ForeignKey(Survey, on_delete=models.RESTRICT, related_name="responses")
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    decision_id = models.UUIDField(null=True, blank=True)
    submitted_at = models.DateTimeField()
    answers = models.JSONField()

    class Meta:
        indexes = [
            models.Index(fields=["property", "submitted_at"], name="survey_response_time"),
            models.Index(fields=["property", "visitor_id"], name="survey_response_visitor"),
        ]

    def __str__(self) -> str:
        return f"{self.survey_id}/{self.visitor_id}"
