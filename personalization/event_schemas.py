"""The event envelope and the schemas of the built-in event types.

Schemas are compiled once with fastjsonschema and cached; a custom type's
validator is cached by (property, type, version), so editing a schema in the
admin bumps its version and every process compiles the new one on next use.
A custom type's regexes (staff-written) run with a time limit, and the admin refuses
those it cannot bound (personalization/schema_patterns.py); the built-in ones are ours.
"""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeGuard

import fastjsonschema
import jsonschema

from . import schema_patterns

UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
MAX_ID = 128  # visitor and session ids
# An event type's name, built-in or custom: what the envelope accepts, the admin allows for a
# custom type, and ingest records as the type of a quarantined event (else "(invalid)").
EVENT_TYPE_NAME_PATTERN = "^[a-z][a-z0-9_]{0,63}$"
EVENT_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # use with fullmatch
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
# Bounds keep every number a float can hold and a signal can sum without overflow.
_MS = {"type": "integer", "minimum": 0, "maximum": 86_400_000}
_MONEY = {"type": "number", "minimum": 0, "maximum": 1_000_000_000}
_SHORT = {"type": "string", "maxLength": 256}
_URL = {"type": "string", "maxLength": 2048}

# What a page's context may say, with events and with decide (one object serves both).
CONTEXT_PROPERTIES: dict[str, Any] = {
    "url": _URL,
    "referrer": _URL,
    "user_agent": {"type": "string", "maxLength": 1024},
    "title": _SHORT,
    "locale": {"type": "string", "maxLength": 35},
    "timezone": {"type": "string", "maxLength": 64},
    "screen": {"type": "string", "maxLength": 32},
    "utm": {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: _SHORT for k in ("source", "medium", "campaign", "term", "content")},
    },
}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "type", "visitor_id", "session_id", "timestamp"],
    "additionalProperties": False,
    "properties": {
        "event_id": {"type": "string", "pattern": UUID_PATTERN},
        "type": {"type": "string", "pattern": EVENT_TYPE_NAME_PATTERN},
        "visitor_id": _ID,
        "session_id": _ID,
        "timestamp": {"type": "string", "format": "date-time"},
        "decision_id": {"type": ["string", "null"], "pattern": UUID_PATTERN},
        "properties": {"type": "object"},
        "context": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **CONTEXT_PROPERTIES,
                "attributes": {"type": "object", "maxProperties": 50},
            },
        },
    },
}

_item = {"item_id": _SHORT}
_element = {"element_id": _SHORT, "section": _SHORT, **_item}


def _typed(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """Required properties present, known ones of their type and bounds; others are kept
    as sent (docs/CONTRACT.md's example event carries more than its type reads). ``revenue``,
    which a revenue goal may read on any event type, is a bounded number wherever it is."""
    return {"type": "object", "required": required, "properties": {"revenue": _MONEY, **properties}}


# name -> (purpose, schema of ``properties``)
BUILT_IN_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "page_view": ("analytics", _typed([], {"path": _URL, "title": _SHORT, **_item})),
    "click": ("analytics", _typed(["element_id"], {**_element, "href": _URL, "text": _SHORT})),
    "hover": (
        "granular_tracking",
        _typed(["element_id"], {**_element, "dwell_ms": _MS}),
    ),
    "scroll": (
        "granular_tracking",
        _typed(
            ["depth_pct"],
            {
                "depth_pct": {"type": "number", "minimum": 0, "maximum": 100},
                "speed_px_s": {"type": "number", "minimum": 0, "maximum": 1_000_000},
            },
        ),
    ),
    "section_view": (
        "analytics",
        _typed(
            ["section", "visible_ms"],
            {"section": _SHORT, "visible_ms": _MS},
        ),
    ),
    "form_interaction": (
        "analytics",
        _typed(
            ["form_id", "action"],
            {
                "form_id": _SHORT,
                "action": {"enum": ["start", "submit", "abandon"]},
                "field": _SHORT,
            },
        ),
    ),
    "session_start": ("analytics", _typed([], {})),
    "session_end": ("analytics", _typed([], {})),
    "add_to_cart": (
        "analytics",
        _typed(
            ["item_id"],
            {
                **_item,
                "quantity": {"type": "integer", "minimum": 1, "maximum": 100_000},
                "price": _MONEY,
            },
        ),
    ),
    "purchase": (
        "analytics",
        _typed(
            ["revenue"],
            {
                "order_id": _SHORT,
                "revenue": _MONEY,
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "item_ids": {"type": "array", "items": _SHORT, "maxItems": 200},
            },
        ),
    ),
    "conversion": (
        "analytics",
        _typed(
            [],
            {
                "goal": _SHORT,
                "value": {"type": "number", "minimum": -1e12, "maximum": 1e12},
                **_element,
            },
        ),
    ),
    "survey_shown": ("analytics", _typed(["survey_key"], {"survey_key": _SHORT})),
}

Validator = Callable[[Any], Any]

_envelope: Validator = fastjsonschema.compile(ENVELOPE_SCHEMA)
_builtin_validators: dict[str, Validator] = {
    name: fastjsonschema.compile(schema) for name, (_, schema) in BUILT_IN_TYPES.items()
}
_custom_validators: dict[tuple[int, str, int], Validator] = {}
_MAX_CUSTOM_VALIDATORS = 2048


class SchemaDefinitionError(ValueError):
    pass


def schema_check(schema: Any) -> None:
    """Refuse anything that is not a valid JSON Schema describing an object, or whose
    regexes could run for long (schema_patterns.pattern_problems)."""
    if not isinstance(schema, dict):
        raise SchemaDefinitionError("A schema must be a JSON object.")
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaDefinitionError(f"Not a valid JSON Schema at {where}: {exc.message}") from exc
    if schema.get("type", "object") != "object":
        raise SchemaDefinitionError('An event\'s properties are an object: use "type": "object".')
    try:
        validator = fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise SchemaDefinitionError(f"Schema cannot be compiled: {exc}") from exc
    problems = schema_patterns.pattern_problems(schema, validator)
    if problems:
        raise SchemaDefinitionError(" ".join(problems))


def type_name_valid(name: Any) -> TypeGuard[str]:
    return isinstance(name, str) and EVENT_TYPE_NAME.fullmatch(name) is not None


def custom_validator(property_id: int, name: str, version: int, schema: dict) -> Validator:
    """The custom type's validator: raises fastjsonschema's JsonSchemaValueException for an
    invalid value, SchemaPatternError when a regex of the schema could not be checked in
    time (inside schema_patterns.batch_budget, the batch's budget is spent)."""
    key = (property_id, name, version)
    validator = _custom_validators.get(key)
    if validator is None:
        if len(_custom_validators) >= _MAX_CUSTOM_VALIDATORS:
            _custom_validators.clear()
        validator = schema_patterns.bound(fastjsonschema.compile(schema))
        _custom_validators[key] = validator
    return validator


def builtin_validator(name: str) -> Validator | None:
    return _builtin_validators.get(name)


_PATH_RE = re.compile(r"^data\.?")


def describe_error(exc: fastjsonschema.JsonSchemaValueException, prefix: str = "") -> dict:
    """Turn fastjsonschema's error into the API's ``{path, message}``."""
    name = _PATH_RE.sub("", exc.name or "")
    name = re.sub(r"\[(\d+)\]", r".\1", name)
    path = ".".join(p for p in (prefix, name) if p)
    message = exc.message
    if exc.name and message.startswith(exc.name):
        message = message[len(exc.name) :].strip()
    message = (
        message.replace("smaller than or equal to", "<=")
        .replace("bigger than or equal to", ">=")
        .replace("smaller than", "<")
        .replace("bigger than", ">")
    )
    return {"path": path, "message": message}


def envelope_validate(event: Any) -> dict | None:
    try:
        _envelope(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        return describe_error(exc)
    return None


def parse_timestamp(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed
