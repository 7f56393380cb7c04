"""Realistic storefront traffic, sent through the real ingest path (validation, consent
gate, dedup, storage, signals) for demos, benchmarks and tests.

Personas have their own timings, page depth, scroll behaviour and return rates, and
their visits are spread over past days so retention can be seen. Some visitors refuse
consent (their events are then dropped and counted) and a few events are malformed
(they are quarantined), so every fate appears in the data-quality page. Returning
visitors are asked the exit survey now and then, and some answer it.
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
from consent.hashing import visitor_key
from consent.models import ConsentRecord

from .conditions import compile_condition
from .decisions import DecideRequest, decide, firings
from .exceptions import ApplicationError
from .hotstate import decision_log_flush
from .models import (
    Experiment,
    ExperimentGoal,
    Goal,
    Property,
    Rule,
    RuleFires,
    Segment,
    Slot,
    Variant,
)
from .services.experiments import experiment_snapshot, experiment_start
from .services.ingest import IngestResult, events_ingest
from .services.rules import rule_save
from .services.surveys import survey_create, survey_response_submit

DEMO_SLOTS = ["headline", "cta", "recommendations", "newsletter_popup", "layout", "exit_survey"]


def demo_experiment(prop: Property) -> None:
    """A running headline test with a planted effect, so the results show a verdict."""
    click = Goal.objects.create(
        property=prop,
        key="cta-click",
        name="Clicks the CTA",
        kind="binary",
        event_type="click",
        element_id="cta",
        window_hours=24,
    )
    revenue = Goal.objects.create(
        property=prop,
        key="revenue",
        name="Revenue per visitor",
        kind="continuous",
        metric="revenue",
        event_type="purchase",
        window_hours=72,
    )
    back = Goal.objects.create(
        property=prop,
        key="returns-7d",
        name="Returns within 7 days",
        kind="retention",
        retention_days=7,
    )
    test = Experiment.objects.create(
        property=prop,
        key="headline-test",
        name="Short headline",
        slot=Slot.objects.get(property=prop, key="headline"),
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "short", "weight": 0.5}],
        min_users=100,
    )
    for goal, role in ((click, "primary"), (revenue, "secondary"), (back, "guardrail")):
        ExperimentGoal.objects.create(experiment=test, goal=goal, role=role)
    experiment_start(experiment=test)


def demo_snapshots_backfill(prop: Property, *, days: int, every_days: int = 7) -> int:
    """Results snapshots of the demo's experiments as they would have been taken each week of
    the simulated period (beat takes them hourly from now on), so the experiments dashboard
    has a history to show. Returns how many were written."""
    now = timezone.now()
    written = 0
    for experiment in Experiment.objects.filter(property=prop, status="running"):
        for back in range(days - every_days, -1, -every_days):
            experiment_snapshot(experiment=experiment, now=now - timedelta(days=back))
            written += 1
    return written


REASONS = ["Search", "Social media", "A friend", "The newsletter", "An ad", "Just browsing"]


def demo_survey(prop: Property) -> None:
    """The exit survey: an NPS question, a rating, a single choice and free text."""
    survey_create(
        prop=prop,
        key="nps",
        title="A quick question before you go",
        questions=[
            {
                "key": "recommend",
                "type": "nps",
                "text": "How likely are you to recommend us?",
                "required": True,
            },
            {"key": "visit", "type": "rating", "text": "How would you rate your visit today?"},
            {
                "key": "reason",
                "type": "single",
                "text": "What brought you here?",
                "choices": REASONS,
            },
            {"key": "comment", "type": "text", "text": "Anything to add?"},
        ],
    )


def demo_targeting(prop: Property) -> None:
    """The demo property's slots, segments and rules (idempotent)."""
    if Slot.objects.filter(property=prop, key="headline").exists():
        return
    slots: dict[str, dict[str, dict]] = {
        "headline": {
            "default": {"text": "New season, new shoes"},
            "short": {"text": "Shoes. Fast."},
            "long": {"text": "Our guide to this season's shoes, tested for a month"},
        },
        "cta": {"default": {"label": "Add to cart"}, "b": {"label": "Buy now, free returns"}},
        "recommendations": {
            "default": {"title": "Trending now"},
            "for_you": {"title": "Picked for you"},
        },
        "newsletter_popup": {"default": {"delay_ms": 10000}, "late": {"delay_ms": 30000}},
        "layout": {"default": {"layout": "grid"}, "list": {"layout": "list"}},
        "exit_survey": {"default": {}, "ask": {"survey": "nps"}},
    }
    strategies = {
        ("recommendations", "default"): "trending",
        ("recommendations", "for_you"): "recently_viewed",
    }
    variants: dict[tuple[str, str], Variant] = {}
    for key, contents in slots.items():
        slot = Slot.objects.create(property=prop, key=key, name=key.replace("_", " ").title())
        for vkey, content in contents.items():
            variants[(key, vkey)] = Variant.objects.create(
                slot=slot, key=vkey, content=content, strategy=strategies.get((key, vkey), "")
            )
    Segment.objects.create(
        property=prop,
        key="fast-scrollers",
        name="Fast scrollers",
        condition={"session.scroll_speed": {"$gt": 1500}},
    )
    Segment.objects.create(
        property=prop,
        key="deep-readers",
        name="Deep readers",
        condition={"visitor.engagement_score": {"$gte": 40}},
        goal={"metric": "visitor.engagement_score", "baseline": 40, "target": 44},
    )
    Segment.objects.create(
        property=prop,
        key="returning",
        name="Returning visitors",
        condition={"visitor.sessions": {"$gte": 2}},
    )
    rules = [
        (
            "bouncers-short-headline",
            "headline",
            "short",
            50,
            {"visitor.bounce_rate": {"$gt": 0.5}, "visitor.sessions": {"$gte": 2}},
            {"cap_per_day": 3},
        ),
        ("returning-cta", "cta", "b", 40, {"segments": {"$in": ["returning"]}}, {}),
        (
            "recently-viewed-recos",
            "recommendations",
            "for_you",
            30,
            {"visitor.items_viewed": {"$size": {"$gt": 0}}},
            {},
        ),
        (
            "deep-readers-late-popup",
            "newsletter_popup",
            "late",
            30,
            {"segments": {"$in": ["deep-readers"]}},
            {"cooldown_seconds": 3600},
        ),
        ("mobile-list-layout", "layout", "list", 20, {"session.device_type": "mobile"}, {}),
        (
            "returning-exit-survey",
            "exit_survey",
            "ask",
            10,
            {"visitor.sessions": {"$gte": 2}},
            {"cooldown_seconds": 30 * 86400},  # not again for 30 days
        ),
    ]
    demo_survey(prop)
    demo_experiment(prop)
    for key, slot_key, variant, priority, condition, extra in rules:
        rule_save(
            rule=Rule(
                property=prop,
                key=key,
                slot=variants[(slot_key, variant)].slot,
                variant=variants[(slot_key, variant)],
                priority=priority,
                condition=condition,
                status="active",
                **extra,
            )
        )


# The demo's live rules (issue 17): each acts out one of the product's defining examples in the
# open page, from the page signals the tracker measures (docs/CONTRACT.md, "Live in-page
# adjustments"). (key, slot, variant, its content, strategy, priority, fires, condition, extra)
DEMO_LIVE_RULES: list[tuple[str, str, str, dict, str, int, str, dict, dict]] = [
    # Fast scrollers get a condensed layout in place.
    (
        "fast-scrollers-condensed", "layout", "condensed", {"layout": "condensed"}, "", 45,
        RuleFires.PAGE, {"page.scroll_speed": {"$gt": 2500}}, {},
    ),
    # The newsletter pop-up is held at page load while the visitor reads (two minutes) ...
    (
        "newsletter-held", "newsletter_popup", "held", {"delay_ms": 120000}, "", 10,
        RuleFires.LOAD, {}, {},
    ),
    # ... and shown once they show exit intent or go idle.
    (
        "newsletter-when-ready", "newsletter_popup", "now", {"delay_ms": 0}, "", 45,
        RuleFires.PAGE,
        {"$or": [{"page.exit_intent": True}, {"page.idle_s": {"$gte": 8}}]},
        {"cooldown_seconds": 86400},
    ),
    # Recommendations picked from the visitor's own views switch to trending ones when their
    # activity falls off (the server settles the first part, the page the second).
    (
        "fading-activity-trending", "recommendations", "trending", {"title": "Trending now"},
        "trending", 45, RuleFires.PAGE,
        {"visitor.items_viewed": {"$size": {"$gt": 0}}, "page.activity_trend": {"$lt": -0.3}},
        {},
    ),
]  # fmt: skip


def demo_live_rules(prop: Property) -> None:
    """The demo property's live rules and the variants they serve (idempotent: what exists
    is kept, so staff's edits survive a second ``load_demo``)."""
    for (
        key,
        slot_key,
        vkey,
        content,
        strategy,
        priority,
        fires,
        condition,
        extra,
    ) in DEMO_LIVE_RULES:
        slot = Slot.objects.filter(property=prop, key=slot_key).first()
        if slot is None or Rule.objects.filter(property=prop, key=key).exists():
            continue
        variant, _ = Variant.objects.get_or_create(
            slot=slot, key=vkey, defaults={"content": content, "strategy": strategy}
        )
        rule_save(
            rule=Rule(
                property=prop,
                key=key,
                slot=slot,
                variant=variant,
                priority=priority,
                condition=condition,
                fires=fires,
                status="active",
                **extra,
            )
        )


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


# The exit survey: how many answer it, and what each persona thinks before any adjustment.
SURVEY_RESPONSE_RATE = 0.4
PERSONA_NPS = {
    "fast_scroller": 5.0,
    "deep_reader": 6.5,
    "bouncer": 4.5,
    "buyer": 7.0,
    "browser": 5.5,
}
COMMENTS = {
    "promoter": ["Great selection, fast delivery.", "Love the new look!", "Easy to find my size."],
    "passive": ["Good, but shipping is expensive.", "More colours please.", "Fine overall."],
    "detractor": ["Hard to find what I wanted.", "Slow on my phone.", "Too many pop-ups."],
}


def page_signals(rng: random.Random, persona: Persona) -> dict[str, Any]:
    """What the tracker would measure in one of the persona's page views (``page.*``)."""
    dwell = rng.uniform(*persona.seconds_per_page)
    clicks = sum(rng.random() < persona.click_rate for _ in range(5))
    return {
        "scroll_speed": round(rng.uniform(*persona.scroll_speed)),
        "scroll_depth": round(rng.uniform(*persona.max_depth)),
        "dwell_s": round(dwell, 1),
        "idle_s": round(rng.uniform(0, dwell / 3), 1),
        "exit_intent": rng.random() < 0.3,
        "clicks": clicks,
        "rage_clicks": int(clicks >= 4 and rng.random() < 0.2),
        "activity_trend": round(rng.uniform(0.3, 1.5), 2),
    }


def play_live(prop: Property, visit: "Visit", plan: list[dict], totals: "SimulationTotals") -> None:
    """The page's side of a live plan: the page signals of this view, each entry whose
    ``when`` holds fired (highest priority first, once per slot) and reported through the
    same service as ``POST /api/v1/adjustments``; an applied firing changes what the
    visitor sees."""
    page = page_signals(visit.rng, visit.persona)
    fired_at = visit.t + timedelta(seconds=page["dwell_s"])
    done: set[str] = set()
    for entry in sorted(plan, key=lambda e: -e["priority"]):
        holds = compile_condition(entry["when"])({"page": page})
        if entry["slot"] in done or not holds:
            continue
        done.add(entry["slot"])
        report = {
            "decision_id": visit.decision_id,
            "slot": entry["slot"],
            "variant": entry["variant"],
            "token": entry["token"],
            "signals": {f"page.{k}": v for k, v in page.items()},
            "fired_at": fired_at,
        }
        outcome = firings.fire(prop, report, now=fired_at)
        totals.live_fired += 1
        if outcome["applied"]:
            totals.live_applied += 1
            visit.answers[entry["slot"]] = entry["variant"]
            visit.contents[entry["slot"]] = entry["content"]


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
        self.sent = 0  # events already handed to ingestion (when a decider flushed them)
        self.answers: dict[str, str] = {}
        self.contents: dict[str, dict[str, Any]] = {}
        self.decision_id: str | None = None

    def emit(
        self, kind: str, props: dict[str, Any] | None = None, advance: float = 0.0, **extra: Any
    ) -> None:
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
                **extra,
            }
        )

    def adjusted(self, slot: str) -> bool:
        return self.answers.get(slot, "default") != "default"

    def click(self, element: str) -> None:
        props: dict[str, Any] = {"element_id": element}
        extra = (
            {"decision_id": self.decision_id}
            if self.decision_id and element in ("cta", "recommendations", "headline")
            else {}
        )
        self.emit("click", props, 1, **extra)

    def survey_shown(self) -> str | None:
        """The survey a slot's answer shows (content ``{"survey": key}``), read as the tracker
        reads it."""
        for content in self.contents.values():
            key = content.get("survey") if isinstance(content, dict) else None
            if isinstance(key, str):
                return key
        return None

    def survey_answers(self) -> dict[str, Any]:
        """The visitor's answers to the exit survey. Planted: visitors who saw the adjusted
        headline or CTA recommend the shop more (higher NPS and rating on average)."""
        rng = self.rng
        mean = PERSONA_NPS[self.persona.name]
        mean += 1.5 if self.adjusted("headline") else 0.0
        mean += 1.0 if self.adjusted("cta") else 0.0
        score = min(10, max(0, round(rng.gauss(mean, 1.8))))
        answers: dict[str, Any] = {"recommend": score}
        if rng.random() < 0.8:
            answers["visit"] = min(5, max(1, round(1 + score * 0.4 + rng.gauss(0, 0.6))))
        if rng.random() < 0.7:
            answers["reason"] = self.reason()
        if rng.random() < 0.15:
            band = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
            answers["comment"] = rng.choice(COMMENTS[band])
        return answers

    def reason(self) -> str:
        campaign = (self.utm or {}).get("source")
        if campaign == "newsletter":
            return "The newsletter"
        if campaign == "instagram" or "instagram" in self.referrer:
            return "Social media"
        if "google" in self.referrer or "bing" in self.referrer:
            return "Search"
        return self.rng.choice(["A friend", "An ad", "Just browsing"])

    def page(self, first: bool, decider: "Callable[[Visit], None] | None") -> None:
        """One page of the visit: view, dwell, scroll, sections, clicks, maybe the cart."""
        rng, p = self.rng, self.persona
        path = rng.choice(PAGES)
        self.url = f"https://shop.example{path}"
        item = rng.choice(ITEMS) if path.startswith("/shop/") else None
        self.emit("page_view", {"path": path, **({"item_id": item} if item else {})}, 1)
        if first and decider is not None:
            decider(self)
        dwell = rng.uniform(*p.seconds_per_page)
        if self.adjusted("headline"):
            dwell *= 1.25  # planted: the adjusted headline keeps visitors reading longer
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
        # planted: the adjusted CTA and recommendations are clicked more often
        cta_rate = p.click_rate * (1.6 if self.adjusted("cta") else 1.0)
        if self.adjusted("headline"):
            cta_rate *= 1.8  # planted: the short headline sends readers to the CTA
        if rng.random() < min(0.95, cta_rate):
            self.emit("hover", {"element_id": "cta", "dwell_ms": rng.randint(200, 2500)}, 1)
            self.click("cta")
        reco_rate = p.click_rate * 0.4 * (1.5 if self.adjusted("recommendations") else 1.0)
        if rng.random() < reco_rate:
            self.click("recommendations")
        if rng.random() < p.click_rate * 0.5:
            self.click("nav")
        cart_rate = p.cart_rate * (1.3 if self.adjusted("cta") else 1.0)
        if item and rng.random() < cart_rate:
            self.emit(
                "add_to_cart",
                {"item_id": item, "quantity": 1, "price": rng.choice([19.0, 49.0, 89.0])},
                2,
            )
        self.t += timedelta(seconds=dwell / 3)

    def play(
        self,
        decider: "Callable[[Visit], None] | None" = None,
        respond: "Callable[[Visit, str, dict[str, Any]], None] | None" = None,
    ) -> list[dict[str, Any]]:
        """Play the visit. With a decider, the page asks for a decision at the first page
        view and the answers change behaviour: the planted effects the dashboards show.
        When a slot shows a survey, the visitor may answer it on the way out (``respond``
        sends the answers)."""
        rng, p = self.rng, self.persona
        self.emit("session_start")
        for page in range(rng.randint(*p.pages)):
            self.page(page == 0, decider)
        if rng.random() < p.buy_rate:
            self.emit("form_interaction", {"form_id": "checkout", "action": "start"}, 5)
            self.emit("form_interaction", {"form_id": "checkout", "action": "submit"}, 40)
            self.emit("purchase", {"revenue": round(rng.uniform(20, 240), 2), "currency": "EUR"}, 2)
        elif rng.random() < 0.1:
            self.emit("form_interaction", {"form_id": "newsletter", "action": "start"}, 3)
            self.emit("form_interaction", {"form_id": "newsletter", "action": "abandon"}, 10)
        survey = self.survey_shown()
        if survey is not None and respond is not None:
            self.emit("survey_shown", {"survey_key": survey}, 2)
            if rng.random() < SURVEY_RESPONSE_RATE:
                self.t += timedelta(seconds=rng.uniform(8, 40))
                respond(self, survey, self.survey_answers())
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
    decisions: int = 0
    adjustments: int = 0
    # Live plan entries fired in the simulated pages, and how many the server applied.
    live_fired: int = 0
    live_applied: int = 0
    survey_responses: int = 0

    def add(self, result: IngestResult, sent: int) -> None:
        self.sent += sent
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.dropped_no_consent += result.dropped_no_consent


def visits(rng: random.Random, visitor: str, days: int, now: datetime) -> Iterator[Visit]:
    """A visitor's visits over the past ``days``, oldest first (each yet to be played)."""
    persona = _persona(rng)
    device = rng.choice(persona.devices)
    start = now - timedelta(days=rng.uniform(0, days), hours=rng.uniform(0, 2))
    first = True
    while start < now - timedelta(minutes=30):
        yield Visit(rng, visitor, persona, start, device, first)
        first = False
        if rng.random() > persona.return_rate:
            break
        start += timedelta(days=rng.expovariate(1 / 5.0), hours=rng.uniform(1, 12))


def visitor_events(rng: random.Random, visitor: str, days: int, now: datetime) -> Iterator[dict]:
    for visit in visits(rng, visitor, days, now):
        yield from visit.play()


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


def _consent_backdate(prop: Property, visitor_id: str, at: datetime) -> None:
    """Simulated history only: the service dates a consent record now, but this visitor gave
    it at their first visit, so the consent dashboard has a timeline to show."""
    ConsentRecord.objects.filter(
        property_id=prop.pk, visitor_key=visitor_key(prop.pk, visitor_id)
    ).update(created_at=at - timedelta(seconds=5))


def _consent_roll(
    rng: random.Random,
    prop: Property,
    visitor: str,
    policy: Any,
    refuse_share: float,
    gpc_share: float,
) -> bool:
    """The visitor's answer to the banner, recorded; whether they consented at all."""
    roll = rng.random()
    if roll < refuse_share:
        return False
    granted = {k: True for k in policy.purpose_keys}
    if roll < refuse_share + 0.1:  # analytics only: granular events dropped
        granted = {k: k == "analytics" for k in policy.purpose_keys}
    consent_services.consent_record(
        property_id=prop.pk,
        visitor_id=visitor,
        policy_version=policy.version,
        purposes=granted,
        method="banner",
        gpc=roll > 1 - gpc_share,  # a browser sending Sec-GPC: 1
    )
    return True


def simulate(
    *,
    prop: Property,
    visitors: int,
    days: int,
    seed: int = 7,
    batch_size: int = 200,
    refuse_share: float = 0.1,
    gpc_share: float = 0.03,
    bad_share: float = 0.003,
    progress: Callable[[int], None] | None = None,
    personalize: bool = False,
) -> SimulationTotals:
    """Send the traffic. With ``personalize`` each visit asks ``decide`` at its first page
    view (after its events so far are ingested, so signals are live) and applies the answer."""
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
        consented = policy is not None and _consent_roll(
            rng, prop, visitor, policy, refuse_share, gpc_share
        )

        def take(events: list[dict]) -> None:
            for event in events:
                batch.append(_corrupt(rng, event) if rng.random() < bad_share else event)

        def decider(visit: Visit) -> None:
            take(visit.events[visit.sent :])
            visit.sent = len(visit.events)
            flush()
            result = decide(
                prop,
                DecideRequest(
                    visit.visitor,
                    visit.session,
                    DEMO_SLOTS,
                    {"url": visit.url, "user_agent": USER_AGENTS[visit.device]},
                ),
                now=visit.t,
            )
            totals.decisions += 1
            totals.adjustments += sum(1 for a in result.answers.values() if not a.is_default)
            visit.decision_id = str(result.decision_id)
            visit.answers = {k: a.variant for k, a in result.answers.items()}
            visit.contents = {k: a.content for k, a in result.answers.items()}
            if result.live:
                play_live(prop, visit, result.live, totals)

        def respond(visit: Visit, survey_key: str, answers: dict[str, Any]) -> None:
            try:
                survey_response_submit(
                    prop=prop,
                    survey_key=survey_key,
                    visitor_id=visit.visitor,
                    session_id=visit.session,
                    decision_id=visit.decision_id,
                    answers=answers,
                    now=visit.t,
                )
            except ApplicationError:
                return  # refused as the storefront would be (no consent, survey inactive)
            totals.survey_responses += 1

        first_visit: datetime | None = None
        for visit in visits(rng, visitor, days, now):
            first_visit = first_visit or visit.t
            visit.play(decider if personalize else None, respond if personalize else None)
            take(visit.events[visit.sent :])
            if len(batch) >= batch_size:
                flush()
        if consented and first_visit is not None:
            _consent_backdate(prop, visitor, first_visit)
        totals.visitors += 1
        if progress:
            progress(1)
    flush()
    if personalize:
        # Decisions acknowledged from Redis are in the database before the dashboards read.
        decision_log_flush()
    return totals
