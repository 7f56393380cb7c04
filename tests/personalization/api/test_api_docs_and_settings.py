"""The OpenAPI contract is served locally, and production refuses incomplete settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[3]


def test_openapi__schema__lists_storefront_endpoints(db):
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/events",
        "/api/v1/consent-policy",
        "/api/v1/consent",
        "/api/v1/consent/{visitor_id}",
    ):
        assert path in paths


def test_openapi__docs__served_without_a_cdn(db):
    response = Client().get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn." not in html and "unpkg" not in html


def _boot(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DJANGO_DEBUG",
            "TASKS_IN_PROCESS",
            "CELERY_BROKER_URL",
            "DJANGO_SECRET_KEY",
            "VISITOR_HASH_KEY",
            "DATABASE_URL",
        }
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**base, "DJANGO_SETTINGS_MODULE": "personalization.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


PROD = {
    "DJANGO_SECRET_KEY": "x" * 50,
    "VISITOR_HASH_KEY": "y" * 40,
    "DATABASE_URL": "postgres://u@127.0.0.1/db",
    "CELERY_BROKER_URL": "redis://127.0.0.1/0",
}


@pytest.mark.parametrize(
    "missing", ["CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "VISITOR_HASH_KEY", "DATABASE_URL"]
)
def test_settings__production_without_a_required_setting__refuses_naming_it(missing):
    env = {k: v for k, v in PROD.items() if k != missing}
    result = _boot(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_settings__production_complete__boots():
    result = _boot(PROD)
    assert result.returncode == 0, result.stderr


def test_settings__in_process_tasks__only_when_asked():
    env = {k: v for k, v in PROD.items() if k != "CELERY_BROKER_URL"}
    assert _boot({**env, "TASKS_IN_PROCESS": "1"}).returncode == 0
