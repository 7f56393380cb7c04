"""The storefront's consent endpoints, consent records and GPC."""

import pytest

from consent.hashing import truncate_ip, visitor_key
from consent.models import ConsentPolicy, ConsentRecord, ImmutableError
from consent.selectors import consent_effective
from consent.services import policy_publish


def record(client, **body):
    data = {
        "visitor_id": "v-1",
        "policy_version": 1,
        "purposes": {"analytics": True, "personalization": True, "granular_tracking": False},
        "method": "banner",
    }
    data.update(body)
    return client.post("/api/v1/consent", data, format="json")


def test_consent_policy__current_version__served_with_texts(shop):
    body = shop.client().get("/api/v1/consent-policy").json()
    assert body["version"] == 1
    assert [p["key"] for p in body["purposes"]] == [
        "analytics",
        "personalization",
        "granular_tracking",
    ]
    assert all(p["text"] and p["title"] for p in body["purposes"])


def test_consent__recorded__201_and_effective(shop):
    response = record(shop.client())
    assert response.status_code == 201
    assert response.json()["purposes"] == {
        "analytics": True,
        "personalization": True,
        "granular_tracking": False,
    }
    got = shop.client().get("/api/v1/consent/v-1").json()
    assert got["policy_version"] == 1 and got["reconsent_required"] is False
    assert got["purposes"]["personalization"] is True and got["updated_at"]


def test_consent__record__keeps_keyed_hash_and_truncated_network(shop):
    # (REMOTE_ADDR is the request's address, not a field of the body: unknown fields are refused)
    purposes = {"analytics": True, "personalization": True, "granular_tracking": False}
    body = {"visitor_id": "v-secret", "policy_version": 1, "purposes": purposes}
    response = shop.client().post(
        "/api/v1/consent", body, format="json", REMOTE_ADDR="203.0.113.77"
    )
    assert response.status_code == 201, response.content
    rec = ConsentRecord.objects.get()
    assert rec.visitor_key == visitor_key(shop.prop.pk, "v-secret")
    assert "v-secret" not in rec.visitor_key
    assert rec.granted == ["analytics", "personalization"]
    assert rec.refused == ["granular_tracking"]
    assert truncate_ip("203.0.113.77") == "203.0.113.0/24" == rec.network


def test_consent__unknown_visitor__nothing_granted(shop):
    body = shop.client().get("/api/v1/consent/never-seen").json()
    assert body["policy_version"] is None and body["reconsent_required"] is True
    assert not any(body["purposes"].values())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"policy_version": 9}, "unknown_policy_version"),
        ({"purposes": {"marketing_emails": True}}, "unknown_purpose"),
        ({"purposes": "all"}, "invalid_request"),
        ({"visitor_id": ""}, "invalid_request"),
        # "gpc" is accepted (a script relaying navigator.globalPrivacyControl); an officer's
        # method is not the storefront's to claim.
        ({"method": "officer"}, "invalid_request"),
        ({"policy_version": "one"}, "invalid_request"),
    ],
)
def test_consent__bad_input__400_and_nothing_recorded(shop, body, code):
    response = record(shop.client(), **body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not ConsentRecord.objects.exists()


def test_consent__policy_version_of_other_property__refused(make_shop):
    mine, other = make_shop("Mine"), make_shop("Other")
    policy_publish(property_id=other.prop.pk)  # other now has v2, mine only v1
    response = record(mine.client(), policy_version=2)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_policy_version"


def test_consent__with_gpc__opt_out_recorded_whatever_asked(shop):
    response = record(
        shop.client(HTTP_SEC_GPC="1"),
        purposes={"analytics": True, "personalization": True, "granular_tracking": True},
    )
    assert response.status_code == 201
    assert response.json()["purposes"] == {
        "analytics": True,
        "personalization": False,
        "granular_tracking": False,
    }
    assert ConsentRecord.objects.get().method == "gpc"


def test_consent_lookup__with_gpc__records_opt_out_once_per_version(shop):
    record(shop.client())
    client = shop.client(HTTP_SEC_GPC="1")
    first = client.get("/api/v1/consent/v-1").json()
    client.get("/api/v1/consent/v-1")
    assert first["purposes"]["personalization"] is False
    assert list(ConsentRecord.objects.order_by("id").values_list("method", flat=True)) == [
        "banner",
        "gpc",
    ]


def test_consent__new_policy_changing_purposes__reconsent_and_intersection(shop):
    record(
        shop.client(),
        purposes={"analytics": True, "personalization": True, "granular_tracking": True},
    )
    purposes = [p for p in ConsentPolicy.objects.get(version=1).purposes] + [
        {"key": "ads", "title": "Ads", "text": "Partner advertising."}
    ]
    policy_publish(property_id=shop.prop.pk, purposes=purposes)
    body = shop.client().get("/api/v1/consent/v-1").json()
    assert body["reconsent_required"] is True and body["policy_version"] == 1
    assert body["purposes"] == {
        "analytics": True,
        "personalization": True,
        "granular_tracking": True,
        "ads": False,
    }


def test_consent_policy__published__never_edited_in_place(shop):
    policy = ConsentPolicy.objects.get(property=shop.prop)
    policy.jurisdictions = ["EU"]
    with pytest.raises(ImmutableError):
        policy.save()


def test_consent_record__append_only(shop):
    record(shop.client())
    rec = ConsentRecord.objects.get()
    with pytest.raises(ImmutableError):
        rec.save()
    with pytest.raises(ImmutableError):
        rec.delete()


def test_consent_effective__latest_record_wins(shop):
    record(shop.client())
    record(shop.client(), purposes={"analytics": False})
    assert consent_effective(shop.prop.pk, "v-1").purposes == {
        "analytics": False,
        "personalization": False,
        "granular_tracking": False,
    }


def test_policy_publish__missing_builtin_purpose__refused(shop):
    from consent.exceptions import DomainError

    with pytest.raises(DomainError, match="missing"):
        policy_publish(
            property_id=shop.prop.pk, purposes=[{"key": "analytics", "title": "A", "text": "t"}]
        )


# ---- strict input, like every other endpoint ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"purposes": {"analytics": "yes"}}, "purposes.analytics"),
        ({"purposes": {"analytics": 1}}, "purposes.analytics"),
        ({"purposes": {"personalization": "true"}}, "purposes.personalization"),
        ({"purposes": {"analytics": None}}, "purposes.analytics"),
        ({"policy_version": "1"}, "policy_version"),
        ({"policy_version": 1.5}, "policy_version"),
        ({"policy_version": True}, "policy_version"),
        ({"visitor_id": 123}, "visitor_id"),
        ({"visitor_id": "   "}, "visitor_id"),
        ({"method": 1}, "method"),
    ],
)
def test_consent__loosely_typed_value__400_naming_the_field_and_nothing_recorded(shop, body, path):
    # Given a choice whose value is not of its type (no "yes", 1 or "true" for a boolean,
    # no "1", 1.5 or true for a version)
    # When it is recorded
    response = record(shop.client(), **body)
    # Then it is refused, the details naming the field, and nothing is recorded
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [(p["path"], p["code"]) for p in error["details"]["errors"]] == [(path, "invalid")]
    assert not ConsentRecord.objects.exists()


def test_consent__unknown_top_level_fields__400_listing_each_and_nothing_recorded(shop):
    # When a choice carries fields the endpoint does not know
    response = record(shop.client(), granted=["analytics"], source="banner-v2")
    # Then it is refused, each unknown field listed by name, and nothing is recorded
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [(p["path"], p["code"]) for p in error["details"]["errors"]] == [
        ("granted", "unknown_field"),
        ("source", "unknown_field"),
    ]
    assert not ConsentRecord.objects.exists()


def test_consent__required_field_missing__400_naming_it(shop):
    response = shop.client().post(
        "/api/v1/consent", {"visitor_id": "v-1", "purposes": {}}, format="json"
    )
    assert response.status_code == 400
    problems = response.json()["error"]["details"]["errors"]
    assert [(p["path"], p["code"]) for p in problems] == [("policy_version", "required")]
    assert not ConsentRecord.objects.exists()


def test_consent__whole_number_as_float__accepted_as_that_version(shop):
    # JSON has one number type: 1.0 is the integer 1 (as JSON Schema has it), 1.5 is not
    response = record(shop.client(), policy_version=1.0)
    assert response.status_code == 201, response.content
    assert response.json()["policy_version"] == 1
    assert ConsentRecord.objects.get().policy.version == 1


def test_consent__unknown_purpose__400_pointing_at_it(shop):
    response = record(shop.client(), purposes={"analytics": True, "marketing_emails": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_purpose"
    assert [(p["path"], p["code"]) for p in error["details"]["errors"]] == [
        ("purposes.marketing_emails", "unknown_purpose")
    ]
