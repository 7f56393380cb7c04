"""Condition evaluation alone: our compiled conditions against GrowthBook's ``evalCondition``.

50 conditions from the decision benchmark's rule generator (``bench_decide.make_condition``:
2–5 clauses over ``session.*``/``visitor.*`` signals, ``context.*`` and top-level context
attributes; ``$lt $lte $gt $gte $in $nin $regex $exists``, implicit equality, nested ``$or``)
and 1,000 attribute dicts shaped like the ones the engine builds (``engine._attributes``).
Every (condition, attributes) pair is first checked to give the same answer in every
evaluator; then, interleaved per visitor and in rotating order, the time to evaluate all 50
conditions on one visitor's attributes is taken for:

* ``ours``      ``personalization.conditions.compile_condition`` (the working tree);
* ``before``    the same from another copy of the module (``--before``, default
                ``/tmp/conditions_before.py``; skipped when the file does not exist), so a
                change is measured against its baseline in one run on one machine;
* ``growthbook`` ``growthbook.core.evalCondition`` on the raw condition dicts.

    .venv/bin/python benchmarks/bench_conditions.py
    .venv/bin/python benchmarks/bench_conditions.py --rounds 20 --before /tmp/conditions_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.bench_decide import (  # noqa: E402
    COUNTRIES,
    LOCALES,
    PAGES,
    REFERRERS,
    TAGS,
    make_condition,
)

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
]
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Mobile Safari"]
DEVICES = ["desktop", "mobile", "tablet"]
REFERRER_KINDS = ["direct", "search", "social", "internal", "other"]


def make_attributes(r: random.Random) -> dict[str, Any]:
    """The nested dict ``engine._attributes`` builds: context attributes, url, signals."""
    attributes: dict[str, Any] = {
        "country": r.choice(COUNTRIES),
        "plan": r.choice(["free", "free", "plus", "pro"]),
        "cart_value": round(r.uniform(0, 250), 2),
        "logged_in": r.random() < 0.4,
        "ab_cohort": r.randint(0, 99),
        "tags": r.sample(TAGS, r.randint(0, 3)),
    }
    if r.random() < 0.2:
        attributes["coupon"] = "WELCOME10"
    url = "https://shop.example" + r.choice(PAGES)
    context = {
        "url": url,
        "referrer": r.choice(REFERRERS),
        "user_agent": r.choice(USER_AGENTS),
        "locale": r.choice(LOCALES),
        "attributes": dict(attributes),
    }
    # Every visitor has live session signals, as in bench_decide: with none, GrowthBook's
    # Python SDK and the JavaScript one (which we follow) disagree on ``$lt`` of a missing value.
    page_views = r.randint(1, 12)
    session = {
        "duration_s": round(r.uniform(0, 900), 3),
        "page_views": page_views,
        "is_bounce": page_views <= 1,
        "max_scroll_depth": r.choice([0, 25, 50, 75, 100]),
        "scroll_speed": round(r.uniform(0, 3000), 2),
        "clicks": r.randint(0, 8),
        "device_type": r.choice(DEVICES),
        "browser": r.choice(BROWSERS),
        "referrer_kind": r.choice(REFERRER_KINDS),
        "cart_adds": r.randint(0, 2),
        "purchases": 0,
        "revenue": 0.0,
        "engagement_score": round(r.uniform(0, 80), 2),
        "path": [url],
    }
    sessions = r.randint(1, 6)
    visitor = {
        "sessions": sessions,
        "bounce_rate": round(r.random(), 4),
        "visits_7d": r.randint(0, sessions),
        "visits_30d": sessions,
        "days_since_last_visit": round(r.uniform(0, 30), 3) if sessions > 1 else None,
        "page_views": r.randint(1, 40),
        "purchases": r.choice([0, 0, 0, 1, 2]),
        "revenue": r.choice([0, 0, 19.99, 54.5, 120]),
        "engagement_score": round(r.uniform(0, 60), 2),
        "device_type": r.choice(DEVICES),
    }
    attributes.update(
        {"id": f"v{r.getrandbits(48):012x}", "url": url, "context": context}
        | {"session": session, "visitor": visitor, "segments": [], "segment": {}}
    )
    return attributes


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("conditions_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = -(-len(ordered) * p // 100)
    return ordered[max(0, min(len(ordered), int(rank)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditions", type=int, default=50)
    parser.add_argument("--visitors", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="passes over all visitors")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--before", type=Path, default=Path("/tmp/conditions_before.py"))
    args = parser.parse_args(argv)

    from growthbook.core import evalCondition

    from personalization.conditions import compile_condition

    r = random.Random(args.seed)
    raw = [make_condition(r) for _ in range(args.conditions)]
    visitors = [make_attributes(r) for _ in range(args.visitors)]
    groups: dict[str, Any] = {}

    evaluators: dict[str, Callable[[dict[str, Any]], Any]] = {}
    ours = [compile_condition(c) for c in raw]

    def run_ours(a: dict[str, Any]) -> list[bool]:
        return [c(a, groups) for c in ours]

    evaluators["ours"] = run_ours
    if args.before.exists():
        before_module = load_module(args.before)
        before = [before_module.compile_condition(c) for c in raw]

        def run_before(a: dict[str, Any]) -> list[bool]:
            return [c(a, groups) for c in before]

        evaluators["before"] = run_before

    def run_growthbook(a: dict[str, Any]) -> list[bool]:
        return [evalCondition(a, c) for c in raw]

    evaluators["growthbook"] = run_growthbook

    # Agreement on every pair before anything is timed.
    mismatches = 0
    holding = 0
    for a in visitors:
        answers = {name: run(a) for name, run in evaluators.items()}
        reference = answers["growthbook"]
        holding += sum(reference)
        for got in answers.values():
            mismatches += sum(x is not y for x, y in zip(got, reference, strict=True))
    pairs = len(raw) * len(visitors)
    print(
        f"agreement: {pairs} pairs x {len(evaluators)} evaluators, {mismatches} mismatches; "
        f"{holding / len(visitors):.2f} of {len(raw)} conditions hold per visitor"
    )
    if mismatches:
        return 1

    # Timed loops: the per-visitor work only, with no list building.
    def loop_ours(a: dict[str, Any]) -> None:
        for c in ours:
            c(a, groups)

    loops: dict[str, Callable[[dict[str, Any]], None]] = {"ours": loop_ours}
    if "before" in evaluators:

        def loop_before(a: dict[str, Any]) -> None:
            for c in before:
                c(a, groups)

        loops["before"] = loop_before

    def loop_growthbook(a: dict[str, Any]) -> None:
        for c in raw:
            evalCondition(a, c)

    loops["growthbook"] = loop_growthbook

    load_start = os.getloadavg()
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    perf = time.perf_counter
    for a in visitors[:200]:  # warm-up
        for name in names:
            loops[name](a)
    for round_index in range(args.rounds):
        for i, a in enumerate(visitors):
            shift = (i + round_index) % len(names)
            for name in names[shift:] + names[:shift]:
                loop = loops[name]
                t0 = perf()
                loop(a)
                times[name].append(perf() - t0)

    print(
        f"python {platform.python_version()}, {len(raw)} conditions, {len(visitors)} visitors "
        f"x {args.rounds} rounds, interleaved; load average {load_start[0]:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} cores); "
        f"per visitor (all {len(raw)} conditions):"
    )
    stats = {}
    for name in names:
        t = times[name]
        stats[name] = (pct(t, 50) * 1e6, pct(t, 99) * 1e6, statistics.fmean(t) * 1e6)
        p50, p99, mean = stats[name]
        print(f"  {name:<11} p50 {p50:7.1f} us  p99 {p99:7.1f} us  mean {mean:7.1f} us")
    gb = stats["growthbook"]
    for name in names:
        if name != "growthbook":
            s = stats[name]
            print(
                f"  {name}/growthbook  p50 {s[0] / gb[0]:.3f}  p99 {s[1] / gb[1]:.3f}  "
                f"mean {s[2] / gb[2]:.3f}"
            )
    if "before" in stats:
        s, b = stats["ours"], stats["before"]
        print(f"  speed-up ours vs before  p50 {b[0] / s[0]:.2f}x  p99 {b[1] / s[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
