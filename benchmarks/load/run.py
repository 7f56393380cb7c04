"""Mixed storefront load against gunicorn + a Celery worker (and beat) on PostgreSQL + Redis.

    python -m benchmarks.load.run --duration 600                 # by hand: 10 minutes
    python -m benchmarks.load.run --duration 30 --out load.json  # what CI's smoke test runs

It migrates the database given (``--database-url``, created when missing), creates a fresh
property (slots, rules, a survey), starts gunicorn, a Celery worker and beat on this
checkout, with their cache and broker on a Redis of their own (``redis-server`` on a free
port, or ``--redis-url``), and then drives *visits* from ``--clients`` threads, each
visit being what a storefront page does: record consent (a visitor's first visit), ask
for a decision, send a batch of events, and now and then read the consent state or
answer the survey. ``--rate`` paces visits (per second, all clients together); 0 runs
closed-loop. Loopback only; bounded by ``--duration``.

It prints (and writes with ``--out``) one JSON report: requests and rates per endpoint,
latency percentiles, errors, the worker queue's depth sampled each second (Redis LLEN),
the resident memory of gunicorn and the worker at start and end, and a reconciliation:
every event the API acknowledged is in the database exactly once. Exit status 0 when
there were no errors and the reconciliation is exact.
"""

import argparse
import http.client
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from benchmarks.load import processes as procs
from benchmarks.loadgen import percentile

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REDIS_PORTS = range(56379, 56390)
QUEUE = "celery"
EVENT_TYPES = ("page_view", "click", "section_view", "scroll")


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: Counter[str] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)  # event ids answered "accepted"
    accepted_reported: int = 0
    visits: int = 0


class Client:
    """One storefront's traffic, on one keep-alive connection."""

    def __init__(self, port: int, keys: dict[str, str], stats: Stats, seed: int) -> None:
        self.port = port
        self.keys = keys
        self.stats = stats
        self.rng = random.Random(seed)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.consented: set[str] = set()

    def call(self, name: str, method: str, path: str, body: Any = None, key: str = "pk") -> Any:
        headers = {"Authorization": f"Bearer {self.keys[key]}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            with self.stats.lock:
                self.stats.errors[f"{name}: {type(exc).__name__}"] += 1
            return None
        elapsed = time.perf_counter() - started
        with self.stats.lock:
            self.stats.latencies[name].append(elapsed)
            self.stats.statuses[name][response.status] += 1
            if response.status >= 300:
                self.stats.errors[f"{name}: HTTP {response.status} {raw[:120]!r}"] += 1
                return None
        return json.loads(raw) if raw else {}

    def visit(self, visitors: int) -> None:
        vid = f"load-v{self.rng.randrange(visitors)}"
        session = f"{vid}-s{int(time.time() // 1800)}"
        if vid not in self.consented:
            purposes = {"analytics": True, "personalization": True, "granular_tracking": True}
            body = {"visitor_id": vid, "policy_version": 1, "purposes": purposes}
            if self.call("consent", "POST", "/api/v1/consent", {**body, "method": "banner"}):
                self.consented.add(vid)
        context = {"url": "https://shop.example/", "attributes": {"device": "mobile"}}
        slots = ["headline", "cta", "newsletter_popup"]
        body = {"visitor_id": vid, "session_id": session, "slots": slots, "context": context}
        answer = self.call("decide", "POST", "/api/v1/decide", body)
        decision = answer.get("decision_id") if answer else None
        events = [self.event(vid, session, decision) for _ in range(self.rng.randint(3, 12))]
        answer = self.call("events", "POST", "/api/v1/events", {"events": events})
        if answer is not None:
            with self.stats.lock:
                self.stats.accepted_reported += answer.get("accepted", 0)
                if answer.get("accepted") == len(events):
                    self.stats.acknowledged += [e["event_id"] for e in events]
                else:
                    self.stats.errors[f"events: not all accepted {answer}"[:200]] += 1
        roll = self.rng.random()
        if roll < 0.1:
            self.call("consent_read", "GET", f"/api/v1/consent/{vid}")
        elif roll < 0.2:
            answers = {"recommend": self.rng.randint(0, 10), "comment": "fine"}
            body = {"visitor_id": vid, "session_id": session, "answers": answers}
            self.call("survey_answer", "POST", "/api/v1/surveys/nps/responses", body)
        with self.stats.lock:
            self.stats.visits += 1

    def event(self, vid: str, session: str, decision: str | None) -> dict[str, Any]:
        kind = self.rng.choice(EVENT_TYPES)
        catalog: dict[str, dict[str, Any]] = {
            "page_view": {"path": "/"},
            "click": {"element_id": "cta"},
            "section_view": {"section": "reviews", "visible_ms": 1200},
            "scroll": {"depth_pct": self.rng.randint(0, 100)},
        }
        properties = catalog[kind]
        event = {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "visitor_id": vid,
            "session_id": session,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "properties": properties,
            "context": {"url": "https://shop.example/"},
        }
        if decision and kind == "click":
            event["decision_id"] = decision
        return event


def drive(
    port: int, keys: dict[str, str], args: argparse.Namespace, stats: Stats, stop: float
) -> None:
    def loop(index: int) -> None:
        client = Client(port, keys, stats, seed=args.seed + index)
        interval = args.clients / args.rate if args.rate else 0.0
        due = time.monotonic() + index * (interval / args.clients if interval else 0)
        while time.monotonic() < stop:
            if interval:
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                due += interval
            client.visit(args.visitors)
        client.conn.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 60)


def sample(
    broker_url: str, pids: dict[str, int], stop: threading.Event, out: list[dict[str, Any]]
) -> None:
    """Each second: the worker queue's length and the processes' memory."""
    client = redis.Redis.from_url(broker_url)
    started = time.monotonic()
    while not stop.wait(1.0):
        try:
            depth = int(client.llen(QUEUE))  # type: ignore[arg-type]
        except redis.RedisError:
            depth = -1
        out.append(
            {
                "t": round(time.monotonic() - started, 1),
                "queue": depth,
                **{name: procs.rss_kib(procs.tree(pid)) for name, pid in pids.items()},
            }
        )


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def reconcile(url: str, property_id: int, acknowledged: list[str]) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text FROM personalization_event WHERE property_id = %s",
            [property_id],
        ).fetchall()
    stored = Counter(r[0] for r in rows)
    acked = set(acknowledged)
    missing = len(acked - set(stored))
    doubled = sum(1 for n in stored.values() if n > 1)
    unacknowledged = len(set(stored) - acked)
    return {
        "acknowledged": len(acknowledged),
        "acknowledged_distinct": len(acked),
        "stored_rows": len(rows),
        "missing": missing,
        "stored_more_than_once": doubled,
        "stored_not_acknowledged": unacknowledged,
        "exact": missing == 0 and doubled == 0 and len(rows) == len(acked),
    }


def summarize(stats: Stats, elapsed: float) -> dict[str, Any]:
    endpoints = {}
    for name, values in sorted(stats.latencies.items()):
        endpoints[name] = {
            "requests": len(values),
            "per_s": round(len(values) / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(stats.statuses[name].items())},
            "latency_ms": {
                label: round(percentile(values, pct) * 1000, 2)
                for label, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            },
        }
    total = sum(len(v) for v in stats.latencies.values())
    return {
        "visits": stats.visits,
        "visits_per_s": round(stats.visits / elapsed, 1),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "events_acknowledged": len(stats.acknowledged),
        "events_per_s": round(len(stats.acknowledged) / elapsed, 1),
        "endpoints": endpoints,
        "errors": dict(stats.errors.most_common(20)),
        "error_count": sum(stats.errors.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/load", help="PostgreSQL"
    )
    parser.add_argument("--redis-url", default="", help="cache and broker (default: own Redis)")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--rate", type=float, default=0.0, help="visits/s (0: closed loop)")
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds before memory counts as 'start'"
    )
    parser.add_argument("--out", default="", help="also write the JSON report here")
    parser.add_argument("--logs", default="", help="folder for gunicorn/worker logs")
    args = parser.parse_args(argv)
    args.warmup = args.warmup or min(30.0, args.duration / 5)
    if not 1 <= args.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    if urlsplit(args.database_url).hostname not in LOOPBACK:
        parser.error("the load harness only runs against loopback services")

    logs = Path(args.logs or tempfile.mkdtemp(prefix="load-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    own_redis = None
    if args.redis_url:
        base = args.redis_url.rsplit("/", 1)[0]
        cache_url, broker_url = f"{base}/1", f"{base}/0"
    else:
        own_redis = procs.ThrowawayRedis(procs.free_port(REDIS_PORTS))
        own_redis.start()
        cache_url, broker_url = own_redis.url(1), own_redis.url(0)
    env = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "load-harness-" + uuid.uuid4().hex,
        "VISITOR_HASH_KEY": "load-harness-visitor-key",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": cache_url,
        "CELERY_BROKER_URL": broker_url,
        # one client address drives every visitor: the per-address limit would refuse it
        "RATELIMIT_PER_ADDRESS": "0",
        "RATELIMIT_PER_KEY": "0",
    }
    running: list[Any] = []
    try:
        ensure_database(args.database_url)
        procs.manage(env, "migrate", "--noinput", timeout=600)
        out = procs.manage(
            env, "shell", "-c", "from benchmarks.load.site import main; main()", timeout=120
        )
        site = json.loads(out.strip().splitlines()[-1])
        keys = {"pk": site["pk"], "sk": site["sk"]}
        port = procs.free_port(range(18200, 18300))
        gunicorn = procs.start_gunicorn(
            env, port, workers=args.gunicorn_workers, log=logs / "gunicorn.log"
        )
        running.append(gunicorn)
        worker = procs.start_celery_worker(env, log=logs / "worker.log")
        running.append(worker)
        beat = procs.start_celery_beat(env, logs)
        running.append(beat)
        if not procs.wait_log(logs / "worker.log", " ready.", 60):
            raise RuntimeError(f"the Celery worker did not start (see {logs / 'worker.log'})")
        pids = {"gunicorn_rss_kib": gunicorn.pid, "worker_rss_kib": worker.pid}
        samples: list[dict[str, Any]] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=sample, args=(broker_url, pids, stop_sampling, samples), daemon=True
        )
        sampler.start()
        stats = Stats()
        started = time.monotonic()
        drive(port, keys, args, stats, started + args.duration)
        elapsed = time.monotonic() - started
        # Memory at start: once the warm-up is over (imports, caches and pools filled).
        during = samples[:]
        warm = [x for x in during if x["t"] >= args.warmup] or during[-1:]
        memory_start = {name: warm[0][name] for name in pids}
        memory_end = {name: during[-1][name] for name in pids}
        # let the worker drain what the load enqueued before reading the queue's last depth
        deadline = time.monotonic() + 30
        broker = redis.Redis.from_url(broker_url)
        while broker.llen(QUEUE) and time.monotonic() < deadline:  # type: ignore[arg-type]
            time.sleep(0.5)
        stop_sampling.set()
        sampler.join(5)
        report = summarize(stats, elapsed)
        depths = [s["queue"] for s in samples]
        report.update(
            {
                "duration_s": round(elapsed, 1),
                "clients": args.clients,
                "rate": args.rate or "closed loop",
                "gunicorn_workers": args.gunicorn_workers,
                "warmup_s": args.warmup,
                "queue_depth": {
                    "max": max(depths, default=0),
                    "last": depths[-1] if depths else 0,
                    "per_second": depths,
                },
                "memory_kib": {
                    name: {
                        "start": memory_start[name],
                        "end": memory_end[name],
                        "change_pct": round(
                            100 * (memory_end[name] - memory_start[name]) / memory_start[name], 1
                        )
                        if memory_start[name]
                        else None,
                    }
                    for name in pids
                },
                "reconciliation": reconcile(
                    args.database_url, site["property"], stats.acknowledged
                ),
                "logs": str(logs),
            }
        )
    finally:
        for proc in reversed(running):
            procs.stop(proc)
        if own_redis is not None:
            own_redis.stop()
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    brief = {k: v for k, v in report.items() if k != "queue_depth"}
    brief["queue_depth"] = {k: v for k, v in report["queue_depth"].items() if k != "per_second"}
    print(json.dumps(brief, indent=1))
    ok = report["error_count"] == 0 and report["reconciliation"]["exact"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
