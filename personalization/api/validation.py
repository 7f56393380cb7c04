"""Compiled JSON Schemas of API request bodies that sit on hot paths."""

from typing import Any

import fastjsonschema

from ..event_schemas import CONTEXT_PROPERTIES, UUID_PATTERN, describe_error
from ..exceptions import ApplicationError

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


def _checked(validator: Any, body: Any) -> dict[str, Any]:
    try:
        validator(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        error = describe_error(exc)
        where = error["path"] or "body"
        raise ApplicationError(
            "invalid_request", f"{where}: {error['message']}", details=error
        ) from exc
    return body


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
