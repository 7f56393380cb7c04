"""OpenFeature's Remote Evaluation Protocol (OFREP) on the decision engine.

A flag is a slot: its value is the answer's content object (or, when the slot names a
``flag_value_field``, that key of the content: a typed value), its variant the answer's
variant, its reason where the answer came from (docs/CONTRACT.md, "OpenFeature (OFREP)") and its
metadata the decision's id and the answer's source, so that a client can attach outcomes to
the decision. Every evaluation is a decision like any other (``engine.decide``: consent,
GPC, holdout, caps, cooldowns, the log); a bulk evaluation is one decision for all the
property's slots. Answers are encoded here, once: the bulk's ETag is a digest of them.
"""

import hashlib
import logging
from dataclasses import replace
from typing import Any

from django.db import DatabaseError

from consent import services as consent_services

from ..decisions import DecideRequest, DecisionResult, SlotAnswer, decide
from ..models import Property, Slot, SourceKind
from ..ruleset import ruleset_for
from .renderers import json_bytes

logger = logging.getLogger(__name__)

# OpenFeature's resolution reasons; a default of a visitor who does not grant
# personalization (or is suppressed) is DISABLED instead.
REASONS: dict[str, str] = {
    SourceKind.DEFAULT: "DEFAULT",
    SourceKind.RULE: "TARGETING_MATCH",
    SourceKind.MODEL: "TARGETING_MATCH",
    SourceKind.EXPERIMENT: "SPLIT",
    SourceKind.ROLLOUT: "SPLIT",
}
DISABLED = "DISABLED"


def _typed_fields(prop: Property, only: str | None = None) -> dict[str, str]:
    """The property's slots (or the slot ``only`` alone, if it exists), each with its
    ``flag_value_field`` ("" for the whole object), from the compiled rule set (no query).
    Should compiling fail, the slots are read as stored: the decision serves their defaults
    then (``engine.decide``)."""
    try:
        slots = ruleset_for(prop.pk).slots
    except DatabaseError:
        raise
    except Exception:
        logger.exception("rule set of property %s failed to compile; slots read as stored", prop.pk)
        stored = Slot.objects.filter(property=prop)
        if only is not None:
            stored = stored.filter(key=only)
        return dict(stored.values_list("key", "flag_value_field"))
    if only is not None:
        found = slots.get(only)
        return {only: found.flag_value_field} if found is not None else {}
    return {key: slot.flag_value_field for key, slot in slots.items()}


def flag_body(answer: SlotAnswer, typed_field: str, result: DecisionResult) -> dict[str, Any]:
    """One slot's answer as an OFREP evaluation. With a typed field the value is that key of
    the content; a variant without it has no ``value``, so the client uses its own default
    (OFREP's code-default flag). A sticky repeat is not told apart from the application it
    repeats: the client shows the same thing either way (and a revalidation gets its 304)."""
    reason = REASONS.get(answer.kind, "UNKNOWN")
    if answer.is_default and not result.consented:
        reason = DISABLED
    metadata: dict[str, Any] = {
        "decision_id": str(result.decision_id),
        "source_kind": str(answer.kind),
    }
    if answer.key:
        metadata["source_key"] = answer.key
    if answer.version is not None:
        metadata["source_version"] = answer.version
    body: dict[str, Any] = {
        "key": answer.slot,
        "reason": reason,
        "variant": answer.variant,
        "metadata": metadata,
    }
    if not typed_field:
        body["value"] = answer.content
    elif typed_field in answer.content:
        body["value"] = answer.content[typed_field]
    return body


def flag_evaluate(prop: Property, key: str, request: DecideRequest) -> bytes | None:
    """One flag (``POST /ofrep/v1/evaluate/flags/{key}``: ``request`` asks for slot ``key``),
    encoded; None when the property has no such slot (nothing decided; a GPC signal is still
    recorded)."""
    fields = _typed_fields(prop, key)
    if key in fields:
        result = decide(prop, request)
        answer = result.answers.get(key)
        if answer is not None:  # None: the slot was deleted in the meantime
            body = flag_body(answer, fields[key], result)
            # Each evaluation is a logged decision that counts caps and cooldowns: a server
            # provider must not answer the next one from a cache (OFREP's former `cacheable`).
            body["cacheable"] = False
            return json_bytes(body)
    elif request.gpc:
        consent_services.gpc_apply(
            property_id=prop.pk, visitor_ids=[request.visitor_id], ip=request.ip
        )
    return None


def flags_evaluate(prop: Property, request: DecideRequest) -> tuple[bytes, str]:
    """Every slot of the property in one decision (``POST /ofrep/v1/evaluate/flags``),
    encoded, with its ETag: a digest of the answers without the decision's id, and of the
    visitor and session they are for. A revalidation is a decision too (logged, counted); its
    answers unchanged, the client keeps the ones it has, decision id included."""
    fields = _typed_fields(prop)
    if not fields:
        if request.gpc:
            consent_services.gpc_apply(
                property_id=prop.pk, visitor_ids=[request.visitor_id], ip=request.ip
            )
        encoded, decision_id = json_bytes({"flags": []}), b""
    else:
        result = decide(prop, replace(request, slots=list(fields)))
        flags = [flag_body(a, fields.get(a.slot, ""), result) for a in result.answers.values()]
        decision_id = str(result.decision_id).encode()
        encoded = json_bytes({"flags": flags, "metadata": {"decision_id": decision_id.decode()}})
    without_id = encoded.replace(decision_id, b"") if decision_id else encoded
    return encoded, etag_of(without_id, request.visitor_id, request.session_id)


def etag_of(*parts: bytes | str) -> str:
    """A strong ETag (quoted) over the parts."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return f'"{digest.hexdigest()}"'
