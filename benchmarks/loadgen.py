"""A small HTTP load generator for POST endpoints (/api/v1/events by default; loopback only).

Reads pre-serialised request bodies (one JSON document a line), sends each exactly once
from a few threads, each with its own ``http.client`` connection (kept alive when the
server allows it, reopened when the server closes it), and prints one JSON object with
the counts, the rate and the latency percentiles. Bounded in requests (the bodies given)
and in time (``--max-seconds``). Meant to be started pinned to its own core, e.g.
``taskset -c 0 python benchmarks/loadgen.py ...``; ``bench_ingest.py`` does that.

Two modes:

* closed loop (default): each thread sends its next request as soon as the previous one is
  answered, so the rate is whatever the server (or this client) sustains;
* paced (``--rate R``): open loop, request *i* is due at ``start + i / R`` whatever the
  server does. ``latency_ms`` is then the service time (send to last byte) and
  ``response_time_ms`` is measured from the moment the request was *due*, so a server that
  falls behind is charged for the queueing it causes (no coordinated omission). Use enough
  threads (``--concurrency``) to keep the schedule: ``send_lag_ms`` says how late sends were.

``client_cpu_s`` is this process's CPU time: near the elapsed time, the client (one core)
was the bottleneck, not the server.
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
    def __init__(
        self, bodies: list[bytes], deadline: float, rate: float = 0.0, start: float = 0.0
    ) -> None:
        self.bodies = bodies
        self.next = 0
        self.deadline = deadline
        self.rate = rate  # requests/s when paced; 0: closed loop
        self.start = start  # perf_counter() of request 0's due time when paced
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.response_times: list[float] = []  # paced: from the due time to the last byte
        self.send_lags: list[float] = []  # paced: how late each request was sent
        self.last_finish = 0.0  # perf_counter() of the last answer
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self.connects = 0
        self.timed_out = False

    def take(self) -> tuple[bytes, float | None] | None:
        with self.lock:
            if time.monotonic() >= self.deadline:
                self.timed_out = self.next < len(self.bodies)
                return None
            if self.next >= len(self.bodies):
                return None
            body = self.bodies[self.next]
            due = self.start + self.next / self.rate if self.rate else None
            self.next += 1
            return body, due


def worker(run: Run, host: str, port: int, path: str, key: str, timeout: float) -> None:
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    latencies: list[float] = []
    response_times: list[float] = []
    send_lags: list[float] = []
    last_finish = 0.0
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    connects = 0
    try:
        while True:
            taken = run.take()
            if taken is None:
                break
            body, due = taken
            if due is not None:
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            if conn.sock is None:
                connects += 1
            started = time.perf_counter()
            if due is not None:
                send_lags.append(max(0.0, started - due))
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                conn.close()
                continue
            finished = last_finish = time.perf_counter()
            latencies.append(finished - started)
            if due is not None:
                response_times.append(finished - due)
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
            run.response_times.extend(response_times)
            run.send_lags.extend(send_lags)
            run.last_finish = max(run.last_finish, last_finish)
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
    parser.add_argument(
        "--rate", type=float, default=0.0, help="paced (open-loop) mode: requests/s offered"
    )
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("the load generator only targets the loopback interface")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 0 <= args.rate <= 20_000:
        parser.error("--rate must be between 0 (closed loop) and 20000 requests/s")

    with open(args.bodies, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    cpu_started = time.process_time()
    started = time.perf_counter()
    # Paced: the schedule starts once every thread is up.
    run = Run(bodies, time.monotonic() + args.max_seconds, args.rate, started + 0.05)
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
        "client_cpu_s": round(time.process_time() - cpu_started, 3),
        "mode": "paced" if args.rate else "closed",
    }
    if args.rate:
        # From the first request's due time to the last answer.
        window = run.last_finish - run.start
        result.update(
            {
                "offered_rate": args.rate,
                "achieved_rate": round(ok / window, 2) if window > 0 else 0.0,
                "response_time_ms": {
                    name: round(percentile(run.response_times, pct) * 1000, 2)
                    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
                },
                "send_lag_ms": {
                    name: round(percentile(run.send_lags, pct) * 1000, 2)
                    for name, pct in (("p50", 50), ("p99", 99), ("max", 100))
                },
            }
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok == len(bodies) else 1


if __name__ == "__main__":
    sys.exit(main())
