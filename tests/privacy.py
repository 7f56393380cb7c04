"""Builders and scanners for the privacy tests. Data is built through the services users trigger.

``scan_db`` looks for a string in every text and JSON column of every model Django
knows (found by introspection: a model added later is scanned without editing this);
``scan_files`` in every file under a directory, inside zip archives too; ``scan_redis``
in every key and value of a Redis database.
"""

import uuid
import zipfile
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.functions import Cast

from consent.models import PrivacyRequest
from consent.services.access import export_build
from consent.services.erasure import erasure_run
from consent.services.requests import (
    privacy_request_submit,
    request_start,
    request_verify_identity,
)
from personalization.decisions import DecideRequest, decide
from personalization.models import Segment, SegmentMember, Slot, Survey
from personalization.services.ingest import events_ingest
from personalization.services.surveys import survey_create, survey_response_submit
from tests.conftest import ALL_PURPOSES, Shop, make_event
from tests.factories import ConsentFactory
from tests.targeting import rule, slot

TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def raw_id(prefix: str = "subject") -> str:
    """A visitor id unlikely to appear anywhere by accident."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def media_root(settings: Any, tmp_path: Path) -> Path:
    """Point MEDIA_ROOT (where exports are written) at a fresh directory; a module's
    ``media`` fixture calls this."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def visitor_everywhere(shop: Shop, vid: str) -> None:
    """Put a visitor in every store the app has: consent records, events (with the id in
    their context too), a quarantined event, visitor and session signals, the decision log,
    rule counters, session budgets, a saved segment list, survey answers (the id in their
    free text too), and GPC evidence."""
    ConsentFactory(
        property_id=shop.prop.pk, visitor_id=vid, purposes=ALL_PURPOSES, ip="203.0.113.9"
    )
    context = {"url": f"https://shop.example/account?visitor={vid}", "user_agent": "Mozilla/5.0"}
    events_ingest(
        prop=shop.prop,
        events=[
            make_event(visitor_id=vid, properties={"path": "/"}, context=context),
            make_event("scroll", visitor_id=vid, properties={"depth_pct": 50}),
            make_event("click", visitor_id=vid, properties={}),  # quarantined: no element_id
        ],
    )
    shop.prop.holdout_pct = 0
    shop.prop.save()
    if not Slot.objects.filter(property=shop.prop, key="headline").exists():
        slot(shop.prop, "headline", {"short": {"text": "Quick"}})
        rule(shop.prop, "everyone", "headline", "short", cooldown_seconds=60)
        Segment.objects.create(property=shop.prop, key="vip")
    segment = Segment.objects.get(property=shop.prop, key="vip")
    SegmentMember.objects.create(segment=segment, property=shop.prop, visitor_id=vid)
    decide(shop.prop, DecideRequest(vid, "s-1", ["headline"], {"url": f"/?v={vid}"}))
    if not Survey.objects.filter(property=shop.prop, key="exit").exists():
        survey_create(
            prop=shop.prop,
            key="exit",
            title="Before you go",
            questions=[
                {"key": "recommend", "type": "nps", "text": "Recommend us?"},
                {"key": "comment", "type": "text", "text": "Anything to add?"},
            ],
        )
    survey_response_submit(
        prop=shop.prop,
        survey_key="exit",
        visitor_id=vid,
        session_id="s-1",
        answers={"recommend": 8, "comment": f"Write to me, I am {vid}"},
    )
    # The storefront's server forwards the browser's GPC signal on a later batch.
    response = shop.client(HTTP_SEC_GPC="1").post(
        "/api/v1/events",
        {"events": [make_event(visitor_id=vid, session_id="s-2")]},
        format="json",
    )
    assert response.status_code == 200


def request_made(
    shop: Shop, vid: str, kind: str, officer: Any, regulation: str = "gdpr", contact: str = ""
) -> PrivacyRequest:
    """A request received, identity verified and started by an officer (tasks not run)."""
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk,
        kind=kind,
        regulation=regulation,
        visitor_id=vid,
        contact=contact or f"{vid}@mail.example",
    )
    request_verify_identity(request=req, user=officer)
    return request_start(request=req, user=officer)


def run_work(req: PrivacyRequest) -> PrivacyRequest:
    """What the Celery task does, run here (tests without a worker)."""
    if req.kind == "access":
        export_build(request_id=req.pk)
    else:
        erasure_run(request_id=req.pk)
    req.refresh_from_db()
    return req


def scan_db(needle: str) -> list[str]:
    """``model.field`` for every text or JSON column, of every model, that contains ``needle``."""
    hits = []
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        for field in meta.concrete_fields:
            if not isinstance(field, TEXT_FIELDS):
                continue
            found = (
                model._base_manager.annotate(_text=Cast(field.name, models.TextField()))
                .filter(_text__contains=needle)
                .exists()
            )
            if found:
                hits.append(f"{meta.label}.{field.name}")
    return hits


def scan_files(root: Path, needle: str) -> list[str]:
    hits = []
    raw = needle.encode()
    if not root.exists():
        return hits
    for path in root.rglob("*"):
        if needle in path.name:
            hits.append(str(path))
        if not path.is_file():
            continue
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if raw in archive.read(name) or needle in name:
                        hits.append(f"{path}!{name}")
        elif raw in path.read_bytes():
            hits.append(str(path))
    return hits


def scan_redis(url: str, needle: str) -> list[str]:
    from personalization.redis_client import connect

    client = connect(url)
    raw = needle.encode()
    hits = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        else:
            values = []
        if raw in key or any(raw in v for v in values):
            hits.append(key.decode(errors="replace"))
    return hits
