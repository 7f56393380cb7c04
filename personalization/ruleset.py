"""Compiled rule sets: built once per configuration change, cached per process.

Every change to a property's slots, variants, segments or rules bumps the property's
``config_version`` (in the database, and in the shared cache when Redis is configured);
a process compiles a property's rules again when it sees a newer version.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from . import bucketing
from .cache import local_cache_register
from .conditions import (
    CompiledCondition,
    PartialCondition,
    compile_condition,
    compile_partial,
    condition_paths,
    namespace_keys,
    prepare_saved_groups,
    validate_condition,
)
from .config_version import config_version
from .learning import scoring
from .learning.clustering import memberships
from .learning.scoring import CompiledModel, compiled_models, guard, referenced
from .models import (
    Experiment,
    ExperimentStatus,
    Rollout,
    RolloutStatus,
    Rule,
    RuleFires,
    RuleStatus,
    Segment,
    SegmentMember,
    Slot,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantSpec:
    key: str
    content: dict
    strategy: str
    limit: int


@dataclass(frozen=True)
class CompiledSlot:
    key: str
    default: str
    variants: dict[str, VariantSpec]
    # A propensity model key: serve its best variant when nothing else applies.
    model: str = ""
    # OFREP's typed value: the content key served as the flag's value ("": the whole object).
    flag_value_field: str = ""


@dataclass(frozen=True)
class CompiledRule:
    id: int
    key: str
    version: int
    slot: str
    variant: str
    priority: int
    condition: CompiledCondition
    cooldown_s: int
    cap_session: int | None
    cap_day: int | None
    cap_week: int | None
    stickiness_override: bool
    starts_at: datetime | None
    ends_at: datetime | None
    metric_slots: tuple[str, ...]
    min_sample: int
    require_interval: bool
    # A live rule (its condition reads page.*): the condition compiled for partial evaluation
    # (what the server knows reduces it; the page.* part is left for the page). None else.
    partial: PartialCondition | None = None
    # When it may apply: at page load, in the page, or both (``RuleFires``).
    fires: str = RuleFires.ANY.value

    def live_at(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at
        )


@dataclass(frozen=True)
class CompiledExperiment:
    id: int
    key: str
    slot: str
    variants: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    condition: CompiledCondition
    namespace: tuple[str, float, float] | None
    seed: str
    hash_version: int
    priority: int

    def assign(self, visitor_id: str) -> str | None:
        """The visitor's variant, or None when outside the namespace or the coverage."""
        if self.namespace is not None and not bucketing.in_namespace(visitor_id, self.namespace):
            return None
        n = bucketing.hash(self.seed, visitor_id, self.hash_version)
        if n is None:
            return None
        index = bucketing.choose_variation(n, self.ranges)
        return self.variants[index] if index >= 0 else None


@dataclass(frozen=True)
class CompiledRollout:
    id: int
    key: str
    slot: str
    variant: str
    base_percent: float
    steps: tuple[tuple[datetime, float], ...]
    priority: int

    def percent_at(self, now: datetime) -> float:
        percent = self.base_percent
        for at, step in self.steps:
            if at <= now:
                percent = step
        return percent

    def serves(self, visitor_id: str, now: datetime) -> bool:
        n = bucketing.hash(f"rollout-{self.key}", visitor_id, 2)
        return n is not None and n < self.percent_at(now) / 100


@dataclass(frozen=True)
class RuleSet:
    property_id: int
    version: int
    slots: dict[str, CompiledSlot]
    rules_by_slot: dict[str, list[CompiledRule]]
    segments: list[tuple[str, CompiledCondition]]
    saved_groups: dict[str, Any]
    broken: dict[str, list[str]] = field(default_factory=dict)
    experiments_by_slot: dict[str, list[CompiledExperiment]] = field(default_factory=dict)
    rollouts_by_slot: dict[str, list[CompiledRollout]] = field(default_factory=dict)
    # The promoted version of every model the conditions or slots read (model.<key>).
    models: dict[str, CompiledModel] = field(default_factory=dict)

    def model_scores(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The scores of the models the rule set reads (``model.<key>.…``), for the attribute
        catalogue's model provider (which so needs nothing of the learning code)."""
        return scoring.scores(self.models, attributes)

    @property
    def metric_slots(self) -> set[str]:
        return {s for rules in self.rules_by_slot.values() for r in rules for s in r.metric_slots}


def _compile_segments(
    segments: list[Segment], lists: dict[str, list[str]], saved_groups: dict[str, Any]
) -> list[tuple[str, CompiledCondition]]:
    """Each segment's membership test: its cluster, its condition, or its saved list."""
    compiled_segments = []
    nearest = memberships(segments)
    for segment in segments:
        if segment.cluster_id is not None:
            if segment.cluster_id in nearest:
                compiled_segments.append((segment.key, nearest[segment.cluster_id]))
        elif segment.condition and not validate_condition(
            segment.condition, known_groups=saved_groups.keys()
        ):
            compiled_segments.append((segment.key, compile_condition(guard(segment.condition))))
        elif lists[segment.key]:
            compiled_segments.append(
                (segment.key, compile_condition({"id": {"$inGroup": segment.key}}))
            )
    return compiled_segments


def _compile_experiments(
    property_id: int,
    saved_groups: dict[str, Any],
    broken: dict[str, list[str]],
    model_keys: set[str],
) -> dict[str, list[CompiledExperiment]]:
    """Running experiments by slot (a broken one is skipped and listed in ``broken``; the
    models their conditions read are added to ``model_keys``)."""
    experiments: dict[str, list[CompiledExperiment]] = {}
    for exp in Experiment.objects.filter(
        property_id=property_id, status=ExperimentStatus.RUNNING
    ).select_related("slot"):
        model_keys |= referenced(exp.condition)
        problems = validate_condition(exp.condition or {}, known_groups=saved_groups.keys())
        if problems:
            logger.warning("experiment %s skipped: %s", exp.key, "; ".join(problems))
            broken[f"experiment:{exp.key}"] = problems
            continue
        weights = [float(v["weight"]) for v in exp.variants]
        ranges = bucketing.get_bucket_ranges(len(weights), exp.coverage, weights)
        experiments.setdefault(exp.slot.key, []).append(
            CompiledExperiment(
                id=exp.pk,
                key=exp.key,
                slot=exp.slot.key,
                variants=tuple(str(v["variant"]) for v in exp.variants),
                ranges=tuple((float(a), float(b)) for a, b in ranges),
                condition=compile_condition(guard(exp.condition or {})),
                namespace=(
                    (str(exp.namespace[0]), float(exp.namespace[1]), float(exp.namespace[2]))
                    if exp.namespace
                    else None
                ),
                seed=exp.seed,
                hash_version=exp.hash_version,
                priority=exp.priority,
            )
        )
    return experiments


def _compile_rollouts(property_id: int) -> dict[str, list[CompiledRollout]]:
    """Active rollouts by slot, their ramp schedules parsed."""
    rollouts: dict[str, list[CompiledRollout]] = {}
    for rollout in Rollout.objects.filter(
        property_id=property_id, status=RolloutStatus.ACTIVE
    ).select_related("slot"):
        steps = []
        for step in rollout.schedule or []:
            at = parse_datetime(str(step.get("at")))
            if at is not None:
                steps.append((at, float(step.get("percent", 0))))
        rollouts.setdefault(rollout.slot.key, []).append(
            CompiledRollout(
                id=rollout.pk,
                key=rollout.key,
                slot=rollout.slot.key,
                variant=rollout.variant,
                base_percent=rollout.percent,
                steps=tuple(sorted(steps)),
                priority=rollout.priority,
            )
        )
    return rollouts


def compile_ruleset(property_id: int, version: int) -> RuleSet:
    slots: dict[str, CompiledSlot] = {}
    for slot in (
        Slot.objects.filter(property_id=property_id)
        .select_related("serve_model")
        .prefetch_related("variants")
    ):
        variants = {
            v.key: VariantSpec(v.key, v.content, v.strategy, v.strategy_limit)
            for v in slot.variants.all()
        }
        if slot.default_variant not in variants:
            variants[slot.default_variant] = VariantSpec(slot.default_variant, {}, "", 0)
        model_key = slot.serve_model.key if slot.serve_model else ""
        slots[slot.key] = CompiledSlot(
            slot.key, slot.default_variant, variants, model_key, slot.flag_value_field
        )
    segments = list(Segment.objects.filter(property_id=property_id))
    lists: dict[str, list[str]] = {s.key: [] for s in segments}
    for key, visitor in SegmentMember.objects.filter(property_id=property_id).values_list(
        "segment__key", "visitor_id"
    ):
        lists[key].append(visitor)
    saved_groups = prepare_saved_groups(lists)
    rules_by_slot: dict[str, list[CompiledRule]] = {key: [] for key in slots}
    broken: dict[str, list[str]] = {}
    rules = Rule.objects.filter(property_id=property_id, status=RuleStatus.ACTIVE).select_related(
        "slot", "variant"
    )
    for rule in rules:
        problems = validate_condition(rule.condition, known_groups=saved_groups.keys())
        if problems:
            # A rule saved before validation existed, or broken since: skip it, serve the rest.
            logger.warning("rule %s skipped: %s", rule.key, "; ".join(problems))
            broken[rule.key] = problems
            continue
        reads_page = any(p.split(".", 1)[0] == "page" for p in condition_paths(rule.condition))
        compiled = CompiledRule(
            id=rule.pk,
            key=rule.key,
            version=rule.version,
            slot=rule.slot.key,
            variant=rule.variant.key,
            priority=rule.priority,
            condition=compile_condition(guard(rule.condition)),
            cooldown_s=rule.cooldown_seconds,
            cap_session=rule.cap_per_session,
            cap_day=rule.cap_per_day,
            cap_week=rule.cap_per_week,
            stickiness_override=rule.stickiness_override,
            starts_at=rule.starts_at,
            ends_at=rule.ends_at,
            metric_slots=tuple(sorted(namespace_keys(rule.condition, "slot"))),
            min_sample=rule.min_sample,
            require_interval=rule.require_interval,
            partial=compile_partial(guard(rule.condition)) if reads_page else None,
            fires=str(rule.fires),
        )
        rules_by_slot.setdefault(compiled.slot, []).append(compiled)
    for slot_rules in rules_by_slot.values():
        # Highest priority first; the key breaks ties so the order is deterministic.
        slot_rules.sort(key=lambda r: (-r.priority, r.key))
    compiled_segments = _compile_segments(segments, lists, saved_groups)
    model_keys: set[str] = set()  # the models any condition or slot reads
    experiments = _compile_experiments(property_id, saved_groups, broken, model_keys)
    rollouts = _compile_rollouts(property_id)
    for group in (experiments, rollouts):
        for items in group.values():
            items.sort(key=lambda x: (-x.priority, x.key))
    model_keys |= {s.model for s in slots.values() if s.model}
    for condition in [r.condition for r in rules] + [s.condition for s in segments]:
        model_keys |= referenced(condition)
    return RuleSet(
        property_id=property_id,
        version=version,
        slots=slots,
        rules_by_slot=rules_by_slot,
        segments=compiled_segments,
        saved_groups=saved_groups,
        broken=broken,
        experiments_by_slot=experiments,
        rollouts_by_slot=rollouts,
        models=compiled_models(property_id, model_keys),
    )


_compiled: dict[int, RuleSet] = {}
_lock = threading.Lock()
local_cache_register("ruleset.compiled", _compiled.clear)


def ruleset_for(property_id: int) -> RuleSet:
    version = config_version(property_id)
    ruleset = _compiled.get(property_id)
    if ruleset is None or ruleset.version != version:
        ruleset = compile_ruleset(property_id, version)
        with _lock:
            _compiled[property_id] = ruleset
    return ruleset
