"""Dashboards at scale: N adjustment rows with their decisions and outcomes, rolled up and read.

    .venv/bin/python benchmarks/bench_dashboards.py --rows 1000000
    .venv/bin/python benchmarks/bench_dashboards.py --rows 10000000      # the issue's goal

Creates its own PostgreSQL database (``--db``, default ``bench_dash``; it must start with
``bench``; dropped at the end unless ``--keep-db``), checks free disk first, and loads with
COPY (a progress bar per stage):

- decisions (two slots answered each, so N/2 of them) over ``--weeks`` weeks, in sessions
  of 1–3 pages of returning and new visitors; 5 % held out, 20 % without consent (their
  answers are defaults, with the suppressions the engine logs), the rest personalized by
  five rules (two versions) and one experiment;
- their N adjustments, and outcome events: a page view per decision, a click carrying
  the decision id (~10 %), a purchase without one 0–40 minutes later (~3 %).

Then it times, on warm tables:

1. the full rollup of every kind (``dashboard_rollup --full``),
2. the incremental rollup after one more hour of data (the beat's run),
3. every selector the dashboard pages call (28-day and all-time filters),
4. every dashboard page's server-side work through the Django test client
   (``time_pages``; pages that exist in ``dashboard.urls`` are discovered),

each against a baseline in the same run: one aggregate scan of the raw adjustments,
the work the rollups spare the pages. Goal (issue 7): at 10,000,000 rows each page under
1 s, the incremental rollup under 10 s.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.benchdb import django_database, log  # noqa: E402

# Measured on this generator: table + index bytes per adjustment row, decisions and events
# included (~1.1 KB); the check asks for half as much again as headroom.
BYTES_PER_ROW = 1100
HEADROOM = 1.5
RULES = [("r-free-shipping", 2), ("r-mobile-list", 1), ("r-returning", 2), ("r-vip", 1)]
SEGMENTS = ["new", "returning", "vip", "mobile"]
DEVICES = ["desktop", "mobile", "mobile", "tablet"]
SURVEY_SHARE = 0.02  # pages with an exit-survey answer (NPS and a rating)


def disk_check(rows: int, pg_admin_url: str) -> None:
    """Refuse (exit 2) when the database's disk lacks room for ``rows``."""
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
    path = data_dir if os.path.exists(data_dir) else "/"
    free = shutil.disk_usage(path).free
    need = int(rows * BYTES_PER_ROW * HEADROOM)
    log(f"disk: {free / 1e9:.1f} GB free at {path}; {need / 1e9:.1f} GB needed for {rows:,} rows")
    if free < need:
        sys.exit(
            f"Refusing: {rows:,} rows need about {need / 1e9:.1f} GB and {path} has "
            f"{free / 1e9:.1f} GB free. Lower --rows or free some disk."
        )


@dataclass
class Page:
    """One decision and what follows it."""

    decision_pk: int
    decision_id: uuid.UUID
    vid: str
    sid: str
    at: datetime
    device: str
    group: str  # personalized / holdout / not_consented
    answers: list[tuple[str, str, str, str, int | None, bool]]
    suppressed: list[dict[str, str]]
    segments: list[str]
    clicked: bool
    purchase_after: float | None  # seconds
    nps: int | None  # an exit-survey answer on this page (~2 % of pages), else None


def pages(
    n_rows: int, start: datetime, end: datetime, seed: int, first_pk: int = 1
) -> Iterator[Page]:
    """Deterministic traffic: the same seed gives the same pages (two passes need it)."""
    rng = random.Random(seed)
    n_decisions = n_rows // 2
    n_visitors = max(10, n_rows // 12)
    span = (end - start).total_seconds()
    pk = first_pk
    made = 0
    while made < n_decisions:
        f = made / n_decisions
        at = start + timedelta(seconds=f * span + rng.random() * 60)
        # New visitors keep arriving; earlier ones come back.
        pool = max(10, int(n_visitors * min(1.0, 0.05 + f * 1.2)))
        v = rng.randrange(pool)
        vid = f"v{v}"
        sid = f"{vid}-{seed}-{made}"
        held = v % 20 == 0
        consented = v % 5 != 1
        group = "not_consented" if not consented else "holdout" if held else "personalized"
        device = DEVICES[v % len(DEVICES)]
        segments = [SEGMENTS[v % 3]] + (["mobile"] if device == "mobile" else [])
        for page in range(rng.choice((1, 1, 2, 3))):
            if made >= n_decisions:
                break
            page_at = at + timedelta(seconds=page * rng.randint(20, 240))
            answers: list[tuple[str, str, str, str, int | None, bool]] = []
            suppressed: list[dict[str, str]] = []
            if group == "personalized":
                if v % 3 == 0:
                    variant = "b" if (v // 3) % 2 else "a"
                    answers.append(("hero", variant, "experiment", "hero-test", 1, False))
                else:
                    key, version = RULES[v % len(RULES)]
                    answers.append(("hero", key, "rule", key, version, False))
                    if rng.random() < 0.1:
                        suppressed.append(
                            {"slot": "banner", "candidate": "rule:r-vip", "reason": "cooldown"}
                        )
                answers.append(("banner", "default", "default", "", None, True))
            else:
                reason = "holdout" if group == "holdout" else "consent"
                answers.append(("hero", "default", "default", "", None, True))
                answers.append(("banner", "default", "default", "", None, True))
                suppressed.append(
                    {"slot": "hero", "candidate": f"rule:{RULES[v % 4][0]}", "reason": reason}
                )
            lift = 0.03 if group == "personalized" and answers[0][2] != "default" else 0.0
            yield Page(
                pk,
                uuid.UUID(int=rng.getrandbits(128), version=4),
                vid,
                sid,
                page_at,
                device,
                group,
                answers,
                suppressed,
                segments,
                rng.random() < 0.08 + lift,
                rng.uniform(0, 2400) if rng.random() < 0.03 + lift / 3 else None,
                # Personalized visitors answer a little higher (a planted effect).
                min(10, int(rng.random() * 11) + (rng.random() < 0.3) * (lift > 0))
                if rng.random() < SURVEY_SHARE
                else None,
            )
            pk += 1
            made += 1


def load(url: str, prop_id: int, rows: int, start: datetime, end: datetime, seed: int) -> int:
    """Decisions in a first pass, then adjustments and events (two COPYs side by side)."""
    with psycopg.connect(url) as conn:
        first_pk = (
            conn.execute(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM personalization_decision"
            ).fetchone()[0]  # type: ignore[index]
        )
        records = conn.execute(
            "SELECT id, granted::text LIKE %s FROM consent_consentrecord "
            "WHERE property_id = %s ORDER BY id",
            ['%"personalization"%', prop_id],
        ).fetchall()
        survey_id = conn.execute(
            "SELECT id FROM personalization_survey WHERE property_id = %s AND key = 'exit'",
            [prop_id],
        ).fetchone()[0]  # type: ignore[index]
    granted = [r[0] for r in records if r[1]]
    refused = [r[0] for r in records if not r[1]]
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY personalization_decision (id, decision_id, property_id, visitor_id, session_id,"
            " created_at, personalized, holdout, consent_record_id, signals, context, suppressed)"
            " FROM STDIN"
        ) as copy,
    ):
        for p in tqdm(
            pages(rows, start, end, seed, first_pk),
            total=rows // 2,
            desc="decisions",
            unit="row",
            mininterval=2,
        ):
            record_pool = refused if p.group == "not_consented" else granted
            signals = {"session": {"device_type": p.device}, "visitor": {}, "segments": p.segments}
            copy.write_row(
                (
                    p.decision_pk,
                    p.decision_id,
                    prop_id,
                    p.vid,
                    p.sid,
                    p.at,
                    any(not a[5] for a in p.answers),
                    p.group == "holdout",
                    record_pool[int(p.vid[1:]) % len(record_pool)],
                    json.dumps(signals),
                    "{}",
                    json.dumps(p.suppressed),
                )
            )
    events = 0
    with (
        psycopg.connect(url) as a_conn,
        psycopg.connect(url) as e_conn,
        psycopg.connect(url) as s_conn,
        a_conn.cursor().copy(
            "COPY personalization_adjustment (decision_id, property_id, visitor_id, session_id,"
            " created_at, slot_key, variant_key, source_kind, source_key, source_version,"
            " is_default) FROM STDIN"
        ) as a_copy,
        e_conn.cursor().copy(
            "COPY personalization_event (property_id, event_id, type, visitor_id, session_id,"
            " timestamp, received_at, decision_id, properties, context) FROM STDIN"
        ) as e_copy,
        s_conn.cursor().copy(
            "COPY personalization_surveyresponse (property_id, survey_id, visitor_id, session_id,"
            " decision_id, submitted_at, answers) FROM STDIN"
        ) as s_copy,
    ):
        bar = tqdm(total=rows, desc="adjustments + events", unit="row", mininterval=2)
        rng = random.Random(seed + 1)
        for p in pages(rows, start, end, seed, first_pk):
            for slot, variant, kind, key, version, is_default in p.answers:
                a_copy.write_row(
                    (
                        p.decision_pk,
                        prop_id,
                        p.vid,
                        p.sid,
                        p.at,
                        slot,
                        variant,
                        kind,
                        key,
                        version,
                        is_default,
                    )
                )
            bar.update(len(p.answers))
            e_copy.write_row(
                (
                    prop_id,
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    "page_view",
                    p.vid,
                    p.sid,
                    p.at,
                    p.at,
                    p.decision_id,
                    "{}",
                    "{}",
                )
            )
            events += 1
            if p.nps is not None:
                s_copy.write_row(
                    (
                        prop_id,
                        survey_id,
                        p.vid,
                        p.sid,
                        p.decision_id,
                        p.at + timedelta(seconds=30),
                        json.dumps({"nps": p.nps, "rating": 1 + p.nps // 3}),
                    )
                )
            if p.clicked:
                e_copy.write_row(
                    (
                        prop_id,
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        "click",
                        p.vid,
                        p.sid,
                        p.at + timedelta(seconds=8),
                        p.at,
                        p.decision_id,
                        '{"element_id": "cta"}',
                        "{}",
                    )
                )
                events += 1
            if p.purchase_after is not None:
                at = p.at + timedelta(seconds=p.purchase_after)
                e_copy.write_row(
                    (
                        prop_id,
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        "purchase",
                        p.vid,
                        p.sid,
                        at,
                        at,
                        None,
                        f'{{"revenue": {rng.uniform(10, 200):.2f}}}',
                        "{}",
                    )
                )
                events += 1
        bar.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('personalization_decision', 'id'), "
            "(SELECT MAX(id) FROM personalization_decision))"
        )
        conn.execute("ANALYZE")
    return events


def late_events(url: str, prop_id: int, rows: int, at: datetime, n: int, seed: int) -> int:
    """``n`` page views of returning visitors, stamped within the hour from ``at``."""
    # Its own stream: ``load`` seeds its events' generator with seed + 1, and a run that
    # takes a second passes this function that very number (same event ids, a conflict).
    rng = random.Random(f"late:{seed}")
    n_visitors = max(10, rows // 12)
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY personalization_event (property_id, event_id, type, visitor_id, session_id,"
            " timestamp, received_at, decision_id, properties, context) FROM STDIN"
        ) as copy,
    ):
        for _ in range(n):
            vid = f"v{rng.randrange(n_visitors)}"
            stamp = at + timedelta(seconds=rng.uniform(0, 3599))
            event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            row = (prop_id, event_id, "page_view", vid, f"{vid}-late", stamp, datetime.now(UTC))
            copy.write_row((*row, None, "{}", "{}"))
    return n


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(best, median) seconds over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def time_pages(prop: Any, repeats: int) -> list[tuple[str, float, float, int]]:
    """Every dashboard page's server-side work: GET through the Django test client as a
    superuser, with the property and a 28-day range in the query string.

    Pages are discovered from ``dashboard.urls`` (names without URL arguments); the pages'
    own filters apply. (path, best s, median s, status) per page.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import URLPattern, reverse

    try:
        import dashboard.urls
    except ImportError as exc:  # the pages are being built beside this benchmark
        log(f"pages not timed: dashboard.urls does not import ({exc})")
        return []

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    today = datetime.now(UTC).date()
    query = f"?property={prop.slug}&start={today - timedelta(days=27)}&end={today}"
    out = []
    for pattern in dashboard.urls.urlpatterns:
        if not isinstance(pattern, URLPattern) or not pattern.name or pattern.pattern.converters:
            continue
        path = reverse(f"{dashboard.urls.app_name}:{pattern.name}") + query
        status = [0]

        def get(path: str = path, status: list[int] = status) -> None:
            status[0] = client.get(path).status_code

        best, median, _ = timed(get, repeats)
        out.append((path, best, median, status[0]))
    return out


def full_rollup(args: argparse.Namespace, prop: Any, results: dict[str, Any]) -> None:
    from dashboard.rollups import rollups_run

    t = time.perf_counter()
    full = rollups_run(
        property_ids=[prop.pk], full=True, retention=True, progress=None if args.quiet else log
    )
    results["full_rollup_s"] = round(time.perf_counter() - t, 2)
    results["full_by_kind_s"] = {r.kind: round(r.seconds, 2) for r in full}
    log(f"full rollup: {results['full_rollup_s']}s {results['full_by_kind_s']}")


def run(args: argparse.Namespace, url: str) -> int:
    from django.db import connection

    from consent import services as consent_services
    from dashboard import selectors
    from dashboard.models import RollupState
    from dashboard.rollups import hourly_replace, rollups_run
    from personalization.models import Adjustment, Event, Property, SurveyResponse
    from personalization.services.properties import property_create
    from personalization.services.surveys import survey_create

    prop = Property.objects.filter(slug="bench-dash").first()
    now = datetime.now(UTC)
    span_start = now - timedelta(weeks=args.weeks)
    last_hour = now - timedelta(hours=1)
    if prop is None:
        prop, _ = property_create(name="Bench dashboards", with_keys=False)
        Property.objects.filter(pk=prop.pk).update(slug="bench-dash")
        prop.refresh_from_db()
        survey_create(
            prop=prop,
            key="exit",
            title="Exit survey",
            questions=[
                {"key": "nps", "type": "nps", "text": "How likely are you to recommend us?"},
                {"key": "rating", "type": "rating", "text": "How was this visit?"},
            ],
        )
        all_on = {"analytics": True, "personalization": True, "granular_tracking": True}
        for i in range(200):  # consent records the decisions point at (granted and refused)
            consent_services.consent_record(
                property_id=prop.pk,
                visitor_id=f"c{i}",
                policy_version=1,
                purposes=all_on if i % 5 else {**all_on, "personalization": False},
                method="banner",
            )
        t = time.perf_counter()
        events = load(url, prop.pk, args.rows, span_start, last_hour, seed=7)
        log(
            f"loaded {args.rows:,} adjustments, {events:,} events in {time.perf_counter() - t:.0f}s"
        )
    else:
        log("reusing the loaded data (--keep-db)")
    counts = {
        "adjustments": Adjustment.objects.filter(property=prop).count(),
        "events": Event.objects.filter(property=prop).count(),
        "survey_responses": SurveyResponse.objects.filter(property=prop).count(),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        db_bytes = cursor.fetchone()[0]  # type: ignore[index]
    log(
        f"rows: {counts}; database {db_bytes / 1e9:.2f} GB "
        f"({db_bytes / max(1, counts['adjustments']):.0f} B per adjustment)"
    )

    # Baseline: one aggregate scan of the raw adjustments, what pages would do without rollups.
    def raw_scan() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT slot_key, source_key, variant_key, COUNT(*) FROM personalization_adjustment"
                " WHERE property_id = %s AND created_at >= %s GROUP BY 1, 2, 3",
                [prop.pk, now - timedelta(days=28)],
            )
            return cursor.fetchall()

    base_best, base_median, _ = timed(raw_scan, args.repeats)
    log(f"baseline raw 28-day scan of adjustments: best {base_best:.3f}s median {base_median:.3f}s")

    results: dict[str, Any] = {
        "rows": counts,
        "db_gb": round(db_bytes / 1e9, 2),
        "baseline_raw_scan_s": round(base_best, 3),
    }
    if args.skip_full and RollupState.objects.filter(property=prop).exists():
        log("full rollup skipped (--skip-full; rollups of an earlier run are kept)")
    else:
        full_rollup(args, prop, results)

    # One more hour of data, stamped in the last hour, then the beat's incremental run.
    hour_rows = max(2, args.rows // (args.weeks * 7 * 24))
    load(url, prop.pk, hour_rows, last_hour, now, seed=int(time.time()))
    t = time.perf_counter()
    incremental = rollups_run(property_ids=[prop.pk])
    results["incremental_rollup_s"] = round(time.perf_counter() - t, 2)
    results["incremental_by_kind_s"] = {r.kind: round(r.seconds, 2) for r in incremental}
    results["incremental_new_rows"] = hour_rows
    hourly = next(r for r in incremental if r.kind == "hourly")
    log(
        f"incremental rollup after {hour_rows:,} new adjustments: "
        f"{results['incremental_rollup_s']}s {results['incremental_by_kind_s']} "
        f"({hourly.hours} hours recomputed, {hourly.start:%H:%M}→{hourly.end:%H:%M})"
    )
    again = rollups_run(property_ids=[prop.pk])
    log(f"rerun with nothing new: {sum(r.seconds for r in again):.2f}s")
    # Late events: a batch a device sends a day late, stamped within one hour 30 h ago.
    late_at = now - timedelta(hours=31)
    late = late_events(url, prop.pk, args.rows, late_at, n=500, seed=int(time.time()))
    t = time.perf_counter()
    after_late = rollups_run(property_ids=[prop.pk])
    results["late_batch_rollup_s"] = round(time.perf_counter() - t, 2)
    hourly = next(r for r in after_late if r.kind == "hourly")
    log(
        f"incremental rollup after {late} events stamped in the hour from {late_at:%d %H:%M} "
        f"(30 h late): {results['late_batch_rollup_s']}s ({hourly.hours} hours recomputed "
        f"between {hourly.start:%d %H:%M} and {hourly.end:%d %H:%M})"
    )
    # Against recomputing every hour from the late events' reach to now (what a contiguous
    # span would do), timed in the same run.
    t = time.perf_counter()
    for chunk_start in range(0, int((hourly.end - hourly.start) / timedelta(hours=1)), 24):
        chunk_from = hourly.start + timedelta(hours=chunk_start)
        hourly_replace(prop.pk, chunk_from, min(hourly.end, chunk_from + timedelta(hours=24)))
    results["late_batch_contiguous_s"] = round(time.perf_counter() - t, 2)
    log(f"the same span recomputed whole: {results['late_batch_contiguous_s']}s")

    props = Property.objects.filter(pk=prop.pk)
    today = now.date()
    ranges = {
        "28d": selectors.DashboardFilters(today - timedelta(days=27), today),
        "all": selectors.DashboardFilters(span_start.date(), today),
    }
    reads: dict[str, Callable[[selectors.DashboardFilters], Any]] = {
        "adjustments_daily": lambda f: selectors.adjustments_daily(props, f),
        "group_outcomes": lambda f: selectors.group_outcomes(props, f),
        "source_outcomes(rule)": lambda f: selectors.source_outcomes(props, f, "rule"),
        "source_outcomes(experiment)": lambda f: selectors.source_outcomes(props, f, "experiment"),
        "suppressions": lambda f: selectors.suppressions(props, f),
        "retention_cohorts": lambda f: selectors.retention_cohorts(props, f),
        "retention_curves": lambda f: selectors.retention_curves(props, f),
        "survey_scores": lambda f: selectors.survey_scores(props, f),
        "survey_seen_correlation": lambda f: selectors.survey_seen_correlation(props, f),
        "segment_sizes": lambda f: selectors.segment_sizes(props, f),
        "event_fates_daily": lambda f: selectors.event_fates_daily(props, f),
        "consent_daily": lambda f: selectors.consent_daily(props, f),
        "filter_choices": lambda f: selectors.filter_choices(props),
    }
    results["selectors_s"] = {}
    for name, read in reads.items():
        for label, filters in ranges.items():
            best, median, out = timed(lambda r=read, f=filters: r(f), args.repeats)
            results["selectors_s"][f"{name} [{label}]"] = round(best, 4)
            log(
                f"selector {name} [{label}]: best {best * 1000:.1f} ms, median "
                f"{median * 1000:.1f} ms ({best / base_best:.3f}× baseline; "
                f"{len(out) if hasattr(out, '__len__') else '-'} rows)"
            )
    results["pages_s"] = {}
    for path, best, median, status in time_pages(prop, args.repeats):
        results["pages_s"][path.split("?")[0]] = round(best, 3)
        log(
            f"page {path.split('?')[0]}: best {best * 1000:.0f} ms, median {median * 1000:.0f} ms "
            f"(HTTP {status}; {best / base_best:.2f}× baseline)"
        )
    worst_page = max(results["pages_s"].values(), default=0.0)
    log(
        f"goal at this scale — pages < 1 s: {'met' if worst_page < 1 else 'NOT met'} "
        f"(worst {worst_page:.3f}s); incremental < 10 s: "
        f"{'met' if results['incremental_rollup_s'] < 10 else 'NOT met'}"
    )
    print(json.dumps(results, indent=2, default=str))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="adjustment rows to load")
    p.add_argument("--weeks", type=int, default=8)
    p.add_argument("--db", default="bench_dash")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep-db", action="store_true", help="keep (and reuse) the database")
    p.add_argument("--quiet", action="store_true", help="no per-chunk rollup progress")
    p.add_argument(
        "--skip-full",
        action="store_true",
        help="with --keep-db: keep the earlier run's rollups (times the incremental run only)",
    )
    args = p.parse_args()
    with django_database(
        args.pg,
        args.db,
        keep=args.keep_db,
        before_create=lambda admin: disk_check(args.rows, admin),
    ) as url:
        return run(args, url)


if __name__ == "__main__":
    sys.exit(main())
