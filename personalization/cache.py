"""The shared cache on Redis, failing soft: while Redis is away, reads miss and fills are skipped.

Everything kept in the Django cache (API keys, consent policies, rule-set versions, live
content) is a copy of what the database holds, so a miss is always safe: the request reads
the database instead. Reads (``get``, ``get_many``, ``has_key``) and fills (``set``,
``set_many``, ``add``, ``touch``) therefore answer "miss" / "not stored" when Redis fails,
and the storefront keeps working (events accepted, keys checked) without Redis.

Invalidations are not safe to skip: a ``delete`` that did not happen could let a revoked key
or an erased visitor's entry come back with Redis. ``delete``, ``delete_many``, ``clear`` and
``incr`` still raise, so the staff action or the task that needed them fails (and a task
retries) instead of claiming success.

After a failure the cache is skipped for ``DOWN_SECONDS`` (no connection attempt per call
while Redis is away); then the next call tries again, so Redis returning is picked up by
the running processes without a restart.

Besides the shared cache, a few modules keep process-local memos (compiled rule sets,
configuration versions, API keys, consent policies, the hot state's back-off). Each
registers how to empty its memo here (``local_cache_register``); ``reset_all()`` empties the
shared cache and every one of them: the one reset, for tests and a shell, never a private
dict cleared by hand.

A ``redis+cluster://`` location is a Redis Cluster (personalization/redis_client.py): the
keys of one call may then lie in several hash slots, so the multi-key operations are split
by slot (``get_many``, ``set_many``, ``delete_many``) and ``clear`` empties every primary.
"""

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient, RedisSerializer
from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from .redis_client import connect, is_cluster

logger = logging.getLogger(__name__)

DOWN_SECONDS = 1.0

_local_resets: dict[str, Callable[[], None]] = {}


def local_cache_register(name: str, reset: Callable[[], None]) -> None:
    """Register how to empty a process-local cache (by name: registering again replaces)."""
    _local_resets[name] = reset


def reset_all() -> None:
    """Empty the shared cache (with Redis, FLUSHDB of its database: also the engine's hot
    state and pending decision log) and every registered process-local cache."""
    caches["default"].clear()
    for reset in _local_resets.values():
        reset()


class ClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client over one ``RedisCluster`` (it routes each key itself)."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **{k: v for k, v in options.items() if k != "parser_class"})
        self._url = servers[0]
        self._options = options
        self._codec = RedisSerializer()  # (the base class's, which its own methods use)
        self._cluster: RedisCluster | None = None

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        if self._cluster is None:
            cluster = connect(self._url, **self._options)
            assert isinstance(cluster, RedisCluster)
            self._cluster = cluster
        return self._cluster

    def get_many(self, keys: Any) -> dict[Any, Any]:
        keys = list(keys)
        values = self.get_client().mget_nonatomic(keys)
        found = zip(keys, values, strict=True)
        return {k: self._codec.loads(v) for k, v in found if v is not None}

    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        if timeout == 0:
            self.delete_many(list(data))
            return
        pipe = self.get_client().pipeline(transaction=False)
        for key, value in data.items():
            pipe.set(key, self._codec.dumps(value), ex=timeout)
        pipe.execute()

    def clear(self) -> bool:
        return bool(self.get_client().flushdb(target_nodes=RedisCluster.PRIMARIES))


class FailSoftRedisCache(RedisCache):
    _down_until = 0.0

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        if is_cluster(server):
            self._class = ClusterCacheClient

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        if self._available():
            logger.warning(
                "cache unavailable (%s: %s); reading the database instead", operation, exc
            )
        self._down_until = time.monotonic() + DOWN_SECONDS

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if not self._available():
            return default
        try:
            return super().get(key, default, version)
        except RedisError as exc:
            self._failed("get", exc)
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        if not self._available():
            return {}
        try:
            return super().get_many(keys, version)
        except RedisError as exc:
            self._failed("get_many", exc)
            return {}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        if not self._available():
            return False
        try:
            return super().has_key(key, version)
        except RedisError as exc:
            self._failed("has_key", exc)
            return False

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        if not self._available():
            return
        try:
            super().set(key, value, timeout, version)
        except RedisError as exc:
            self._failed("set", exc)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        if not self._available():
            return list(data)
        try:
            return super().set_many(data, timeout, version)
        except RedisError as exc:
            self._failed("set_many", exc)
            return list(data)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        if not self._available():
            return False
        try:
            return super().add(key, value, timeout, version)
        except RedisError as exc:
            self._failed("add", exc)
            return False

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        if not self._available():
            return False
        try:
            return super().touch(key, timeout, version)
        except RedisError as exc:
            self._failed("touch", exc)
            return False
