from typing import Any

from django.db import transaction
from django.utils.text import slugify

from consent import services as consent_services

from ..models import ApiKeyKind, Property
from ..permissions import MARKETING, role_grant
from .keys import api_key_issue


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "property"
    slug, n = base, 1
    while Property.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def property_setup(*, prop: Property, user: Any = None) -> None:
    """What every new property gets: the built-in consent policy, its creator's role."""
    consent_services.policy_publish(property_id=prop.pk, user=user)
    if user is not None and getattr(user, "pk", None) and not user.is_superuser:
        role_grant(user, prop, MARKETING)


@transaction.atomic
def property_create(
    *,
    name: str,
    origins: list[str] | None = None,
    timezone_name: str = "UTC",
    retention_days: int = 395,
    user: Any = None,
    with_keys: bool = True,
) -> tuple[Property, dict[str, str]]:
    """Create a property with its consent policy and, optionally, one key of each kind."""
    prop = Property.objects.create(
        name=name,
        slug=_unique_slug(name),
        allowed_origins=list(origins or []),
        timezone=timezone_name,
        retention_days=retention_days,
    )
    property_setup(prop=prop, user=user)
    keys: dict[str, str] = {}
    if with_keys:
        for kind in (ApiKeyKind.PUBLISHABLE, ApiKeyKind.SECRET):
            _, raw = api_key_issue(prop=prop, kind=kind, name="initial", user=user)
            keys[kind] = raw
    return prop, keys
