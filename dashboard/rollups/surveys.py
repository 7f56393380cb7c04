"""Survey aggregates per adjustment exposure, and adjustments seen against the score.

Answers are few next to events, so they are aggregated in Python: per answer, the
non-default adjustments its visitor was shown before answering decide its exposures.
"""

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from personalization.models import (
    Adjustment,
    QuestionType,
    SourceKind,
    SurveyQuestion,
    SurveyResponse,
)

from ..models import ExposureKind, RollupKind, SurveyScoreDaily, SurveySeenDaily
from . import state
from .daily import midnight

SCORED = (QuestionType.NPS, QuestionType.RATING)
VISITOR_CHUNK = 500
BUCKETS = ((0, "0"), (1, "1"), (2, "2"), (5, "3-5"), (10, "6-10"))


def seen_bucket(x: int) -> str:
    for upper, label in BUCKETS:
        if x <= upper:
            return label
    return "11+"


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _seen_by(property_id: int, visitor_ids: list[str], before: datetime) -> dict[str, list]:
    """Per visitor: (created_at, exposure) of their non-default adjustments, oldest first."""
    seen: dict[str, list] = defaultdict(list)
    for chunk in _chunks(sorted(visitor_ids), VISITOR_CHUNK):
        rows = (
            Adjustment.objects.filter(
                property_id=property_id,
                visitor_id__in=chunk,
                is_default=False,
                created_at__lt=before,
            )
            .order_by("created_at")
            .values_list("visitor_id", "created_at", "source_kind", "source_key", "variant_key")
        )
        for vid, created_at, kind, key, variant in rows.iterator(chunk_size=5000):
            # A rule's versions and variants are one exposure; a test's variants are not.
            exposure = (kind, key, "" if kind == SourceKind.RULE else variant)
            seen[vid].append((created_at, exposure))
    return seen


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def surveys_compute(property_id: int, start: date, end: date) -> int:
    """Replace the survey rows of days [start, end] of a property."""
    upper = midnight(end + timedelta(days=1))
    questions: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for survey_id, key, qtype in SurveyQuestion.objects.filter(
        survey__property_id=property_id, type__in=SCORED
    ).values_list("survey_id", "key", "type"):
        questions[survey_id].append((key, qtype))
    responses = list(
        SurveyResponse.objects.filter(
            property_id=property_id,
            submitted_at__gte=midnight(start),
            submitted_at__lt=upper,
            survey_id__in=list(questions),
        ).values_list("survey_id", "survey__key", "visitor_id", "submitted_at", "answers")
    )
    seen = _seen_by(property_id, list({r[2] for r in responses}), upper)
    scores: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0, 0, 0])
    pairs: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for survey_id, survey_key, vid, submitted_at, answers in responses:
        before = [exposure for at, exposure in seen.get(vid, []) if at <= submitted_at]
        exposures = sorted(set(before)) or [(ExposureKind.NONE.value, "", "")]
        x = float(len(before))
        day = submitted_at.date()
        for question_key, qtype in questions[survey_id]:
            y = _score((answers or {}).get(question_key))
            if y is None:
                continue
            base = (day, survey_key, question_key, qtype)
            for exposure in [(ExposureKind.ALL.value, "", ""), *exposures]:
                cell = scores[(*base, *exposure)]
                cell[0] += 1
                cell[1] += y
                cell[2] += y * y
                if qtype == QuestionType.NPS:
                    cell[3 if y >= 9 else 4 if y >= 7 else 5] += 1
            for bucket in ("", seen_bucket(len(before))):
                pair = pairs[(day, survey_key, question_key, bucket)]
                pair[0] += 1
                pair[1] += x
                pair[2] += y
                pair[3] += x * x
                pair[4] += y * y
                pair[5] += x * y
    score_rows = [
        SurveyScoreDaily(
            property_id=property_id,
            day=day,
            survey_key=skey,
            question_key=qkey,
            question_type=qtype,
            exposure_kind=kind,
            exposure_key=key[:64],
            variant_key=variant[:64],
            answers=int(n),
            total=s,
            total_sq=ss,
            promoters=int(p),
            passives=int(pa),
            detractors=int(dt),
        )
        for (day, skey, qkey, qtype, kind, key, variant), (n, s, ss, p, pa, dt) in scores.items()
    ]
    seen_rows = [
        SurveySeenDaily(
            property_id=property_id,
            day=day,
            survey_key=skey,
            question_key=qkey,
            bucket=bucket,
            n=int(n),
            sum_x=sx,
            sum_y=sy,
            sum_xx=sxx,
            sum_yy=syy,
            sum_xy=sxy,
        )
        for (day, skey, qkey, bucket), (n, sx, sy, sxx, syy, sxy) in pairs.items()
    ]
    with transaction.atomic():
        for model in (SurveyScoreDaily, SurveySeenDaily):
            model.objects.filter(property_id=property_id, day__gte=start, day__lte=end).delete()
        SurveyScoreDaily.objects.bulk_create(score_rows, batch_size=2000)
        SurveySeenDaily.objects.bulk_create(seen_rows, batch_size=2000)
    return len(score_rows) + len(seen_rows)


def rollup_surveys(*, property_id: int, full: bool = False) -> state.RollupResult:
    """Fold new answers (and adjustments logged before them) into the survey rollup."""
    started = time.monotonic()
    now = timezone.now()
    result = state.RollupResult(RollupKind.SURVEYS, property_id)
    result.cursor = state.cursor_for({"response": SurveyResponse, "adjustment": Adjustment})
    previous = state.state_get(property_id, RollupKind.SURVEYS)
    if full or previous is None:
        first = state.first_at(SurveyResponse, property_id, "submitted_at")
        start = first.date() if first else now.date()
        with transaction.atomic():
            for model in (SurveyScoreDaily, SurveySeenDaily):
                model.objects.filter(property_id=property_id, day__lt=start).delete()
    else:
        floor = state.late_cutoff(now)
        found = [
            state.earliest_new(
                SurveyResponse,
                property_id,
                "submitted_at",
                previous.cursor.get("response", 0),
                result.cursor["response"],
                floor,
                previous.watermark,
                previous.cursor.get("response_gaps", ()),
            ),
            state.earliest_new(
                Adjustment,
                property_id,
                "created_at",
                previous.cursor.get("adjustment", 0),
                result.cursor["adjustment"],
                floor,
                previous.watermark,
                previous.cursor.get("adjustment_gaps", ()),
            ),
        ]
        earliest = min((f for f in found if f is not None), default=None)
        if earliest is None:
            result.skipped = True
            state.state_save(result, now, started)
            return result
        start = earliest.date()
    result.start, result.end = midnight(start), midnight(now.date())
    result.rows = surveys_compute(property_id, start, now.date())
    state.state_save(result, now, started)
    return result
