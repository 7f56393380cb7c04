"""Hardening: API rate limits, the admin login's lockout, CSRF on every staff form, security
headers (and the pages that must still work under the CSP), ``check --deploy`` and the
production start-up refusals.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from personalization.models import Property
from personalization.permissions import MARKETING
from personalization.redis_client import connect
from personalization.security import ratelimit
from tests.conftest import Shop, is_postgres, make_event, needs
from tests.privacy import media_root
from tests.urlcatalog import example_urls, routes, world_build

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Long-enough-123"


# Rate limits ----------------------------------------------------------------------------


@pytest.fixture
def limits(settings: Any) -> Any:
    """Small limits on the real Redis; every counter of earlier tests removed."""
    needs(bool(django_settings.REDIS_URL), "rate limits need Redis (set REDIS_URL)")
    settings.RATELIMIT_REDIS_URL = django_settings.REDIS_URL
    settings.RATELIMIT_WINDOW_SECONDS = 60
    settings.RATELIMIT_PER_KEY = 0
    settings.RATELIMIT_PER_ADDRESS = 0
    client = connect(django_settings.REDIS_URL)
    for name in client.scan_iter("rl:*"):
        client.delete(name)
    ratelimit._down_until.clear()
    return settings


def _events(shop: Shop, key: str | None = None, **extra: str) -> Any:
    return shop.client(key, **extra).post(
        "/api/v1/events", {"events": [make_event()]}, format="json"
    )


def test_rate_limit__key_over_its_limit__429_in_error_shape_with_retry_after(shop, limits):
    # Given a limit of 3 requests a minute per key
    limits.RATELIMIT_PER_KEY = 3
    # When the key sends 4
    statuses = [_events(shop).status_code for _ in range(4)]
    # Then the 4th is refused, saying why and when to come back
    assert statuses == [200, 200, 200, 429]
    response = _events(shop)
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"scope": "key", "limit": 3, "window_seconds": 60}
    assert 1 <= int(response["Retry-After"]) <= 60


def test_rate_limit__one_key_exhausted__another_key_unaffected(make_shop, limits):
    limits.RATELIMIT_PER_KEY = 2
    a, b = make_shop("A"), make_shop("B")
    assert [_events(a).status_code for _ in range(3)] == [200, 200, 429]
    assert _events(b).status_code == 200
    assert _events(a, a.sk).status_code == 200  # the secret key has its own count


def test_rate_limit__address_over_its_limit__refused_whatever_the_key(make_shop, limits):
    # Given a limit of 3 per address; keys do not matter
    limits.RATELIMIT_PER_ADDRESS = 3
    a, b = make_shop("A"), make_shop("B")
    # When one address uses two keys, and invalid ones
    got = [
        _events(a).status_code,
        _events(b).status_code,
        _events(a, "pk_guessed").status_code,
        _events(b).status_code,
    ]
    # Then the 4th request is refused (guessing keys counts too) and another address passes
    assert got == [200, 200, 401, 429]
    assert _events(b).json()["error"]["details"]["scope"] == "address"
    assert _events(b, REMOTE_ADDR="198.51.100.7").status_code == 200


def test_rate_limit__next_window__allowed_again(shop, limits):
    limits.RATELIMIT_WINDOW_SECONDS = 1
    limits.RATELIMIT_PER_KEY = 1
    while time.time() % 1 > 0.5:  # start early in a window, so two requests share it
        time.sleep(0.05)
    assert [_events(shop).status_code for _ in range(2)] == [200, 429]
    time.sleep(1.05)
    assert _events(shop).status_code == 200


def test_rate_limit__429_from_a_browser__readable_with_retry_after(shop, limits):
    limits.RATELIMIT_PER_ADDRESS = 1
    _events(shop, HTTP_ORIGIN="https://shop.example")
    response = _events(shop, HTTP_ORIGIN="https://shop.example")
    assert response.status_code == 429
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


def test_rate_limit__counters__hold_no_raw_key(shop, limits):
    limits.RATELIMIT_PER_KEY = 100
    _events(shop)
    client = connect(django_settings.REDIS_URL)
    names = [n.decode() for n in client.scan_iter("rl:*")]
    assert names and not any(shop.pk in n or shop.pk[3:20] in n for n in names)


def test_rate_limit__redis_unreachable__fails_open_with_one_warning(shop, limits, caplog):
    # Given the limiter's Redis is down (nothing listens on that port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limits.RATELIMIT_REDIS_URL = f"redis://127.0.0.1:{port}/0"
    limits.RATELIMIT_PER_KEY = 1
    # When the storefront keeps sending
    with caplog.at_level("WARNING", logger="personalization.security.ratelimit"):
        statuses = [_events(shop).status_code for _ in range(3)]
    # Then nothing is refused or broken, and the outage is logged once (not per request)
    assert statuses == [200, 200, 200]
    warnings = [r for r in caplog.records if "rate limits off" in r.getMessage()]
    assert len(warnings) == 1


def test_rate_limit__no_redis_url__no_limits(shop, settings):
    settings.RATELIMIT_REDIS_URL = ""
    settings.RATELIMIT_PER_KEY = 1
    assert [_events(shop).status_code for _ in range(3)] == [200, 200, 200]


# Login brute force ----------------------------------------------------------------------


def _login(username: str, password: str, address: str = "203.0.113.5") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}
    )


@pytest.fixture
def admin_user(staff) -> Any:
    return staff(superuser=True)


def test_login__five_failures__locked_out_even_with_the_right_password(admin_user, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 5
    # Given five wrong passwords for one username from one address
    for _ in range(5):
        response = _login(admin_user.username, "wrong")
        assert response.status_code == 200 and "correct username and password" in (
            response.content.decode()
        )
    # When the right password comes next
    response = _login(admin_user.username, PASSWORD)
    # Then it is refused with a message that says why
    assert response.status_code == 200
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session
    # And another address (the real user, elsewhere) still signs in
    assert _login(admin_user.username, PASSWORD, "198.51.100.9").status_code == 302


def test_login__success__clears_the_failures(admin_user, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 3
    for _ in range(2):
        _login(admin_user.username, "wrong")
    assert _login(admin_user.username, PASSWORD).status_code == 302
    for _ in range(2):
        _login(admin_user.username, "wrong")
    assert _login(admin_user.username, PASSWORD).status_code == 302


def test_login__lockout_expires(admin_user, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 1
    settings.LOGIN_LOCKOUT_SECONDS = 1
    _login(admin_user.username, "wrong")
    assert "Too many failed" in _login(admin_user.username, PASSWORD).content.decode()
    time.sleep(1.2)
    assert _login(admin_user.username, PASSWORD).status_code == 302


def test_login__other_username__not_locked(admin_user, staff, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 2
    other = staff(superuser=True)
    for _ in range(3):
        _login(admin_user.username, "wrong")
    assert _login(other.username, PASSWORD).status_code == 302


def test_login__many_usernames_from_one_address__address_locked(admin_user, staff, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 5
    settings.LOGIN_LOCKOUT_ADDRESS_FAILURES = 4
    other = staff(superuser=True)
    # Given one address guessing a password for four different usernames, once each
    for name in ("ann", "bob", "cy", "dee"):
        assert _login(name, "wrong").status_code == 200
    # Then even a real account's right password is refused from that address, saying why
    body = _login(other.username, PASSWORD).content.decode()
    assert "Too many failed sign-ins from your address" in body
    # while the same account signs in from another address
    assert _login(other.username, PASSWORD, "198.51.100.9").status_code == 302


def test_login__success__does_not_clear_the_address_count(admin_user, settings):
    settings.LOGIN_LOCKOUT_FAILURES = 5
    settings.LOGIN_LOCKOUT_ADDRESS_FAILURES = 3
    _login("ann", "wrong")
    _login("bob", "wrong")
    assert _login(admin_user.username, PASSWORD).status_code == 302
    _login("cy", "wrong")
    assert "from your address" in _login(admin_user.username, PASSWORD).content.decode()


# CSRF on every staff form -------------------------------------------------------------


def _staff_form_urls(world: Any) -> list[str]:
    """Every staff URL that takes a POST: every admin page and our own staff pages."""
    urls: list[str] = []
    for route in routes():
        # The storefront API and OFREP take keys, not sessions: no staff form there.
        if route.pattern.startswith(("api/", "ofrep/", "demo/")) or route.pattern in (
            "",
            "admin/login/",
        ):
            continue
        urls.extend(example_urls(route, world, "own"))
    return urls


def test_csrf__every_staff_form_posted_without_token__refused(make_shop, staff, settings, tmp_path):
    # Given a superuser (who may post everything) whose browser does not send the token
    media_root(settings, tmp_path)
    world = world_build(make_shop, staff)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff(superuser=True))
    names_before = sorted(Property.objects.values_list("name", flat=True))
    # When every admin add/change/delete/action page and staff form is posted to
    accepted = []
    for url in _staff_form_urls(world):
        response = client.post(url, {"name": "forged", "action": "delete_selected"})
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted.append(f"{url}: {response.status_code}")
    # Then each is refused for the missing token, and nothing changed
    assert not accepted, "POST without a CSRF token not refused:\n" + "\n".join(accepted)
    assert sorted(Property.objects.values_list("name", flat=True)) == names_before


def test_csrf__form_with_its_token__accepted(staff):
    # The control: the refusal above is about the token, not the form
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff(MARKETING))
    page = client.get("/admin/personalization/property/add/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    response = client.post(
        "/admin/personalization/property/add/",
        {
            "csrfmiddlewaretoken": token[1],
            "name": "Tokened",
            "slug": "tokened",
            "allowed_origins": "",
            "timezone": "UTC",
            "retention_days": 30,
        },
    )
    assert response.status_code == 302 and Property.objects.filter(slug="tokened").exists()


def test_csrf__admin_login_without_token__refused(admin_user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": admin_user.username, "password": PASSWORD})
    assert response.status_code == 403


# Security headers -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/admin/login/", "/api/v1/docs/", "/api/v1/consent-policy"])
def test_headers__any_page__strict_csp_and_companions(db, url):
    response = Client().get(url)
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_headers__api_docs__no_inline_script(db):
    html = Client().get("/api/v1/docs/").content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    script = Client().get("/api/v1/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def _pages_under_csp(live_server: Any, prop: Property) -> list[str]:
    from django.urls import reverse

    urls = [
        "/admin/",
        "/admin/personalization/property/",
        "/admin/personalization/property/add/",
        f"/admin/personalization/property/{prop.pk}/change/",
        "/admin/personalization/rule/",
        "/admin/personalization/rule/add/",
        "/admin/personalization/experiment/power/",
        "/admin/consent/consentpolicy/add/",
        "/admin/consent/privacyrequest/",
        "/privacy/consent-history/",
        "/api/v1/docs/",
    ]
    for route in routes():
        if route.name.startswith("dashboard:") and "<" not in route.pattern:
            urls.append(reverse(route.name))
    return [live_server.url + u for u in urls]


def test_csp__admin_dashboards_privacy_and_docs__work_without_violations(
    live_server, page, make_shop, staff
):
    # Given a superuser and a property with a rule, in a real browser
    from tests.browser import admin_login
    from tests.targeting import rule, slot

    shop = make_shop("Csp shop", origins=[live_server.url])
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    rule(shop.prop, "everyone", "headline", "short")
    user = staff(superuser=True)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: (
            "Content Security Policy" in m.text and violations.append(f"{page.url}: {m.text}")
        ),
    )
    admin_login(page, live_server, user.username, PASSWORD)
    # When every kind of staff page is opened under the strict policy
    for url in _pages_under_csp(live_server, shop.prop):
        response = page.goto(url)
        assert response is not None and response.status < 400, url
        assert response.headers.get("content-security-policy"), url
        page.wait_for_load_state("networkidle")
    # Then the API docs rendered (their script is a file) and nothing was blocked
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert not violations, "\n".join(violations)


def test_csp__demo_storefront__tracker_works_without_violations(
    live_server, page, make_shop, settings
):
    from personalization.management.commands.load_demo import DEMO_SLUG, demo_targeting

    settings.DEMO_ENABLED = True  # as `make run` sets it

    shop = make_shop("Demo shop", origins=[live_server.url])
    Property.objects.filter(pk=shop.prop.pk).update(slug=DEMO_SLUG)
    shop.prop.refresh_from_db()
    demo_targeting(shop.prop)
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    page.goto(f"{live_server.url}/demo/")
    # The tracker's banner (a file script and stylesheet) appears and takes a choice
    page.wait_for_selector(".ma-banner", timeout=30_000)
    page.get_by_role("button", name=re.compile("Accept all", re.I)).click()
    page.wait_for_function("() => document.querySelector('[data-ma-decision]') !== null")
    assert not violations, "\n".join(violations)


def _run(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    keep = {"PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV"}
    base = {k: v for k, v in os.environ.items() if k in keep}
    return subprocess.run(
        args,
        env={**base, "DJANGO_SETTINGS_MODULE": "personalization.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PROD = {
    "DJANGO_SECRET_KEY": "prod-like-secret-key-" + "aZ0-9bY8cX7dW6eV5fU4gT3hS2iR1jQ",
    "VISITOR_HASH_KEY": "prod-like-visitor-hash-key-0123456789",
    "DATABASE_URL": "postgres://u@127.0.0.1:1/unreachable",
    "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    "REDIS_URL": "redis://127.0.0.1:1/1",
}


def test_headers__production_mode__hsts_and_secure_cookies():
    # Given production mode (no DJANGO_DEBUG), over HTTPS behind the proxy
    code = (
        "import django; django.setup();"
        "from django.test import Client; from django.conf import settings as s;"
        "r = Client().get('/admin/login/', secure=True);"
        "print(r['Strict-Transport-Security']);"
        "print(r.cookies['csrftoken']['secure'], s.SESSION_COOKIE_SECURE,"
        " s.SESSION_COOKIE_HTTPONLY)"
    )
    result = _run([sys.executable, "-c", code], PROD)
    assert result.returncode == 0, result.stderr
    hsts, cookies = result.stdout.strip().splitlines()[-2:]
    # Then HSTS for a year with subdomains and preload, and cookies only over HTTPS
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert cookies == "True True True"


def test_headers__debug_mode__no_hsts(tmp_path: Path):
    # Given a development process (DJANGO_DEBUG=1: the suite itself runs in production mode)
    code = (
        "import django; django.setup(); from django.test import Client;"
        "r = Client().get('/admin/login/', secure=True);"
        "print(r.status_code, 'Strict-Transport-Security' in r)"
    )
    dev = {"DJANGO_DEBUG": "1", "TASKS_IN_PROCESS": "1"}
    dev["DATABASE_URL"] = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    # When it serves a page over HTTPS
    result = _run([sys.executable, "-c", code], dev)
    # Then it answers without HSTS (a browser would pin the developer's localhost to HTTPS)
    assert result.stdout.split() == ["200", "False"], result.stdout + result.stderr


# check --deploy and start-up refusals -------------------------------------------------


def test_check_deploy__production_settings__no_warning():
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], PROD
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy__no_redis__warns_that_limits_are_off():
    env = {k: v for k, v in PROD.items() if k != "REDIS_URL"}
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env
    )
    assert result.returncode != 0 and "personalization.W002" in result.stderr


@pytest.mark.parametrize(
    "missing", ["DJANGO_SECRET_KEY", "VISITOR_HASH_KEY", "DATABASE_URL", "CELERY_BROKER_URL"]
)
def test_startup__wsgi_without_a_required_setting__refuses_naming_it(missing):
    # Given production mode without one required setting
    env = {k: v for k, v in PROD.items() if k != missing}
    # When the WSGI application is loaded, as gunicorn does
    result = _run([sys.executable, "-c", "import personalization.wsgi"], env)
    # Then it refuses, naming the setting
    assert result.returncode != 0
    assert re.search(rf"ImproperlyConfigured: The setting {missing} is required", result.stderr)


@pytest.fixture
def unmigrated(tmp_path: Path) -> dict[str, str]:
    """Production settings on an empty database: every migration pending."""
    return {**PROD, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}


def test_startup__pending_migrations__wsgi_refuses_naming_them(unmigrated):
    result = _run([sys.executable, "-c", "import personalization.wsgi"], unmigrated)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert re.search(
        r"\d+ database migration\(s\) are not applied \(\w+\.0001_initial", result.stderr
    )
    assert "manage.py migrate" in result.stderr


def test_startup__pending_migrations__gunicorn_refuses(unmigrated):
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    result = _run(
        [gunicorn, "personalization.wsgi", "-b", "127.0.0.1:0", "-w", "1", "--timeout", "30"],
        unmigrated,
    )
    assert result.returncode != 0
    assert "migration(s) are not applied" in result.stderr


def test_startup__pending_migrations__runserver_refuses(unmigrated):
    result = _run(
        [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", "127.0.0.1:0"],
        unmigrated,
    )
    assert result.returncode != 0
    assert "migration(s) are not applied" in result.stderr


def test_startup__migrated_database__wsgi_loads(db):
    # Given production settings on the suite's own (migrated) PostgreSQL database
    needs(is_postgres(), "the migrated database must be reachable from another process")
    from django.db import connection

    db_settings = connection.settings_dict
    url = (
        f"postgres://{db_settings['USER']}:{db_settings['PASSWORD'] or ''}@"
        f"{db_settings['HOST'] or '127.0.0.1'}:{db_settings['PORT'] or 5432}/{db_settings['NAME']}"
    )
    result = _run(
        [sys.executable, "-c", "import personalization.wsgi"], {**PROD, "DATABASE_URL": url}
    )
    assert result.returncode == 0, result.stderr


def test_startup__database_unreachable__starts_and_says_so():
    # A worker restarted while PostgreSQL is down must come back (and answer 503s)
    result = _run([sys.executable, "-c", "import personalization.wsgi"], PROD)
    assert result.returncode == 0, result.stderr
    assert "could not check for unapplied migrations" in result.stderr


def test_startup__debug_mode__pending_migrations_allowed(unmigrated):
    result = _run(
        [sys.executable, "-c", "import personalization.wsgi"], {**unmigrated, "DJANGO_DEBUG": "1"}
    )
    assert result.returncode == 0, result.stderr


# Staff views found to answer 500 on odd input ------------------------------------------


def _rule_admin(make_shop: Any, staff: Any) -> tuple[Client, Any]:
    from tests.targeting import rule, slot

    shop = make_shop()
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    client = Client(raise_request_exception=False)
    client.force_login(staff(MARKETING, shop.prop))
    return client, rule(shop.prop, "everyone", "headline", "short")


def test_rule_replay__days_not_a_number__default_window_not_500(make_shop, staff):
    client, rule = _rule_admin(make_shop, staff)
    response = client.get(f"/admin/personalization/rule/{rule.pk}/replay/?days=abc")
    assert response.status_code == 200


def test_rule_restore__unknown_version__message_not_500(make_shop, staff):
    client, rule = _rule_admin(make_shop, staff)
    response = client.post(f"/admin/personalization/rule/{rule.pk}/restore/99/", follow=True)
    assert response.status_code == 200 and "has no version 99" in response.content.decode()
    rule.refresh_from_db()
    assert rule.version == 1
