"""``manage.py check --deploy``: what our own hardening needs in production."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def security_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    csp = settings.CONTENT_SECURITY_POLICY
    if not csp or "unsafe-inline" in csp or "unsafe-eval" in csp:
        found.append(
            Warning(
                "CONTENT_SECURITY_POLICY is empty or allows 'unsafe-inline'/'unsafe-eval'.",
                hint="Keep the default policy; serve scripts and styles as files.",
                id="personalization.W001",
            )
        )
    if not settings.RATELIMIT_REDIS_URL:
        found.append(
            Warning(
                "No REDIS_URL (or RATELIMIT_REDIS_URL): the API has no rate limits and the "
                "admin login lockout is counted per process.",
                hint="Set REDIS_URL in production.",
                id="personalization.W002",
            )
        )
    return found
