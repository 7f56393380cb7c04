"""Brute-force protection of the admin login: after ``LOGIN_LOCKOUT_FAILURES`` failed sign-ins
for one username from one client address, that pair is locked out for
``LOGIN_LOCKOUT_SECONDS`` (counted from the last failure), with a message that says so — even
the right password is refused meanwhile. A success clears the count. An address that fails
``LOGIN_LOCKOUT_ADDRESS_FAILURES`` times across any usernames (password spraying) is locked
out as a whole for the same time; a success does not clear that count.

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


def _counter_key(username: str | None, address: str) -> str:
    """The failures of one username from one address, or (``None``) of any username."""
    subject = "*" if username is None else username.strip().lower()
    digest = hashlib.sha256(f"{subject}|{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def _limits(username: str, address: str) -> list[tuple[str, int]]:
    return [
        (_counter_key(username, address), settings.LOGIN_LOCKOUT_FAILURES),
        (_counter_key(None, address), settings.LOGIN_LOCKOUT_ADDRESS_FAILURES),
    ]


def login_locked(username: str, address: str) -> str | None:
    """Why sign-ins of ``username`` from ``address`` are locked (None when they are not)."""
    limits = _limits(username, address)
    try:
        counts = cache.get_many([key for key, _ in limits])
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)
        return None
    (pair_key, pair_limit), (address_key, address_limit) = limits
    if int(counts.get(pair_key, 0)) >= pair_limit:
        return "username"
    if int(counts.get(address_key, 0)) >= address_limit:
        return "address"
    return None


def _count(key: str, ttl: int) -> int:
    try:
        cache.add(key, 0, ttl)
        count = int(cache.incr(key))
        cache.touch(key, ttl)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ttl)
        count = 1
    return count


def login_failure_record(username: str, address: str) -> int:
    """Count one failure for the username from the address and for the address as a whole;
    a lockout runs ``LOGIN_LOCKOUT_SECONDS`` from the latest failure. Returns the pair's
    count."""
    ttl = settings.LOGIN_LOCKOUT_SECONDS
    try:
        counts = [(_count(key, ttl), limit) for key, limit in _limits(username, address)]
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)
        return 0
    (pair, pair_limit), (from_address, address_limit) = counts
    if pair == pair_limit:
        logger.warning("admin login locked out after %s failures for one username", pair)
    if from_address == address_limit:
        logger.warning(
            "admin login locked out for an address after %s failures across usernames",
            from_address,
        )
    return pair


def login_failures_clear(username: str, address: str) -> None:
    """A success clears the username's count, not the address's: one valid account must not
    let an address go on guessing other accounts' passwords."""
    try:
        cache.delete(_counter_key(username, address))
    except CACHE_ERRORS as exc:
        logger.warning("login lockout unavailable: the cache did not answer (%s)", exc)


def lockout_message(reason: str = "username") -> str:
    minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
    subject = (
        "for this username from your address" if reason == "username" else ("from your address")
    )
    return (
        f"Too many failed sign-ins {subject}: signing in is locked "
        f"for {minutes} minutes. Try again later, or ask an administrator to reset the password."
    )


class LockoutAdminAuthenticationForm(AdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = client_address(self.request) if self.request is not None else "unknown"
        reason = login_locked(username, address)
        if reason:
            raise forms.ValidationError(lockout_message(reason), code="locked_out")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(username, address)
            raise
        login_failures_clear(username, address)
        return cleaned


def install() -> None:
    admin.site.login_form = LockoutAdminAuthenticationForm
