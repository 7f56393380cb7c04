import json
import math
import re
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
# NUL and lone surrogates are valid JSON escapes that PostgreSQL cannot store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, also refusing what the database cannot store and deep nesting."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        problem = json_problem(data, MAX_DEPTH)
        if problem:
            raise exceptions.ParseError(problem)
        return data
