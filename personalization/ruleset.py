"""Compiled rule sets: built once per configuration change, cached per process.

Every change to a property's slots, variants, segments or rules bumps the property's
``config_version`` (in the database, and in the shared cache when Redis is configured);
a process compiles a property's rules again when it sees a newer version.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models import F

from . import bucketing
from .conditions import (
    CompiledCondition,
    compile_condition,
    prepare_saved_groups,
    validate_condition,
)
from .learning.clustering import memberships
from .learning.scoring import CompiledModel, compiled_models, guard, referenced
from .models import (
    Experiment,
    ExperimentStatus,
    Goal,
    Property,
    Rollout,
    RolloutStatus,
    Rule,
    RuleStatus,
    Segment,
    SegmentMember,
    Slot,
    Variant,
)

logger = logging.getLogger(__name__)

VERSION_CACHE_SECONDS = 3600


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

    @property
    def metric_slots(self) -> set[str]:
        return {s for rules in self.rules_by_slot.values() for r in rules for s in r.metric_slots}


def _metric_slots(condition: Any) -> tuple[str, ...]:
    """Slots whose live metrics a condition reads (``slot.<key>.ctr`` …)."""
    found: set[str] = set()
    stack = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.startswith("slot."):
                    parts = key.split(".")
                    if len(parts) >= 2:
                        found.add(parts[1])
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return tuple(sorted(found))


def _version_key(property_id: int) -> str:
    return f"config-version:{property_id}"


# A process asks the shared cache for a property's version at most twice a second (a cache
# round trip saved on nearly every decision): a change reaches the other processes within
# VERSION_MEMO_SECONDS (well inside the promised second), this one at once.
VERSION_MEMO_SECONDS = 0.5
_versions: dict[int, tuple[float, int]] = {}


def _cache_shared() -> bool:
    return not isinstance(caches[DEFAULT_CACHE_ALIAS], LocMemCache)


def config_version(property_id: int) -> int:
    memo = _versions.get(property_id)
    now = time.monotonic()
    if memo is not None and memo[0] > now:
        return memo[1]
    # A per-process cache (no REDIS_URL) is not shared: another process's bump never
    # reaches it, so the database is the shared truth there.
    version = cache.get(_version_key(property_id)) if _cache_shared() else None
    if version is None:
        version = (
            Property.objects.filter(pk=property_id).values_list("config_version", flat=True).first()
        ) or 0
        if _cache_shared():
            # add, not set: a bump committed and published since our read must win over
            # the older version read here.
            cache.add(_version_key(property_id), version, VERSION_CACHE_SECONDS)
    _versions[property_id] = (now + VERSION_MEMO_SECONDS, int(version))
    return int(version)


def config_bump(property_id: int) -> None:
    """Invalidate every process's compiled rules of a property."""
    Property.objects.filter(pk=property_id).update(config_version=F("config_version") + 1)
    _versions.pop(property_id, None)

    def publish() -> None:
        _versions.pop(property_id, None)
        version = (
            Property.objects.filter(pk=property_id).values_list("config_version", flat=True).first()
        )
        cache.set(_version_key(property_id), version, VERSION_CACHE_SECONDS)

    # Until commit, other processes must keep reading the committed (old) version from the
    # database; after commit everyone learns the new one from the cache.
    cache.delete(_version_key(property_id))
    transaction.on_commit(publish)


def on_config_saved(sender: type, instance: Any, **kwargs: Any) -> None:
    """A saved or deleted configuration row (post_save/post_delete): bump its property.

    A module-level function on purpose: Django holds signal receivers by weak reference,
    and a function local to ``AppConfig.ready()`` dies when ``ready()`` returns.
    """
    property_id = getattr(instance, "property_id", None)
    if property_id is None and isinstance(instance, Variant):
        property_id = (
            Slot.objects.filter(pk=instance.slot_id).values_list("property_id", flat=True).first()
        )
    if property_id is not None:
        config_bump(property_id)


def on_config_bulk_changed(sender: type, property_ids: set[int], **kwargs: Any) -> None:
    """A bulk write to configuration (``models.config.config_changed``)."""
    for property_id in sorted(property_ids):
        config_bump(property_id)


CONFIG_MODELS = (Slot, Variant, Segment, SegmentMember, Rule, Experiment, Rollout, Goal)


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
            metric_slots=_metric_slots(rule.condition),
            min_sample=rule.min_sample,
            require_interval=rule.require_interval,
        )
        rules_by_slot.setdefault(compiled.slot, []).append(compiled)
    for slot_rules in rules_by_slot.values():
        # Highest priority first; the key breaks ties so the order is deterministic.
        slot_rules.sort(key=lambda r: (-r.priority, r.key))
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
    model_keys: set[str] = set()  # the models any condition or slot reads
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
    rollouts: dict[str, list[CompiledRollout]] = {}
    for rollout in Rollout.objects.filter(
        property_id=property_id, status=RolloutStatus.ACTIVE
    ).select_related("slot"):
        from django.utils.dateparse import parse_datetime

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


def ruleset_for(property_id: int) -> RuleSet:
    version = config_version(property_id)
    ruleset = _compiled.get(property_id)
    if ruleset is None or ruleset.version != version:
        ruleset = compile_ruleset(property_id, version)
        with _lock:
            _compiled[property_id] = ruleset
    return ruleset
