"""Realistic storefront traffic, sent through the real ingest path (validation, consent
gate, dedup, storage, signals) for demos, benchmarks and tests.

Personas have their own timings, page depth, scroll behaviour and return rates, and
their visits are spread over past days so retention can be seen. Some visitors refuse
consent (their events are then dropped and counted) and a few events are malformed
(they are quarantined), so every fate appears in the data-quality page.
"""

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from consent import selectors as consent_selectors
from consent import services as consent_services

from .models import Property
from .services.ingest import IngestResult, events_ingest

USER_AGENTS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
}
REFERRERS = [
    "",
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.instagram.com/",
    "https://news.example.org/article",
]
CAMPAIGNS = [
    None,
    None,
    None,
    {"source": "newsletter", "medium": "email", "campaign": "winter"},
    {"source": "instagram", "medium": "social", "campaign": "launch"},
]
PAGES = ["/", "/shop", "/shop/shoes", "/shop/coats", "/about", "/blog/care-guide", "/cart"]
ITEMS = [f"sku-{n:03d}" for n in range(1, 41)]
SECTIONS = ["hero", "reviews", "details", "recommendations", "faq"]


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    pages: tuple[int, int]
    seconds_per_page: tuple[float, float]
    scroll_speed: tuple[float, float]
    max_depth: tuple[float, float]
    click_rate: float
    cart_rate: float
    buy_rate: float
    return_rate: float
    devices: tuple[str, ...]


PERSONAS = [
    Persona(
        "fast_scroller",
        0.25,
        (1, 3),
        (5, 20),
        (1500, 4000),
        (70, 100),
        0.2,
        0.02,
        0.0,
        0.35,
        ("mobile", "android", "mobile", "desktop"),
    ),
    Persona(
        "deep_reader",
        0.2,
        (3, 7),
        (60, 200),
        (80, 400),
        (60, 100),
        0.6,
        0.1,
        0.03,
        0.6,
        ("desktop", "mac", "tablet"),
    ),
    Persona(
        "bouncer",
        0.3,
        (1, 1),
        (3, 15),
        (300, 1500),
        (5, 40),
        0.05,
        0.0,
        0.0,
        0.1,
        ("mobile", "android", "desktop"),
    ),
    Persona(
        "buyer",
        0.15,
        (3, 9),
        (20, 60),
        (300, 900),
        (40, 90),
        0.8,
        0.6,
        0.45,
        0.5,
        ("desktop", "mac", "mobile"),
    ),
    Persona(
        "browser",
        0.1,
        (2, 5),
        (15, 45),
        (400, 1200),
        (30, 80),
        0.4,
        0.1,
        0.02,
        0.3,
        ("desktop", "mobile", "tablet"),
    ),
]


def _persona(rng: random.Random) -> Persona:
    roll, acc = rng.random(), 0.0
    for persona in PERSONAS:
        acc += persona.share
        if roll <= acc:
            return persona
    return PERSONAS[-1]


class Visit:
    def __init__(
        self,
        rng: random.Random,
        visitor: str,
        persona: Persona,
        start: datetime,
        device: str,
        first: bool,
    ) -> None:
        self.rng, self.visitor, self.persona, self.t = rng, visitor, persona, start
        self.session = f"s-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        self.device = device
        self.referrer = rng.choice(REFERRERS) if first or rng.random() < 0.5 else ""
        self.utm = rng.choice(CAMPAIGNS)
        self.url = "https://shop.example/"
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, props: dict[str, Any] | None = None, advance: float = 0.0) -> None:
        self.t += timedelta(seconds=advance)
        context: dict[str, Any] = {"url": self.url, "user_agent": USER_AGENTS[self.device]}
        if not self.events:
            if self.referrer:
                context["referrer"] = self.referrer
            if self.utm:
                context["utm"] = self.utm
        self.events.append(
            {
                "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "type": kind,
                "visitor_id": self.visitor,
                "session_id": self.session,
                "timestamp": self.t.isoformat().replace("+00:00", "Z"),
                "properties": props or {},
                "context": context,
            }
        )

    def play(self) -> list[dict[str, Any]]:
        rng, p = self.rng, self.persona
        self.emit("session_start")
        for _ in range(rng.randint(*p.pages)):
            path = rng.choice(PAGES)
            self.url = f"https://shop.example{path}"
            item = rng.choice(ITEMS) if path.startswith("/shop/") else None
            self.emit("page_view", {"path": path, **({"item_id": item} if item else {})}, 1)
            dwell = rng.uniform(*p.seconds_per_page)
            speed = rng.uniform(*p.scroll_speed)
            depth_goal = rng.uniform(*p.max_depth)
            for depth in (25, 50, 75, 100):
                if depth > depth_goal:
                    break
                self.emit("scroll", {"depth_pct": depth, "speed_px_s": round(speed, 1)}, dwell / 8)
            for section in rng.sample(SECTIONS, k=rng.randint(0, 3)):
                self.emit(
                    "section_view",
                    {"section": section, "visible_ms": int(dwell * 1000 / 4)},
                    dwell / 6,
                )
            if rng.random() < p.click_rate:
                self.emit("hover", {"element_id": "cta", "dwell_ms": rng.randint(200, 2500)}, 1)
                self.emit("click", {"element_id": rng.choice(["cta", "nav", "reco"])}, 1)
            if item and rng.random() < p.cart_rate:
                self.emit(
                    "add_to_cart",
                    {"item_id": item, "quantity": 1, "price": rng.choice([19.0, 49.0, 89.0])},
                    2,
                )
            self.t += timedelta(seconds=dwell / 3)
        if rng.random() < p.buy_rate:
            self.emit("form_interaction", {"form_id": "checkout", "action": "start"}, 5)
            self.emit("form_interaction", {"form_id": "checkout", "action": "submit"}, 40)
            self.emit("purchase", {"revenue": round(rng.uniform(20, 240), 2), "currency": "EUR"}, 2)
        elif rng.random() < 0.1:
            self.emit("form_interaction", {"form_id": "newsletter", "action": "start"}, 3)
            self.emit("form_interaction", {"form_id": "newsletter", "action": "abandon"}, 10)
        self.emit("session_end", {}, 1)
        return self.events


@dataclass
class SimulationTotals:
    visitors: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped_no_consent: int = 0

    def add(self, result: IngestResult, sent: int) -> None:
        self.sent += sent
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.dropped_no_consent += result.dropped_no_consent


def visitor_events(rng: random.Random, visitor: str, days: int, now: datetime) -> Iterator[dict]:
    persona = _persona(rng)
    device = rng.choice(persona.devices)
    start = now - timedelta(days=rng.uniform(0, days), hours=rng.uniform(0, 2))
    first = True
    while start < now - timedelta(minutes=30):
        yield from Visit(rng, visitor, persona, start, device, first).play()
        first = False
        if rng.random() > persona.return_rate:
            break
        start += timedelta(days=rng.expovariate(1 / 5.0), hours=rng.uniform(1, 12))


def _corrupt(rng: random.Random, event: dict) -> dict:
    """The mistakes real storefronts make: out-of-range values, missing fields."""
    bad = dict(event)
    choice = rng.randint(0, 2)
    if choice == 0 and bad["type"] == "scroll":
        bad["properties"] = {**bad["properties"], "depth_pct": 150}
    elif choice == 1:
        bad["properties"] = {**bad["properties"], "unexpected": True}
    else:
        bad.pop("session_id")
    return bad


def simulate(
    *,
    prop: Property,
    visitors: int,
    days: int,
    seed: int = 7,
    batch_size: int = 200,
    refuse_share: float = 0.1,
    bad_share: float = 0.003,
    progress: Callable[[int], None] | None = None,
) -> SimulationTotals:
    rng = random.Random(seed)
    now = timezone.now()
    policy = consent_selectors.policy_current(prop.pk)
    totals = SimulationTotals()
    batch: list[dict] = []

    def flush() -> None:
        if batch:
            totals.add(events_ingest(prop=prop, events=batch, now=timezone.now()), len(batch))
            batch.clear()

    for n in range(visitors):
        visitor = f"v-{seed}-{n:06d}"
        if policy is not None:
            roll = rng.random()
            if roll >= refuse_share:
                granted = {k: True for k in policy.purpose_keys}
                if roll < refuse_share + 0.1:  # analytics only: granular events dropped
                    granted = {k: k == "analytics" for k in policy.purpose_keys}
                consent_services.consent_record(
                    property_id=prop.pk,
                    visitor_id=visitor,
                    policy_version=policy.version,
                    purposes=granted,
                    method="banner",
                )
        for event in visitor_events(rng, visitor, days, now):
            batch.append(_corrupt(rng, event) if rng.random() < bad_share else event)
            if len(batch) >= batch_size:
                flush()
        totals.visitors += 1
        if progress:
            progress(1)
    flush()
    return totals
