"""Scoring benchmark: what a model score adds to a decision, as a ratio in one run.

Setup (its own PostgreSQL database, ``--db``, default ``bench_scoring``, created, migrated and
dropped): two properties alike — a slot ``cta`` (default, b) and a slot ``headline`` (default,
short) — with ``--visitors`` consenting visitors each, with live visitor and session signals.
On the first, a propensity model "cta-click" is trained (``version_train``, the task's body)
on ``--rows`` logged answers with a planted effect, and promoted; its ``headline`` rule
reads ``model.cta-click.variants.b > 0.5`` and its ``cta`` slot serves the model's best
variant. On the second, the same rule reads a signal instead
(``session.duration_s > 120``) and ``cta`` serves its default: the same decision without a
score.

Measured in-process, interleaved per decision on the same visitor signals: (a) the whole
``decide()`` with scores (consent, signals, the model's scores, rules, the logged decision)
against (b) the same ``decide()`` without them — p50/p99 and the ratio; (c) the scoring alone
(``scoring.scores`` on one visitor: the compiled trees, one row per variant) against
(d) scikit-learn's ``predict_proba`` on the same rows (one thread).

    .venv/bin/python benchmarks/bench_scoring.py                 # about a minute
    .venv/bin/python benchmarks/bench_scoring.py --decisions 5000 --rows 4000
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.bench_ingest import (  # noqa: E402
    cpu_model,
    create_database,
    drop_database,
    grant_consent,
    latency_summary,
    log,
)

PYTHON = sys.executable


def visitors(prop, n: int, seed: int) -> list[str]:
    """``n`` consenting visitors with live signals (half mobile), ids v-0 …"""
    from django.utils import timezone

    from personalization import visitor_state as signals
    from personalization.models import Session, Visitor

    rng = random.Random(seed)
    now = timezone.now()
    ids = [f"v-{i}" for i in range(n)]
    grant_consent(prop.pk, ids)
    for vid in ids:
        mobile = rng.random() < 0.5
        v = signals.visitor_new()
        v.update(sessions=rng.randint(1, 9), device_type="mobile" if mobile else "desktop")
        s = signals.session_new(now - timedelta(minutes=5), {})
        s.update(
            last_ts=s["first_ts"] + rng.uniform(5, 600),
            page_views=rng.randint(1, 8),
            device_type="mobile" if mobile else "desktop",
        )
        visitor = Visitor.objects.create(
            property=prop, visitor_id=vid, first_seen=now, last_seen=now, state=v
        )
        Session.objects.create(
            property=prop,
            visitor=visitor,
            session_id=f"s-{vid}",
            started_at=now - timedelta(minutes=5),
            last_event_at=now,
            state=s,
        )
    return ids


def planted_log(prop, rows: int, seed: int) -> None:
    """Logged answers of ``cta``: mobile visitors shown b click 90%, others 10%."""
    from django.utils import timezone

    from personalization.models import Adjustment, Decision, Event

    rng = random.Random(seed)
    start = timezone.now() - timedelta(days=3)
    ids = [f"train-{i}" for i in range(rows)]
    grant_consent(prop.pk, ids)
    decisions, answers, events = [], [], []
    for i, vid in enumerate(ids):
        mobile = rng.random() < 0.5
        variant = "b" if i % 2 else "default"
        at = start + timedelta(seconds=20 * i)
        d = Decision(
            decision_id=uuid.uuid4(),
            property=prop,
            visitor_id=vid,
            session_id=f"s-{vid}",
            created_at=at,
            personalized=variant == "b",
            signals={
                "session": {
                    "duration_s": rng.uniform(5, 600),
                    "device_type": "mobile" if mobile else "desktop",
                },
                "visitor": {"sessions": rng.randint(1, 9)},
            },
        )
        decisions.append(d)
        answers.append((d, variant, at))
        if rng.random() < (0.9 if mobile and variant == "b" else 0.1):
            events.append(
                Event(
                    property=prop,
                    event_id=uuid.uuid4(),
                    type="click",
                    visitor_id=vid,
                    session_id=f"s-{vid}",
                    timestamp=at + timedelta(minutes=1),
                    received_at=at + timedelta(minutes=1),
                    properties={"element_id": "cta"},
                )
            )
    Decision.objects.bulk_create(decisions, batch_size=2000)
    Adjustment.objects.bulk_create(
        [
            Adjustment(
                decision=d,
                property=prop,
                visitor_id=d.visitor_id,
                session_id=d.session_id,
                created_at=at,
                slot_key="cta",
                variant_key=variant,
                source_kind="default" if variant == "default" else "rule",
                source_key="" if variant == "default" else "show-b",
                is_default=variant == "default",
            )
            for d, variant, at in answers
        ],
        batch_size=2000,
    )
    Event.objects.bulk_create(events, batch_size=2000)


def shop(name: str, with_model: bool, args: argparse.Namespace):
    from personalization.learning import propensity
    from personalization.models import Goal, PropensityModel, Rule, Slot, Variant
    from personalization.services.properties import property_create
    from personalization.services.rules import rule_save

    prop, _ = property_create(name=name, origins=["https://shop.example"])
    prop.holdout_pct = 0
    prop.save()
    cta = Slot.objects.create(property=prop, key="cta")
    Variant.objects.create(slot=cta, key="default", content={"label": "Add"})
    Variant.objects.create(slot=cta, key="b", content={"label": "Buy now"})
    headline = Slot.objects.create(property=prop, key="headline")
    Variant.objects.create(slot=headline, key="default", content={"text": "Hello"})
    short = Variant.objects.create(slot=headline, key="short", content={"text": "Hi"})
    condition: dict = {"session.duration_s": {"$gt": 120}}
    if with_model:
        goal = Goal.objects.create(
            property=prop, key="cta-click", event_type="click", element_id="cta", window_hours=1
        )
        model = PropensityModel.objects.create(
            property=prop, key="cta-click", slot=cta, goal=goal, min_rows=100
        )
        planted_log(prop, args.rows, args.seed)
        t0 = time.perf_counter()
        version = propensity.version_train(version_id=propensity.version_start(model=model).pk)
        log(
            f"trained v{version.version} in {time.perf_counter() - t0:.1f}s: {version.status}, "
            f"AUC {version.auc}, {version.rows} rows"
        )
        assert version.status == "promoted", version.message
        Slot.objects.filter(pk=cta.pk).update(serve_model=model)
        cta.refresh_from_db()
        cta.save()  # a configuration change: the rule set recompiles with the model
        condition = {"model.cta-click.variants.b": {"$gt": 0.5}}
    rule_save(
        rule=Rule(
            property=prop,
            key="short",
            slot=headline,
            variant=short,
            condition=condition,
            status="active",
        )
    )
    ids = visitors(prop, args.visitors, args.seed)
    return prop, ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decisions", type=int, default=3000, help="decisions per side")
    p.add_argument("--visitors", type=int, default=300)
    p.add_argument("--rows", type=int, default=2000, help="logged answers to train on")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--db", default="bench_scoring", help="database to create (bench*)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL")
    p.add_argument("--keep-db", action="store_true")
    args = p.parse_args(argv)
    if not args.db.startswith("bench"):
        p.error("--db must start with 'bench' (the benchmark drops and recreates it)")
    admin_url = f"{args.pg.rstrip('/')}/postgres"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "personalization.settings",
        "DATABASE_URL": f"{args.pg.rstrip('/')}/{args.db}",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key",
        "VISITOR_HASH_KEY": "bench-only-visitor-hash-key",
        "TASKS_IN_PROCESS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(BASE_DIR),
    }
    for name in ("REDIS_URL", "DECIDE_REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)  # the database path of decide, per-process cache
    log(f"creating database {args.db}")
    create_database(admin_url, args.db)
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR, env=env, check=True, timeout=300,
        )  # fmt: skip
        os.environ.update(env)
        import django

        django.setup()
        return measure(args)
    finally:
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            drop_database(admin_url, args.db)
            log(f"dropped database {args.db}")


def measure(args: argparse.Namespace) -> int:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from personalization.decisions import DecideRequest, decide
    from personalization.learning import features, scoring
    from personalization.learning.propensity import artifact_load
    from personalization.models import ModelVersion
    from personalization.ruleset import ruleset_for
    from personalization.selectors import visitor_signals_get

    scored, ids = shop("With a model", True, args)
    plain, _ = shop("Without", False, args)
    rng = random.Random(args.seed)
    for prop in (scored, plain):  # compile, load the artifact, warm the caches
        for vid in ids[:50]:
            decide(prop, DecideRequest(vid, f"s-{vid}", ["headline", "cta"]))
    with_score: list[float] = []
    without: list[float] = []
    served = {"short": 0, "b": 0}
    for _ in range(args.decisions):
        vid = rng.choice(ids)
        for prop, sink in ((scored, with_score), (plain, without)):
            t0 = time.perf_counter()
            result = decide(prop, DecideRequest(vid, f"s-{vid}", ["headline", "cta"]))
            sink.append(time.perf_counter() - t0)
            if prop is scored:
                served["short"] += result.answers["headline"].variant == "short"
                served["b"] += result.answers["cta"].variant == "b"
    ruleset = ruleset_for(scored.pk)
    model = ruleset.models["cta-click"]
    estimator = artifact_load(
        ModelVersion.objects.values_list("artifact", flat=True).get(pk=model.version_id)
    )["estimator"]
    attributes = [visitor_signals_get(scored, v, f"s-{v}") for v in ids]
    ours: list[float] = []
    sklearn: list[float] = []
    for i in range(args.decisions):
        attrs = attributes[i % len(attributes)]
        t0 = time.perf_counter()
        out = scoring.scores(ruleset.models, attrs)
        ours.append(time.perf_counter() - t0)
        base = features.vector(attrs)
        rows = np.array([base + [1.0, 0.0], base + [0.0, 1.0]])
        t0 = time.perf_counter()
        with threadpool_limits(1):
            expected = estimator.predict_proba(rows)[:, 1]
        sklearn.append(time.perf_counter() - t0)
        assert abs(expected[0] - out["cta-click"]["variants"]["b"]) < 1e-5
    a, b = latency_summary(with_score), latency_summary(without)
    c, d = latency_summary(ours), latency_summary(sklearn)
    print()
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"CPU: {cpu_model()}; Python {sys.version.split()[0]}; {when}")
    print(f"decisions per side: {args.decisions}, visitors {len(ids)}, training rows {args.rows}")
    print(f"served by the score: headline short {served['short']}, cta b {served['b']}")
    print("| measure | p50 ms | p99 ms |")
    print("| --- | --- | --- |")
    print(f"| (a) decide with scores | {a['p50']} | {a['p99']} |")
    print(f"| (b) decide without | {b['p50']} | {b['p99']} |")
    print(f"| (c) scoring alone (trees, 2 rows) | {c['p50']} | {c['p99']} |")
    print(f"| (d) sklearn predict_proba (2 rows, 1 thread) | {d['p50']} | {d['p99']} |")
    ratio50 = statistics.median(with_score) / statistics.median(without)
    print(
        f"ratios: (a)/(b) p50 {ratio50:.2f}, p99 {a['p99'] / b['p99']:.2f}; "
        f"added at p99 {a['p99'] - b['p99']:.2f} ms; "
        f"(d)/(c) p50 {d['p50'] / max(c['p50'], 1e-9):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
