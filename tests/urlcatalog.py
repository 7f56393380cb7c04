"""Every URL pattern of the project, with example URLs built from a world of fixture objects.

``routes()`` walks ``get_resolver()`` (the admin's generated URLs included), so a view added
anywhere appears here without editing this file; ``example_urls()`` fills each pattern's
arguments from a ``World`` of two properties holding one object of every staff-visible model.
Used by the permission matrix and the CSRF tests.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver

from consent.models import AccessExport, AuditEntry, AuditKind, PrivacyRequest
from consent.services.access import export_link_token
from consent.services.audit import audit_record
from consent.services.requests import privacy_request_submit
from consent.services.retention import retention_policy_set, retention_purge
from dashboard.models import AttributionWindow
from personalization.models import (
    EventType,
    Experiment,
    ExperimentGoal,
    Goal,
    Property,
    Rollout,
    Rule,
    Slot,
)
from personalization.permissions import PRIVACY_OFFICERS
from personalization.services.surveys import survey_create
from tests.conftest import Shop
from tests.privacy import raw_id, request_made, run_work, visitor_everywhere
from tests.targeting import slot

ADMIN_MODEL = re.compile(
    r"^admin/(?P<app>\w+)/(?P<model>\w+)/"
    r"(?:(?P<kind>add)/|<path:object_id>/(?P<objkind>history|delete|change)/"
    r"|(?P<redirect><path:object_id>/)|)$"
)
CONVERTER = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    pattern: str  # the full route, e.g. "admin/personalization/rule/<int:pk>/preview/"
    name: str  # "admin:personalization_rule_preview"; "" when the pattern has no name

    @property
    def admin_model(self) -> tuple[str, str, str] | None:
        """(app label, model name, kind) for the admin's generated model URLs."""
        m = ADMIN_MODEL.match(self.pattern)
        if m is None or f"{m['app']}.{m['model']}" not in registered_labels():
            return None
        kind = m["kind"] or m["objkind"] or ("redirect" if m["redirect"] else "changelist")
        return m["app"], m["model"], kind


def routes() -> list[Route]:
    found: list[Route] = []

    def walk(patterns: list, prefix: str, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = namespace
                if p.namespace:
                    ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
                found.append(Route(prefix + str(p.pattern), name))

    walk(get_resolver().url_patterns, "", "")
    return found


@dataclass
class Side:
    """One property and its objects: the "own" side of a role holder, or the "other"."""

    shop: Shop
    objects: dict[str, Model] = field(default_factory=dict)  # "app.model" -> an object


@dataclass
class World:
    own: Side
    other: Side
    user: Any  # a user object for auth URLs
    group: Group


def _experiment(prop: Property, headline: Slot) -> Experiment:
    """An experiment on the headline with one goal; its key differs per property, so that
    the other property's key never resolves for the own property's staff."""
    goal = Goal.objects.create(
        property=prop, key="cta-click", kind="binary", event_type="click", window_hours=24
    )
    experiment = Experiment.objects.create(
        property=prop,
        key=f"test-{prop.slug}"[:64],
        slot=headline,
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "short", "weight": 0.5}],
    )
    ExperimentGoal.objects.create(experiment=experiment, goal=goal, role="primary")
    return experiment


def _side(shop: Shop, officer: Any) -> Side:
    prop = shop.prop
    vid = raw_id("world")
    visitor_everywhere(shop, vid)
    EventType.objects.create(
        property=prop, name=f"custom_{prop.slug[:8]}", schema={"type": "object"}
    )
    headline = Slot.objects.get(property=prop, key="headline")
    goal = _experiment(prop, headline).goal_links.get().goal
    Rollout.objects.create(property=prop, key="short-headline", slot=headline, variant="short")
    run_work(request_made(shop, vid, "access", officer))  # an AccessExport with its archive
    run_work(request_made(shop, raw_id("erased"), "erasure", officer))  # a Suppression
    retention_policy_set(property_id=prop.pk, periods={"quarantine": 20}, user=officer)
    retention_purge(property_id=prop.pk)
    audit_record(
        action="rule.changed", property_id=prop.pk, kind=AuditKind.CONFIGURATION, user=officer
    )
    _learning_objects(prop, headline, goal)
    AttributionWindow.objects.create(property=prop, slot_key="headline", seconds=600)
    side = Side(shop=shop)
    for admin_model, model_admin in admin.site._registry.items():
        label = f"{admin_model._meta.app_label}.{admin_model._meta.model_name}"
        lookup = getattr(model_admin, "property_lookup", None)
        if admin_model is Property:
            side.objects[label] = prop
        elif admin_model is AuditEntry:
            side.objects[label] = AuditEntry.objects.filter(
                property=prop, kind=AuditKind.PRIVACY
            ).first()  # type: ignore[assignment]
        elif lookup is not None:
            found = admin_model._default_manager.filter(**{lookup: prop}).first()
            side.objects[label] = found  # type: ignore[assignment]
    side.objects["consent.accessexport"] = AccessExport.objects.get(
        request__property=prop, request__kind="access"
    )
    side.objects["consent.privacyrequest"] = PrivacyRequest.objects.filter(
        property=prop, kind="access"
    ).first()  # type: ignore[assignment]
    return side


def registered_labels() -> set[str]:
    return {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}


def _learning_objects(prop: Property, slot: Slot, goal: Goal) -> None:
    """A clustering run with a cluster, a propensity model and a guardrail check."""
    run = apps.get_model("personalization", "ClusterRun").objects.create(property=prop)
    apps.get_model("personalization", "Cluster").objects.create(
        run=run, index=0, size=1, share=1.0, centroid=[0.0], description="everyone"
    )
    apps.get_model("personalization", "PropensityModel").objects.create(
        property=prop, key="buyer", slot=slot, goal=goal
    )
    apps.get_model("personalization", "GuardrailCheck").objects.create(
        rule=Rule.objects.filter(property=prop).first(), verdict="inconclusive"
    )


def world_build(make_shop: Callable[..., Shop], staff: Callable[..., Any]) -> World:
    sides = []
    for name in ("Own shop", "Other shop"):
        shop = make_shop(name)
        sides.append(_side(shop, staff(PRIVACY_OFFICERS, shop.prop)))
    missing = [
        f"{label} ({side.shop.prop.name})"
        for side in sides
        for label, obj in side.objects.items()
        if obj is None
    ]
    assert not missing, f"the world lacks an object of: {missing}"
    user = get_user_model().objects.create_user(username="someone", password="x", is_staff=True)
    return World(own=sides[0], other=sides[1], user=user, group=Group.objects.first())  # type: ignore[arg-type]


def _argument(route: Route, name: str, conv: str | None, side: Side, world: World) -> str:
    """The value of one converter of ``route``, taken from ``side``'s objects."""
    objects = side.objects
    model = route.admin_model
    if name == "object_id" and model is not None:
        app, model_name, _ = model
        if app == "auth":
            return str(world.user.pk if model_name == "user" else world.group.pk)
        return str(objects[f"{app}.{model_name}"].pk)
    if route.name.startswith("admin:auth_user"):
        return str(world.user.pk)
    if route.name == "admin:view_on_site":
        prop = objects["personalization.property"]
        ct = ContentType.objects.get_for_model(prop)
        return str(ct.pk if name == "content_type_id" else prop.pk)
    if route.name.startswith("admin:personalization_rule_"):
        rule = objects["personalization.rule"]
        assert isinstance(rule, Rule)
        return str(1 if name == "version" else rule.pk)  # version 1 always exists
    if name == "token":
        return str(objects["consent.accessexport"].token)  # type: ignore[attr-defined]
    if name == "link":  # the API's signed download link of the side's access export
        export = objects["consent.accessexport"]
        assert isinstance(export, AccessExport)
        return export_link_token(
            property_id=side.shop.prop.pk,
            export_token=str(export.token),
            expires_at=export.expires_at,
        )
    if name == "request_id":
        return str(objects["consent.privacyrequest"].public_id)  # type: ignore[attr-defined]
    if name == "visitor_id":
        return "v-1"
    if name == "key" and "survey" in route.name:
        return "exit"
    if name == "key" and route.name.startswith("ofrep-"):
        return "headline"  # an OFREP flag is a slot
    if name in ("key", "experiment", "experiment_key"):
        return objects["personalization.experiment"].key  # type: ignore[attr-defined]
    if name in ("property", "property_id", "pk"):
        return str(objects["personalization.property"].pk)
    if name in ("slug", "property_slug"):
        return objects["personalization.property"].slug  # type: ignore[attr-defined]
    if name == "uuid" or conv == "uuid":
        return str(uuid.uuid4())
    raise LookupError(
        f"tests/urlcatalog.py cannot build an example of {route.pattern!r} ({name}): "
        "teach _argument() where to take it from."
    )


def example_urls(route: Route, world: World, side_name: str) -> list[str]:
    """Example URLs of ``route`` for the ``own`` or ``other`` side (several for a regex)."""
    side = world.own if side_name == "own" else world.other
    pattern = route.pattern
    if pattern.startswith("admin/^(?P<app_label>"):
        labels = re.search(r"\(\?P<app_label>([\w|]+)\)", pattern)
        assert labels is not None
        return [f"/admin/{label}/" for label in labels[1].split("|")]
    if pattern == "admin/(?P<url>.*)$":
        return ["/admin/no-such-page/"]
    if "(?P<" in pattern:
        raise LookupError(f"tests/urlcatalog.py cannot build an example of {pattern!r}")

    def fill(m: re.Match) -> str:
        return _argument(route, m["name"], m["conv"], side, world)

    url = "/" + CONVERTER.sub(fill, pattern)
    if route.name.startswith("dashboard:"):  # a dashboard page shows the property it is asked
        url += f"?property={side.objects['personalization.property'].slug}"  # type: ignore[attr-defined]
    return [url]


def takes_object(route: Route) -> bool:
    """Whether the URL names one object (so "own" and "other" property differ)."""
    if route.name.startswith("dashboard:"):
        return True
    if "(?P<" in route.pattern or (route.admin_model or ("", "", ""))[2] == "redirect":
        return False  # an app's index; ``<id>/`` only redirects to ``<id>/change/``
    return bool(CONVERTER.search(route.pattern)) and route.name not in (
        "admin:view_on_site",
        "admin:auth_user_password_change",
    )


def api_world_build(make_shop: Callable[..., Shop]) -> World:
    """Just what the API's URLs name: an experiment, a survey, privacy requests (an access
    request's archive among them)."""
    sides = []
    for name in ("Own shop", "Other shop"):
        shop = make_shop(name)
        prop = shop.prop
        headline = slot(prop, "headline", {"short": {"text": "Quick"}})
        survey_create(
            prop=prop,
            key="exit",
            title="Before you go",
            questions=[{"key": "recommend", "type": "nps", "text": "Recommend us?"}],
        )
        experiment = _experiment(prop, headline)
        request, _ = privacy_request_submit(
            property_id=prop.pk,
            kind="opt_out",
            regulation="gdpr",
            visitor_id="v-api",
            contact="a@mail.example",
        )
        # An access request worked to its archive (written under MEDIA_ROOT: the caller
        # points it at a temporary directory).
        access = run_work(request_made(shop, "v-api", "access", None))
        side = Side(shop=shop)
        side.objects.update(
            {
                "personalization.property": prop,
                "personalization.experiment": experiment,
                "consent.privacyrequest": request,
                "consent.accessexport": AccessExport.objects.get(request=access),
            }
        )
        sides.append(side)
    group = Group.objects.first()
    assert group is not None
    return World(own=sides[0], other=sides[1], user=None, group=group)
