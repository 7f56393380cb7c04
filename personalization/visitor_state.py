"""Live visitor and session signals: how events fold into state, and what conditions read.

State is a plain JSON dict kept on the Visitor and Session rows and updated by
ingestion before the API answers. ``signals_for`` turns the states into the
documented dotted names (``session.duration_s``, ``visitor.visits_7d`` …) that
targeting conditions read; ``attributes.SessionProvider`` and ``VisitorProvider`` declare
them (name, type, unit, meaning) in the attribute catalogue.
"""

import math
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from ua_parser import parse as ua_parse

PATH_LENGTH = 10
ITEMS_KEPT = 20
VISIT_HISTORY_DAYS = 30
TREND_WINDOW_S = 60

SEARCH_HOSTS = ("google.", "bing.", "duckduckgo.", "yahoo.", "ecosia.", "baidu.", "yandex.")
SOCIAL_HOSTS = (
    "facebook.",
    "instagram.",
    "t.co",
    "twitter.",
    "x.com",
    "linkedin.",
    "pinterest.",
    "tiktok.",
    "reddit.",
    "youtube.",
)


@lru_cache(maxsize=4096)
def parse_user_agent(user_agent: str) -> tuple[str, str, str]:
    """(device_type, os family, browser family) from a user agent string."""
    if not user_agent:
        return ("unknown", "Other", "Other")
    result = ua_parse(user_agent)
    browser = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    device = result.device.family if result.device else "Other"
    lowered = user_agent.lower()
    if device == "Spider" or "bot" in lowered or "crawler" in lowered:
        kind = "bot"
    elif (
        "ipad" in lowered
        or "tablet" in lowered
        or ("android" in lowered and "mobile" not in lowered)
    ):
        kind = "tablet"
    elif "mobi" in lowered or "iphone" in lowered or "android" in lowered:
        kind = "mobile"
    else:
        kind = "desktop"
    return (kind, os_family, browser)


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def referrer_kind(referrer: str, url: str) -> tuple[str, str]:
    host = _host(referrer)
    if not host:
        return ("direct", "direct")
    if host == _host(url):
        return (host, "internal")
    if any(s in host for s in SEARCH_HOSTS):
        return (host, "search")
    if any(s in host for s in SOCIAL_HOSTS):
        return (host, "social")
    return (host, "other")


def _push_recent(items: list, value: Any, limit: int) -> None:
    if value in items:
        items.remove(value)
    items.append(value)
    del items[:-limit]


def engagement_score(s: dict) -> float:
    """0..100. Stated in the README; every term saturates so no single habit dominates."""
    raw = (
        10 * math.log1p(s.get("duration_s", 0) / 10)
        + 5 * s.get("page_views", 0)
        + 3 * s.get("clicks", 0)
        + 0.2 * s.get("max_scroll_depth", 0)
        + 2 * math.log1p(sum(s.get("section_ms", {}).values()) / 1000)
        + 5 * s.get("form_submits", 0)
        + 10 * s.get("cart_adds", 0)
        + 25 * s.get("purchases", 0)
    )
    return round(min(100.0, raw), 2)


def session_new(ts: datetime, context: dict) -> dict:
    device, os_family, browser = parse_user_agent(context.get("user_agent", ""))
    source, kind = referrer_kind(context.get("referrer", ""), context.get("url", ""))
    utm = context.get("utm") or {}
    return {
        "first_ts": ts.timestamp(),
        "last_ts": ts.timestamp(),
        "page_views": 0,
        "clicks": 0,
        "hovers": 0,
        "form_starts": 0,
        "form_submits": 0,
        "form_abandons": 0,
        "scroll_n": 0,
        "scroll_sum": 0.0,
        "max_scroll_depth": 0.0,
        "speed_n": 0,
        "speed_sum": 0.0,
        "section_ms": {},
        "path": [],
        "items_viewed": [],
        "cart_adds": 0,
        "purchases": 0,
        "revenue": 0.0,
        "event_times": [],
        "device_type": device,
        "os": os_family,
        "browser": browser,
        "referrer_source": source,
        "referrer_kind": kind,
        "utm_source": utm.get("source", ""),
        "utm_medium": utm.get("medium", ""),
        "utm_campaign": utm.get("campaign", ""),
    }


def visitor_new() -> dict:
    return {
        "sessions": 0,
        "bounced": 0,
        "session_starts": [],
        "previous_visit_ts": None,
        "last_event_ts": None,
        "page_views": 0,
        "clicks": 0,
        "items_viewed": [],
        "items_carted": [],
        "cart_adds": 0,
        "purchases": 0,
        "revenue": 0.0,
        "engagement_sum": 0.0,
        "device_type": "unknown",
    }


def visitor_open_session(v: dict, s: dict, ts: datetime) -> None:
    """Count a new session: it starts as a bounce until its second page view."""
    v["sessions"] += 1
    v["bounced"] += 1
    v["previous_visit_ts"] = v.get("last_event_ts")
    cutoff = ts.timestamp() - VISIT_HISTORY_DAYS * 86400
    v["session_starts"] = [t for t in v["session_starts"] if t >= cutoff] + [ts.timestamp()]
    v["device_type"] = s["device_type"]
    v["engagement_sum"] += engagement_score(s)


def apply_event(v: dict, s: dict, kind: str, ts: datetime, props: dict, context: dict) -> None:
    """Fold one stored event into the visitor's and session's state."""
    t = ts.timestamp()
    before = engagement_score(s)
    s["first_ts"] = min(s["first_ts"], t)
    s["last_ts"] = max(s["last_ts"], t)
    s["duration_s"] = round(s["last_ts"] - s["first_ts"], 3)
    v["last_event_ts"] = max(v.get("last_event_ts") or t, t)
    # Only the last two trend windows are ever read: keep the state small.
    horizon = s["last_ts"] - 2 * TREND_WINDOW_S
    s["event_times"] = [x for x in s["event_times"] if x > horizon] + [t]
    item = props.get("item_id")
    if kind == "page_view":
        s["page_views"] += 1
        v["page_views"] += 1
        if s["page_views"] == 2:
            v["bounced"] -= 1
        url = context.get("url") or props.get("path") or ""
        if url:
            s["path"].append(urlsplit(url).path or url)
            del s["path"][:-PATH_LENGTH]
        if item:
            _push_recent(s["items_viewed"], item, ITEMS_KEPT)
            _push_recent(v["items_viewed"], item, ITEMS_KEPT)
    elif kind == "click":
        s["clicks"] += 1
        v["clicks"] += 1
    elif kind == "hover":
        s["hovers"] += 1
    elif kind == "scroll":
        depth = float(props.get("depth_pct", 0))
        s["scroll_n"] += 1
        s["scroll_sum"] += depth
        s["max_scroll_depth"] = max(s["max_scroll_depth"], depth)
        if "speed_px_s" in props:
            s["speed_n"] += 1
            s["speed_sum"] += float(props["speed_px_s"])
    elif kind == "section_view":
        name = str(props.get("section"))
        s["section_ms"][name] = s["section_ms"].get(name, 0) + int(props.get("visible_ms", 0))
    elif kind == "form_interaction":
        field = {"start": "form_starts", "submit": "form_submits", "abandon": "form_abandons"}
        s[field[props["action"]]] += 1
    elif kind == "add_to_cart":
        s["cart_adds"] += 1
        v["cart_adds"] += 1
        if item:
            _push_recent(v["items_carted"], item, ITEMS_KEPT)
    elif kind == "purchase":
        s["purchases"] += 1
        v["purchases"] += 1
        s["revenue"] = round(s["revenue"] + float(props.get("revenue", 0)), 2)
        v["revenue"] = round(v["revenue"] + float(props.get("revenue", 0)), 2)
    v["engagement_sum"] += engagement_score(s) - before


def _trend(times: list[float], last: float) -> float:
    recent = sum(1 for t in times if last - TREND_WINDOW_S < t <= last)
    earlier = sum(1 for t in times if last - 2 * TREND_WINDOW_S < t <= last - TREND_WINDOW_S)
    if recent + earlier == 0:
        return 0.0
    return round((recent - earlier) / (recent + earlier), 3)


def session_signals(s: dict) -> dict[str, Any]:
    return {
        "duration_s": round(s["last_ts"] - s["first_ts"], 3),
        "page_views": s["page_views"],
        "is_bounce": s["page_views"] <= 1,
        "section_ms": dict(s["section_ms"]),
        "max_scroll_depth": s["max_scroll_depth"],
        "avg_scroll_depth": round(s["scroll_sum"] / s["scroll_n"], 2) if s["scroll_n"] else 0.0,
        "scroll_speed": round(s["speed_sum"] / s["speed_n"], 2) if s["speed_n"] else 0.0,
        "clicks": s["clicks"],
        "hovers": s["hovers"],
        "form_starts": s["form_starts"],
        "form_submits": s["form_submits"],
        "form_abandons": s["form_abandons"],
        "device_type": s["device_type"],
        "os": s["os"],
        "browser": s["browser"],
        "referrer_source": s["referrer_source"],
        "referrer_kind": s["referrer_kind"],
        "utm_source": s["utm_source"],
        "utm_medium": s["utm_medium"],
        "utm_campaign": s["utm_campaign"],
        "path": list(s["path"]),
        "activity_trend": _trend(s["event_times"], s["last_ts"]),
        "items_viewed": list(s["items_viewed"]),
        "cart_adds": s["cart_adds"],
        "purchases": s["purchases"],
        "revenue": s["revenue"],
        "engagement_score": engagement_score(s),
    }


def visitor_signals(v: dict, now: datetime, current_start: float | None) -> dict[str, Any]:
    t = now.timestamp()
    previous = v.get("previous_visit_ts")
    days_since = None
    if previous is not None and current_start is not None:
        days_since = round(max(0.0, current_start - previous) / 86400, 3)
    sessions = v["sessions"]
    return {
        "sessions": sessions,
        "bounce_rate": round(v["bounced"] / sessions, 4) if sessions else 0.0,
        "visits_7d": sum(1 for s in v["session_starts"] if s > t - 7 * 86400),
        "visits_30d": sum(1 for s in v["session_starts"] if s > t - 30 * 86400),
        "days_since_last_visit": days_since,
        "page_views": v["page_views"],
        "clicks": v["clicks"],
        "items_viewed": list(v["items_viewed"]),
        "items_carted": list(v["items_carted"]),
        "cart_adds": v["cart_adds"],
        "purchases": v["purchases"],
        "revenue": v["revenue"],
        "engagement_score": round(v["engagement_sum"] / sessions, 2) if sessions else 0.0,
        "device_type": v["device_type"],
    }


def signals_for(visitor_state: dict | None, session_state: dict | None, now: datetime) -> dict:
    """The nested attributes a condition reads: ``{"visitor": {...}, "session": {...}}``."""
    v = visitor_state or visitor_new()
    s = session_state
    return {
        "visitor": visitor_signals(v, now, s["first_ts"] if s else None),
        "session": session_signals(s) if s else {},
    }


def session_expired(last_event_at: datetime, ts: datetime, timeout_s: int) -> bool:
    return ts - last_event_at > timedelta(seconds=timeout_s)
