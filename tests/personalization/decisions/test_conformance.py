"""GrowthBook's SDK conformance cases for conditions and bucketing, and what they leave out.

The cases file is GrowthBook's (MIT, see tests/conformance/LICENSE-growthbook.md); every case of
the sections used here runs, none is skipped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from personalization.bucketing import (
    choose_variation,
    get_bucket_ranges,
    get_equal_weights,
    hash,
    in_namespace,
)
from personalization.conditions import (
    _regex_paths,
    compile_condition,
    eval_condition,
    prepare_saved_groups,
    validate_condition,
)

CASES_PATH = Path(__file__).resolve().parents[2] / "conformance" / "growthbook-cases.json"
CASES: dict[str, Any] = json.loads(CASES_PATH.read_text(encoding="utf-8"))
# The file rounds floats to 4 decimals.
TOLERANCE = 1e-4


def unique_ids(names: Iterable[str]) -> list[str]:
    # Two different evalCondition cases are both named "$not - pass" (and "$not - fail").
    seen: Counter[str] = Counter()
    ids = []
    for name in names:
        seen[name] += 1
        ids.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return ids


EVAL_CONDITION_CASES = [
    pytest.param(row[1], row[2], row[3], row[4] if len(row) > 4 else None, id=case_id)
    for row, case_id in zip(
        CASES["evalCondition"], unique_ids(row[0] for row in CASES["evalCondition"]), strict=True
    )
]


def test_conformance_file__loaded__has_every_section_at_its_published_size() -> None:
    sizes = {
        section: len(CASES[section])
        for section in (
            "evalCondition",
            "hash",
            "getBucketRange",
            "chooseVariation",
            "getEqualWeights",
            "inNamespace",
        )
    }

    assert CASES["specVersion"] == "0.8.0"
    assert sizes == {
        "evalCondition": 248,
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "getEqualWeights": 6,
        "inNamespace": 16,
    }


# --- evalCondition ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "attributes", "expected", "saved_groups"), EVAL_CONDITION_CASES
)
def test_eval_condition__growthbook_case__returns_expected(
    condition: dict[str, Any],
    attributes: dict[str, Any],
    expected: bool,
    saved_groups: dict[str, list[Any]] | None,
) -> None:
    assert eval_condition(condition, attributes, saved_groups) is expected


@pytest.mark.parametrize(
    ("condition", "attributes", "expected", "saved_groups"), EVAL_CONDITION_CASES
)
def test_compile_condition__growthbook_case__agrees_with_eval_condition(
    condition: dict[str, Any],
    attributes: dict[str, Any],
    expected: bool,
    saved_groups: dict[str, list[Any]] | None,
) -> None:
    compiled = compile_condition(condition)

    first = compiled(attributes, saved_groups)
    second = compiled.evaluate(attributes, saved_groups)

    assert first is second is eval_condition(condition, attributes, saved_groups) is expected


def test_compile_condition__reused_for_every_cases_attributes__agrees_with_eval_condition() -> None:
    # A compiled rule serves many visitors: no state may carry over from one call to the next.
    rows = CASES["evalCondition"]
    saved_groups = {"group_id": [1, "2", 3]}
    disagreements = []
    for name, condition, *_ in rows:
        compiled = compile_condition(condition)
        for _, _, attributes, *_ in rows:
            if compiled(attributes, saved_groups) != eval_condition(
                condition, attributes, saved_groups
            ):
                disagreements.append((name, attributes))

    assert disagreements == []


# --- JavaScript-SDK semantics the cases don't pin down --------------------------------------


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        pytest.param({"age": 30}, {"age": "30"}, True, id="implicit number equality coerces"),
        pytest.param({"plan": "3"}, {"plan": 3}, True, id="implicit string equality coerces"),
        pytest.param({"flag": True}, {"flag": "yes"}, True, id="implicit true means truthy"),
        pytest.param({"age": {"$eq": 30}}, {"age": "30"}, False, id="$eq is strict"),
        pytest.param({"id": {"$in": [1]}}, {"id": "1"}, False, id="$in is strict on type"),
        pytest.param({"id": {"$in": [1]}}, {"id": True}, False, id="$in keeps true apart from 1"),
        pytest.param({"id": {"$in": [1]}}, {"id": 1.0}, True, id="$in treats 1.0 as 1"),
        pytest.param({"a": {"b": 1, "c": 2}}, {"a": {"c": 2, "b": 1}}, True, id="key order"),
        pytest.param({"tags.1": "b"}, {"tags": ["a", "b"]}, True, id="path indexes a list"),
        pytest.param({"n": {"$elemMatch": {"$lt": 1}}}, {"n": [0]}, False, id="elemMatch skips 0"),
        pytest.param({"v": {"$regex": "^12"}}, {"v": 123}, True, id="regex tests number as text"),
        pytest.param({"$and": {"a": 1}}, {"a": 1}, False, id="malformed $and fails closed"),
        pytest.param({"$not": "a"}, {"a": 1}, False, id="malformed $not fails closed"),
        pytest.param({"$nor": []}, {}, False, id="empty $nor fails"),
        pytest.param([{"a": 1}], {"a": 1}, False, id="non-object condition fails closed"),
    ],
)
def test_eval_condition__js_sdk_semantics__returns_what_the_js_sdk_does(
    condition: Any, attributes: dict[str, Any], expected: bool
) -> None:
    assert eval_condition(condition, attributes) is expected


@pytest.mark.parametrize(
    ("visitor_id", "expected"),
    [("v1", True), ("v2", False), (7, True), ("7", False), (True, True), (1, False), (None, False)],
)
def test_eval_condition__prepared_saved_groups__same_answer_as_plain_lists(
    visitor_id: Any, expected: bool
) -> None:
    groups = {"vip": ["v1", 7, True]}
    condition = {"id": {"$inGroup": "vip"}}

    plain = eval_condition(condition, {"id": visitor_id}, groups)
    prepared = eval_condition(condition, {"id": visitor_id}, prepare_saved_groups(groups))

    assert plain is prepared is expected


# --- Regular expressions with a time limit --------------------------------------------------


def test_eval_condition__catastrophic_backtracking_regex__returns_false() -> None:
    condition = {"ua": {"$regex": "(a+)+$"}}

    assert eval_condition(condition, {"ua": "a" * 40 + "b"}) is False


def test_compile_condition__regex_times_out_before_a_slow_match__counts_as_no_match(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first branch backtracks exponentially before the second one can match, so only
    # the time limit can produce False here.
    compiled = compile_condition({"ua": {"$regex": r"^(?:(a|aa)+$|.*c)"}}, regex_timeout=0.01)

    with caplog.at_level(logging.WARNING, logger="personalization.conditions"):
        slow = compiled({"ua": "a" * 36 + "bc"})

    assert compiled({"ua": "aaabc"}) is True
    assert slow is False
    assert "timed out" in caplog.text


@pytest.mark.parametrize(
    ("pattern", "bounded"),
    [
        ("^Chrome", True),
        ("google|bing|duckduckgo", True),
        (r"^https://shop\.example/(category|sale)/", True),
        (r"^(?:en|fr)-[A-Z][A-Z]$", True),
        (r"\bvip\b|[\w.]@example\.com", True),
        ("a+", False),
        ("(a+)+$", False),
        ("colou?r", False),
        ("a{2,}", False),
        (r"(a)\1", False),
        ("(?=a)b", False),
        ("(?i)vip", False),
        (r"\p{L}", False),
        ("[[:alpha:]]", False),
        ("(ab", False),
    ],
)
def test_regex_paths__pattern__bounded_only_without_quantifiers_or_special_groups(
    pattern: str, bounded: bool
) -> None:
    # Only patterns whose backtracking is bounded by their own size may skip the time limit.
    assert (_regex_paths(pattern) is not None) is bounded


def test_compile_condition__bounded_regex_on_short_and_long_text__same_answers() -> None:
    # Past its untimed length, a bounded pattern is searched with the time limit again.
    compiled = compile_condition({"ref": {"$regex": "google|bing"}})
    long_text = "x" * 200_000

    assert compiled({"ref": "https://www.bing.com/"}) is True
    assert compiled({"ref": long_text + "bing"}) is True
    assert compiled({"ref": long_text}) is False


def test_compile_condition__failing_cheap_clause__spares_the_slow_regex(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Clauses run cheapest first; the answer is the same in any order.
    condition = {"ua": {"$regex": r"^(?:(a|aa)+$|.*c)"}, "plan": "pro"}
    compiled = compile_condition(condition, regex_timeout=0.01)

    with caplog.at_level(logging.WARNING, logger="personalization.conditions"):
        result = compiled({"ua": "a" * 36 + "bc", "plan": "free"})

    assert result is False
    assert "timed out" not in caplog.text


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        pytest.param({"n": {"$gt": 2**53}}, {"n": 2**53 + 1}, False, id="$gt on doubles"),
        pytest.param({"n": {"$lt": -(2**53)}}, {"n": -(2**53) - 1}, False, id="$lt on doubles"),
        pytest.param({"n": 2**53}, {"n": 2**53 + 1}, True, id="big int equality on doubles"),
        pytest.param({"n": {"$gte": 2**53}}, {"n": 2**53}, True, id="$gte at 2**53"),
        pytest.param({"n": {"$gt": 1}}, {"n": float("nan")}, False, id="NaN compares False"),
        pytest.param({"n": {"$gt": "10"}}, {"n": "9"}, True, id="two strings compare as text"),
        pytest.param({"n": {"$gt": "10"}}, {"n": 9}, False, id="number against a string"),
        pytest.param({"n": {"$lt": 10}}, {"n": True}, True, id="true counts as 1"),
        pytest.param({"n": {"$in": [1, 2]}}, {"n": True}, False, id="$in keeps true apart"),
        pytest.param({"n": {"$in": [2.0]}}, {"n": 2}, True, id="$in int against float"),
        pytest.param({"n": {"$nin": ["a"]}}, {"n": ["b", "a"]}, False, id="$nin on an array"),
        pytest.param({"n": {"$ini": ["ABC"]}}, {"n": "abc"}, True, id="$ini folds case"),
        pytest.param({"n": 1}, {"n": True}, True, id="implicit number equality with true"),
        pytest.param({"n": False}, {"n": 0}, True, id="implicit false means falsy"),
        pytest.param({"n": "1,2"}, {"n": [1, 2]}, True, id="implicit string equality on array"),
        pytest.param({"n": {"$regex": "^1,2$"}}, {"n": (1, 2)}, True, id="regex on a tuple"),
        pytest.param({"a.b": {"$gt": 1}}, {"a": [{"b": 2}]}, False, id="path into a list"),
        pytest.param({"a.0.b": {"$gt": 1}}, {"a": [{"b": 2}]}, True, id="path with an index"),
        pytest.param(
            {"a.b": {"$gt": 1}},
            MappingProxyType({"a": MappingProxyType({"b": 2})}),
            True,
            id="path through other mappings",
        ),
        pytest.param({"a.b": {"$exists": False}}, {"a": "x"}, True, id="path through a string"),
    ],
)
def test_compile_condition__values_beyond_the_fast_paths__agree_with_the_js_sdk(
    condition: dict[str, Any], attributes: Any, expected: bool
) -> None:
    # Compiled matchers test common types inline; these values take (or border) the general way.
    assert compile_condition(condition)(attributes) is expected


# --- validate_condition ---------------------------------------------------------------------


def test_validate_condition__unknown_operator__names_the_clause_and_suggests_a_fix() -> None:
    condition = {"$and": [{"country": "US"}, {"name": {"$regx": "^ann"}}]}

    assert validate_condition(condition) == [
        'condition["$and"][1]["name"]["$regx"]: unknown operator "$regx" '
        '(did you mean "$regex"?); it never matches'
    ]


def test_validate_condition__invalid_regex__names_the_clause_and_the_error() -> None:
    problems = validate_condition({"ua": {"$not": {"$regexi": "(mobile|tablet"}}})

    assert len(problems) == 1
    assert problems[0].startswith(
        'condition["ua"]["$not"]["$regexi"]: invalid regular expression "(mobile|tablet": '
    )


def test_validate_condition__wrong_operand_type__names_the_expected_type() -> None:
    condition = {"num": {"$in": 1}, "seen": {"$exists": "yes"}}

    assert validate_condition(condition) == [
        'condition["num"]["$in"]: $in expects a list of values, got number 1',
        'condition["seen"]["$exists"]: $exists expects true or false, got string "yes"',
    ]


def test_validate_condition__unknown_saved_group__reported_only_when_groups_are_known() -> None:
    condition = {"id": {"$inGroup": "vipp"}}

    assert validate_condition(condition) == []
    assert validate_condition(condition, known_groups={"vip"}) == [
        'condition["id"]["$inGroup"]: unknown saved group "vipp" (did you mean "vip"?), '
        "so $inGroup never matches"
    ]


def test_validate_condition__not_an_object__reports_the_whole_condition() -> None:
    assert validate_condition(["country", "US"]) == [
        "condition: a condition must be an object of attribute paths and $and/$or/$nor/$not, "
        "got an array"
    ]


def test_validate_condition__sound_condition__returns_no_problems() -> None:
    condition = {
        "$or": [{"country": {"$ini": ["us", "ca"]}}, {"tags": {"$alli": ["vip"]}}],
        "$nor": [{"age": {"$lt": 18}}],
        "$not": {"ua": {"$regexi": "bot|crawler"}},
        "app.version": {"$vgte": "2.1.0", "$vlt": "3.0.0"},
        "cart": {"$elemMatch": {"sku": {"$in": ["A1", "B2"]}, "qty": {"$gte": 2}}},
        "segments": {"$size": {"$gt": 0}, "$all": ["a", {"$regex": "^b"}]},
        "email": {"$exists": True, "$type": "string", "$ne": ""},
        "id": {"$notInGroup": "blocked"},
        "$groups": {"$elemMatch": {"$eq": "beta"}},
    }

    assert validate_condition(condition, known_groups={"blocked"}) == []


# --- Bucketing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    [pytest.param(*row, id=f"seed={row[0]!r} value={row[1]!r} v{row[2]}") for row in CASES["hash"]],
)
def test_hash__growthbook_case__returns_expected(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    result = hash(seed, value, version)

    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [pytest.param(args, ranges, id=name) for name, args, ranges in CASES["getBucketRange"]],
)
def test_get_bucket_ranges__growthbook_case__returns_expected(
    arguments: list[Any], expected: list[list[float]]
) -> None:
    num_variations, coverage, weights = arguments

    ranges = get_bucket_ranges(num_variations, coverage, weights)

    assert len(ranges) == len(expected)
    for (start, end), (expected_start, expected_end) in zip(ranges, expected, strict=True):
        assert start == pytest.approx(expected_start, abs=TOLERANCE)
        assert end == pytest.approx(expected_end, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("n", "ranges", "expected"),
    [
        pytest.param(n, ranges, index, id=name)
        for name, n, ranges, index in CASES["chooseVariation"]
    ],
)
def test_choose_variation__growthbook_case__returns_expected(
    n: float, ranges: list[list[float]], expected: int
) -> None:
    assert choose_variation(n, ranges) == expected


@pytest.mark.parametrize(
    ("user_id", "namespace", "expected"),
    [pytest.param(uid, ns, result, id=name) for name, uid, ns, result in CASES["inNamespace"]],
)
def test_in_namespace__growthbook_case__returns_expected(
    user_id: str, namespace: list[Any], expected: bool
) -> None:
    assert in_namespace(user_id, namespace) is expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [pytest.param(n, weights, id=f"n={n}") for n, weights in CASES["getEqualWeights"]],
)
def test_get_equal_weights__growthbook_case__returns_expected(
    n: int, expected: list[float]
) -> None:
    assert get_equal_weights(n) == pytest.approx(expected, abs=TOLERANCE)
