"""Time limits for the regular expressions of staff-written event schemas.

fastjsonschema compiles a schema's ``pattern``, ``patternProperties`` and ``format`` regexes
with Python's ``re``, which backtracks without limit: one custom type with
``"pattern": "^(a+)+$"`` let anyone holding the publishable key spend seconds of CPU per
event. So a custom type's validator gets its regexes swapped (:func:`bound`) for the same
patterns on the ``regex`` module (version 0: ``re``'s syntax and semantics) searched with the
time limit targeting conditions use (``conditions.REGEX_TIMEOUT_SECONDS``, 50 ms; a search that
provably cannot run long skips arming it, as there: ``conditions._untimed_text_length``).
Every search of one batch also draws on one budget (:func:`batch_budget`:
``BATCH_SECONDS``, more for large replays): once it is spent, searches are not run at all. A
search that runs out of time, or finds the budget spent, raises :class:`SchemaPatternError`;
ingest quarantines that event with the error's message, replayable once the pattern is fixed.
A batch of hostile events therefore costs at most the budget, whatever the pattern.

The admin refuses, with a message, a pattern that would run out (:func:`pattern_problems`,
called by ``event_schemas.schema_check``): one the ``regex`` module cannot compile, a
repeated group whose only required part itself repeats (``(a+)+``, ``(\\w+\\s?)*``,
``(a*)*``), and any other pattern that runs past the time limit on texts built from it to
make it backtrack (each repetition pumped 256 characters long, then a character that breaks
the match, e.g. ``(a|aa)+$`` on ``"aaa…!"``). That check is a good filter, not a proof: the
time limit above is what bounds ingest.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import regex

from .conditions import REGEX_TIMEOUT_SECONDS, _untimed_text_length

logger = logging.getLogger(__name__)

# A batch's schema regexes may cost at most this much wall time (with the per-search limit,
# a hostile batch costs ten timed-out searches, then none)...
BATCH_SECONDS: Final = 0.5
# ...or this much per event of a larger batch (a replay of a thousand events from the admin).
SECONDS_PER_EVENT: Final = 0.001
# The admin's probes: each repetition pumped to this length, within this much time in all.
PROBE_LENGTH: Final = 256
PROBE_TOTAL_SECONDS: Final = 1.0
_PROBE_ENDINGS: Final = ("!", "\x00", " ", "a", "0", "/")
_MAX_VARIANTS: Final = 6
_MAX_TARGETS: Final = 24
_MAX_SAMPLE: Final = 4096


class SchemaPatternError(Exception):
    """A value could not be checked against a schema's regex; the message says why."""


@dataclass
class _Budget:
    seconds: float
    remaining: float
    logged: bool = False


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "schema_pattern_budget", default=None
)


@contextmanager
def batch_budget(events: int) -> Iterator[None]:
    """Every schema regex searched inside shares one time budget (see the module's doc)."""
    seconds = max(BATCH_SECONDS, events * SECONDS_PER_EVENT)
    token = _budget.set(_Budget(seconds, seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 80 else pattern[:77] + "...")


class _TimedPattern:
    """What fastjsonschema's generated code calls (``.search``/``.match``), on ``regex``
    with the time limit and the batch's budget."""

    __slots__ = ("pattern", "_shown", "_compiled", "_untimed", "_broken")

    def __init__(self, key: str, compiled: Any) -> None:
        self.pattern: str = compiled.pattern
        self._shown = _shown(key)
        self._compiled: Any = None
        self._broken = ""
        self._untimed = -1
        try:
            # fastjsonschema passes no flags: inline ones are part of the pattern.
            self._compiled = regex.compile(self.pattern)
            self._untimed = _untimed_text_length(self.pattern, REGEX_TIMEOUT_SECONDS)
        except Exception as exc:  # whatever regex refuses, the event is not checked
            self._broken = str(exc) or type(exc).__name__

    def search(self, text: str) -> Any:
        return self._run("search", text)

    def match(self, text: str) -> Any:
        return self._run("match", text)

    def _run(self, how: str, text: str) -> Any:
        if self._broken:
            raise SchemaPatternError(
                f"could not be checked: the schema's pattern {self._shown} cannot run with a "
                f"time limit ({self._broken}); fix it under Event types, then replay"
            )
        budget = _budget.get()
        timeout = REGEX_TIMEOUT_SECONDS
        if budget is not None:
            if budget.remaining <= 0:
                raise _spent(budget)
            timeout = min(timeout, budget.remaining)
        method: Callable[..., Any] = getattr(self._compiled, how)
        started = time.perf_counter()
        try:
            if len(text) <= self._untimed:
                return method(text)
            return method(text, timeout=timeout)
        except TimeoutError:
            if budget is not None and timeout < REGEX_TIMEOUT_SECONDS:
                raise _spent(budget) from None
            logger.warning("Schema regex %s timed out after %ss", self._shown, timeout)
            raise SchemaPatternError(
                f"could not be checked: the schema's pattern {self._shown} ran past its "
                f"{timeout * 1000:.0f} ms time limit; fix it under Event types, then replay"
            ) from None
        finally:
            if budget is not None:
                budget.remaining -= time.perf_counter() - started


def _spent(budget: _Budget) -> SchemaPatternError:
    if not budget.logged:
        budget.logged = True
        logger.warning("Schema regexes used up the batch's %ss", budget.seconds)
    return SchemaPatternError(
        f"could not be checked: this batch used up its {budget.seconds:g} s for schema "
        "patterns (one of them is too slow: fix it under Event types, then replay)"
    )


def _patterns_of(validator: Any) -> dict[str, Any] | None:
    state = getattr(validator, "__globals__", None)
    return state.get("REGEX_PATTERNS") if isinstance(state, dict) else None


def bound(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The fastjsonschema validator with every regex it runs bounded in time (in place)."""
    patterns = _patterns_of(validator)
    if patterns:
        for key, compiled in list(patterns.items()):
            if not isinstance(compiled, _TimedPattern):
                patterns[key] = _TimedPattern(key, compiled)
    return validator


# --- The admin's check ------------------------------------------------------------------------

# The parse tree of Python's re (the syntax JSON Schema patterns are checked in).
_sre_parser: Any = importlib.import_module("re._parser")
_sre: Any = importlib.import_module("re._constants")
_REPEATS: Final = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)
_ZERO_WIDTH: Final = (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT, _sre.GROUPREF_EXISTS)


# Keywords whose value is data, not a schema; and those whose value maps names to schemas.
_DATA_KEYWORDS: Final = frozenset({"enum", "const", "default", "examples"})
_SCHEMA_MAPS: Final = frozenset({"properties", "definitions", "$defs", "dependencies"})


def schema_regexes(schema: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, pattern) of every ``pattern`` and ``patternProperties`` key of a schema."""
    if isinstance(schema, list):
        for n, item in enumerate(schema):
            yield from schema_regexes(item, f"{path}/{n}")
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        where = f"{path}/{key}"
        if key in _DATA_KEYWORDS:
            continue
        if key == "pattern" and isinstance(value, str):
            yield where.lstrip("/"), value
        elif key == "patternProperties" and isinstance(value, dict):
            for pattern, sub in value.items():
                yield where.lstrip("/"), pattern
                yield from schema_regexes(sub, f"{where}/{pattern}")
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():  # a property may be named "enum" or "pattern"
                yield from schema_regexes(sub, f"{where}/{name}")
        else:
            yield from schema_regexes(value, where)


def pattern_problems(schema: Any, validator: Callable[[Any], Any]) -> list[str]:
    """Why each staff-written regex of ``schema`` cannot be bounded (empty: all can).

    ``validator`` is the schema compiled by fastjsonschema: its patterns are the forms that
    run (``$`` is ``\\Z`` in a ``pattern``)."""
    compiled = _patterns_of(validator) or {}
    problems: list[str] = []
    deadline = time.perf_counter() + PROBE_TOTAL_SECONDS
    seen: set[str] = set()
    for where, pattern in schema_regexes(schema):
        if pattern in seen:
            continue
        seen.add(pattern)
        runs = compiled.get(pattern)
        problem = pattern_problem(getattr(runs, "pattern", pattern), deadline)
        if problem:
            problems.append(f"The pattern {_shown(pattern)} at {where} {problem}")
    return problems


def pattern_problem(pattern: str, deadline: float | None = None) -> str | None:
    """Why ``pattern`` cannot be bounded, as the end of a sentence, or None."""
    try:
        bounded = regex.compile(pattern)
    except Exception as exc:  # whatever regex refuses, the pattern could not run
        return f"cannot run with a time limit ({exc})."
    try:
        tree = _sre_parser.parse(pattern)
    except Exception as exc:  # the schema's meta-check compiled it with re: not expected
        return f"cannot be analysed ({exc})."
    if _nested_repeat(tree):
        return (
            "repeats a group whose only required part repeats itself (nested quantifiers, "
            'like "(a+)+"): matching can backtrack for minutes. Repeat the inner part once, '
            'e.g. "a+" instead of "(a+)+".'
        )
    deadline = deadline if deadline is not None else time.perf_counter() + PROBE_TOTAL_SECONDS
    for text in _probes(tree):
        if time.perf_counter() > deadline:
            break
        try:
            bounded.search(text, timeout=REGEX_TIMEOUT_SECONDS)
        except TimeoutError:
            preview = text if len(text) <= 24 else f"{text[:12]}…{text[-4:]}"
            return (
                f"takes longer than the {REGEX_TIMEOUT_SECONDS * 1000:.0f} ms limit on a "
                f"{len(text)}-character text like {preview!r} (catastrophic backtracking: "
                "repeated alternatives or repetitions that can match the same text). Rewrite "
                "it so that each character can be matched only one way."
            )
    return None


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-sequences of one parse-tree node."""
    if op in _REPEATS:
        return [av[2]]
    if op is _sre.SUBPATTERN:
        return [av[3]]
    if op is _sre.ATOMIC_GROUP:
        return [av]
    if op is _sre.BRANCH:
        return list(av[1])
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):
        return [av[1]]
    return []


def _varies(op: Any, av: Any) -> bool:
    """A repetition that can take a varying number of turns (not ``?``-like or fixed)."""
    return op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[1] > 1 and av[1] != av[0]


def _core(items: Any) -> list[Any] | None:
    """The required items of a sequence, groups around a single one unwrapped; None when
    an atomic group or possessive repetition keeps the engine from backtracking into it."""
    required = [
        (op, av)
        for op, av in items
        if op not in _ZERO_WIDTH and not (op in _REPEATS and av[0] == 0)
    ]
    if len(required) == 1:
        op, av = required[0]
        if op is _sre.SUBPATTERN:
            return _core(av[3])
        if op in (_sre.ATOMIC_GROUP, _sre.POSSESSIVE_REPEAT):
            return None
    return required


def _contains_variable_repeat(items: Any) -> bool:
    return any(
        _varies(op, av) or any(_contains_variable_repeat(c) for c in _children(op, av))
        for op, av in items
    )


def _nested_repeat(items: Any) -> bool:
    """A varying repetition whose body is, apart from optional parts, one varying
    repetition (or nothing but optional parts that repeat): text splits between the inner
    and the outer turns in exponentially many ways."""
    for op, av in items:
        if _varies(op, av):
            core = _core(av[2])
            if core is not None and (
                (len(core) == 1 and _varies(*core[0]))
                or (not core and _contains_variable_repeat(av[2]))
            ):
                return True
        if any(_nested_repeat(child) for child in _children(op, av)):
            return True
    return False


_CANDIDATES: Final = "a0 A_-.!/@~:\t\né"


def _in_class(items: Any, char: str) -> bool:
    code = ord(char)
    negate = False
    found = False
    categories = {
        _sre.CATEGORY_DIGIT: char.isdigit(),
        _sre.CATEGORY_NOT_DIGIT: not char.isdigit(),
        _sre.CATEGORY_SPACE: char.isspace(),
        _sre.CATEGORY_NOT_SPACE: not char.isspace(),
        _sre.CATEGORY_WORD: char.isalnum() or char == "_",
        _sre.CATEGORY_NOT_WORD: not (char.isalnum() or char == "_"),
        _sre.CATEGORY_LINEBREAK: char == "\n",
        _sre.CATEGORY_NOT_LINEBREAK: char != "\n",
    }
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            found = found or av == code
        elif op is _sre.RANGE:
            found = found or av[0] <= code <= av[1]
        elif op is _sre.CATEGORY:
            found = found or categories.get(av, False)
    return found != negate


def _one_char(op: Any, av: Any) -> str:
    if op is _sre.LITERAL:
        return chr(av)
    if op is _sre.NOT_LITERAL:
        return "a" if av != ord("a") else "b"
    if op is _sre.IN:
        return next((c for c in _CANDIDATES if _in_class(av, c)), "a")
    return "a"  # ANY, and anything else that consumes a character


def _sample(items: Any, at_least_once: bool = False) -> str:
    """A short text the sequence matches (roughly: classes and back-references are
    approximated); ``at_least_once`` takes optional repetitions once."""
    out: list[str] = []
    for op, av in items:
        if op in _ZERO_WIDTH or op is _sre.GROUPREF:
            continue
        if op in _REPEATS:
            piece = _sample(av[2], at_least_once)
            turns = max(av[0], 1 if at_least_once and av[1] > 0 else 0)
            out.append(piece * min(turns, _MAX_SAMPLE // max(len(piece), 1) + 1))
        elif op is _sre.BRANCH:
            out.append(_sample(av[1][0], at_least_once))
        elif op in (_sre.SUBPATTERN, _sre.ATOMIC_GROUP):
            out.append(_sample(_children(op, av)[0], at_least_once))
        else:
            out.append(_one_char(op, av))
        if sum(map(len, out)) > _MAX_SAMPLE:
            break
    return "".join(out)[:_MAX_SAMPLE]


def _variants(body: Any) -> list[str]:
    """Texts one turn of a repetition's body matches: each alternative of a branch in it,
    with optional parts left out and taken once."""
    texts: list[str] = []
    alternatives = [body]
    for op, av in body:
        if op is _sre.SUBPATTERN:
            for inner_op, inner_av in av[3]:
                if inner_op is _sre.BRANCH:
                    alternatives.extend(inner_av[1])
        elif op is _sre.BRANCH:
            alternatives.extend(av[1])
    for alternative in alternatives:
        for at_least_once in (False, True):
            text = _sample(alternative, at_least_once)
            if text and text not in texts:
                texts.append(text)
    return texts[:_MAX_VARIANTS]


def _prefix(items: Any, target: Any) -> str | None:
    """A text that leads the match up to the repetition whose body is ``target``."""
    text = ""
    for op, av in items:
        if op in _REPEATS and av[2] is target:
            return text
        for child in _children(op, av):
            inner = _prefix(child, target)
            if inner is not None:
                return text + inner
        text += _sample([(op, av)])
    return None


def _targets(items: Any) -> Iterator[Any]:
    for op, av in items:
        if _varies(op, av):
            yield av[2]
        for child in _children(op, av):
            yield from _targets(child)


def _probes(tree: Any) -> Iterator[str]:
    """Texts that make a backtracking engine try every way of splitting a pumped repetition:
    what leads up to it, its body many times over, then a character that breaks the match."""
    for n, body in enumerate(_targets(tree)):
        if n >= _MAX_TARGETS:
            return
        prefix = _prefix(tree, body) or ""
        for variant in _variants(body):
            pumped = prefix + variant * max(32, PROBE_LENGTH // len(variant))
            for ending in _PROBE_ENDINGS:
                yield pumped + ending
