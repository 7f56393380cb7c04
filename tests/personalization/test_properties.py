"""Property-based tests (hypothesis): whatever the input, only the documented outcomes.

* conditions: ``compile_condition`` never raises (a bad clause never matches), evaluation
  always answers a bool, ``validate_condition`` always answers a list of messages, and the
  logical operators keep their meaning on any sound condition;
* bucketing: hashes fall in [0, 1) (or None for an unknown version), bucket ranges stay
  inside the hash space without overlapping, and a chosen variation is one whose range
  holds the hash;
* event validation: any event, however malformed, meets exactly one fate (stored or
  rejected with a path and a message), and a batch of them through the API is a 200
  whose counts add up to the batch, or a 4xx in the error shape.

Bounded by the ``micro-adjust`` profile (``HYPOTHESIS_PROFILE=thorough`` for a long run).
"""

import json
import math
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalization import event_schemas
from personalization.bucketing import (
    choose_variation,
    get_bucket_ranges,
    hash,
    in_namespace,
)
from personalization.conditions import compile_condition, validate_condition
from personalization.services.ingest import Prepared, Rejected, TypeBook, _prepare
from tests.conftest import iso

settings.register_profile(
    "micro-adjust",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
    print_blob=True,
    database=None,  # no .hypothesis/ folder in the checkout; a failure prints its blob
)
settings.register_profile(
    "thorough", parent=settings.get_profile("micro-adjust"), max_examples=3000
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "micro-adjust"))

# ---- conditions ---------------------------------------------------------------------------------

OPERATORS = [
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$veq", "$vne", "$vgt", "$vgte", "$vlt",
    "$vlte", "$exists", "$in", "$nin", "$all", "$elemMatch", "$size", "$type", "$regex",
    "$regexi", "$not", "$ini", "$nini", "$alli", "$inGroup", "$notInGroup", "$unknown",
]  # fmt: skip
LOGICAL = ["$and", "$or", "$nor", "$not"]
PATHS = ["a", "b", "a.b", "visitor.visits_7d", "session.duration_s", "tags", "tags.0", "$x"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: the evaluator must not care
    | st.text(max_size=12)
    | st.sampled_from(["1.2.3", "v2.0.0-beta", "", "0", "null", "a|b", "(a+)+$", "[", "\\"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def operator_objects(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(OPERATORS), values, min_size=1, max_size=3)


value_conditions = st.recursive(
    json_values | operator_objects(json_values),
    lambda inner: operator_objects(inner) | st.lists(inner, max_size=3),
    max_leaves=10,
)
conditions = st.recursive(
    st.dictionaries(st.sampled_from(PATHS) | st.text(max_size=5), value_conditions, max_size=3),
    lambda inner: (
        st.dictionaries(
            st.sampled_from(LOGICAL),
            st.lists(inner, max_size=3) | inner | json_values,
            min_size=1,
            max_size=2,
        )
        | st.dictionaries(st.sampled_from(PATHS), inner, max_size=2)
    ),
    max_leaves=8,
)
attributes = st.dictionaries(
    st.sampled_from(["a", "b", "tags", "visitor", "session"]) | st.text(max_size=4),
    json_values,
    max_size=5,
)
groups = st.dictionaries(st.text(max_size=4), st.lists(scalars, max_size=4), max_size=3)


@given(condition=conditions | json_values, attrs=attributes, saved=groups)
def test_conditions__any_condition_and_attributes__bool_never_an_exception(condition, attrs, saved):
    # Given any JSON as a condition (a dict or not), any attributes and saved groups
    # When it is validated, compiled and evaluated twice
    problems = validate_condition(condition)
    compiled = compile_condition(condition if isinstance(condition, dict) else {"x": condition})
    first = compiled(attrs, saved)
    # Then the answers are a list of messages and the same bool each time
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    assert isinstance(first, bool)
    assert compiled(attrs, saved) is first


@given(condition=conditions, attrs=attributes)
def test_conditions__sound_condition__logical_operators_keep_their_meaning(condition, attrs):
    # Given a condition the validator finds sound
    if validate_condition(condition):
        return
    value = compile_condition(condition, regex_timeout=None)(attrs)
    # Then $not inverts it, and $and / $or / $nor of it alone agree with it
    assert compile_condition({"$not": condition}, regex_timeout=None)(attrs) is (not value)
    assert compile_condition({"$and": [condition, condition]}, regex_timeout=None)(attrs) is value
    assert compile_condition({"$or": [condition]}, regex_timeout=None)(attrs) is value
    assert compile_condition({"$nor": [condition]}, regex_timeout=None)(attrs) is (not value)


# ---- bucketing ----------------------------------------------------------------------------------


@given(seed=st.text(max_size=20), value=st.text(max_size=40), version=st.integers(-3, 5))
def test_bucketing__hash__in_unit_interval_or_none_and_deterministic(seed, value, version):
    n = hash(seed, value, version)
    if version in (1, 2):
        assert n is not None and 0 <= n < 1
        assert hash(seed, value, version) == n
    else:
        assert n is None


weights = st.lists(st.floats(min_value=0, max_value=1), max_size=8)


@given(
    n=st.integers(0, 12),
    coverage=st.floats(allow_nan=False),
    chosen=st.none() | weights,
    visitor=st.text(max_size=30),
)
def test_bucketing__ranges__inside_hash_space_disjoint_and_chosen_range_holds_hash(
    n, coverage, chosen, visitor
):
    ranges = get_bucket_ranges(n, coverage, chosen)
    assert len(ranges) == n
    for start, end in ranges:
        # weights may sum to 1 ± 0.01 (GrowthBook's tolerance): the hash space is [0, 1.01)
        assert 0 <= start <= end <= 1.01 + 1e-9
    for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
        assert end <= start + 1e-12, "ranges never overlap"
    h = hash("seed", visitor, 2)
    assert h is not None
    index = choose_variation(h, ranges)
    assert index == -1 or ranges[index][0] <= h < ranges[index][1]


@given(
    visitor=st.text(max_size=30),
    name=st.text(max_size=10),
    bounds=st.tuples(st.floats(allow_nan=False), st.floats(allow_nan=False)),
)
def test_bucketing__namespace__bool_and_disjoint_slices_never_share(visitor, name, bounds):
    low, high = sorted(bounds)
    inside = in_namespace(visitor, (name, low, high))
    assert isinstance(inside, bool)
    # a visitor in [low, high) is in none of the slices [high, …) or (…, low)
    if inside:
        assert not in_namespace(visitor, (name, high, math.inf))
        assert not in_namespace(visitor, (name, -math.inf, low))


# ---- event validation ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
timestamps = (
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, None]) | st.timezones(),
    ).map(lambda d: d.isoformat())
    | st.datetimes(min_value=datetime(2026, 11, 20), max_value=datetime(2026, 11, 26)).map(
        lambda d: iso(d.replace(tzinfo=UTC))
    )
    | st.text(max_size=30)
    | st.integers()
)
event_fields: dict[str, st.SearchStrategy] = {
    "event_id": st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper()) | json_values,
    "type": st.sampled_from(sorted(event_schemas.BUILT_IN_TYPES)) | st.text(max_size=10),
    "visitor_id": st.text(min_size=1, max_size=130) | json_values,
    "session_id": st.text(min_size=1, max_size=20) | json_values,
    "timestamp": timestamps,
    "decision_id": st.none() | st.uuids().map(str) | json_values,
    "properties": st.dictionaries(
        st.sampled_from(["path", "element_id", "depth_pct", "revenue", "item_id", "x"]),
        json_values,
    )
    | json_values,
    "context": st.dictionaries(st.sampled_from(["url", "utm", "attributes", "z"]), json_values)
    | json_values,
}
events = st.fixed_dictionaries({}, optional={**event_fields, "extra": json_values}) | json_values


@pytest.fixture
def book(shop) -> TypeBook:
    return TypeBook(shop.prop, set(event_schemas.BUILT_IN_TYPES))


@settings(max_examples=400)
@given(raw=events)
def test_event_validation__any_event__prepared_or_rejected_with_a_path(book, shop, raw):
    # When any JSON value is validated as an event
    item = _prepare(0, raw, book, shop.prop, NOW)
    # Then it is either ready to store, with the fields the store needs, or rejected with why
    if isinstance(item, Rejected):
        assert isinstance(item.error["path"], str) and item.error["message"]
    else:
        assert isinstance(item, Prepared)
        assert isinstance(item.event_id, uuid.UUID)
        assert item.timestamp.tzinfo is not None
        assert NOW - timedelta(days=book.retention_days) <= item.timestamp
        assert item.timestamp <= NOW + timedelta(minutes=5)


def encodable(value: Any) -> bool:
    """What a client can send: JSON has no NaN or infinities (the parser refuses them)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@settings(max_examples=40)
@given(batch=(st.lists(events, min_size=1, max_size=6) | json_values).filter(encodable))
def test_events_api__any_batch__200_with_counts_adding_up_or_4xx_in_shape(shop, consent, batch):
    # Given a visitor who consented to everything
    consent(shop.prop, "v-1")
    # When any list of would-be events (or any JSON) is posted
    body: Any = {"events": batch} if isinstance(batch, list) else batch
    response = shop.client().post("/api/v1/events", body, format="json")
    # Then a batch is answered with one fate per event, and anything else is a clear 4xx
    if response.status_code == 200:
        counts = response.json()
        fates = ("accepted", "duplicates", "quarantined", "dropped_no_consent")
        assert sum(counts[f] for f in fates) == len(batch)
    else:
        assert 400 <= response.status_code < 500, response.content
        assert set(response.json()["error"]) == {"code", "message", "details"}
