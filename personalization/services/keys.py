"""API keys: issued once, stored as SHA-256, looked up by hash, revocable."""

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from ..cache import local_cache_register
from ..models import ApiKey, ApiKeyKind, Property
from .audit import AuditAction, audit_action

PREFIXES = {ApiKeyKind.PUBLISHABLE: "pk_", ApiKeyKind.SECRET: "sk_"}
# A revoked key is refused everywhere within this many seconds.
KEY_CACHE_SECONDS = 1
LAST_USED_GRANULARITY = timedelta(minutes=1)


def _digest(raw: str) -> str:
    # Keys carry 256 bits of randomness: a fast hash is enough, no stretching needed.
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_issue(
    *, prop: Property, kind: str, name: str = "", user: Any = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its raw value, which is never stored or shown again."""
    raw = PREFIXES[ApiKeyKind(kind)] + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        property=prop,
        kind=kind,
        name=name,
        prefix=raw[:10],
        key_hash=_digest(raw),
        created_by=user if getattr(user, "pk", None) else None,
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, user: Any = None) -> ApiKey:
    """Revoke a key (audited the first time; a revoked key stays as it is)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_action(AuditAction.API_KEY_REVOKED, key, property_id=key.property_id, user=user)

    def forget() -> None:
        cache.delete(f"apikey:{key.key_hash}")
        _memo.pop(key.key_hash, None)

    # Now, and again after the commit: a request in between could cache the row as it
    # still stands in the database, unrevoked.
    forget()
    transaction.on_commit(forget)
    return key


# Every storefront request authenticates: a process keeps each key it looked up until
# KEY_CACHE_SECONDS after it was *read from the database* (the shared cache holds the read
# time with the key), so a revocation is still seen everywhere within that time, and most
# requests need no cache round trip.
_memo: dict[str, tuple[float, ApiKey]] = {}
local_cache_register("keys.memo", _memo.clear)
MEMO_MAX = 10_000


def bearer_token(header: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (the scheme in any case, as
    RFC 9110 §11.1 has it); None for any other shape."""
    parts = header.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


def presented_key(authorization: str, api_key: str = "") -> str | None:
    """What a request presents as its key, valid or not (to count it, or to spot a secret key
    in a browser): the bearer token of ``Authorization`` (the whole header when it is not a
    bearer), else OFREP's ``X-API-Key``; None when it presents nothing."""
    if authorization:
        return bearer_token(authorization) or authorization
    return api_key.strip() or None


def is_secret_key(raw: str) -> bool:
    """Whether a presented key claims to be secret (valid or not): by its prefix."""
    return raw.startswith(PREFIXES[ApiKeyKind.SECRET])


def api_key_authenticate(raw: str) -> ApiKey | None:
    if not raw.startswith(("pk_", "sk_")) or len(raw) > 100:
        return None
    digest = _digest(raw)
    cache_key = f"apikey:{digest}"
    wall = time.time()
    memo = _memo.get(digest)
    if memo is not None and memo[0] > wall:
        read_at, key = memo[0] - KEY_CACHE_SECONDS, memo[1]
    else:
        cached = cache.get(cache_key)
        if isinstance(cached, tuple) and len(cached) == 2 and cached[0] + KEY_CACHE_SECONDS > wall:
            read_at, key = cached
        else:
            found = ApiKey.objects.select_related("property").filter(key_hash=digest).first()
            if found is None:
                return None
            read_at, key = wall, found
            cache.set(cache_key, (read_at, key), KEY_CACHE_SECONDS)
        if len(_memo) >= MEMO_MAX:
            _memo.clear()
        _memo[digest] = (read_at + KEY_CACHE_SECONDS, key)
    if not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_GRANULARITY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        cache.set(cache_key, (read_at, key), KEY_CACHE_SECONDS)
    return key
