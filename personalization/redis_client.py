"""One way to connect to Redis from a URL: a single server, or a Redis Cluster.

``redis://host:port/db`` (or ``rediss://``, ``unix://``) is one server; ``redis+cluster://host:port``
(or ``rediss+cluster://``) is a Redis Cluster (or Valkey in cluster mode) reached through any
of its nodes, the others discovered from it (redis-py's ``RedisCluster``; a cluster has only
database 0, so a path is ignored). Every setting that takes a Redis URL (``REDIS_URL``,
``DECIDE_REDIS_URL``, ``RATELIMIT_REDIS_URL``) takes either; ``CELERY_BROKER_URL`` does not
(Celery's Redis transport needs one server).

On a cluster, a command (or a Lua script) may touch only keys of one hash slot: the keys a
script touches together share a hash tag (``{…}``), see personalization/hotstate/.
"""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

Client = redis.Redis | RedisCluster


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_url(url: str) -> str:
    """The ``redis://`` URL redis-py's ``RedisCluster.from_url`` reads, without a database."""
    parts = urlsplit(url)
    return urlunsplit((CLUSTER_SCHEMES[parts.scheme], parts.netloc, "", parts.query, ""))


def connect(url: str, **options: Any) -> Client:
    """A client for ``url`` (see the module's docstring). ``options`` are the connection's
    (timeouts, ``retry``, ``health_check_interval``)."""
    if is_cluster(url):
        # A node that stops answering fails the command quickly: the callers fail soft
        # (fall back to the database, let a request through) or fail the task, which retries.
        options.setdefault("retry", Retry(NoBackoff(), 1))
        try:
            return RedisCluster.from_url(cluster_url(url), **options)
        except RedisClusterException as exc:  # no node answered: as a server that does not
            raise redis.ConnectionError(str(exc)) from exc
    return redis.Redis.from_url(url, **options)
