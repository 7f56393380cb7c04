"""orjson reads request bodies and writes the storefront's answers: what is accepted, what is
refused (with which message) and what is answered are as with DRF's own parser and renderer
(personalization/api/parsers.py, renderers.py)."""

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer as DRFRenderer

from personalization.api.parsers import MAX_DEPTH, StrictJSONParser, json_problem
from personalization.api.renderers import JSONRenderer, json_bytes
from personalization.models import Variant
from tests.targeting import slot

UTF8 = {"encoding": "utf-8"}


def drf_alone(raw: bytes) -> tuple[str, Any]:
    """What DRF's parser followed by the storage check gives: ("ok", value) or ("refused",
    message). The reference the orjson path is held to."""
    try:
        data = JSONParser().parse(io.BytesIO(raw), None, UTF8)
    except RecursionError:
        return "refused", f"JSON nested deeper than {MAX_DEPTH} levels."
    except exceptions.ParseError as exc:
        return "refused", str(exc.detail)
    problem = json_problem(data, MAX_DEPTH)
    return ("refused", problem) if problem else ("ok", data)


def ours(raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", StrictJSONParser().parse(io.BytesIO(raw), None, UTF8)
    except exceptions.ParseError as exc:
        return "refused", str(exc.detail)


def nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}"


BODIES = [
    b'{"visitor_id":"v-1","slots":["a","b"],"context":{"attributes":{"x":1.5,"t":true}}}',
    b'{"a":1,"b":2,"a":3}',  # duplicate keys: the last wins, in the first one's place
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e999}',  # json reads inf (then refused as not finite); orjson refuses
    b'{"a":-1e400}',
    b'{"a":123456789012345678901234567890}',  # past 64 bits: orjson would make it a float
    b'{"a":-9223372036854775809}',
    b'{"a":18446744073709551615}',
    b'{"a":0.12345678901234567890123}',
    b'{"a":"1234567890123456789012"}',
    b'{"a":"\\u0000"}',
    b'{"\\u0000":1}',
    b'{"a":"\\\\u0000"}',  # a backslash, then "u0000": no NUL
    b'{"a":"\\ud800"}',
    b'{"a":"\\udc00x"}',
    b'{"a":"\\ud83d\\ude00"}',
    b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
    b'{"a":"\xff"}',
    b"\xef\xbb\xbf{}",
    b'{"a":"tab\there"}',
    b'{"a":"\\u2028"}',
    b"  {} \n",
    b"{} x",
    b"[01]",
    b"[1.]",
    b"[-0]",
    b"[-0.0]",
    b"{nope",
    b'"just a string"',
    b"null",
    nested(MAX_DEPTH - 2),
    nested(MAX_DEPTH - 1),
    nested(MAX_DEPTH),
    nested(1100),
    nested(20_000),
    b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # brackets in a string only
]


@pytest.mark.parametrize("raw", BODIES, ids=lambda raw: repr(raw[:40]))
def test_parser__any_body__same_outcome_and_message_as_drf_alone(raw):
    # Given a body  When it is parsed  Then accepted with the same value, or refused with the
    # same message, as DRF's parser and the storage check would have
    expected, got = drf_alone(raw), ours(raw)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        assert repr(got[1]) == repr(expected[1])  # types too: 10**30 stays an int
    else:
        assert got[1] == expected[1]


def test_parser__charset_other_than_utf8__read_as_declared():
    # Given a body in Latin-1, declared so
    raw = '{"a":"café"}'.encode("latin-1")
    # When it is parsed  Then DRF's decoding is used: the é survives
    assert StrictJSONParser().parse(io.BytesIO(raw), None, {"encoding": "latin-1"}) == {"a": "café"}


ANSWERS = [
    {"decision_id": "d", "slots": {"hero": {"variant": "a", "content": {"t": "Hi é"}}}},
    {"when": datetime(2026, 12, 7, 23, 0, 5, 123456, tzinfo=UTC), "naive": datetime(2026, 1, 2)},
    {"amount": Decimal("12.50"), "ratio": 0.1, "big": 2**64, "huger": 10**30, "neg": -(2**63)},
    {"line": "a\u2028b\u2029c", "nested": [[{"x": None}], True, False, 1e300, -0.0]},
]


@pytest.mark.parametrize("data", ANSWERS, ids=range(len(ANSWERS)))
def test_renderer__answers__same_bytes_as_drf(data):
    assert json_bytes(data) == DRFRenderer().render(data)
    assert JSONRenderer().render(data) == DRFRenderer().render(data)


def test_renderer__indent_asked__drf_indents():
    data = {"a": [1, 2]}
    assert JSONRenderer().render(data, "application/json; indent=2") == DRFRenderer().render(
        data, "application/json; indent=2"
    )


def test_decide__content_with_integer_past_64_bits__answered_exactly(shop, consent):
    # Given a slot whose default content holds an integer jsonb keeps and orjson cannot encode
    headline = slot(shop.prop, "headline")
    Variant.objects.filter(slot=headline, key="default").update(content={"n": 10**30})
    consent(shop.prop, "v-1")
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["headline"]}
    # When a decision is asked for
    response = shop.client().post("/api/v1/decide", body, format="json")
    # Then it is answered, the integer exact
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["slots"]["headline"]["content"] == {"n": 10**30}


def test_ofrep__integers_past_64_bits__in_context_and_content__answered_exactly(shop, consent):
    # Given a slot whose default content holds an integer past 64 bits, and a visitor
    headline = slot(shop.prop, "headline")
    Variant.objects.filter(slot=headline, key="default").update(content={"n": 10**30})
    consent(shop.prop, "v-1")
    body = b'{"context":{"targetingKey":"v-1","points":123456789012345678901234567890}}'
    client = shop.client()
    # When one flag and all flags are evaluated with such an integer in the context
    one = client.post("/ofrep/v1/evaluate/flags/headline", body, content_type="application/json")
    bulk = client.post("/ofrep/v1/evaluate/flags", body, content_type="application/json")
    # Then both are answered (not a 500), the content's integer exact
    assert one.status_code == 200, one.content
    assert json.loads(one.content)["value"] == {"n": 10**30}
    assert bulk.status_code == 200, bulk.content
    assert json.loads(bulk.content)["flags"][0]["value"] == {"n": 10**30}
