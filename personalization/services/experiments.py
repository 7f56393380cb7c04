"""Experiments and rollouts: validate, save, start, stop, promote, kill; compute results.

Results count, per variant, the visitors exposed (their first logged answer in the
experiment's current phase) and each goal's value per visitor within the goal's
attribution window after that first exposure. A change that would bias a running
experiment starts a new phase (``experiment_save``), confirmed by staff. On PostgreSQL
the summaries are one aggregate query per goal; elsewhere (the SQLite laptop default)
the same numbers are computed in Python, and tests check the two agree.
"""

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from .. import stats
from ..attributes import condition_problems
from ..exceptions import ApplicationError
from ..hotstate import decision_log_flush
from ..models import (
    Adjustment,
    Event,
    Experiment,
    ExperimentSnapshot,
    ExperimentStatus,
    Goal,
    GoalKind,
    GoalMetric,
    GoalRole,
    History,
    Rollout,
    RolloutStatus,
    Rule,
    RuleStatus,
    Session,
    Variant,
)
from .audit import AuditAction, audit_action
from .rules import rule_save

RETURN_GAP = timedelta(minutes=30)


def _variants_problem(variants: Any, slot_id: int | None) -> str | None:
    """What is wrong with an experiment's variant rows, if anything."""
    if not isinstance(variants, list) or len(variants) < 2:
        return "An experiment has a control and at least one treatment."
    keys, weights = [], []
    for i, v in enumerate(variants):
        if not isinstance(v, dict) or "variant" not in v or "weight" not in v:
            return f'Item {i} must be {{"variant": …, "weight": …}}.'
        try:
            weight = float(v["weight"])
        except (TypeError, ValueError):
            return f"Item {i}: the weight must be a number."
        if not 0 <= weight <= 1:
            return f"Item {i}: weights lie between 0 and 1."
        keys.append(str(v["variant"]))
        weights.append(weight)
    total = sum(weights)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        return (
            f"The weights must sum to 1, or 100% (they sum to {total:g}, "
            f"{round(total * 100, 4):g}%)."
        )
    if len(set(keys)) != len(keys):
        return "Each variant appears once."
    if slot_id is not None:
        known = set(Variant.objects.filter(slot_id=slot_id).values_list("key", flat=True))
        missing = [k for k in keys if k not in known]
        if missing:
            return f"The slot has no variant {', '.join(missing)}."
    return None


def _namespace_problem(namespace: Any) -> str | None:
    if not namespace:
        return None
    ok = (
        isinstance(namespace, list)
        and len(namespace) == 3
        and isinstance(namespace[0], str)
        and all(isinstance(x, int | float) for x in namespace[1:])
    )
    if not ok:
        return 'A namespace is ["name", start, end].'
    if not (0 <= namespace[1] < namespace[2] <= 1):
        return "The namespace range must lie within [0, 1], start < end."
    return None


def experiment_problems(
    *,
    slot_id: int | None,
    variants: Any,
    coverage: float,
    namespace: Any,
    condition: Any,
    confidence: float,
) -> dict[str, str]:
    """What is wrong with an experiment's settings, by field (empty when it can run)."""
    problems = {
        "variants": _variants_problem(variants, slot_id),
        "coverage": None if 0 < coverage <= 1 else "Coverage lies in (0, 1].",
        "namespace": _namespace_problem(namespace),
        "condition": "; ".join(condition_problems(condition)) if condition else None,
        "confidence": (
            None
            if 0.5 < confidence < 1
            else "The confidence level lies between 0.5 and 1 (e.g. 0.95)."
        ),
    }
    return {field: problem for field, problem in problems.items() if problem}


# What a running experiment cannot change without a new phase: each would bias the
# comparison between visitors bucketed before and after it.
PHASE_FIELDS = {
    "slot": "slot",
    "variants": "variants or weights",
    "coverage": "coverage",
    "condition": "condition",
    "namespace": "namespace",
    "seed": "hash seed (or the key it defaults to)",
    "hash_version": "hash version",
}


def _rounded(value: Any) -> Any:
    """A number compared as a number (0.5 == 0.50000000001 == 1/2), anything else as is."""
    try:
        return round(float(value), 9)
    except (TypeError, ValueError):
        return value


def _phase_view(experiment: Experiment) -> dict[str, Any]:
    """The settings that decide who is bucketed into which variant, in comparable form."""
    variants = experiment.variants if isinstance(experiment.variants, list) else []
    namespace = experiment.namespace or None
    if isinstance(namespace, list) and len(namespace) == 3:
        namespace = [str(namespace[0]), _rounded(namespace[1]), _rounded(namespace[2])]
    return {
        "slot": experiment.slot_id,
        "variants": [
            {"variant": str(v.get("variant")), "weight": _rounded(v.get("weight"))}
            if isinstance(v, dict)
            else v
            for v in variants
        ],
        "coverage": _rounded(experiment.coverage),
        "condition": experiment.condition or {},
        "namespace": namespace,
        "seed": experiment.seed,
        "hash_version": experiment.hash_version,
    }


def experiment_phase_changes(before: Experiment, after: Experiment) -> dict[str, dict]:
    """The changes from ``before`` to ``after`` that would bias ``before`` if it is running:
    field → {"before", "after"} (empty when it is not running or nothing such changed)."""
    if before.status != ExperimentStatus.RUNNING:
        return {}
    old, new = _phase_view(before), _phase_view(after)
    return {
        name: {"before": old[name], "after": new[name]}
        for name in PHASE_FIELDS
        if old[name] != new[name]
    }


def phase_changes_message(experiment: Experiment, changes: dict[str, dict]) -> str:
    """Why a change to a running experiment needs a new phase, in words staff read."""
    what = ", ".join(PHASE_FIELDS[name] for name in changes)
    return (
        f"{experiment.key} is running (phase {experiment.phase}): changing its {what} would "
        "bias its results. Confirm that this starts a new phase (phase "
        f"{experiment.phase + 1}: results then count only visitors exposed from now on), "
        "or undo the change."
    )


@transaction.atomic
def experiment_save(
    *, experiment: Experiment, user: Any = None, new_phase: bool = False
) -> Experiment:
    """Save an experiment staff edited. A change that would bias it while it runs is
    refused unless ``new_phase`` confirms it; then the experiment enters its next phase
    (results count exposures from now on) and the history records the change, before and
    after."""
    before = None
    if experiment.pk is not None:
        before = Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
    changes = experiment_phase_changes(before, experiment) if before is not None else {}
    if changes and not new_phase:
        raise ApplicationError(
            "new_phase_required",
            phase_changes_message(before, changes),  # type: ignore[arg-type]
            details={"fields": list(changes)},
        )
    if changes:
        assert before is not None
        experiment.phase = before.phase + 1
        experiment.phase_started_at = timezone.now()
    experiment.save()
    if changes:
        _history(
            action="new_phase",
            user=user,
            experiment=experiment,
            evidence={
                "phase": experiment.phase,
                "started_at": experiment.phase_started_at.isoformat(),  # type: ignore[union-attr]
                "changes": changes,
            },
        )
        audit_action(
            AuditAction.EXPERIMENT_NEW_PHASE,
            experiment,
            property_id=experiment.property_id,
            user=user,
            details={"phase": experiment.phase, "fields": sorted(changes)},
        )
    return experiment


def _history(*, action: str, user: Any = None, evidence: dict | None = None, **target: Any) -> None:
    History.objects.create(
        action=action,
        actor=user if getattr(user, "pk", None) else None,
        evidence=evidence or {},
        **target,
    )


@transaction.atomic
def experiment_start(*, experiment: Experiment, user: Any = None) -> Experiment:
    problems = experiment_problems(
        slot_id=experiment.slot_id,
        variants=experiment.variants,
        coverage=experiment.coverage,
        namespace=experiment.namespace,
        condition=experiment.condition,
        confidence=experiment.confidence,
    )
    if not experiment.goal_links.filter(role=GoalRole.PRIMARY).exists():
        problems["goals"] = "Choose a primary goal."
    if problems:
        raise ApplicationError("invalid_experiment", "; ".join(problems.values()), details=problems)
    experiment.status = ExperimentStatus.RUNNING
    experiment.started_at = experiment.started_at or timezone.now()
    experiment.save()
    _history(action="started", user=user, experiment=experiment)
    audit_action(
        AuditAction.EXPERIMENT_STARTED, experiment, property_id=experiment.property_id, user=user
    )
    return experiment


@transaction.atomic
def experiment_stop(*, experiment: Experiment, user: Any = None) -> Experiment:
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = timezone.now()
    experiment.save()
    _history(action="stopped", user=user, experiment=experiment)
    audit_action(
        AuditAction.EXPERIMENT_STOPPED, experiment, property_id=experiment.property_id, user=user
    )
    return experiment


@transaction.atomic
def experiment_promote(
    *, experiment: Experiment, variant: str, to: str = "rule", user: Any = None
) -> Experiment:
    """Make a stopped experiment's winner permanent: as a rule, or as the slot's default."""
    if experiment.status != ExperimentStatus.STOPPED:
        raise ApplicationError("not_stopped", "Stop the experiment before promoting a winner.")
    if variant not in [str(v["variant"]) for v in experiment.variants]:
        raise ApplicationError("unknown_variant", f"{variant!r} is not a variant of this test.")
    if to == "default":
        experiment.slot.default_variant = variant
        experiment.slot.save()
        evidence = {"slot_default": variant}
    else:
        rule = rule_save(
            rule=Rule(
                property=experiment.property,
                key=f"{experiment.key}-winner"[:64],
                name=f"Winner of {experiment.key}",
                slot=experiment.slot,
                variant=Variant.objects.get(slot=experiment.slot, key=variant),
                condition=experiment.condition or {},
                priority=experiment.priority,
                status=RuleStatus.ACTIVE,
            ),
            user=user,
            note=f"promoted from experiment {experiment.key}",
        )
        evidence = {"rule": rule.key}
    experiment.winner = variant
    experiment.save()
    _history(
        action=f"promoted to {to}",
        user=user,
        experiment=experiment,
        evidence={"variant": variant, **evidence},
    )
    audit_action(
        AuditAction.EXPERIMENT_PROMOTED_TO_DEFAULT
        if to == "default"
        else AuditAction.EXPERIMENT_PROMOTED_TO_RULE,
        experiment,
        property_id=experiment.property_id,
        user=user,
        details={"variant": variant, **evidence},
    )
    return experiment


# --- summaries -------------------------------------------------------------------------


@dataclass
class Exposure:
    variant: str
    first_at: datetime
    session_id: str


def _exposures(experiment: Experiment, until: datetime) -> dict[str, Exposure]:
    """Each visitor's first exposure in the experiment's current phase."""
    decision_log_flush()  # exposures acknowledged from Redis count too
    out: dict[str, Exposure] = {}
    logged = Adjustment.objects.filter(
        property_id=experiment.property_id,
        source_kind="experiment",
        source_key=experiment.key,
        created_at__lte=until,
    )
    if experiment.phase_started_at is not None:
        logged = logged.filter(created_at__gte=experiment.phase_started_at)
    rows = logged.order_by("visitor_id", "created_at").values_list(
        "visitor_id", "variant_key", "created_at", "session_id"
    )
    for visitor, variant, at, session in rows.iterator(chunk_size=10_000):
        out.setdefault(visitor, Exposure(variant, at, session))
    return out


def _number(value: Any) -> float:
    """A revenue as stored: numbers count, anything else (a custom type's string) is 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _value_python(goal: Goal, exposure: Exposure, events: list[tuple], sessions: list) -> float:
    start, end = exposure.first_at, exposure.first_at + timedelta(hours=goal.window_hours)
    return _measure(goal, exposure, events, sessions, start, end)


def _pre_value_python(goal: Goal, exposure: Exposure, events: list[tuple]) -> float:
    """The goal's value in the same window before the first exposure (CUPED's covariate)."""
    if goal.kind == GoalKind.RETENTION or goal.metric == GoalMetric.SESSION_DURATION:
        return 0.0
    end = exposure.first_at
    return _measure(goal, exposure, events, [], end - timedelta(hours=goal.window_hours), end)


def _measure(
    goal: Goal,
    exposure: Exposure,
    events: list[tuple],
    sessions: list,
    start: datetime,
    end: datetime,
) -> float:
    if goal.kind == GoalKind.RETENTION:
        late = exposure.first_at + RETURN_GAP
        back = exposure.first_at + timedelta(days=goal.retention_days)
        return float(
            any(late < ts <= back and sid != exposure.session_id for _, ts, sid, _ in events)
        )
    if goal.metric == GoalMetric.SESSION_DURATION:
        total = 0.0
        for started, last in sessions:
            if last > start and started < end:
                total += (last - max(started, start)).total_seconds()
        return total
    matching = [
        props
        for kind, ts, _, props in events
        if kind == goal.event_type
        and start <= ts < end
        and (not goal.element_id or props.get("element_id") == goal.element_id)
    ]
    if goal.metric == GoalMetric.REVENUE:
        return float(sum(_number(p.get("revenue")) for p in matching))
    if goal.kind == GoalKind.BINARY:
        return float(bool(matching))
    return float(len(matching))


Sums = tuple[int, float, float, float, float, float]


def summaries_python(experiment: Experiment, goal: Goal, until: datetime) -> dict[str, Sums]:
    """Per variant: users, the sum and sum of squares of the goal's value per exposed
    visitor (y), and of its pre-exposure value (x, for CUPED) with the sum of x·y."""
    exposures = _exposures(experiment, until)
    events: dict[str, list[tuple]] = defaultdict(list)
    for row in Event.objects.filter(
        property_id=experiment.property_id, visitor_id__in=list(exposures)
    ).values_list("visitor_id", "type", "timestamp", "session_id", "properties"):
        events[row[0]].append(row[1:])
    sessions: dict[str, list] = defaultdict(list)
    if goal.metric == GoalMetric.SESSION_DURATION:
        for vid, started, last in Session.objects.filter(
            property_id=experiment.property_id, visitor__visitor_id__in=list(exposures)
        ).values_list("visitor__visitor_id", "started_at", "last_event_at"):
            sessions[vid].append((started, last))
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for vid, exposure in exposures.items():
        y = _value_python(goal, exposure, events[vid], sessions[vid])
        x = _pre_value_python(goal, exposure, events[vid])
        acc = out[exposure.variant]
        for i, term in enumerate((1, y, y * y, x, x * x, x * y)):
            acc[i] += term
    return {k: (int(v[0]), v[1], v[2], v[3], v[4], v[5]) for k, v in out.items()}


def summaries_sql(experiment: Experiment, goal: Goal, until: datetime) -> dict[str, Sums]:
    """The same as :func:`summaries_python`, in one PostgreSQL aggregate query."""
    decision_log_flush()  # exposures acknowledged from Redis count too
    params: dict[str, Any] = {
        "p": experiment.property_id,
        "key": experiment.key,
        "until": until,
        "window": goal.window_hours * 3600,
        "type": goal.event_type,
        "element": goal.element_id,
        "gap": RETURN_GAP.total_seconds(),
        "back": goal.retention_days * 86400,
        "since": experiment.phase_started_at,
    }
    # The current phase only (phase 1, with no start recorded: every exposure).
    phase = "AND created_at >= %(since)s" if experiment.phase_started_at is not None else ""
    exposures = f"""
        WITH ex AS (
            SELECT DISTINCT ON (visitor_id) visitor_id, variant_key AS variant,
                   created_at AS first_at, session_id
            FROM personalization_adjustment
            WHERE property_id = %(p)s AND source_kind = 'experiment' AND source_key = %(key)s
              AND created_at <= %(until)s {phase}
            ORDER BY visitor_id, created_at
        )"""
    element = "AND ev.properties->>'element_id' = %(element)s" if goal.element_id else ""
    if goal.kind == GoalKind.RETENTION:
        value = """(EXISTS (SELECT 1 FROM personalization_event ev
                    WHERE ev.property_id = %(p)s AND ev.visitor_id = ex.visitor_id
                      AND ev.session_id <> ex.session_id
                      AND ev.timestamp > ex.first_at + %(gap)s * interval '1 second'
                      AND ev.timestamp <= ex.first_at + %(back)s * interval '1 second'))::int"""
        per_visitor = f"SELECT ex.variant, {value}::float8 AS v, 0::float8 AS x FROM ex"
    elif goal.metric == GoalMetric.SESSION_DURATION:
        per_visitor = """
            SELECT ex.variant, COALESCE(SUM(EXTRACT(EPOCH FROM
                       s.last_event_at - GREATEST(s.started_at, ex.first_at))), 0)::float8 AS v,
                   0::float8 AS x
            FROM ex
            JOIN personalization_visitor vi
              ON vi.property_id = %(p)s AND vi.visitor_id = ex.visitor_id
            LEFT JOIN personalization_session s
              ON s.visitor_id = vi.id AND s.last_event_at > ex.first_at
             AND s.started_at < ex.first_at + %(window)s * interval '1 second'
            GROUP BY ex.visitor_id, ex.variant"""
    else:
        after = "ev.timestamp >= ex.first_at"
        before = "ev.timestamp < ex.first_at"

        def agg(when: str) -> str:
            if goal.metric == GoalMetric.REVENUE:
                # A custom type's schema may let revenue be anything: numbers only count.
                revenue = (
                    "CASE WHEN jsonb_typeof(ev.properties->'revenue') = 'number' "
                    "THEN (ev.properties->>'revenue')::float8 END"
                )
                return f"COALESCE(SUM({revenue}) FILTER (WHERE {when}), 0)"
            if goal.kind == GoalKind.BINARY:
                return f"(COUNT(ev.id) FILTER (WHERE {when}) > 0)::int"
            return f"COUNT(ev.id) FILTER (WHERE {when})"

        per_visitor = f"""
            SELECT ex.variant, ({agg(after)})::float8 AS v, ({agg(before)})::float8 AS x
            FROM ex
            LEFT JOIN personalization_event ev
              ON ev.property_id = %(p)s AND ev.visitor_id = ex.visitor_id
             AND ev.type = %(type)s {element}
             AND ev.timestamp >= ex.first_at - %(window)s * interval '1 second'
             AND ev.timestamp < ex.first_at + %(window)s * interval '1 second'
            GROUP BY ex.visitor_id, ex.variant"""
    sql = f"""{exposures}
        SELECT variant, COUNT(*), COALESCE(SUM(v), 0), COALESCE(SUM(v * v), 0),
               COALESCE(SUM(x), 0), COALESCE(SUM(x * x), 0), COALESCE(SUM(x * v), 0)
        FROM ({per_visitor}) per_visitor GROUP BY variant"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {
            row[0]: (int(row[1]), *(float(v) for v in row[2:7]))  # type: ignore[misc]
            for row in cursor.fetchall()
        }


def summaries(experiment: Experiment, goal: Goal, until: datetime) -> dict[str, Sums]:
    if connection.vendor == "postgresql":
        return summaries_sql(experiment, goal, until)
    return summaries_python(experiment, goal, until)


# --- results ---------------------------------------------------------------------------


def _variant_summary(
    kind: str, users: int, total: float, squares: float, *cov: float, cuped: bool = False
) -> stats.VariantSummary:
    covariate = None
    if cuped and cov:
        x, xx, xy = cov
        covariate = stats.Covariate(kind, x, x if kind == "binary" else xx, xy)  # type: ignore[arg-type]
    if kind == "continuous":
        return stats.VariantSummary.continuous(users, total, squares, covariate)
    return stats.VariantSummary.binary(users, int(round(total)), covariate)


def _lift(row: stats.VariantResult) -> dict | None:
    if row.lift is None:
        return None
    return {"relative": row.lift.relative, "ci_low": row.lift.ci_low, "ci_high": row.lift.ci_high}


def _recommendation(goals: list[dict], enough: bool) -> tuple[str, str]:
    """(ship | keep running | stop | inconclusive, the reason in words)."""
    if not enough:
        return "keep running", "Not enough data yet: some variant is below the minimum sample."
    for goal in goals:
        if goal["role"] == GoalRole.GUARDRAIL:
            worse = [v["variant"] for v in goal["variants"] if v.get("verdict") == "worse"]
            if worse:
                return "stop", f"{', '.join(worse)} degrades the guardrail {goal['key']}."
    primary = next((g for g in goals if g["role"] == GoalRole.PRIMARY), None)
    if primary:
        better = [v for v in primary["variants"] if v.get("verdict") == "better"]
        if better:
            best = max(better, key=lambda v: (v["lift"] or {}).get("relative", 0))
            return "ship", f"{best['variant']} beats the control on {primary['key']}."
        worse = [v["variant"] for v in primary["variants"] if v.get("verdict") == "worse"]
        if worse and len(worse) == len(primary["variants"]) - 1:
            return "stop", f"Every treatment does worse than the control on {primary['key']}."
        if experiment_planned_reached(primary):
            return "inconclusive", "No significant difference at the planned sample size."
    return "keep running", "No significant difference on the primary goal yet."


def experiment_planned_reached(goal: dict) -> bool:
    planned = goal.get("planned_users")
    return bool(planned) and all(v["users"] >= planned for v in goal["variants"])


def experiment_results_compute(experiment: Experiment, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    keys = [str(v["variant"]) for v in experiment.variants]
    weights = [float(v["weight"]) for v in experiment.variants]
    alpha = 1 - experiment.confidence
    links = list(experiment.goal_links.select_related("goal").order_by("role", "goal__key"))
    analyses, goal_rows = [], []
    users_per_variant = [0] * len(keys)
    for link in links:
        goal = link.goal
        kind = "continuous" if goal.kind == GoalKind.CONTINUOUS else "binary"
        sums = summaries(experiment, goal, now)
        rows = [sums.get(k, (0, 0.0, 0.0, 0.0, 0.0, 0.0)) for k in keys]
        users_per_variant = [r[0] for r in rows]
        if sum(users_per_variant) == 0:
            continue
        # CUPED when asked and a pre-exposure value exists for some visitors.
        cuped = experiment.cuped and any(r[3] > 0 for r in rows)
        analysis = stats.analyze_goal(
            [_variant_summary(kind, *r, cuped=cuped) for r in rows],
            cuped=cuped,
            method=experiment.method,  # type: ignore[arg-type]
            alpha=alpha,
            inverse=goal.inverse,
            min_users=experiment.min_users,
            correction=experiment.correction,  # type: ignore[arg-type]
        )
        analyses.append((link, goal, kind, analysis))
    phase = {
        "phase": experiment.phase,
        "phase_started_at": experiment.phase_started_at.isoformat()
        if experiment.phase_started_at
        else None,
    }
    if not analyses:
        return {
            "experiment": experiment.key,
            "snapshot_at": now.isoformat(),
            **phase,
            "method": experiment.method,
            "srm_p_value": None,
            "recommendation": "keep running",
            "recommendation_detail": "Not enough data yet: no visitor has been exposed"
            + (f" since phase {experiment.phase} began." if experiment.phase > 1 else "."),
            "warnings": [],
            "goals": [],
            "enough_data": False,
        }
    combined = stats.analyze_experiment(
        users_per_variant,
        weights,
        [a for *_, a in analyses],
        correction=experiment.correction,  # type: ignore[arg-type]
    )
    enough = all(g.minimum_sample_reached for g in combined.goals)
    for (link, goal, kind, _), analysis in zip(analyses, combined.goals, strict=True):
        variants = []
        for key, row in zip(keys, analysis.variants, strict=True):
            variants.append(
                {
                    "variant": key,
                    "users": row.users,
                    **(
                        {"conversions": row.conversions} if kind == "binary" else {"mean": row.mean}
                    ),
                    "rate": row.mean,
                    "lift": None if row.is_control else _lift(row),
                    "difference": None
                    if row.difference is None
                    else {
                        "absolute": row.difference.absolute,
                        "ci_low": row.difference.ci_low,
                        "ci_high": row.difference.ci_high,
                    },
                    **({"lift_reason": row.lift_reason} if row.lift_reason else {}),
                    "p_value": row.p_value,
                    "p_value_adjusted": row.p_value_adjusted,
                    "chance_to_win": row.chance_to_win,
                    "verdict": row.verdict,
                }
            )
        goal_rows.append(
            {
                "key": goal.key,
                "kind": goal.kind,
                "role": link.role,
                "cuped": analysis.cuped,
                "variants": variants,
            }
        )
    code, detail = _recommendation(goal_rows, enough)
    return {
        "experiment": experiment.key,
        "snapshot_at": now.isoformat(),
        **phase,
        "method": experiment.method,
        "srm_p_value": combined.srm.p_value,
        "srm_flagged": combined.srm.flagged,
        # Below p = 0.001 the assignment itself is suspect: a warning and no recommendation.
        "recommendation": None if combined.srm.flagged else code,
        "recommendation_detail": None if combined.srm.flagged else detail,
        "warnings": [
            "Sample ratio mismatch (p < 0.001): the split of visitors does not match the "
            "weights; find the cause before trusting these results."
        ]
        if combined.srm.flagged
        else [],
        "goals": goal_rows,
        "enough_data": enough,
    }


def experiment_snapshot(
    *, experiment: Experiment, now: datetime | None = None
) -> ExperimentSnapshot:
    now = now or timezone.now()
    results = experiment_results_compute(experiment, now)
    return ExperimentSnapshot.objects.create(
        experiment=experiment, computed_at=now, results=results
    )


def experiment_results(*, experiment: Experiment, at: datetime | None = None) -> dict:
    """The snapshot in force at ``at``; without ``at``, fresh results (and a new snapshot)."""
    if at is not None:
        snapshot = experiment.snapshots.filter(computed_at__lte=at).order_by("-computed_at").first()
        if snapshot is None:
            raise ApplicationError(
                "no_snapshot", f"No results had been computed by {at.isoformat()}.", status=404
            )
        return snapshot.results
    return experiment_snapshot(experiment=experiment).results


@transaction.atomic
def experiment_reallocate(*, experiment: Experiment, results: dict, seed: int = 0) -> list[float]:
    """Bandit: move traffic by Thompson sampling on the primary goal's conversions, each
    arm keeping its minimum share. Records the new weights in the history."""
    primary = next((g for g in results.get("goals", []) if g["role"] == GoalRole.PRIMARY), None)
    if primary is None or primary["kind"] != GoalKind.BINARY:
        return [float(v["weight"]) for v in experiment.variants]
    arms = [
        stats.VariantSummary.binary(int(v["users"]), int(v.get("conversions") or 0))
        for v in primary["variants"]
    ]
    allocation = stats.thompson_weights(arms, min_share=experiment.bandit_min_share, seed=seed)
    experiment.variants = [
        {**v, "weight": round(w, 6)}
        for v, w in zip(experiment.variants, allocation.weights, strict=True)
    ]
    total = sum(v["weight"] for v in experiment.variants)
    experiment.variants[0]["weight"] = round(experiment.variants[0]["weight"] + 1 - total, 6)
    experiment.save()  # bumps the configuration: every process buckets with the new weights
    _history(
        action="reallocated",
        experiment=experiment,
        evidence={
            "weights": [v["weight"] for v in experiment.variants],
            "probability_best": allocation.probability_best,
        },
    )
    audit_action(
        AuditAction.EXPERIMENT_REALLOCATED,
        experiment,
        property_id=experiment.property_id,
        details={"weights": [v["weight"] for v in experiment.variants]},
    )
    return [v["weight"] for v in experiment.variants]


# --- rollouts --------------------------------------------------------------------------


@transaction.atomic
def rollout_kill(*, rollout: Rollout, user: Any = None) -> Rollout:
    """Turn a rollout off for everyone; serving processes see it on their next decision."""
    rollout.status = RolloutStatus.KILLED
    rollout.save()  # post_save bumps the property's configuration version
    _history(action="killed", user=user, rollout=rollout)
    audit_action(AuditAction.ROLLOUT_KILLED, rollout, property_id=rollout.property_id, user=user)
    return rollout


def rollout_guardrail_check(*, rollout: Rollout, now: datetime | None = None) -> bool:
    """Halt the ramp when the guardrail goal is significantly worse for the rollout's
    visitors than for the others; record the evidence and mail the owner. True if halted."""
    if rollout.status != RolloutStatus.ACTIVE or rollout.guardrail is None:
        return False
    now = now or timezone.now()
    goal = rollout.guardrail
    served, others = _rollout_groups(rollout, goal, now)
    kind = "continuous" if goal.kind == GoalKind.CONTINUOUS else "binary"
    if min(served[0], others[0]) < 2:
        return False
    analysis = stats.analyze_goal(
        [_variant_summary(kind, *others), _variant_summary(kind, *served)],
        inverse=goal.inverse,
        min_users=1,
    )
    row = analysis.variants[1]
    if row.verdict != "worse":
        return False
    evidence = {
        "goal": goal.key,
        "served_users": served[0],
        "other_users": others[0],
        "served_mean": row.mean,
        "control_mean": analysis.variants[0].mean,
        "p_value": row.p_value,
        "lift": _lift(row),
    }
    with transaction.atomic():
        rollout.status = RolloutStatus.HALTED
        rollout.save()
        _history(action="halted by guardrail", rollout=rollout, evidence=evidence)
        audit_action(
            AuditAction.ROLLOUT_HALTED, rollout, property_id=rollout.property_id, details=evidence
        )
    if rollout.owner and rollout.owner.email:
        send_mail(
            f"Rollout {rollout.key} halted",
            f"The guardrail {goal.key} degraded significantly: {evidence}",
            None,
            [rollout.owner.email],
        )
    return True


def _rollout_groups(
    rollout: Rollout, goal: Goal, now: datetime
) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    """Visitors who got the rollout's answer against those who got another answer of the
    same slot, each with the guardrail's value after their first answer."""
    decision_log_flush()
    first: dict[str, tuple[bool, datetime, str]] = {}
    for vid, kind, key, at, sid in (
        Adjustment.objects.filter(
            property_id=rollout.property_id,
            slot_key=rollout.slot.key,
            created_at__gte=now - timedelta(days=30),
        )
        .order_by("created_at")
        .values_list("visitor_id", "source_kind", "source_key", "created_at", "session_id")
    ):
        first.setdefault(vid, (kind == "rollout" and key == rollout.key, at, sid))
    return goal_sums_split(rollout.property_id, goal, first)


def goal_sums_split(
    property_id: int,
    goal: Goal,
    first: dict[str, tuple[bool, datetime, str]],
    since: datetime | None = None,
) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    """(served, the others): users, sum and sum of squares of the goal's value after each
    visitor's first answer (``first``: visitor → (served?, when, session)). Events before
    ``since`` are not read (none can count when every first answer is later)."""
    events: dict[str, list[tuple]] = defaultdict(list)
    query = Event.objects.filter(property_id=property_id, visitor_id__in=list(first))
    if goal.kind != GoalKind.RETENTION:
        query = query.filter(type=goal.event_type)  # the only events the measure reads
    if since is not None:
        query = query.filter(timestamp__gte=since)
    for row in query.values_list("visitor_id", "type", "timestamp", "session_id", "properties"):
        events[row[0]].append(row[1:])
    groups = {True: [0, 0.0, 0.0], False: [0, 0.0, 0.0]}
    for vid, (served, at, sid) in first.items():
        value = _value_python(goal, Exposure("", at, sid), events[vid], [])
        acc = groups[served]
        acc[0] += 1
        acc[1] += value
        acc[2] += value * value
    s, o = groups[True], groups[False]
    return (int(s[0]), s[1], s[2]), (int(o[0]), o[1], o[2])
