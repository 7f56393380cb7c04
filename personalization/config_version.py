"""Each property's configuration version: what tells every process to recompile its rules.

Every change to what decisions read (slots, variants, segments and their members, rules,
experiments, rollouts, goals; a promoted model; adopted clusters) bumps the property's
``config_version`` in the database and publishes it in the shared cache. A process compares
its compiled rules' version with the shared one at most twice a second (``ruleset_for``), so
a change reaches every process's next decision within a second.

Below the rule set and the learning code, which both bump; imports only models.
"""

import time
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models import F

from .cache import local_cache_register
from .models import (
    Experiment,
    Goal,
    Property,
    Rollout,
    Rule,
    Segment,
    SegmentMember,
    Slot,
    Variant,
)

VERSION_CACHE_SECONDS = 3600


def _version_key(property_id: int) -> str:
    return f"config-version:{property_id}"


# A process asks the shared cache for a property's version at most twice a second (a cache
# round trip saved on nearly every decision): a change reaches the other processes within
# VERSION_MEMO_SECONDS (well inside the promised second), this one at once.
VERSION_MEMO_SECONDS = 0.5
_versions: dict[int, tuple[float, int]] = {}
local_cache_register("config_version.versions", _versions.clear)


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
