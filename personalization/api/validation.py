"""Checks of API request bodies: compiled JSON Schemas (fast on the hot paths, strict
everywhere: no coercion, no unknown fields), refusals listing each problem by its path."""

from datetime import datetime
from typing import Any

import fastjsonschema
from django.conf import settings

from ..event_schemas import CONTEXT_PROPERTIES, UUID_PATTERN, describe_error
from ..exceptions import ApplicationError, Problem, problem

MAX_SLOTS = 50
_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_SCALAR = {"type": ["string", "number", "boolean", "null"]}

DECIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["visitor_id", "session_id", "slots"],
    "additionalProperties": False,
    "properties": {
        "visitor_id": _ID,
        "session_id": _ID,
        "slots": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "context": {
            "type": "object",
            "additionalProperties": False,
            # The same context the page sends with its events (utm, screen … are accepted
            # and not read by the engine), with attributes conditions can read.
            "properties": {
                **CONTEXT_PROPERTIES,
                "attributes": {
                    "type": "object",
                    "maxProperties": 50,
                    "additionalProperties": {
                        "anyOf": [
                            _SCALAR,
                            {"type": "array", "maxItems": 50, "items": _SCALAR},
                        ]
                    },
                },
            },
        },
    },
}

_decide = fastjsonschema.compile(DECIDE_SCHEMA)


def schema_problems(exc: fastjsonschema.JsonSchemaValueException) -> list[Problem]:
    """The problems a JSON Schema error stands for, each pointing at its field: a missing
    field or an unknown one by its own path, not the object's."""
    path = describe_error(exc)["path"]
    value, definition = exc.value, exc.definition or {}
    if exc.rule == "required" and isinstance(value, dict):
        missing = [name for name in exc.rule_definition if name not in value]
        return [problem(_join(path, name), "required", "is required") for name in missing]
    if exc.rule == "additionalProperties" and isinstance(value, dict):
        known = definition.get("properties", {})
        unknown = sorted(name for name in value if name not in known)
        return [problem(_join(path, name), "unknown_field", "unknown field") for name in unknown]
    return [problem(path, "invalid", describe_error(exc)["message"])]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _checked(validator: Any, body: Any) -> dict[str, Any]:
    try:
        validator(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ApplicationError.from_problems("invalid_request", schema_problems(exc)) from exc
    return body


def events_envelope(body: Any) -> list[Any]:
    """The events of a batch's envelope; each event is then checked (and kept, quarantined or
    counted as an error) by the ingest service."""
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        where = problem("events", "invalid", "must be an array")
        if not isinstance(body, dict):
            where = problem("", "invalid", 'must be an object with an "events" array')
        elif "events" not in body:
            where = problem("events", "required", "is required")
        raise ApplicationError(
            "invalid_envelope",
            'The body must be an object with an "events" array.',
            details={"errors": [where]},
        )
    if not events:
        raise ApplicationError(
            "invalid_envelope",
            'The "events" array is empty.',
            details={"errors": [problem("events", "invalid", "must not be empty")]},
        )
    if len(events) > settings.EVENTS_MAX_BATCH:
        raise ApplicationError(
            "batch_too_large",
            f"At most {settings.EVENTS_MAX_BATCH} events a request; got {len(events)}.",
            details={"max": settings.EVENTS_MAX_BATCH, "received": len(events)},
        )
    extra = sorted(set(body) - {"events"})
    if extra:
        raise ApplicationError(
            "invalid_envelope",
            f"Unknown top-level fields: {', '.join(extra)}.",
            details={"errors": [problem(key, "unknown_field", "unknown field") for key in extra]},
        )
    return events


def decide_body(body: Any) -> dict[str, Any]:
    slots = body.get("slots") if isinstance(body, dict) else None
    if isinstance(slots, list) and len(slots) > MAX_SLOTS:
        raise ApplicationError(
            "too_many_slots",
            f"At most {MAX_SLOTS} slots a request; got {len(slots)}.",
            details={"max": MAX_SLOTS, "received": len(slots)},
        )
    return _checked(_decide, body)


SURVEY_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["visitor_id", "session_id", "answers"],
    "additionalProperties": False,
    "properties": {
        "visitor_id": _ID,
        "session_id": _ID,
        "decision_id": {"type": ["string", "null"], "pattern": UUID_PATTERN},
        # Each answer is checked against its question by the service.
        "answers": {"type": "object", "maxProperties": 100},
    },
}

_survey_response = fastjsonschema.compile(SURVEY_RESPONSE_SCHEMA)


def survey_response_body(body: Any) -> dict[str, Any]:
    return _checked(_survey_response, body)


CONSENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["visitor_id", "policy_version", "purposes"],
    "additionalProperties": False,
    "properties": {
        "visitor_id": {**_ID, "pattern": r"\S"},
        "policy_version": {"type": "integer", "minimum": 1},
        # Each value is true or false: no "yes", 1 or "true".
        "purposes": {
            "type": "object",
            "maxProperties": 50,
            "additionalProperties": {"type": "boolean"},
        },
        # "gpc": a script relaying navigator.globalPrivacyControl (browsers forbid scripts to
        # set the Sec-GPC header); an officer's method is not the storefront's to claim.
        "method": {"enum": ["banner", "api", "gpc"]},
    },
}

_consent = fastjsonschema.compile(CONSENT_SCHEMA)


def consent_body(body: Any) -> dict[str, Any]:
    """A consent choice, strictly typed (``1.0`` is the integer 1, as JSON Schema has it)."""
    checked = _checked(_consent, body)
    return {
        **checked,
        "policy_version": int(checked["policy_version"]),
        "method": checked.get("method", "banner"),
    }


ADJUSTMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["decision_id", "slot", "variant", "token"],
    "additionalProperties": False,
    "properties": {
        "decision_id": {"type": "string", "pattern": UUID_PATTERN},
        "slot": {"type": "string", "minLength": 1, "maxLength": 64},
        "variant": {"type": "string", "minLength": 1, "maxLength": 64},
        "token": {"type": "string", "minLength": 1, "maxLength": 2048},
        # The page signals the firing read: page.* names, scalar values.
        "signals": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"pattern": r"^page\.[A-Za-z0-9_.-]{1,120}$"},
            "additionalProperties": {"type": ["number", "boolean", "string"], "maxLength": 200},
        },
        "fired_at": {"type": "string", "format": "date-time"},
    },
}

_adjustment = fastjsonschema.compile(ADJUSTMENT_SCHEMA)


def adjustment_body(body: Any) -> dict[str, Any]:
    """A report of a live plan entry fired in the page (``fired_at`` parsed)."""
    checked = dict(_checked(_adjustment, body))
    if "fired_at" in checked:
        try:
            checked["fired_at"] = datetime.fromisoformat(checked["fired_at"].upper())
        except ValueError as exc:  # RFC 3339 allows what Python cannot hold (a leap second)
            raise ApplicationError.from_problems(
                "invalid_request", [problem("fired_at", "invalid", "is not a date-time")]
            ) from exc
    return checked
