"""Experiment results at scale: N exposed visitors on PostgreSQL, timed.

    .venv/bin/python benchmarks/bench_results.py --visitors 1000000

Creates its own database (``bench_results``), loads the decision log's exposures and
the goal events with COPY (a progress line per stage), then times
``experiment_results_compute`` — one aggregate query per goal plus the statistics —
for a binary goal (clicks on the CTA within 24 h) and a continuous one (revenue
within 72 h). The goal (issue 6): under 5 seconds at 1,000,000 exposed visitors.
"""

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.benchdb import django_database, log  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visitors", type=int, default=1_000_000)
    p.add_argument("--db", default="bench_results")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep-db", action="store_true")
    args = p.parse_args()
    with django_database(args.pg, args.db, keep=args.keep_db, migrate_timeout=300) as url:
        return run(args, url)


def run(args: argparse.Namespace, url: str) -> int:
    import uuid

    from personalization import bucketing
    from personalization.models import Decision, Experiment, ExperimentGoal, Goal, Slot, Variant
    from personalization.services.experiments import experiment_results_compute
    from personalization.services.properties import property_create

    prop, _ = property_create(name="Bench", with_keys=False)
    slot = Slot.objects.create(property=prop, key="cta")
    Variant.objects.create(slot=slot, key="default")
    Variant.objects.create(slot=slot, key="b")
    exp = Experiment.objects.create(
        property=prop,
        key="cta-test",
        slot=slot,
        status="running",
        variants=[{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
    )
    click = Goal.objects.create(
        property=prop, key="click", event_type="click", element_id="cta", window_hours=24
    )
    revenue = Goal.objects.create(
        property=prop,
        key="revenue",
        kind="continuous",
        metric="revenue",
        event_type="purchase",
        window_hours=72,
    )
    ExperimentGoal.objects.create(experiment=exp, goal=click, role="primary")
    ExperimentGoal.objects.create(experiment=exp, goal=revenue, role="secondary")
    now = datetime.now(UTC)
    decision = Decision.objects.create(
        decision_id=uuid.uuid4(),
        property=prop,
        visitor_id="-",
        session_id="-",
        created_at=now,
        personalized=True,
    )
    rng = random.Random(1)
    n = args.visitors
    ranges = bucketing.get_bucket_ranges(2, 1.0, [0.5, 0.5])
    t0 = time.perf_counter()
    events = 0
    with psycopg.connect(url) as conn:
        with conn.cursor().copy(
            "COPY personalization_adjustment (decision_id, property_id, visitor_id, session_id,"
            " created_at, slot_key, variant_key, source_kind, source_key, is_default)"
            " FROM STDIN"
        ) as copy:
            for i in range(n):
                vid = f"v{i}"
                variant = ("default", "b")[
                    bucketing.choose_variation(bucketing.hash("cta-test", vid, 2), ranges)
                ]
                at = now - timedelta(days=2, seconds=rng.randrange(86400))
                copy.write_row(
                    (
                        decision.pk,
                        prop.pk,
                        vid,
                        f"s{i}",
                        at,
                        "cta",
                        variant,
                        "experiment",
                        "cta-test",
                        False,
                    )
                )
                if i and i % 200_000 == 0:
                    log(f"exposures: {i:,}")
        log(f"exposures: {n:,} loaded in {time.perf_counter() - t0:.1f}s")
        t1 = time.perf_counter()
        with conn.cursor().copy(
            "COPY personalization_event (property_id, event_id, type, visitor_id, session_id,"
            " timestamp, received_at, properties, context) FROM STDIN"
        ) as copy:
            rng = random.Random(2)
            for i in range(n):
                vid = f"v{i}"
                variant_b = bucketing.hash("cta-test", vid, 2) >= 0.5  # type: ignore[operator]
                base = now - timedelta(days=2) + timedelta(hours=1)
                if rng.random() < (0.24 if variant_b else 0.2):
                    copy.write_row(
                        (
                            prop.pk,
                            uuid.uuid4(),
                            "click",
                            vid,
                            f"s{i}",
                            base,
                            now,
                            '{"element_id": "cta"}',
                            "{}",
                        )
                    )
                    events += 1
                if rng.random() < 0.05:
                    copy.write_row(
                        (
                            prop.pk,
                            uuid.uuid4(),
                            "purchase",
                            vid,
                            f"s{i}",
                            base,
                            now,
                            f'{{"revenue": {rng.uniform(10, 200):.2f}}}',
                            "{}",
                        )
                    )
                    events += 1
        conn.execute("ANALYZE")
        conn.commit()
    log(f"events: {events:,} loaded in {time.perf_counter() - t1:.1f}s")
    timings = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        results = experiment_results_compute(exp)
        timings.append(time.perf_counter() - t)
        log(f"results in {timings[-1]:.2f}s")
    goal = results["goals"][0]
    print("\n===== Experiment results benchmark =====")
    print(f"exposed visitors  {n:,}   goal events {events:,}")
    print(f"users per variant {[v['users'] for v in goal['variants']]}")
    median = sorted(timings)[len(timings) // 2]
    print(f"results (2 goals) best {min(timings):.2f}s, median {median:.2f}s (goal: < 5 s at 1M)")
    print(f"recommendation    {results['recommendation']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
