"""The demo storefront at /demo/: a small shop page wired to the demo property through the
tracker script, so that after ``make run`` a newcomer can accept or refuse consent, browse, and
watch the page adjust and the events arrive in the admin.

The page is public (like any storefront page), and on only when ``DEMO_ENABLED`` says so
(``make run`` does; production leaves it off, so /demo/ is a 404 there). API keys are stored
hashed, so no existing key can be shown: the page issues a publishable key named "demo page"
for the demo property and keeps its raw value in the cache only (``DEMO_KEY_CACHE_SECONDS``).
When the cache no longer has it (a restart with the per-process cache, or the key was revoked),
the next request issues another; earlier "demo page" keys stay listed under API keys until
someone revokes them.
"""

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods

from .management.commands.load_demo import DEMO_SLUG
from .models import ApiKeyKind, Property, Variant
from .services.keys import api_key_authenticate, api_key_issue

DEMO_KEY_NAME = "demo page"
DEMO_KEY_CACHE_SECONDS = 30 * 24 * 3600

_NAMES = [
    "Trail runner",
    "City sneaker",
    "Rain boot",
    "Canvas low-top",
    "Leather loafer",
    "Hiking boot",
    "Court classic",
    "Slip-on",
]
# The simulated traffic's items (sku-001 … sku-040), named for the page; the tracker's items
# part adds these fields to the ids a recommendation answer carries (data-catalog).
CATALOG: dict[str, dict[str, str]] = {
    f"sku-{n:03d}": {"name": f"{_NAMES[(n - 1) % len(_NAMES)]} {n}", "price": f"€{39 + n * 3}"}
    for n in range(1, 41)
}
FALLBACK_CONTENT: dict[str, dict[str, Any]] = {
    "headline": {"text": "New season, new shoes"},
    "cta": {"label": "Add to cart"},
    "recommendations": {"title": "Trending now"},
    "newsletter_popup": {"delay_ms": 10000},
    "layout": {"layout": "grid"},
}


def demo_key(prop: Property) -> str:
    """The raw publishable key the demo page embeds, issued once and kept in the cache."""
    cache_key = f"demo:publishable-key:{prop.pk}"
    raw: str | None = cache.get(cache_key)
    if raw is None or api_key_authenticate(raw) is None:
        _, raw = api_key_issue(prop=prop, kind=ApiKeyKind.PUBLISHABLE, name=DEMO_KEY_NAME)
        cache.set(cache_key, raw, DEMO_KEY_CACHE_SECONDS)
    return raw


def slot_defaults(prop: Property) -> dict[str, dict[str, Any]]:
    """Each demo slot's default content, so the page's markup is what the default serves."""
    variants = Variant.objects.filter(
        slot__property=prop, slot__key__in=FALLBACK_CONTENT, key=F("slot__default_variant")
    ).select_related("slot")
    found = {v.slot.key: v.content for v in variants if isinstance(v.content, dict)}
    return {key: {**fallback, **found.get(key, {})} for key, fallback in FALLBACK_CONTENT.items()}


def _products(ids: list[str]) -> list[dict[str, str]]:
    return [{"id": item_id, **CATALOG[item_id]} for item_id in ids]


@require_http_methods(["GET", "POST"])
def demo(request: HttpRequest) -> HttpResponse:
    """A public page, like any storefront's: no login. A posted form stores nothing. Off
    (404) unless ``DEMO_ENABLED``: it hands its visitors a publishable key."""
    if not settings.DEMO_ENABLED:
        raise Http404("The demo storefront is off (DEMO_ENABLED).")
    if request.method == "POST":
        return HttpResponseRedirect(reverse("demo") + "?sent=1")
    prop = Property.objects.filter(slug=DEMO_SLUG).first()
    if prop is None:
        return render(request, "personalization/demo.html", {"missing": True, "slug": DEMO_SLUG})
    origin = f"{request.scheme}://{request.get_host()}"
    content = slot_defaults(prop)
    context = {
        "key": demo_key(prop),
        "api": request.build_absolute_uri(reverse("api-events").rsplit("/", 1)[0] + "/"),
        "origin": origin,
        "origin_allowed": prop.origin_allowed(origin),
        "content": content,
        "layout": content["layout"].get("layout", "grid"),
        "products": _products([f"sku-{n:03d}" for n in range(1, 7)]),
        "recommended": _products([f"sku-{n:03d}" for n in range(11, 15)]),
        "catalog": CATALOG,
        "sent": request.GET.get("sent") == "1",
    }
    return render(request, "personalization/demo.html", context)


# Included from the project's urls as "demo/".
urlpatterns = [path("", demo, name="demo")]
