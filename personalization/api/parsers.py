import codecs
import io
import json
import math
import re
from typing import Any

import orjson
from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
# NUL and lone surrogates are valid JSON escapes that PostgreSQL cannot store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# orjson reads an integer past 64 bits as a float, Python's json exactly: a body with a run of
# 19 digits (a long number, or digits in a string) is read by Python's json.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_NUL_ESCAPE = b"\\u0000"
_UNREAD = object()


def json_problem(value: Any, limit: int) -> str | None:
    """What makes a parsed body unstorable, if anything. Iterative: no stack to exhaust."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return f"JSON nested deeper than {limit} levels."
        if isinstance(node, str):
            if _UNSTORABLE.search(node):
                return "Strings may not contain NUL characters or unpaired surrogates."
        elif isinstance(node, float):
            if not math.isfinite(node):
                return "Numbers must be finite."
        elif isinstance(node, dict):
            for key, child in node.items():
                if _UNSTORABLE.search(key):
                    return "Keys may not contain NUL characters or unpaired surrogates."
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return None


def _utf8(parser_context: dict[str, Any]) -> bool:
    encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _orjson_read(raw: bytes) -> Any:
    """The body as orjson reads it, with the checks it leaves to us done; ``_UNREAD`` when
    Python's json must read it instead. orjson refuses what we would refuse anyway (NaN,
    infinities, lone surrogates, invalid UTF-8) and what Python's json refuses; it reads
    duplicate keys as json does (the last wins). What it lets through that we refuse: the
    escape of a NUL, and nesting between 33 and its own limit of 1024 levels — looked for
    only when the body holds such an escape or that many brackets."""
    if _LONG_DIGITS.search(raw):
        return _UNREAD
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNREAD  # read again: the refusal's message is json's
    if _NUL_ESCAPE in raw or raw.count(b"[") + raw.count(b"{") >= MAX_DEPTH:
        problem = json_problem(data, MAX_DEPTH)
        if problem:
            raise exceptions.ParseError(problem)
    return data


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, also refusing what the database cannot store and deep nesting.

    One pass of orjson over the raw body (UTF-8, as JSON is) does it; a body orjson refuses,
    or might read otherwise than Python's json, goes through DRF's parser and the full check,
    so what is accepted, and every refusal's message, is what that path alone gives."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raw = stream.read()
        if _utf8(parser_context or {}):
            data = _orjson_read(raw)
            if data is not _UNREAD:
                return data
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        problem = json_problem(data, MAX_DEPTH)
        if problem:
            raise exceptions.ParseError(problem)
        return data
