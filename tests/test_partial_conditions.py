"""Partial evaluation: a condition reduced by what the server knows, the ``page.*`` part left for
the page, and the two together always give what the whole condition gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalization.conditions import (
    compile_partial,
    condition_paths,
    eval_condition,
    partial_condition,
    prepare_saved_groups,
)

SERVER = {"plan": "gold", "session": {"clicks": 4, "device_type": "mobile"}, "id": "v-1"}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # The server's part false: the rule is dropped
        ({"plan": "free", "page.scroll_speed": {"$gt": 2500}}, False),
        # The server's part true: only the page's part remains
        (
            {"plan": "gold", "page.scroll_speed": {"$gt": 2500}},
            {"page.scroll_speed": {"$gt": 2500}},
        ),
        # An $or settled by the server
        ({"$or": [{"plan": "gold"}, {"page.exit_intent": True}]}, True),
        # An $or whose server branch is false leaves the page branch alone
        ({"$or": [{"plan": "free"}, {"page.exit_intent": True}]}, {"page.exit_intent": True}),
        # $not flips what the server settles, and wraps what it leaves
        (
            {"$not": {"plan": "gold", "page.idle_s": {"$gt": 20}}},
            {"$not": {"page.idle_s": {"$gt": 20}}},
        ),
        ({"$not": {"plan": "free", "page.idle_s": {"$gt": 20}}}, True),
        # $nor: a true server branch sinks it; false ones drop out
        ({"$nor": [{"plan": "gold"}, {"page.clicks": {"$gt": 3}}]}, False),
        (
            {"$nor": [{"plan": "free"}, {"page.clicks": {"$gt": 3}}, {"page.rage_clicks": 1}]},
            {"$nor": [{"page.clicks": {"$gt": 3}}, {"page.rage_clicks": 1}]},
        ),
        (
            {"$nor": [{"session.clicks": {"$lt": 2}}, {"page.clicks": {"$gt": 3}}]},
            {"$not": {"page.clicks": {"$gt": 3}}},
        ),
        # Nested: the server's thresholds never reach the residual
        (
            {
                "$and": [
                    {"session.device_type": "mobile"},
                    {"$or": [{"session.clicks": {"$gt": 10}}, {"page.scroll_depth": {"$gte": 75}}]},
                    {"page.dwell_s": {"$gte": 30}},
                ]
            },
            {"$and": [{"page.scroll_depth": {"$gte": 75}}, {"page.dwell_s": {"$gte": 30}}]},
        ),
        # Only server attributes: a plain answer
        ({"session.clicks": {"$gte": 4}}, True),
        ({}, True),
        # Only page attributes: the condition itself
        (
            {"page.scroll_speed": {"$gt": 2500}, "page.exit_intent": {"$ne": True}},
            {"page.scroll_speed": {"$gt": 2500}, "page.exit_intent": {"$ne": True}},
        ),
        # Empty logic: an empty $or passes, an empty $nor fails
        ({"$or": [], "plan": "gold", "page.clicks": 1}, {"page.clicks": 1}),
        ({"$nor": [], "plan": "gold", "page.clicks": 1}, False),
        # Malformed logic fails closed, as it does when evaluated whole
        ({"$and": {"page.clicks": 1}, "plan": "gold"}, False),
        ({"$not": [{"page.clicks": 1}]}, False),
        # Saved groups are the server's
        ({"id": {"$inGroup": "vips"}, "page.clicks": {"$gt": 0}}, {"page.clicks": {"$gt": 0}}),
        ({"id": {"$notInGroup": "vips"}, "page.clicks": {"$gt": 0}}, False),
    ],
)
def test_partial_condition__mixed_condition__reduced_by_the_server(condition, expected):
    # Given a condition mixing server attributes and page signals, and what the server knows
    groups = prepare_saved_groups({"vips": ["v-1"]})
    # When it is reduced
    result = partial_condition(condition, SERVER, groups)
    # Then what is left is the expected answer or residual
    assert result == expected


def test_partial_condition__page_values_among_server_attributes__never_read():
    # Given server attributes that happen to hold a "page" object (a storefront's own)
    known = {**SERVER, "page": {"scroll_speed": 9999}}
    # When a condition on the page's signal is reduced
    result = partial_condition({"page.scroll_speed": {"$gt": 2500}}, known)
    # Then it is left for the page, whatever the server holds
    assert result == {"page.scroll_speed": {"$gt": 2500}}


def test_compile_partial__compiled_once__evaluates_per_visitor():
    # Given a live rule compiled once
    compiled = compile_partial({"plan": "gold", "page.exit_intent": True})
    # When two visitors are reduced
    # Then each gets its own answer
    assert compiled({"plan": "gold"}) == {"page.exit_intent": True}
    assert compiled({"plan": "free"}) is False


def test_partial_condition__other_prefix__deferred_instead():
    # Given a prefix other than page.
    # When a condition is reduced with it
    result = partial_condition({"plan": "gold", "later.x": 1}, SERVER, deferred_prefix="later.")
    # Then that namespace is what is left
    assert result == {"later.x": 1}


# --- the property: residual on page values == whole condition on both -------------------------

SERVER_PATHS = ["plan", "session.clicks", "segments"]
PAGE_PATHS = ["page.scroll_speed", "page.exit_intent", "page.section_visible_s.hero"]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=5),
    st.sampled_from(["gold", "free", "3", ""]),
)
NUMBERS = st.integers(min_value=-2, max_value=5)


def _operators() -> st.SearchStrategy[Any]:
    simple = st.one_of(
        SCALARS,
        st.builds(lambda op, n: {op: n}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), NUMBERS),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne"]), SCALARS),
        st.builds(
            lambda op, v: {op: v}, st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, max_size=3)
        ),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
        st.builds(lambda n: {"$size": n}, st.integers(min_value=0, max_value=2)),
    )
    return st.one_of(simple, st.builds(lambda inner: {"$not": inner}, simple))


CLAUSES = st.builds(
    lambda path, arg: {path: arg}, st.sampled_from(SERVER_PATHS + PAGE_PATHS), _operators()
)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


CONDITIONS = st.recursive(
    CLAUSES,
    lambda children: st.one_of(
        st.builds(_merge, st.lists(children, min_size=1, max_size=3)),
        st.builds(
            lambda op, xs: {op: xs},
            st.sampled_from(["$and", "$or", "$nor"]),
            st.lists(children, max_size=3),
        ),
        st.builds(lambda c: {"$not": c}, children),
    ),
    max_leaves=8,
)

SERVER_CLAUSES = st.builds(
    lambda path, arg: {path: arg}, st.sampled_from(SERVER_PATHS), _operators()
)
PAGE_CLAUSES = st.builds(lambda path, arg: {path: arg}, st.sampled_from(PAGE_PATHS), _operators())


def _combine(op: str, parts: list[dict[str, Any]], negate: bool) -> dict[str, Any]:
    combined = _merge(parts) if op == "implicit" else {op: parts}
    return {"$not": combined} if negate else combined


# Small random conditions are often one-sided; these always mix both sides at some depth.
MIXED = st.builds(
    _combine,
    st.sampled_from(["implicit", "$and", "$or", "$nor"]),
    st.tuples(CONDITIONS, SERVER_CLAUSES, PAGE_CLAUSES, CONDITIONS)
    .flatmap(st.permutations)
    .map(list),
    st.booleans(),
)

MISSING = object()
VALUES = st.one_of(st.just(MISSING), SCALARS, st.lists(SCALARS, max_size=2))


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    if value is MISSING:
        return
    *parents, last = path.split(".")
    for name in parents:
        target = target.setdefault(name, {})
    target[last] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    condition=st.one_of(
        CONDITIONS,
        MIXED,
        st.builds(_combine, st.just("$or"), st.lists(MIXED, min_size=1, max_size=2), st.booleans()),
    ),
    server_values=st.fixed_dictionaries({p: VALUES for p in SERVER_PATHS}),
    page_values=st.fixed_dictionaries({p: VALUES for p in PAGE_PATHS}),
)
def test_partial_condition__random_mixed_conditions__residual_agrees_with_whole(
    condition, server_values, page_values
):
    # Given a random condition mixing server and page attributes, and random values for both
    server: dict[str, Any] = {}
    page: dict[str, Any] = {}
    for path, value in server_values.items():
        _set(server, path, value)
    for path, value in page_values.items():
        _set(page, path, value)
    both = {**server, **page}
    # When the server reduces it by its values
    result = partial_condition(condition, server)
    # Then the page, knowing only its own values, reaches the whole condition's answer
    whole = eval_condition(condition, both)
    if isinstance(result, bool):
        assert result is whole
    else:
        assert all(path.startswith("page.") for path in condition_paths(result)), result
        assert eval_condition(result, page) is whole, result
