"""Requests that authenticate by API key skip Django's session, authentication and message
middleware; what people sign in to keeps them (personalization/api/middleware.py)."""

import re
import uuid

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from personalization.api.middleware import key_only
from tests.targeting import slot

CONVERTER = re.compile(r"<(?:(?P<conv>\w+):)?\w+>")


def _example(pattern: str) -> str:
    """A path the route matches, its arguments filled in."""
    return "/" + CONVERTER.sub(lambda m: str(uuid.uuid4()) if m["conv"] == "uuid" else "x", pattern)


def _api_routes() -> list[tuple[str, type[APIView]]]:
    """(example path, view class) of every route under api/ and ofrep/."""
    found: list[tuple[str, type[APIView]]] = []

    def walk(patterns: list, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and prefix.startswith(("api/", "ofrep/")):
                found.append((_example(prefix + str(p.pattern)), p.callback.cls))  # type: ignore[attr-defined]

    walk(get_resolver().url_patterns, "")
    return found


def test_key_only__every_api_route__skips_sessions_unless_its_view_reads_them():
    # Given every endpoint under /api/ and /ofrep/ (a new one appears here by itself)
    routes = _api_routes()
    assert any(path.startswith("/ofrep/") for path, _ in routes)
    wrong = []
    for path, view in routes:
        # Then sessions are skipped exactly where the view does not authenticate by one
        by_session = any(issubclass(a, SessionAuthentication) for a in view.authentication_classes)
        if key_only(path) == by_session:
            wrong.append(f"{path} ({view.__name__}): key_only={key_only(path)}")
    assert not wrong, wrong


def test_key_only__pages_people_sign_in_to__keep_sessions():
    for path in ("/admin/", "/dashboard/", "/privacy/", "/demo/", "/api/v1/experiments/x/results"):
        assert not key_only(path), path


def test_decide__signed_in_browser__no_session_user_or_messages_touched(shop, consent, staff):
    # Given a staff member's browser, signed in (a session cookie), calling decide with a key
    slot(shop.prop, "headline", {"short": {"text": "Quick picks"}})
    consent(shop.prop, "v-1")
    browser = Client(HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
    browser.force_login(staff(superuser=True))
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["headline"]}
    # When it asks for a decision
    response = browser.post("/api/v1/decide", body, content_type="application/json")
    # Then the answer comes without session, user or message work: no Vary on the cookie,
    # no cookie set, nothing attached to the request by those middleware
    assert response.status_code == 200, response.content
    assert "Cookie" not in response.get("Vary", "")
    assert not response.cookies
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "_messages")
    # And the same browser's admin page still has its signed-in session
    page = browser.get("/admin/")
    assert page.status_code == 200
    assert page.wsgi_request.user.is_authenticated and "Cookie" in page["Vary"]
