"""A small HTTP load generator for POST /api/v1/events (loopback only).

Reads pre-serialised request bodies (one JSON document a line), sends each exactly once
from a few threads, each with its own ``http.client`` connection (kept alive when the
server allows it, reopened when the server closes it), and prints one JSON object with
the counts, the rate and the latency percentiles. Bounded in requests (the bodies given)
and in time (``--max-seconds``). Meant to be started pinned to its own core, e.g.
``taskset -c 0 python benchmarks/loadgen.py ...``; ``bench_ingest.py`` does that.
"""

import argparse
import http.client
import json
import math
import sys
import threading
import time
from collections import Counter
from typing import Any

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of values (seconds); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


class Run:
    def __init__(self, bodies: list[bytes], deadline: float) -> None:
        self.bodies = bodies
        self.next = 0
        self.deadline = deadline
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self.connects = 0
        self.timed_out = False

    def take(self) -> bytes | None:
        with self.lock:
            if time.monotonic() >= self.deadline:
                self.timed_out = self.next < len(self.bodies)
                return None
            if self.next >= len(self.bodies):
                return None
            body = self.bodies[self.next]
            self.next += 1
            return body


def worker(run: Run, host: str, port: int, path: str, key: str, timeout: float) -> None:
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    connects = 0
    try:
        while True:
            body = run.take()
            if body is None:
                break
            if conn.sock is None:
                connects += 1
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                conn.close()
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
            if response.status == 200:
                answer: dict[str, Any] = json.loads(data)
                for name in ("accepted", "duplicates", "quarantined", "dropped_no_consent"):
                    totals[name] += int(answer.get(name, 0))
            elif len(errors) < 5:
                errors[f"HTTP {response.status}: {data[:200]!r}"] += 1
    finally:
        conn.close()
        with run.lock:
            run.latencies.extend(latencies)
            run.statuses.update(statuses)
            run.errors.update(errors)
            run.totals.update(totals)
            run.connects += connects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/events")
    parser.add_argument("--key", required=True, help="pk_ or sk_ API key")
    parser.add_argument("--bodies", required=True, help="file: one JSON request body a line")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("the load generator only targets the loopback interface")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")

    with open(args.bodies, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    started = time.perf_counter()
    run = Run(bodies, time.monotonic() + args.max_seconds)
    threads = [
        threading.Thread(
            target=worker,
            args=(run, args.host, args.port, args.path, args.key, args.timeout),
            daemon=True,
        )
        for _ in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.max_seconds + args.timeout + 5)
    elapsed = time.perf_counter() - started
    lat = run.latencies
    ok = run.statuses.get(200, 0)
    result = {
        "requests": len(lat),
        "requests_ok": ok,
        "bodies": len(bodies),
        "sent_all": run.next >= len(bodies) and not run.timed_out,
        "timed_out": run.timed_out,
        "elapsed_s": round(elapsed, 4),
        "requests_per_s": round(ok / elapsed, 2) if elapsed else 0.0,
        "events_accepted": run.totals["accepted"],
        "events_per_s": round(run.totals["accepted"] / elapsed, 1) if elapsed else 0.0,
        "totals": dict(run.totals),
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "errors": dict(run.errors),
        "connections_opened": run.connects,
        "concurrency": args.concurrency,
        "latency_ms": {
            name: round(percentile(lat, pct) * 1000, 2)
            for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "latency_mean_ms": round(sum(lat) / len(lat) * 1000, 2) if lat else 0.0,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok == len(bodies) else 1


if __name__ == "__main__":
    sys.exit(main())
