"""Live plans: what a page may still do by itself, and the token that lets it report it.

A rule whose condition reads ``page.*`` (a *live rule*) cannot be settled at decide: the
server reduces its condition by what it knows (``conditions.compile_partial``) and, when a
``page.*`` part remains and consent, the holdout, the rule's cooldown and caps, the
session's budget and the slot's page-load answer all still allow it, offers it to the page
as a *plan entry*: the variant, its content, ``when`` (the residual condition, reading only
``page.*``), the priority, the source, and a token. The page evaluates ``when`` as its
signals change and reports a firing (``POST /api/v1/adjustments``, ``firings``); the token —
Django's signing (HMAC-SHA256 with the secret key, salted) over the property, decision,
visitor, session, slot, source, version, variant and expiry — proves the entry was offered
and was not altered. Tokens expire ``PLAN_TTL`` after the decision.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core import signing

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
        return signing.dumps(
            [
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
            ],
            salt=SALT,
            compress=False,
        )


def expiry(now: datetime) -> int:
    return int((now + PLAN_TTL).timestamp())


def verify(token: Any, property_id: int, now: datetime) -> Claims:
    """The token's claims, or a refusal (403): forged or altered (``invalid_token``), for
    another property (``invalid_token``), or expired (``token_expired``)."""
    try:
        fields = signing.loads(token, salt=SALT) if isinstance(token, str) else None
    except signing.BadSignature:
        fields = None
    if not isinstance(fields, list) or len(fields) != 10:
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
