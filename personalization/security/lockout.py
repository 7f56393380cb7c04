"""Brute-force protection of the admin login: after ``LOGIN_LOCKOUT_FAILURES`` failed sign-ins
for one username from one client address, that pair is locked out for
``LOGIN_LOCKOUT_SECONDS`` (counted from the last failure), with a message that says so — even
the right password is refused meanwhile. A success clears the count.

The counter lives in Django's cache: Redis when ``REDIS_URL`` is set (shared by every process),
per process otherwise. If the cache does not answer the login works as without the lockout
(fail open, logged): an outage of the cache must not lock every member of staff out.
"""

import hashlib
import logging
from typing import Any

import redis
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache

from .ratelimit import client_address

logger = logging.getLogger(__name__)

CACHE_ERRORS = (redis.RedisError, OSError)


def _counter_key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def login_locked(username: str, address: str) -> bool:
    try:
        count = cache.get(_counter_key(username, address), 0)
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)
        return False
    return int(count) >= settings.LOGIN_LOCKOUT_FAILURES


def login_failure_record(username: str, address: str) -> int:
    """Count one failure; the lockout runs ``LOGIN_LOCKOUT_SECONDS`` from the latest one."""
    key, ttl = _counter_key(username, address), settings.LOGIN_LOCKOUT_SECONDS
    try:
        cache.add(key, 0, ttl)
        count = int(cache.incr(key))
        cache.touch(key, ttl)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ttl)
        count = 1
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)
        return 0
    if count == settings.LOGIN_LOCKOUT_FAILURES:
        logger.warning("admin login locked out after %s failures for one username", count)
    return count


def login_failures_clear(username: str, address: str) -> None:
    try:
        cache.delete(_counter_key(username, address))
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)


def lockout_message() -> str:
    minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
    return (
        f"Too many failed sign-ins for this username from your address: signing in is locked "
        f"for {minutes} minutes. Try again later, or ask an administrator to reset the password."
    )


class LockoutAdminAuthenticationForm(AdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = client_address(self.request) if self.request is not None else "unknown"
        if login_locked(username, address):
            raise forms.ValidationError(lockout_message(), code="locked_out")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(username, address)
            raise
        login_failures_clear(username, address)
        return cleaned


def install() -> None:
    admin.site.login_form = LockoutAdminAuthenticationForm
