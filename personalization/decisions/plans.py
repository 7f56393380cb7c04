"""Live plans: what a page may still do by itself, and the token that lets it report it.

A rule whose condition reads ``page.*`` (a *live rule*) cannot be settled at decide: the
server reduces its condition by what it knows (``conditions.compile_partial``) and, when a
``page.*`` part remains and consent, the holdout, the rule's cooldown and caps, the
session's budget and the slot's page-load answer all still allow it, offers it to the page
as a *plan entry*: the variant, its content, ``when`` (the residual condition, reading only
``page.*``), the priority, the source, and a token. The page evaluates ``when`` as its
signals change and reports a firing (``POST /api/v1/adjustments``, ``firings``); the token —
the fields as compact JSON, base64url, and an HMAC-SHA256 of them under a key derived from
the secret key and a salt (as Django's ``salted_hmac`` derives it, but once per process:
signing is on decide's path) — proves the entry was offered for the property, decision,
visitor, session, slot, source, version, variant and expiry, and was not altered. Tokens
expire ``PLAN_TTL`` after the decision.
"""

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings

from ..exceptions import ApplicationError

SALT = "personalization.live-plan"
PLAN_TTL = timedelta(minutes=30)


@dataclass(frozen=True)
class Claims:
    """What a plan entry's token vouches for."""

    property_id: int
    decision_id: str
    visitor_id: str
    session_id: str
    slot: str
    kind: str
    key: str
    version: int | None
    variant: str
    expires_at: int  # seconds since the epoch

    def token(self) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps(self.fields())).rstrip(b"=")
        return f"{payload.decode()}.{_mac(payload)}"

    def fields(self) -> list[Any]:
        return [
            self.property_id,
            self.decision_id,
            self.visitor_id,
            self.session_id,
            self.slot,
            self.kind,
            self.key,
            self.version,
            self.variant,
            self.expires_at,
        ]


@functools.cache
def _key(secret: str) -> bytes:
    """The signing key, derived once from the secret key (as Django's ``salted_hmac`` does,
    per call)."""
    return hashlib.sha256((SALT + secret).encode()).digest()


def _mac(payload: bytes) -> str:
    digest = hmac.new(_key(settings.SECRET_KEY), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _claims(token: Any) -> list[Any] | None:
    """The signed fields of a well-formed, untampered token, else None."""
    if not isinstance(token, str) or token.count(".") != 1:
        return None
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(payload.encode()).encode()):
        return None
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return fields if isinstance(fields, list) and len(fields) == 10 else None


def expiry(now: datetime) -> int:
    return int((now + PLAN_TTL).timestamp())


def verify(token: Any, property_id: int, now: datetime) -> Claims:
    """The token's claims, or a refusal (403): forged or altered (``invalid_token``), for
    another property (``invalid_token``), or expired (``token_expired``)."""
    fields = _claims(token)
    if fields is None:
        raise ApplicationError(
            "invalid_token",
            "The plan entry's token is not valid: it was altered or forged.",
            status=403,
        )
    claims = Claims(*fields)
    if claims.property_id != property_id:
        raise ApplicationError(
            "invalid_token", "The plan entry's token belongs to another property.", status=403
        )
    if claims.expires_at <= now.timestamp():
        raise ApplicationError(
            "token_expired",
            "The plan entry has expired: the page must ask for a new decision.",
            status=403,
        )
    return claims
