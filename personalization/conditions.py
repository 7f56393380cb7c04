"""Targeting conditions in GrowthBook's MongoDB-style condition language.

The behaviour follows GrowthBook's reference SDK (``packages/sdk-js/src/mongrule.ts``), which is
the implementation the conformance cases in ``tests/conformance/growthbook-cases.json`` are
generated from. Where the official SDKs disagree with each other (mostly on how mixed types
compare), the JavaScript one wins, so a rule evaluates the same here as in a browser running
GrowthBook. Its coercions are therefore reproduced on purpose:

* implicit equality is loose: ``{"age": 30}`` matches ``"30"``; ``{"plan": "3"}`` matches ``3``;
  ``{"flag": true}`` matches any truthy value; arrays and plain objects compare structurally;
* ``$eq``/``$ne``/``$in``/``$nin``/``$inGroup`` compare strictly (``1`` never equals ``"1"``),
  and an array or object operand never equals anything;
* ``$lt``/``$gt``/... compare two strings as text and anything else as numbers, with a missing
  attribute counting as ``0``;
* ``$regex`` tests the attribute's string form, so a missing attribute is tested as ``"null"``;
* ``$elemMatch`` skips falsy elements (``0``, ``""``, ``false``, ``null``).

Two deliberate departures: structurally malformed logic (``$and`` given a non-list, ``$not``
given a non-object, ...) fails closed instead of passing as it can in JavaScript, and plain
objects compare without regard to key order. Regular expressions run on the ``regex`` module
(Python syntax, which differs from JavaScript's only at the edges) with a time limit; running out
of time counts as "does not match". A search that provably cannot run long (no quantifiers,
short enough text; see ``_regex_paths``) skips arming the limit, which costs more than the
search.

Evaluate a rule many times through :func:`compile_condition`; :func:`eval_condition` compiles on
every call. :func:`validate_condition` explains what is wrong with a condition before it is saved.
:func:`compile_partial` / :func:`partial_condition` reduce a condition by the attributes known
now and leave the rest (``page.*``, measured in the open page) as a residual condition.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import operator
import re
import sys
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, TypeAlias

import regex

__all__ = [
    "REGEX_TIMEOUT_SECONDS",
    "Clause",
    "CompiledCondition",
    "PartialCondition",
    "PartialResult",
    "PreparedGroup",
    "compile_condition",
    "compile_partial",
    "condition_clauses",
    "condition_paths",
    "eval_condition",
    "namespace_keys",
    "partial_condition",
    "prepare_saved_groups",
    "render_location",
    "validate_condition",
]

logger = logging.getLogger(__name__)

# A request evaluates several rules; a staff-written pattern may cost at most this much of it.
REGEX_TIMEOUT_SECONDS: Final[float] = 0.05

SavedGroups: TypeAlias = Mapping[str, Any]
_ValueMatcher: TypeAlias = Callable[[Any, SavedGroups], bool]
_ConditionMatcher: TypeAlias = Callable[[Any, SavedGroups], bool]

_LOGICAL_OPERATORS: Final = frozenset({"$and", "$or", "$nor", "$not"})
_VALUE_OPERATORS: Final = frozenset(
    {
        "$eq",
        "$ne",
        "$lt",
        "$lte",
        "$gt",
        "$gte",
        "$veq",
        "$vne",
        "$vgt",
        "$vgte",
        "$vlt",
        "$vlte",
        "$exists",
        "$type",
        "$in",
        "$nin",
        "$ini",
        "$nini",
        "$all",
        "$alli",
        "$inGroup",
        "$notInGroup",
        "$elemMatch",
        "$size",
        "$regex",
        "$regexi",
        "$not",
    }
)
_TYPE_NAMES: Final = ("array", "boolean", "null", "number", "object", "string")
_EMPTY_GROUPS: Final[Mapping[str, Any]] = {}


# --- JavaScript value semantics -------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python but a separate type in JSON and JavaScript.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_array(value: Any) -> bool:
    # Tuples are accepted because attributes are often assembled in Python, not parsed JSON.
    return isinstance(value, list | tuple)


def _js_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if _is_array(value):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def _js_truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if _is_number(value):
        return not (value == 0 or value != value)
    if isinstance(value, str):
        return value != ""
    # Arrays and objects are truthy in JavaScript even when empty.
    return True


def _as_double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _number_to_string(number: float) -> str:
    """JavaScript's Number#toString, so `8.0` reads "8" and `1e-7` reads "1e-7" as in the SDK."""
    if number != number:
        return "NaN"
    if number == 0:
        return "0"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number < 0:
        return "-" + _number_to_string(-number)
    # repr() yields the shortest round-tripping digits, the same digits JavaScript picks.
    _, digit_tuple, exponent = Decimal(repr(number)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    power = point - 1
    mantissa = digits if count == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"


def _js_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        if isinstance(value, int) and -(2**53) < value < 2**53:
            return str(value)
        return _number_to_string(_as_double(value))
    if _is_array(value):
        return ",".join("" if item is None else _js_string(item) for item in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


# JavaScript's StrWhiteSpaceChar set, which differs from str.isspace() at the edges.
_JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_JS_DECIMAL: Final = re.compile(
    r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_JS_NON_DECIMAL: Final = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_JS_RADIX: Final = {"x": 16, "o": 8, "b": 2}


def _string_to_number(text: str) -> float:
    # float() alone would also accept "nan", "inf" and "1_000", which JavaScript rejects.
    text = text.strip(_JS_WHITESPACE)
    if not text:
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    if _JS_NON_DECIMAL.fullmatch(text):
        return _as_double(int(text[2:], _JS_RADIX[text[1].lower()]))
    return math.nan


def _to_number(value: Any) -> float:
    if _is_number(value):
        return _as_double(value)
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if value is None:
        return 0.0
    if isinstance(value, str):
        return _string_to_number(value)
    if _is_array(value) or isinstance(value, Mapping):
        return _string_to_number(_js_string(value))
    return math.nan


def _to_primitive(value: Any) -> Any:
    if _is_array(value) or isinstance(value, Mapping):
        return _js_string(value)
    return value


def _strict_equal(left: Any, right: Any) -> bool:
    kind = _js_type(left)
    if kind != _js_type(right) or kind in ("array", "object"):
        # Operands come from separate JSON documents, so JavaScript's reference equality on
        # arrays and objects can never hold.
        return False
    if kind == "number":
        return _as_double(left) == _as_double(right)
    return bool(left == right)


def _json_equal(left: Any, right: Any) -> bool:
    """Equality of the JSON serialisations, as the SDK compares arrays and plain objects."""
    if _is_number(left) and not math.isfinite(left):
        left = None  # JSON.stringify writes NaN and Infinity as null
    if _is_number(right) and not math.isfinite(right):
        right = None
    kind = _js_type(left)
    if kind != _js_type(right):
        return False
    if kind == "number":
        return _as_double(left) == _as_double(right)
    if kind == "array":
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if kind == "object":
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


# Values that can never be equal to anything under JavaScript's SameValueZero.
_NO_KEY: Final = object()
_NAN_KEY: Final = object()


def _member_key(value: Any, fold_case: bool = False) -> Hashable:
    """A key equal for exactly the values `Array.prototype.includes` treats as the same."""
    if isinstance(value, str):
        return value.lower() if fold_case else value
    if value is None:
        return None
    if isinstance(value, bool):
        # Tagged so that True and 1 (equal and same-hashed in Python) stay apart.
        return ("boolean", value)
    if _is_number(value):
        return _NAN_KEY if value != value else value
    return _NO_KEY


def _member_keys(values: Iterable[Any], fold_case: bool = False) -> frozenset[Hashable]:
    keys = {_member_key(value, fold_case) for value in values}
    keys.discard(_NO_KEY)
    return frozenset(keys)


def _is_in(actual: Any, keys: Collection[Hashable], fold_case: bool = False) -> bool:
    if _is_array(actual):
        # An array attribute matches when any of its elements does.
        return any(_member_key(item, fold_case) in keys for item in actual)
    return _member_key(actual, fold_case) in keys


# --- Saved groups ---------------------------------------------------------------------------


class PreparedGroup(frozenset[Hashable]):
    """Members of a saved group, indexed once so `$inGroup` is a set lookup per request."""


def prepare_saved_groups(saved_groups: Mapping[str, Iterable[Any]]) -> dict[str, PreparedGroup]:
    """Index saved groups (e.g. visitor-id lists) for repeated evaluation.

    Plain lists work as well, but are re-scanned on every evaluation.
    """
    return {name: PreparedGroup(_member_keys(members)) for name, members in saved_groups.items()}


def _group_keys(saved_groups: SavedGroups, name: Any) -> Collection[Hashable]:
    group = saved_groups.get(name) if isinstance(name, str) else None
    if isinstance(group, PreparedGroup):
        return group
    if isinstance(group, list | tuple):
        return _member_keys(group)
    return ()


# --- Versions and regular expressions -------------------------------------------------------

_VERSION_STRIP: Final = re.compile(r"^v|\+.*\Z")
_VERSION_SPLIT: Final = re.compile(r"[-.]")
_ASCII_DIGITS: Final = re.compile(r"[0-9]+")


@functools.lru_cache(maxsize=4096)
def _pad_version(version: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", version))
    if len(parts) == 3:
        # "~" sorts after every other ASCII character: a release outranks its pre-releases.
        parts.append("~")
    # Numeric parts are right-aligned so that plain string comparison orders " 9" before "10".
    return "-".join(part.rjust(5) if _ASCII_DIGITS.fullmatch(part) else part for part in parts)


def _padded_version(value: Any) -> str:
    if _is_number(value):
        value = _js_string(value)
    if not isinstance(value, str) or not value:
        value = "0"
    return _pad_version(value)


@functools.lru_cache(maxsize=1024)
def _compile_regex(pattern: str, ignore_case: bool) -> Any:
    return regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)


def _regex_error(pattern: str, ignore_case: bool) -> str | None:
    try:
        _compile_regex(pattern, ignore_case)
    except Exception as exc:  # whatever the library rejects a pattern with, it must not escape
        return str(exc) or type(exc).__name__
    return None


# Searching without the time limit. Arming `regex`'s time limit costs a few microseconds per
# search, several times what the search itself costs for the short patterns rules use, so a
# search skips it when it provably cannot run long. The rule is deliberately narrow: the
# pattern has no quantifiers at all (no `*`, `+`, `?`, `{`), no `(?` construct other than the
# plain group `(?:` (so no lookarounds, inline flags or version switches), no backreferences,
# and escapes only of ASCII punctuation or of `\d \D \w \W \s \S \n \t \r \f \v` (one character)
# and `\b \B \A \Z` (a position, outside character classes). Literal text, anchors, `.`,
# character classes, groups and `|` are all it may use, so every atom consumes at most one
# character and the engine (the same `regex` engine, version 0, simple case folding) can only
# backtrack into alternatives. From one starting position it then follows at most `paths`
# routes (alternatives multiply along a sequence, add up across a `|`), each at most
# len(pattern) steps; search() tries len(text) + 1 starting positions. The search runs untimed
# only while that product stays within _UNTIMED_REGEX_STEPS (and within what the configured
# time limit allows at _SECONDS_PER_REGEX_STEP); longer texts and every other pattern keep the
# time limit. The result is the same either way: only the time limit is skipped.
_UNTIMED_REGEX_STEPS: Final = 200_000
_SECONDS_PER_REGEX_STEP: Final = 1e-8  # measured worst cases take about 6 ns a step
_MAX_GROUP_DEPTH: Final = 20
_ONE_CHARACTER_ESCAPES: Final = frozenset("dDwWsSntrfv")
_POSITION_ESCAPES: Final = frozenset("bBAZ")


def _bounded_escape(escaped: str, in_class: bool) -> bool:
    if not escaped.isascii():
        return False
    if not escaped.isalnum():
        return True  # an escaped punctuation character stands for itself
    return escaped in _ONE_CHARACTER_ESCAPES or (not in_class and escaped in _POSITION_ESCAPES)


@functools.lru_cache(maxsize=1024)
def _regex_paths(pattern: str) -> int | None:
    """Routes a search can take from one starting position, or None when that is not bounded.

    See the rule above; anything this small parser does not recognise counts as unbounded.
    """
    parser = _RegexPaths(pattern)
    paths = parser.alternation(0)
    return paths if parser.position == parser.end else None


class _RegexPaths:
    """A recursive-descent reading of a pattern that counts the routes through it."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.end = len(pattern)
        self.position = 0

    def alternation(self, depth: int) -> int | None:
        total = 0
        while True:
            paths = self.sequence(depth)
            if paths is None:
                return None
            total += paths
            if self.position < self.end and self.pattern[self.position] == "|":
                self.position += 1
            else:
                return total

    def sequence(self, depth: int) -> int | None:
        product = 1
        while self.position < self.end:
            char = self.pattern[self.position]
            if char in "|)":
                break
            self.position += 1
            factor = self.atom(char, depth)
            if factor is None:
                return None
            product *= factor
        return product

    def atom(self, char: str, depth: int) -> int | None:
        """The routes through one atom whose first character was just read."""
        if char == "(":
            return self.group(depth)
        if char == "[":
            return 1 if self.character_class() else None
        if char == "\\":
            return 1 if self.escape(in_class=False) else None
        if char in "*+?{}]":
            return None
        return 1

    def group(self, depth: int) -> int | None:
        pattern = self.pattern
        if depth >= _MAX_GROUP_DEPTH:
            return None
        if pattern.startswith("?", self.position):
            if not pattern.startswith("?:", self.position):
                return None
            self.position += 2
        inner = self.alternation(depth + 1)
        if inner is None or not pattern.startswith(")", self.position):
            return None
        self.position += 1
        return inner

    def escape(self, *, in_class: bool) -> bool:
        if self.position >= self.end or not _bounded_escape(
            self.pattern[self.position], in_class=in_class
        ):
            return False
        self.position += 1
        return True

    def character_class(self) -> bool:
        pattern = self.pattern
        if pattern.startswith("^", self.position):
            self.position += 1
        if pattern.startswith("]", self.position):
            return False  # a leading "]" is a literal in Python syntax; not worth the subtlety
        while self.position < self.end:
            char = pattern[self.position]
            self.position += 1
            if char == "]":
                return True
            if char == "[":
                return False
            if char == "\\" and not self.escape(in_class=True):
                return False
        return False


def _untimed_text_length(pattern: str, timeout: float | None) -> int:
    """The longest text `pattern` may be searched in without the time limit (-1: none)."""
    if timeout is None:
        return sys.maxsize
    paths = _regex_paths(pattern)
    if paths is None:
        return -1
    steps = min(_UNTIMED_REGEX_STEPS, timeout / _SECONDS_PER_REGEX_STEP)
    return int(steps // (paths * max(len(pattern), 1))) - 1


# --- Compilation ----------------------------------------------------------------------------
#
# A compiled condition is a tree of closures, each taking (value, saved_groups). They run for
# every rule of every decision, so they test the common JSON shapes (str, int, float, bool,
# dict) by exact type, inline, and hand anything else to the general helpers above, which
# define the semantics; a fast path accepts only values for which it provably gives the general
# helper's answer. Every matcher is pure and returns a bool, so the clauses of an implicit
# `$and` (and the branches of `$or`/`$nor`) run cheapest first: the answer cannot depend on the
# order, only the time to reach it does (and whether a slow regex gets to time out and log).

# Integers of at most this magnitude convert to a float exactly, so comparing them as they are
# gives the same answer as JavaScript comparing their double values.
_MAX_SAFE_INTEGER: Final = 2**53


def _always(value: Any, saved_groups: SavedGroups) -> bool:
    return True


def _never(value: Any, saved_groups: SavedGroups) -> bool:
    return False


def _is_operator_object(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(key, str) and key.startswith("$") for key in value)
    )


def _all_of(matchers: list[_ValueMatcher]) -> _ValueMatcher:
    if any(matcher is _never for matcher in matchers):
        return _never
    members = tuple(matcher for matcher in matchers if matcher is not _always)
    if not members:
        return _always
    if len(members) == 1:
        return members[0]
    if len(members) == 2:
        first, second = members

        def both(value: Any, saved_groups: SavedGroups) -> bool:
            return first(value, saved_groups) and second(value, saved_groups)

        return both
    if len(members) == 3:
        first, second, third = members

        def all_three(value: Any, saved_groups: SavedGroups) -> bool:
            return (
                first(value, saved_groups)
                and second(value, saved_groups)
                and third(value, saved_groups)
            )

        return all_three

    def all_match(value: Any, saved_groups: SavedGroups) -> bool:
        # A plain loop: all() over a generator costs a frame switch per member.
        for matcher in members:  # noqa: SIM110
            if not matcher(value, saved_groups):
                return False
        return True

    return all_match


def _any_of(matchers: list[_ValueMatcher]) -> _ValueMatcher:
    if any(matcher is _always for matcher in matchers):
        return _always
    members = tuple(matcher for matcher in matchers if matcher is not _never)
    if not members:
        return _never
    if len(members) == 1:
        return members[0]
    if len(members) == 2:
        first, second = members

        def either(value: Any, saved_groups: SavedGroups) -> bool:
            return first(value, saved_groups) or second(value, saved_groups)

        return either

    def any_match(value: Any, saved_groups: SavedGroups) -> bool:
        for matcher in members:  # noqa: SIM110 (see all_match)
            if matcher(value, saved_groups):
                return True
        return False

    return any_match


def _negate(matcher: _ValueMatcher) -> _ValueMatcher:
    if matcher is _always:
        return _never
    if matcher is _never:
        return _always

    def negated(value: Any, saved_groups: SavedGroups) -> bool:
        return not matcher(value, saved_groups)

    return negated


_PathPart: TypeAlias = tuple[str, int | None]


def _split_path(path: str) -> tuple[_PathPart, ...]:
    parts: list[_PathPart] = []
    for name in path.split("."):
        # Like the SDK, a canonical array index ("0", "12", not "01") reaches into a list.
        is_index = name.isascii() and name.isdigit() and (name == "0" or name[0] != "0")
        parts.append((name, int(name) if is_index else None))
    return tuple(parts)


def _get_path(attributes: Any, path: tuple[_PathPart, ...]) -> Any:
    current = attributes
    for name, index in path:
        if type(current) is dict or isinstance(current, Mapping):
            if name not in current:
                return None
            current = current[name]
        elif index is not None and _is_array(current) and index < len(current):
            current = current[index]
        else:
            return None
    return current


# Relative cost of evaluating a clause, to run cheap clauses first. Operators not listed cost 1.
_OPERATOR_COSTS: Final[dict[str, int]] = {
    "$regex": 4,
    "$regexi": 4,
    "$all": 4,
    "$alli": 4,
    "$elemMatch": 4,
    "$size": 2,
    "$veq": 2,
    "$vne": 2,
    "$vgt": 2,
    "$vgte": 2,
    "$vlt": 2,
    "$vlte": 2,
    "$inGroup": 2,
    "$notInGroup": 2,
}


def _value_cost(expected: Any) -> int:
    if _is_operator_object(expected):
        cost = 0
        for op, argument in expected.items():
            cost += _value_cost(argument) if op == "$not" else _OPERATOR_COSTS.get(op, 1)
        return cost
    return 4 if _is_array(expected) or isinstance(expected, Mapping) else 1


def _cheapest_first(clauses: list[tuple[int, _ConditionMatcher]]) -> list[_ConditionMatcher]:
    return [matcher for _, matcher in sorted(clauses, key=operator.itemgetter(0))]


def _equals_string(expected: str, fold_case: bool) -> _ValueMatcher:
    if fold_case:
        folded = expected.lower()

        def equals_folded(value: Any, saved_groups: SavedGroups) -> bool:
            if type(value) is str:
                return value.lower() == folded
            return _js_string(value).lower() == folded

        return equals_folded

    def equals_string(value: Any, saved_groups: SavedGroups) -> bool:
        if type(value) is str:
            return value == expected
        return _js_string(value) == expected

    return equals_string


def _equals_boolean(expected: bool) -> _ValueMatcher:
    def equals_boolean(value: Any, saved_groups: SavedGroups) -> bool:
        if type(value) is bool:
            return value is expected
        return value is not None and _js_truthy(value) is expected

    return equals_boolean


def _equals_number(expected: Any) -> _ValueMatcher:
    target = _as_double(expected)

    def equals_number(value: Any, saved_groups: SavedGroups) -> bool:
        kind = type(value)
        if kind is float or (kind is int and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER):
            return value == target
        return _to_number(value) == target

    return equals_number


def _is_null(value: Any, saved_groups: SavedGroups) -> bool:
    return value is None


class _Compiler:
    def __init__(self, regex_timeout: float | None) -> None:
        self.regex_timeout = regex_timeout

    def condition(self, condition: Any) -> _ConditionMatcher:
        return self._condition(condition)[1]

    def _condition(self, condition: Any) -> tuple[int, _ConditionMatcher]:
        """The relative cost of `condition` and its matcher."""
        if not isinstance(condition, Mapping):
            return 0, _never
        clauses: list[tuple[int, _ConditionMatcher]] = []
        for key, argument in condition.items():
            if key in ("$or", "$nor", "$and"):
                if not _is_array(argument):
                    return 0, _never
                branches = [self._condition(branch) for branch in argument]
                cost = sum(branch_cost for branch_cost, _ in branches)
                if key == "$and":
                    clauses.append((cost, _all_of(_cheapest_first(branches))))
                elif not branches:
                    # An empty $or passes, so an empty $nor fails.
                    clauses.append((0, _always if key == "$or" else _never))
                else:
                    either = _any_of(_cheapest_first(branches))
                    clauses.append((cost, either if key == "$or" else _negate(either)))
            elif key == "$not":
                if not isinstance(argument, Mapping):
                    return 0, _never
                cost, inner = self._condition(argument)
                clauses.append((cost, _negate(inner)))
            elif not isinstance(key, str):
                return 0, _never
            else:
                clauses.append((_value_cost(argument), self._attribute(key, argument)))
        return sum(cost for cost, _ in clauses), _all_of(_cheapest_first(clauses))

    def _attribute(self, key: str, argument: Any) -> _ConditionMatcher:
        path = _split_path(key)
        matcher = self.value(argument)
        if len(path) == 1:
            # Most rules test top-level attributes; skip the general path walk for them.
            def top_level(attributes: Any, saved_groups: SavedGroups) -> bool:
                if type(attributes) is dict or isinstance(attributes, Mapping):
                    return matcher(attributes.get(key), saved_groups)
                return matcher(_get_path(attributes, path), saved_groups)

            return top_level
        if len(path) == 2:
            # "session.clicks", "visitor.revenue", ...: two dict lookups in the common case.
            outer, inner = path[0][0], path[1][0]

            def two_levels(attributes: Any, saved_groups: SavedGroups) -> bool:
                if type(attributes) is dict:
                    parent = attributes.get(outer)
                    if type(parent) is dict:
                        return matcher(parent.get(inner), saved_groups)
                return matcher(_get_path(attributes, path), saved_groups)

            return two_levels

        def nested(attributes: Any, saved_groups: SavedGroups) -> bool:
            return matcher(_get_path(attributes, path), saved_groups)

        return nested

    def value(self, expected: Any, fold_case: bool = False) -> _ValueMatcher:
        if isinstance(expected, str):
            return _equals_string(expected, fold_case)
        if isinstance(expected, bool):
            return _equals_boolean(expected)
        if _is_number(expected):
            return _equals_number(expected)
        if expected is None:
            return _is_null
        if _is_operator_object(expected):
            operators = [
                (_value_cost({op: arg}), self.operator(op, arg)) for op, arg in expected.items()
            ]
            return _all_of(_cheapest_first(operators))

        def equals_structure(value: Any, saved_groups: SavedGroups) -> bool:
            return _json_equal(value, expected)

        return equals_structure

    def operator(self, op: str, expected: Any) -> _ValueMatcher:
        build = _OPERATORS.get(op)
        if build is None:
            return _never
        return build(self, expected)

    # One builder per operator; each returns a matcher for the attribute value.

    def _eq(self, expected: Any) -> _ValueMatcher:
        if _js_type(expected) in ("array", "object"):
            return _never

        def strictly_equal(value: Any, saved_groups: SavedGroups) -> bool:
            return _strict_equal(value, expected)

        return strictly_equal

    def _ne(self, expected: Any) -> _ValueMatcher:
        return _negate(self._eq(expected))

    def _relational(self, test: Callable[[Any, Any], bool], expected: Any) -> _ValueMatcher:
        primitive = _to_primitive(expected)
        expected_text = primitive if isinstance(primitive, str) else None
        expected_number = _to_number(primitive)

        def compare(value: Any, saved_groups: SavedGroups) -> bool:
            kind = type(value)
            if kind is float or (kind is int and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER):
                # NaN on either side makes every float comparison False, as in JavaScript.
                return test(value, expected_number)
            if kind is str and expected_text is not None:
                return test(value, expected_text)
            actual = _to_primitive(value)
            if expected_text is not None and isinstance(actual, str):
                return test(actual, expected_text)
            return test(_to_number(actual), expected_number)

        return compare

    def _version(self, test: Callable[[Any, Any], bool], expected: Any) -> _ValueMatcher:
        padded_expected = _padded_version(expected)

        def compare_versions(value: Any, saved_groups: SavedGroups) -> bool:
            return test(_padded_version(value), padded_expected)

        return compare_versions

    def _exists(self, expected: Any) -> _ValueMatcher:
        if _js_truthy(expected):

            def present(value: Any, saved_groups: SavedGroups) -> bool:
                return value is not None

            return present

        def absent(value: Any, saved_groups: SavedGroups) -> bool:
            return value is None

        return absent

    def _type(self, expected: Any) -> _ValueMatcher:
        def has_type(value: Any, saved_groups: SavedGroups) -> bool:
            return _js_type(value) == expected

        return has_type

    def _in(self, expected: Any, fold_case: bool = False) -> _ValueMatcher:
        if not _is_array(expected):
            return _never
        keys = _member_keys(expected, fold_case)
        if fold_case:

            def is_in_folded(value: Any, saved_groups: SavedGroups) -> bool:
                if type(value) is str:
                    return value.lower() in keys
                return _is_in(value, keys, True)

            return is_in_folded

        def is_in(value: Any, saved_groups: SavedGroups) -> bool:
            # A string or an int is its own member key (bool is not an int here: type() is exact).
            kind = type(value)
            if kind is str or kind is int:
                return value in keys
            return _is_in(value, keys)

        return is_in

    def _nin(self, expected: Any, fold_case: bool = False) -> _ValueMatcher:
        if not _is_array(expected):
            return _never
        return _negate(self._in(expected, fold_case))

    def _in_group(self, expected: Any) -> _ValueMatcher:
        def in_group(value: Any, saved_groups: SavedGroups) -> bool:
            return _is_in(value, _group_keys(saved_groups, expected))

        return in_group

    def _all(self, expected: Any, fold_case: bool = False) -> _ValueMatcher:
        if not _is_array(expected):
            return _never
        wanted = tuple(self.value(item, fold_case) for item in expected)

        def contains_all(value: Any, saved_groups: SavedGroups) -> bool:
            if not _is_array(value):
                return False
            return all(any(m(item, saved_groups) for item in value) for m in wanted)

        return contains_all

    def _elem_match(self, expected: Any) -> _ValueMatcher:
        if not isinstance(expected, Mapping):
            return _never
        check = self.value(expected) if _is_operator_object(expected) else self.condition(expected)

        def some_element(value: Any, saved_groups: SavedGroups) -> bool:
            if not _is_array(value):
                return False
            return any(_js_truthy(item) and check(item, saved_groups) for item in value)

        return some_element

    def _size(self, expected: Any) -> _ValueMatcher:
        check = self.value(expected)

        def size(value: Any, saved_groups: SavedGroups) -> bool:
            return _is_array(value) and check(len(value), saved_groups)

        return size

    def _regex(self, expected: Any, ignore_case: bool = False) -> _ValueMatcher:
        if not isinstance(expected, str) or _regex_error(expected, ignore_case) is not None:
            return _never
        search = _compile_regex(expected, ignore_case).search
        timeout = self.regex_timeout
        untimed_length = _untimed_text_length(expected, timeout)

        def matches(value: Any, saved_groups: SavedGroups) -> bool:
            text = value if type(value) is str else _js_string(value)
            if len(text) <= untimed_length:
                return search(text) is not None
            try:
                return search(text, timeout=timeout) is not None
            except TimeoutError:
                logger.warning("Condition regex %r timed out after %ss", expected, timeout)
                return False

        return matches


_OPERATORS: Final[dict[str, Callable[[_Compiler, Any], _ValueMatcher]]] = {
    "$eq": _Compiler._eq,
    "$ne": _Compiler._ne,
    "$lt": lambda c, e: c._relational(operator.lt, e),
    "$lte": lambda c, e: c._relational(operator.le, e),
    "$gt": lambda c, e: c._relational(operator.gt, e),
    "$gte": lambda c, e: c._relational(operator.ge, e),
    "$veq": lambda c, e: c._version(operator.eq, e),
    "$vne": lambda c, e: c._version(operator.ne, e),
    "$vlt": lambda c, e: c._version(operator.lt, e),
    "$vlte": lambda c, e: c._version(operator.le, e),
    "$vgt": lambda c, e: c._version(operator.gt, e),
    "$vgte": lambda c, e: c._version(operator.ge, e),
    "$exists": _Compiler._exists,
    "$type": _Compiler._type,
    "$in": _Compiler._in,
    "$nin": _Compiler._nin,
    "$ini": lambda c, e: c._in(e, fold_case=True),
    "$nini": lambda c, e: c._nin(e, fold_case=True),
    "$all": _Compiler._all,
    "$alli": lambda c, e: c._all(e, fold_case=True),
    "$inGroup": _Compiler._in_group,
    "$notInGroup": lambda c, e: _negate(c._in_group(e)),
    "$elemMatch": _Compiler._elem_match,
    "$size": _Compiler._size,
    "$regex": _Compiler._regex,
    "$regexi": lambda c, e: c._regex(e, ignore_case=True),
    "$not": lambda c, e: _negate(c.value(e)),
}
assert _OPERATORS.keys() == _VALUE_OPERATORS


class CompiledCondition:
    """A condition pre-processed once (paths split, regexes and `$in` sets built).

    Immutable and thread-safe: compile a rule when it is loaded and call it per request.
    """

    __slots__ = ("_matcher", "condition")

    def __init__(self, condition: Any, matcher: _ConditionMatcher) -> None:
        self.condition = condition
        self._matcher = matcher

    def __call__(
        self, attributes: Mapping[str, Any], saved_groups: SavedGroups | None = None
    ) -> bool:
        return self._matcher(attributes, _EMPTY_GROUPS if saved_groups is None else saved_groups)

    evaluate = __call__

    def __repr__(self) -> str:
        return f"CompiledCondition({self.condition!r})"


def compile_condition(
    condition: Mapping[str, Any], *, regex_timeout: float | None = REGEX_TIMEOUT_SECONDS
) -> CompiledCondition:
    """Compile `condition` for repeated evaluation. Never raises: bad clauses never match.

    `regex_timeout` limits each regex search (None: no limit).
    """
    return CompiledCondition(condition, _Compiler(regex_timeout).condition(condition))


def eval_condition(
    condition: Mapping[str, Any],
    attributes: Mapping[str, Any],
    saved_groups: SavedGroups | None = None,
) -> bool:
    """Whether `attributes` satisfy `condition`; `saved_groups` maps group ids to members."""
    return compile_condition(condition)(attributes, saved_groups)


# --- Which attributes a condition reads ----------------------------------------------------

_Location: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True)
class Clause:
    """One attribute clause of a condition: the attribute path it reads, what it tests the
    value against (a literal or an operator object), where it stands (``location``, for
    messages) and its number (1-based, in document order)."""

    number: int
    path: str
    argument: Any
    location: _Location


def _clauses(condition: Any, location: _Location) -> Iterator[tuple[str, Any, _Location]]:
    if not isinstance(condition, Mapping):
        return
    for key, argument in condition.items():
        here = (*location, key)
        if key in ("$and", "$or", "$nor"):
            if _is_array(argument):
                for index, branch in enumerate(argument):
                    yield from _clauses(branch, (*here, index))
        elif key == "$not":
            yield from _clauses(argument, here)
        elif isinstance(key, str):
            yield key, argument, here


def condition_clauses(condition: Any) -> list[Clause]:
    """Every attribute clause of `condition`, at any depth of ``$and``/``$or``/``$nor``/
    ``$not``, in document order. The one walker over conditions: the rule set's metric
    slots, the models a condition reads and the admin's attribute check all use it.

    A clause's operators (``$not``, ``$elemMatch`` …) belong to that clause: the fields of an
    ``$elemMatch`` object are the list element's, not attributes, so they are not clauses.
    """
    return [
        Clause(number, path, argument, location)
        for number, (path, argument, location) in enumerate(_clauses(condition, ()), start=1)
    ]


def condition_paths(condition: Any) -> Iterator[str]:
    """The attribute paths `condition` reads, in document order (repeats included)."""
    for path, _, _ in _clauses(condition, ()):
        yield path


def namespace_keys(condition: Any, namespace: str) -> set[str]:
    """The second segment of every path under `namespace`: ``namespace_keys(c, "model")``
    is the model keys ``model.<key>.score`` … reads, ``"slot"`` the slots whose metrics."""
    prefix = namespace + "."
    found: set[str] = set()
    for path in condition_paths(condition):
        if path.startswith(prefix):
            key = path[len(prefix) :].split(".", 1)[0]
            if key:
                found.add(key)
    return found


# --- Validation -----------------------------------------------------------------------------


def render_location(location: _Location) -> str:
    """``condition["$and"][1]["session.clicks"]``: where a clause stands, for messages."""
    return "condition" + "".join(
        f"[{part}]" if isinstance(part, int) else f"[{json.dumps(part)}]" for part in location
    )


_render = render_location


def _describe(value: Any) -> str:
    kind = _js_type(value)
    if kind == "null":
        return "null"
    if kind in ("array", "object"):
        return f"an {kind}"
    if kind == "unknown":
        return f"a Python {type(value).__name__}"
    return f"{kind} {json.dumps(value)}"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Validator:
    def __init__(self, known_groups: Collection[str] | None) -> None:
        self.known_groups = known_groups
        self.problems: list[str] = []

    def report(self, location: _Location, message: str) -> None:
        self.problems.append(f"{_render(location)}: {message}")

    def condition(self, condition: Any, location: _Location) -> None:
        if not isinstance(condition, Mapping):
            self.report(
                location,
                f"a condition must be an object of attribute paths and $and/$or/$nor/$not, "
                f"got {_describe(condition)}",
            )
            return
        for key, argument in condition.items():
            here = (*location, key)
            if not isinstance(key, str):
                self.report(location, f"keys must be strings, got {_describe(key)}")
            elif key in ("$and", "$or", "$nor"):
                if not _is_array(argument):
                    self.report(
                        here, f"{key} expects a list of conditions, got {_describe(argument)}"
                    )
                    continue
                for index, branch in enumerate(argument):
                    self.condition(branch, (*here, index))
            elif key == "$not":
                self.condition(argument, here)
            else:
                if key in _VALUE_OPERATORS:
                    self.report(
                        here,
                        f'"{key}" is an operator on an attribute; at this level it is read as an '
                        f"attribute named {json.dumps(key)}. Put it under an attribute, e.g. "
                        f'{{"country": {{"{key}": ...}}}}',
                    )
                elif key == "" or "" in key.split("."):
                    self.report(here, "the attribute path has an empty segment")
                self.value(argument, here)

    def value(self, expected: Any, location: _Location) -> None:
        if not isinstance(expected, Mapping) or not expected:
            return  # a literal: compared for equality
        operators = [k for k in expected if isinstance(k, str) and k.startswith("$")]
        if not operators:
            return
        if len(operators) != len(expected):
            plain = [k for k in expected if k not in operators]
            self.report(
                location,
                f"mixes operators ({', '.join(map(str, operators))}) with plain keys "
                f"({', '.join(map(str, plain))}); the whole object is then compared literally "
                f"and the operators are ignored",
            )
            return
        for op, argument in expected.items():
            self.operator(op, argument, (*location, op))

    def operator(self, op: str, argument: Any, location: _Location) -> None:
        if op in ("$and", "$or", "$nor"):
            self.report(
                location,
                f"{op} combines whole conditions and is not allowed among an attribute's "
                f'operators; write {{"{op}": [{{"attr": ...}}, ...]}} at condition level',
            )
            return
        if op not in _VALUE_OPERATORS:
            suggestion = _suggest(op, _VALUE_OPERATORS)
            self.report(location, f'unknown operator "{op}"{suggestion}; it never matches')
            return
        check = getattr(self, "_check_" + op[1:].lower(), None)
        if check is not None:
            check(op, argument, location)

    def _expect(self, ok: bool, location: _Location, op: str, wanted: str, argument: Any) -> bool:
        if not ok:
            self.report(location, f"{op} expects {wanted}, got {_describe(argument)}")
        return ok

    def _check_eq(self, op: str, argument: Any, location: _Location) -> None:
        if _js_type(argument) in ("array", "object"):
            outcome = "never matches" if op == "$eq" else "always matches"
            self.report(
                location,
                f"{op} compares strictly, so with an array or object it {outcome}; to compare "
                f"structure, give the value directly instead of {op}",
            )

    _check_ne = _check_eq

    def _check_lt(self, op: str, argument: Any, location: _Location) -> None:
        kind = _js_type(argument)
        self._expect(kind in ("number", "string"), location, op, "a number or a string", argument)

    _check_lte = _check_gt = _check_gte = _check_lt

    def _check_veq(self, op: str, argument: Any, location: _Location) -> None:
        ok = (isinstance(argument, str) and argument != "") or _is_number(argument)
        self._expect(ok, location, op, 'a version string such as "1.2.3"', argument)

    _check_vne = _check_vgt = _check_vgte = _check_vlt = _check_vlte = _check_veq

    def _check_exists(self, op: str, argument: Any, location: _Location) -> None:
        self._expect(isinstance(argument, bool), location, op, "true or false", argument)

    def _check_type(self, op: str, argument: Any, location: _Location) -> None:
        if isinstance(argument, str) and argument in _TYPE_NAMES:
            return
        names = ", ".join(f'"{name}"' for name in _TYPE_NAMES)
        suggestion = _suggest(argument, _TYPE_NAMES) if isinstance(argument, str) else ""
        self.report(location, f"{op} expects one of {names}, got {_describe(argument)}{suggestion}")

    def _check_in(self, op: str, argument: Any, location: _Location) -> None:
        if not self._expect(_is_array(argument), location, op, "a list of values", argument):
            return
        for index, item in enumerate(argument):
            if _member_key(item) is _NO_KEY:
                self.report(
                    (*location, index),
                    f"{op} compares strictly, so {_describe(item)} in its list never matches",
                )

    _check_nin = _check_ini = _check_nini = _check_in

    def _check_all(self, op: str, argument: Any, location: _Location) -> None:
        if self._expect(_is_array(argument), location, op, "a list of values", argument):
            for index, item in enumerate(argument):
                self.value(item, (*location, index))

    _check_alli = _check_all

    def _check_ingroup(self, op: str, argument: Any, location: _Location) -> None:
        if not self._expect(isinstance(argument, str), location, op, "a saved group id", argument):
            return
        if self.known_groups is not None and argument not in self.known_groups:
            behaviour = "never matches" if op == "$inGroup" else "always matches"
            suggestion = _suggest(argument, self.known_groups)
            self.report(
                location, f'unknown saved group "{argument}"{suggestion}, so {op} {behaviour}'
            )

    _check_notingroup = _check_ingroup

    def _check_elemmatch(self, op: str, argument: Any, location: _Location) -> None:
        ok = isinstance(argument, Mapping) and bool(argument)
        if not self._expect(ok, location, op, "a non-empty object", argument):
            return
        if _is_operator_object(argument):
            self.value(argument, location)
        else:
            self.condition(argument, location)

    def _check_size(self, op: str, argument: Any, location: _Location) -> None:
        if _is_operator_object(argument):
            self.value(argument, location)
            return
        ok = _is_number(argument) and argument >= 0 and float(argument).is_integer()
        self._expect(ok, location, op, "a non-negative integer or an operator object", argument)

    def _check_regex(self, op: str, argument: Any, location: _Location) -> None:
        if not self._expect(isinstance(argument, str), location, op, "a pattern string", argument):
            return
        error = _regex_error(argument, op == "$regexi")
        if error is not None:
            self.report(location, f"invalid regular expression {json.dumps(argument)}: {error}")

    _check_regexi = _check_regex

    def _check_not(self, op: str, argument: Any, location: _Location) -> None:
        self.value(argument, location)


def validate_condition(condition: Any, *, known_groups: Collection[str] | None = None) -> list[str]:
    """Problems with `condition`, each naming the clause it is about; empty when it is sound.

    Pass `known_groups` (the saved group ids that exist) to also catch unknown group ids.
    """
    validator = _Validator(known_groups)
    validator.condition(condition, ())
    return validator.problems


# --- Partial evaluation: what the server knows now, the rest for the page ----------------------
#
# A live rule's condition mixes attributes the server has at decide (session, visitor, segments
# …) with ones only the open page measures (``page.*``). Partial evaluation reduces the condition
# by the server's values: the result is True or False when the server's part settles it, or a
# *residual* condition that reads only the deferred attributes and that, evaluated on the page's
# values, gives exactly what the whole condition gives with both sides known. Logic is simplified
# as it reduces: a false clause sinks an ``$and`` and drops out of an ``$or``, a true one the
# other way round, ``$not`` and ``$nor`` flip; a residual is never more than the deferred clauses
# under the logic that still matters. A sub-condition that reads no deferred attribute is
# compiled whole (the same matcher as :func:`compile_condition`), and one that reads only
# deferred attributes is its own residual, returned as written.

Residual: TypeAlias = dict[str, Any]
PartialResult: TypeAlias = bool | Residual
_PartialMatcher: TypeAlias = Callable[[Any, SavedGroups], PartialResult]


def _junction(results: Iterable[PartialResult], key: str, decisive: bool) -> PartialResult:
    """``$and`` (a False result is decisive) or ``$or`` (a True one is) over partial results:
    the decisive answer settles it, the other drops out, residuals are kept under ``key``."""
    residuals: list[Residual] = []
    for result in results:
        if result is decisive:
            return decisive
        if not isinstance(result, bool):
            residuals.append(result)
    if not residuals:
        return not decisive
    return residuals[0] if len(residuals) == 1 else {key: residuals}


def _and_results(results: Iterable[PartialResult]) -> PartialResult:
    return _junction(results, "$and", False)


def _or_results(results: Iterable[PartialResult]) -> PartialResult:
    return _junction(results, "$or", True)


def _not_result(result: PartialResult) -> PartialResult:
    if isinstance(result, bool):
        return not result
    return {"$not": result}


def _nor_results(results: Iterable[PartialResult]) -> PartialResult:
    either = _or_results(results)
    if isinstance(either, dict) and list(either) == ["$or"]:
        return {"$nor": either["$or"]}
    return _not_result(either)


def _well_formed(condition: Any) -> bool:
    """Whether :class:`_Compiler` evaluates this level of ``condition`` at all (it fails closed
    on a non-object, a non-string key, a logic operator given the wrong shape)."""
    if not isinstance(condition, Mapping):
        return False
    for key, argument in condition.items():
        if key in ("$or", "$nor", "$and") and not _is_array(argument):
            return False
        if (key == "$not" and not isinstance(argument, Mapping)) or not isinstance(key, str):
            return False
    return True


class _PartialCompiler:
    def __init__(self, deferred: Callable[[str], bool], regex_timeout: float | None) -> None:
        self.deferred = deferred
        self.compiler = _Compiler(regex_timeout)

    def reads_deferred(self, condition: Any) -> bool:
        return any(self.deferred(path) for path in condition_paths(condition))

    def reads_known(self, condition: Any) -> bool:
        return any(not self.deferred(path) for path in condition_paths(condition))

    def condition(self, condition: Any) -> _PartialMatcher:
        if not self.reads_deferred(condition) or not _well_formed(condition):
            whole = self.compiler.condition(condition)

            def known(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
                return whole(attributes, saved_groups)

            return known
        if not self.reads_known(condition):
            residual = dict(condition)

            def deferred(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
                return residual

            return deferred
        parts = [self.entry(key, argument) for key, argument in condition.items()]

        def mixed(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
            return _and_results(part(attributes, saved_groups) for part in parts)

        return mixed

    def entry(self, key: str, argument: Any) -> _PartialMatcher:
        """One key of a condition object: a logic operator or one attribute's clause."""
        if key in ("$and", "$or", "$nor"):
            branches = [self.condition(branch) for branch in argument]
            if not branches:
                # As compiled: an empty $and or $or passes, so an empty $nor fails.
                settled = key != "$nor"

                def empty(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
                    return settled

                return empty
            combine = {"$and": _and_results, "$or": _or_results, "$nor": _nor_results}[key]

            def logic(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
                return combine(branch(attributes, saved_groups) for branch in branches)

            return logic
        if key == "$not":
            inner = self.condition(argument)

            def negated(attributes: Any, saved_groups: SavedGroups) -> PartialResult:
                return _not_result(inner(attributes, saved_groups))

            return negated
        # One attribute's clause: it reads either a deferred attribute or a known one.
        return self.condition({key: argument})


class PartialCondition:
    """A condition compiled for partial evaluation; call it with the known attributes."""

    __slots__ = ("_matcher", "condition")

    def __init__(self, condition: Any, matcher: _PartialMatcher) -> None:
        self.condition = condition
        self._matcher = matcher

    def __call__(
        self, attributes: Mapping[str, Any], saved_groups: SavedGroups | None = None
    ) -> PartialResult:
        return self._matcher(attributes, _EMPTY_GROUPS if saved_groups is None else saved_groups)

    def __repr__(self) -> str:
        return f"PartialCondition({self.condition!r})"


def _deferring(prefix: str) -> Callable[[str], bool]:
    root = prefix.rstrip(".")

    def deferred(path: str) -> bool:
        return path == root or path.startswith(prefix)

    return deferred


def compile_partial(
    condition: Mapping[str, Any],
    *,
    deferred_prefix: str = "page.",
    regex_timeout: float | None = REGEX_TIMEOUT_SECONDS,
) -> PartialCondition:
    """Compile `condition` for partial evaluation: the attributes under `deferred_prefix`
    (``page.*`` by default) are left for later, everything else is evaluated when called.
    Never raises; malformed parts fail closed as in :func:`compile_condition`."""
    compiler = _PartialCompiler(_deferring(deferred_prefix), regex_timeout)
    return PartialCondition(condition, compiler.condition(condition))


def partial_condition(
    condition: Mapping[str, Any],
    attributes: Mapping[str, Any],
    saved_groups: SavedGroups | None = None,
    *,
    deferred_prefix: str = "page.",
) -> PartialResult:
    """`condition` reduced by `attributes`: True or False when the known attributes settle it,
    else a residual condition reading only the attributes under `deferred_prefix`, such that
    evaluating it on those gives what evaluating `condition` on all of them gives."""
    return compile_partial(condition, deferred_prefix=deferred_prefix)(attributes, saved_groups)
