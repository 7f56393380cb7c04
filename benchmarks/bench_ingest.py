"""Event ingestion benchmark: the ingest path against a raw psycopg COPY, in one run.

What is measured, on the same generated events (batches of ``--batch``, default 100):

(a) server-side ingest path, in-process, no HTTP: ``events_ingest()`` per batch — envelope
    and schema validation, the consent gate, dedup, storage and the visitor/session signal
    fold, each batch in its own transaction, exactly as the API view calls it;
(b) raw psycopg COPY of the same rows into the same events table (same columns, same
    indexes and constraints): once as one COPY of every row in one transaction, and once
    as one COPY and one commit per batch;
(c) HTTP: POST /api/v1/events under gunicorn (pinned with ``taskset`` to one core), driven
    by ``benchmarks/loadgen.py`` pinned to the other core, keep-alive where the worker
    class allows it, a few concurrent connections; events/s and latency percentiles.

The ingest tables are truncated (and a CHECKPOINT taken) before every measured phase, so
every phase writes the same rows into the same empty tables. The benchmark creates and
drops its own database (``--db``, default ``bench_ingest``; it must start with ``bench``).

    .venv/bin/python benchmarks/bench_ingest.py                 # default scale, 50,000 events
    .venv/bin/python benchmarks/bench_ingest.py --events 200000 --profile 20000
"""

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGET_HTTP_EVENTS_PER_S = 10_000
TARGET_SERVER_TO_COPY = 0.25
INGEST_TABLES = ("Event", "Session", "Visitor", "IngestStat", "QuarantinedEvent")
COPY_COLUMNS = (
    "property_id",
    "event_id",
    "type",
    "visitor_id",
    "session_id",
    "timestamp",
    "received_at",
    "decision_id",
    "properties",
    "context",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = -(-len(ordered) * p // 100)
    return ordered[max(0, min(len(ordered), int(rank)) - 1)]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(seconds, 50) * 1000, 2),
        "p90": round(pct(seconds, 90) * 1000, 2),
        "p99": round(pct(seconds, 99) * 1000, 2),
        "max": round(max(seconds, default=0.0) * 1000, 2),
    }


# --------------------------------------------------------------------------- database


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_facts(url: str) -> dict[str, str]:
    names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [list(names)],
        ).fetchall()
    return {name: value for name, value in rows}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- data


def generate_events(n: int, seed: int, days: float) -> tuple[list[dict], list[str]]:
    """``n`` valid events of consenting visitors, as a storefront's server would forward them:
    realistic visits (``personalization.simulation``), all visitors interleaved in time."""
    from django.utils import timezone

    from personalization.simulation import visitor_events

    rng = random.Random(seed)
    now = timezone.now()
    events: list[dict] = []
    visitors: list[str] = []
    while len(events) < n:
        visitor = f"bv-{seed}-{len(visitors):07d}"
        visitors.append(visitor)
        events.extend(visitor_events(rng, visitor, days, now))
    events.sort(key=lambda e: e["timestamp"])
    events = events[-n:]  # the most recent n: every visit still open at the end is fine
    used = {e["visitor_id"] for e in events}
    return events, [v for v in visitors if v in used]


def batches(events: list[dict], size: int) -> list[list[dict]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def grant_consent(prop_id: int, visitors: list[str]) -> None:
    from consent.services import consent_record

    purposes = {"analytics": True, "personalization": True, "granular_tracking": True}
    for visitor in visitors:
        consent_record(
            property_id=prop_id,
            visitor_id=visitor,
            policy_version=1,
            purposes=purposes,
            method="banner",
        )


# --------------------------------------------------------------------------- phases


def reset_tables() -> None:
    """Empty the ingest tables and flush dirty pages, so each phase starts alike."""
    from django.apps import apps
    from django.db import connection

    tables = [apps.get_model("personalization", m)._meta.db_table for m in INGEST_TABLES]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
        cursor.execute("CHECKPOINT")


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def event_count() -> int:
    from personalization.models import Event

    return Event.objects.count()


def run_ingest(prop: Any, chunks: list[list[dict]]) -> dict[str, Any]:
    from personalization.services.ingest import events_ingest

    accepted = other = 0
    per_batch: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for chunk in chunks:
        t0 = time.perf_counter()
        result = events_ingest(prop=prop, events=chunk)
        per_batch.append(time.perf_counter() - t0)
        accepted += result.accepted
        other += result.duplicates + result.quarantined + result.dropped_no_consent
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    tenth = max(1, len(per_batch) // 10)
    return {
        "events": accepted,
        "not_stored": other,
        "elapsed_s": round(elapsed, 4),
        "events_per_s": round(accepted / elapsed, 1),
        # Python CPU of this process; the rest of the wall time is waiting on PostgreSQL.
        "python_cpu_s": round(cpu, 3),
        "python_cpu_share": round(cpu / elapsed, 3),
        "batch_latency_ms": latency_summary(per_batch),
        "batch_mean_ms_first_tenth": round(statistics.mean(per_batch[:tenth]) * 1000, 2),
        "batch_mean_ms_last_tenth": round(statistics.mean(per_batch[-tenth:]) * 1000, 2),
    }


def copy_rows(prop_id: int, events: list[dict], received: datetime) -> Iterator[tuple]:
    from psycopg.types.json import Jsonb

    for e in events:
        decision = e.get("decision_id")
        yield (
            prop_id,
            uuid.UUID(e["event_id"]),
            e["type"],
            e["visitor_id"],
            e["session_id"],
            datetime.fromisoformat(e["timestamp"]),
            received,
            uuid.UUID(decision) if decision else None,
            Jsonb(e.get("properties") or {}),
            Jsonb(e.get("context") or {}),
        )


def run_copy(url: str, table: str, prop_id: int, chunks: list[list[dict]], per_batch: bool):
    """Raw COPY of the same rows (built from the same event dicts, timed end to end)."""
    sql = f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    with psycopg.connect(url) as conn:
        received = datetime.now(UTC)
        started = time.perf_counter()
        with conn.cursor() as cur:
            if per_batch:
                for chunk in chunks:
                    with cur.copy(sql) as copy:
                        for row in copy_rows(prop_id, chunk, received):
                            copy.write_row(row)
                    conn.commit()
            else:
                with cur.copy(sql) as copy:
                    for chunk in chunks:
                        for row in copy_rows(prop_id, chunk, received):
                            copy.write_row(row)
                conn.commit()
        elapsed = time.perf_counter() - started
    n = sum(len(c) for c in chunks)
    return {"events": n, "elapsed_s": round(elapsed, 4), "events_per_s": round(n / elapsed, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not listen on port {port} within {deadline_s}s")


@contextmanager
def spawned(
    name: str, cmd: list[str], env: dict[str, str], logfile: Path,
    ready: Callable[[subprocess.Popen], None], stop_timeout: float = 15,
) -> Iterator[subprocess.Popen]:  # fmt: skip
    """Run a server process in its own session, output to ``logfile``; yield once ``ready``
    returns (it raises if the process never gets there); SIGTERM (then SIGKILL) at the end."""
    log("starting: " + " ".join(cmd))
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        ready(proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # gunicorn's master stops its workers
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # our own session only
                proc.wait(timeout=5)
        log(f"{name} stopped (exit code {proc.returncode})")


def gunicorn(
    args: argparse.Namespace, env: dict[str, str], port: int, logfile: Path
) -> contextlib.AbstractContextManager[subprocess.Popen]:
    cmd = [
        "taskset", "-c", str(args.server_core),
        str(Path(PYTHON).parent / "gunicorn"), "personalization.wsgi",
        "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
        "--worker-class", args.worker_class, "--log-level", "warning", "--timeout", "60",
    ]  # fmt: skip
    if args.worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    return spawned("gunicorn", cmd, env, logfile, lambda proc: wait_listening(port, proc, 30))


def loadgen(args: argparse.Namespace, port: int, key: str, bodies: Path, max_s: float) -> dict:
    cmd = [
        "taskset", "-c", str(args.client_core), PYTHON, str(BASE_DIR / "benchmarks/loadgen.py"),
        "--port", str(port), "--key", key, "--bodies", str(bodies),
        "--concurrency", str(args.concurrency), "--max-seconds", str(max_s),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, timeout=max_s + 60, check=False)
    if not done.stdout.strip():
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict = json.loads(done.stdout)
    return result


def write_bodies(path: Path, chunks: list[list[dict]]) -> None:
    with open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(json.dumps({"events": chunk}, separators=(",", ":")).encode() + b"\n")


def run_http(
    args: argparse.Namespace, env: dict[str, str], key: str, chunks: list[list[dict]]
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        warm = workdir / "warm.jsonl"
        body = workdir / "bodies.jsonl"
        write_bodies(warm, chunks[: args.warmup_batches])
        write_bodies(body, chunks)
        port = args.port or free_port()
        with gunicorn(args, env, port, workdir / "gunicorn.log"):
            log(f"HTTP warm-up: {min(args.warmup_batches, len(chunks))} batches")
            loadgen(args, port, key, warm, 60)
            reset_tables()
            log(f"HTTP: {len(chunks)} batches, concurrency {args.concurrency}")
            result = loadgen(args, port, key, body, args.http_max_seconds)
        tail = (workdir / "gunicorn.log").read_text(errors="replace")[-3000:].strip()
        if tail:
            result["gunicorn_log_tail"] = tail
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def statement_kind(sql: str) -> str:
    words = sql.replace('"', "").split()
    verb = words[0].upper() if words else "?"
    table = "?"
    for marker in ("INTO", "UPDATE", "FROM"):
        if marker in (w.upper() for w in words):
            at = [w.upper() for w in words].index(marker)
            if at + 1 < len(words):
                table = words[at + 1].split("(")[0]
                break
    lock = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
    return f"{verb} {table}{lock}"


def run_breakdown(prop: Any, chunks: list[list[dict]]) -> str:
    """Wall time per SQL statement kind (client-side conversion + round trip + server),
    and of the commits."""
    from django.db import connection

    from personalization.services.ingest import events_ingest

    spent: dict[str, list[float]] = {}

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent.setdefault(statement_kind(sql), []).append(time.perf_counter() - t0)

    def timed_commit(commit: Any) -> Any:
        def wrapper() -> Any:
            t0 = time.perf_counter()
            try:
                return commit()
            finally:
                spent.setdefault("COMMIT", []).append(time.perf_counter() - t0)

        return wrapper

    reset_tables()
    original_commit = connection._commit
    connection._commit = timed_commit(original_commit)  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(timer):
            for chunk in chunks:
                events_ingest(prop=prop, events=chunk)
    finally:
        total = time.perf_counter() - started
        del connection._commit  # back to the class's method
    n = len(chunks)
    sql_total = sum(sum(v) for v in spent.values())
    lines = [
        f"{n} batches, {total:.2f}s wall, {total / n * 1000:.2f} ms/batch; "
        f"in cursor.execute and commit {sql_total:.2f}s ({sql_total / total:.0%}), "
        f"{len([x for v in spent.values() for x in v]) / n:.1f} statements/batch",
        f"{'statement':<58} {'calls':>6} {'ms/batch':>9} {'share':>6}",
    ]
    for kind, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        lines.append(
            f"{kind[:58]:<58} {len(times):>6} {sum(times) / n * 1000:>9.2f} "
            f"{sum(times) / total:>6.1%}"
        )
    rest = total - sql_total
    lines.append(f"{'(Python outside execute and commit)':<58} {'':>6} {rest / n * 1000:>9.2f} "
                 f"{rest / total:>6.1%}")  # fmt: skip
    return "\n".join(lines)


def run_profile(prop: Any, chunks: list[list[dict]], top: int, profiler: str) -> str:
    import cProfile
    import io
    import pstats

    from personalization.services.ingest import events_ingest

    reset_tables()
    if profiler == "pyinstrument":  # sampling: far less overhead on the ORM's many calls
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0005)
        sampler.start()
        for chunk in chunks:
            events_ingest(prop=prop, events=chunk)
        sampler.stop()
        return str(sampler.output_text(unicode=False, color=False, show_all=False))
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in chunks:
        events_ingest(prop=prop, events=chunk)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000, help="events per phase (the scale)")
    p.add_argument("--batch", type=int, default=100, help="events per batch / request")
    p.add_argument("--days", type=float, default=1.0, help="visits spread over this many days")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--db", default="bench_ingest", help="database to create (bench*)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument("--copy-repeats", type=int, default=3, help="COPY runs; the median counts")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--port", type=int, default=0, help="gunicorn port (default: a free one)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    p.add_argument("--threads", type=int, default=2, help="threads per gthread worker")
    p.add_argument("--concurrency", type=int, default=4, help="load generator connections")
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--client-core", type=int, default=0)
    p.add_argument("--warmup-batches", type=int, default=20)
    p.add_argument("--http-max-seconds", type=float, default=120.0)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile the in-process path (cProfile) over N events")  # fmt: skip
    p.add_argument("--profile-top", type=int, default=30, help="cProfile: rows shown")
    p.add_argument("--profiler", default="cprofile", choices=["cprofile", "pyinstrument"],
                   help="pyinstrument must be installed in the venv")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if not args.db.startswith("bench"):
        p.error("--db must start with 'bench' (the benchmark drops and recreates it)")
    if not 1 <= args.batch <= 500:
        p.error("--batch must be between 1 and 500 (the API's limit)")
    if args.events < args.batch:
        p.error("--events must be at least --batch")

    run_started = datetime.now(UTC)
    admin_url = f"{args.pg.rstrip('/')}/postgres"
    db_url = f"{args.pg.rstrip('/')}/{args.db}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "personalization.settings",
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "0",  # production-like: no query recording in the cursor
        "DJANGO_SECRET_KEY": "bench-only-secret-key",
        "VISITOR_HASH_KEY": "bench-only-visitor-hash-key",
        "TASKS_IN_PROCESS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(BASE_DIR),
    }
    env.pop("REDIS_URL", None)  # per-process key cache, as the default settings

    log(f"creating database {args.db}")
    create_database(admin_url, args.db)
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR, env=env, check=True, timeout=300,
        )  # fmt: skip
        log(f"migrated in {time.perf_counter() - t0:.1f}s")
        os.environ.update(env)
        sys.path.insert(0, str(BASE_DIR))
        import django

        django.setup()
        return measure(args, env, db_url, run_started)
    finally:
        with suppress(Exception):  # Django may not be set up yet
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            drop_database(admin_url, args.db)
            log(f"dropped database {args.db}")


def measure(args: argparse.Namespace, env: dict[str, str], db_url: str, started: datetime) -> int:
    from personalization.models import Event
    from personalization.services.properties import property_create

    prop, keys = property_create(name="Bench store", origins=["https://shop.example"])
    log(f"generating {args.events} events")
    events, visitors = generate_events(args.events, args.seed, args.days)
    chunks = batches(events, args.batch)
    visitors_per_batch = statistics.mean(len({e["visitor_id"] for e in c}) for c in chunks)
    types: dict[str, int] = {}
    for e in events:
        types[e["type"]] = types.get(e["type"], 0) + 1
    log(f"granting consent to {len(visitors)} visitors")
    t0 = time.perf_counter()
    grant_consent(prop.pk, visitors)
    log(f"consent recorded in {time.perf_counter() - t0:.1f}s")
    analyze()  # planner statistics as a long-running database would have them
    n = len(events)
    scale = {
        "events": n,
        "batch": args.batch,
        "batches": len(chunks),
        "visitors": len(visitors),
        "sessions": len({(e["visitor_id"], e["session_id"]) for e in events}),
        "visitors_per_batch_mean": round(visitors_per_batch, 1),
        "event_types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
        "payload_bytes_per_batch_mean": round(
            statistics.mean(len(json.dumps({"events": c})) for c in chunks)
        ),
    }
    print(json.dumps({"scale": scale}, indent=2), flush=True)

    # (a) the server-side path, in-process
    reset_tables()
    run_ingest(prop, chunks[: args.warmup_batches])  # warm caches and compiled validators
    reset_tables()
    log("(a) in-process events_ingest")
    ingest = run_ingest(prop, chunks)
    ingest["rows_in_table"] = event_count()
    log(f"(a) {ingest['events_per_s']:,.0f} events/s")

    # (b) raw COPY of the same rows into the same table
    table = Event._meta.db_table
    copies: dict[str, Any] = {}
    for label, per_batch in (("copy_one_stream", False), ("copy_per_batch", True)):
        runs = []
        for _ in range(max(1, args.copy_repeats)):
            reset_tables()
            result = run_copy(db_url, table, prop.pk, chunks, per_batch)
            result["rows_in_table"] = event_count()
            runs.append(result)
        median = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
        copies[label] = {**median, "runs_events_per_s": [r["events_per_s"] for r in runs]}
        log(f"(b) {label}: {median['events_per_s']:,.0f} events/s")

    # (c) HTTP under gunicorn, load generator on its own core
    http: dict[str, Any] | None = None
    if not args.skip_http:
        reset_tables()
        http = run_http(args, env, keys["publishable"], chunks)
        http["rows_in_table"] = event_count()
        log(f"(c) HTTP: {http['events_per_s']:,.0f} events/s")

    profile = None
    if args.profile:
        m = max(1, min(args.profile, n) // args.batch)
        log(f"profiling the in-process path over {m} batches")
        breakdown = run_breakdown(prop, chunks[:m])
        profile = (
            breakdown + "\n\n" + run_profile(prop, chunks[:m], args.profile_top, args.profiler)
        )
    reset_tables()

    copy_rate = copies["copy_one_stream"]["events_per_s"]
    copy_batch_rate = copies["copy_per_batch"]["events_per_s"]
    ratios = {
        "server_side_vs_copy": round(ingest["events_per_s"] / copy_rate, 4),
        "server_side_vs_copy_per_batch": round(ingest["events_per_s"] / copy_batch_rate, 4),
    }
    if http:
        ratios["http_vs_copy"] = round(http["events_per_s"] / copy_rate, 4)
        ratios["http_vs_copy_per_batch"] = round(http["events_per_s"] / copy_batch_rate, 4)
        ratios["http_vs_server_side"] = round(http["events_per_s"] / ingest["events_per_s"], 4)
        ratios["http_vs_target_10k"] = round(http["events_per_s"] / TARGET_HTTP_EVENTS_PER_S, 4)

    gunicorn_version = subprocess.run(
        [str(Path(PYTHON).parent / "gunicorn"), "--version"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_ingest.py", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "gunicorn": gunicorn_version,
            "postgres": server_facts(db_url),
        },
        "http_setup": {
            "workers": args.workers,
            "worker_class": args.worker_class,
            "server_core": args.server_core,
            "client_core": args.client_core,
            "concurrency": args.concurrency,
        },
        "scale": scale,
        "server_side": ingest,
        **copies,
        "http": http,
        "ratios": ratios,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    if profile:
        print(f"\n===== {args.profiler} of the in-process ingest path =====")
        print(profile)
    return 0


def print_summary(r: dict[str, Any]) -> None:
    s, a, h, q = r["scale"], r["server_side"], r["http"], r["ratios"]
    c1, cb = r["copy_one_stream"], r["copy_per_batch"]
    met = "MET" if q["server_side_vs_copy"] >= TARGET_SERVER_TO_COPY else "NOT MET"
    pg = r["machine"]["postgres"].get("server_version")
    lines = [
        "",
        "===== Event ingestion benchmark =====",
        f"date            {r['date']}",
        f"command         {r['command']}",
        f"machine         {r['machine']['cpu']}, {r['machine']['cores']} cores, PostgreSQL {pg}",
        f"scale           {s['events']:,} events in {s['batches']:,} batches of {s['batch']}, "
        f"{s['visitors']:,} visitors, {s['sessions']:,} sessions, "
        f"{s['visitors_per_batch_mean']} visitors/batch",
        f"(a) server-side events_ingest  {a['events_per_s']:>10,.0f} events/s  "
        f"batch p50 {a['batch_latency_ms']['p50']} ms, p99 {a['batch_latency_ms']['p99']} ms, "
        f"Python CPU {a['python_cpu_share']:.0%} of wall",
        f"(b) raw COPY, one stream       {c1['events_per_s']:>10,.0f} events/s  "
        f"(runs {c1['runs_events_per_s']})",
        f"    raw COPY, per-batch txn    {cb['events_per_s']:>10,.0f} events/s  "
        f"(runs {cb['runs_events_per_s']})",
    ]
    if h:
        lat = h["latency_ms"]
        lines.append(
            f"(c) HTTP POST /api/v1/events   {h['events_per_s']:>10,.0f} events/s  "
            f"{h['requests_per_s']:,.1f} req/s, p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms; statuses {h['statuses']}, "
            f"errors {h['errors'] or 'none'}, connections {h['connections_opened']}"
        )
    lines.append(
        f"ratio server-side / COPY   {q['server_side_vs_copy']:.3f} "
        f"(per-batch COPY: {q['server_side_vs_copy_per_batch']:.3f}); "
        f"done-criterion >= {TARGET_SERVER_TO_COPY}: {met}"
    )
    if h:
        lines.append(
            f"ratio HTTP / COPY          {q['http_vs_copy']:.3f} "
            f"(per-batch COPY: {q['http_vs_copy_per_batch']:.3f}); "
            f"HTTP / server-side {q['http_vs_server_side']:.3f}"
        )
        lines.append(
            f"HTTP vs target {TARGET_HTTP_EVENTS_PER_S:,} events/s: "
            f"{h['events_per_s']:,.0f} = {q['http_vs_target_10k']:.1%} of the target"
        )
    print("\n".join(lines))
    checks = [("server-side", a)] + ([("http", h)] if h else [])
    for name, phase in checks:
        if phase["rows_in_table"] != s["events"]:
            print(f"WARNING: {name} left {phase['rows_in_table']} rows, expected {s['events']}")


if __name__ == "__main__":
    sys.exit(main())
