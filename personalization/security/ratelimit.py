"""Rate limits on the API (and OFREP's endpoints), per API key and per client address,
counted in Redis.

A fixed window: one pipelined round trip increments both counters of the current window
(``INCR`` + ``EXPIRE`` each) and the request is refused with ``429 rate_limited`` and
``Retry-After`` (the seconds left in the window) when either is over its limit. The key is
counted by a SHA-256 of what the request presents, so a raw key never reaches Redis, and an
invalid key is counted too (guessing keys is limited like anything else). Under ``/ofrep/``
the refusal is reshaped into OFREP's error shape on its way out (``api.errors``).

On a Redis Cluster (``redis+cluster://``) the two counters may lie on two nodes: they are
counted by ``INCR`` + ``EXPIRE`` in one cluster pipeline instead (a round trip to each node).

Without a Redis URL (a laptop) there are no limits. When Redis does not answer, requests are
let through (fail open) with one logged warning, and Redis is not asked again for
``RATELIMIT_REDIS_RETRY_SECONDS``: an outage must not turn into refused storefront traffic or
into a wait on every request.
"""

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from ..api.errors import error_body
from ..redis_client import Client, connect
from ..services.keys import presented_key

logger = logging.getLogger(__name__)

_clients: dict[str, Client] = {}
_scripts: dict[str, Any] = {}
# Counts every request, so one command instead of INCR + EXPIRE per counter: KEYS are the
# counters of this window, ARGV[1] their expiry. Returns their new counts.
_COUNT = """
local out = {}
for i, name in ipairs(KEYS) do
  out[i] = redis.call('INCR', name)
  redis.call('EXPIRE', name, tonumber(ARGV[1]))
end
return out
"""
_down_until: dict[str, float] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    scope: str
    limit: int
    count: int
    retry_after: int


def _client(url: str) -> Client:
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = connect(
                url,
                socket_connect_timeout=settings.RATELIMIT_REDIS_TIMEOUT,
                socket_timeout=settings.RATELIMIT_REDIS_TIMEOUT,
            )
            _clients[url] = client
            _scripts[url] = client.register_script(_COUNT)
        return client


def client_address(request: HttpRequest) -> str:
    """The address the limit counts: ``RATELIMIT_CLIENT_ADDRESS_HEADER`` (a header the trusted
    proxy sets, e.g. ``HTTP_X_REAL_IP``) or the socket's ``REMOTE_ADDR``."""
    value = request.META.get(settings.RATELIMIT_CLIENT_ADDRESS_HEADER) or request.META.get(
        "REMOTE_ADDR", ""
    )
    return str(value).split(",")[0].strip() or "unknown"


def key_digest(request: HttpRequest) -> str | None:
    """A digest of the key presented (bearer token or OFREP's X-API-Key), whatever it is;
    never the key itself."""
    # One key, one count, however the scheme is spelled ("Bearer", "bearer", spacing) and
    # whichever header carries it.
    token = presented_key(
        request.META.get("HTTP_AUTHORIZATION", ""), request.META.get("HTTP_X_API_KEY", "")
    )
    if token is None:
        return None
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def ratelimit_check(request: HttpRequest, now: float | None = None) -> Verdict | None:
    """Count this request; the exceeded limit, or None when it may pass (or Redis is down)."""
    url: str = settings.RATELIMIT_REDIS_URL
    window: int = settings.RATELIMIT_WINDOW_SECONDS
    if not url or window <= 0:
        return None
    now = time.time() if now is None else now
    if _down_until.get(url, 0.0) > now:
        return None
    counters: list[tuple[str, str, int]] = []
    key = key_digest(request)
    if key is not None and settings.RATELIMIT_PER_KEY > 0:
        counters.append(("key", key, settings.RATELIMIT_PER_KEY))
    if settings.RATELIMIT_PER_ADDRESS > 0:
        counters.append(("address", client_address(request), settings.RATELIMIT_PER_ADDRESS))
    if not counters:
        return None
    slot = int(now // window)
    names = [f"rl:{scope}:{ident}:{slot}" for scope, ident, _ in counters]
    try:
        results = _count(_client(url), _scripts[url], names, window + 1)
    except redis.RedisError as exc:
        _down_until[url] = now + settings.RATELIMIT_REDIS_RETRY_SECONDS
        logger.warning(
            "rate limits off for %ss: Redis did not answer (%s)",
            settings.RATELIMIT_REDIS_RETRY_SECONDS,
            type(exc).__name__,
        )
        return None
    retry_after = max(1, math.ceil((slot + 1) * window - now))
    for (scope, _, limit), count in zip(counters, results, strict=True):
        if int(count) > limit:
            return Verdict(scope=scope, limit=limit, count=int(count), retry_after=retry_after)
    return None


def _count(client: Client, script: Any, names: list[str], ttl: int) -> list[int]:
    if isinstance(client, redis.Redis):
        return script(keys=names, args=[ttl], client=client)  # type: ignore[no-any-return]
    # A cluster: the keys lie in different slots (and a cluster pipeline runs no scripts).
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.incr(name)
        pipe.expire(name, ttl)
    return pipe.execute()[::2]


def rate_limited_response(verdict: Verdict) -> JsonResponse:
    window = settings.RATELIMIT_WINDOW_SECONDS
    per = "API key" if verdict.scope == "key" else "client address"
    response = JsonResponse(
        error_body(
            "rate_limited",
            f"Too many requests for this {per}: at most {verdict.limit} every {window} s. "
            f"Retry after {verdict.retry_after} s.",
            {"scope": verdict.scope, "limit": verdict.limit, "window_seconds": window},
        ),
        status=429,
    )
    response["Retry-After"] = str(verdict.retry_after)
    return response


class RateLimitMiddleware:
    """Placed after the CORS middleware, so a browser can read a 429 and its Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(settings.RATELIMIT_PATH_PREFIXES):
            verdict = ratelimit_check(request)
            if verdict is not None:
                return rate_limited_response(verdict)
        return self.get_response(request)
