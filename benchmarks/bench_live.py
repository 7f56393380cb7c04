"""Live plans benchmark (issue 17, "Performance"): what live rules cost decide, and what one
adjustment report costs the server against one page-load decision, in one run.

Setup (its own database, ``--db``, created, migrated and dropped), built with the decide
benchmark's own functions (``bench_decide``): two properties (holdout 0) with the same 5
slots and the same 50 rules (``build_targeting``, same seed), the same ``--visitors``
visitors with consent and ingested visits on both (``build_visitors``). On the second
property ``--live-rules`` of the 50 (two a slot) become live: a ``page.*`` clause is added
to their condition (scroll speed, dwell, exit intent, idleness, scroll depth), chosen among
the rules whose server part holds most often on these visitors and that rank first or
second among their slot's holding rules, so that a fair share of decisions carry plan
entries. Half of the visitors get one decision on each property first (counters, budgets
and sticky slots exist).

1. In process: the whole ``decide()`` (consent, signals, counters and budget from the Redis
   hot state, the Lua apply, the log queued) for the same visitor on both properties,
   interleaved (the order alternates), ``--decisions`` times: latency p50/p99 with plans
   against without (budget: with <= 1.1 x without), this process's CPU per decision, and the
   share of decisions whose answer carries plan entries.
2. Over HTTP (as ``bench_decide`` measures decide: ``gunicorn -w 2`` pinned to the server's
   core, the Celery worker flushing the decision log on the same core, ``loadgen.py`` on the
   other core, server CPU from ``/proc``): rounds of ``POST /api/v1/decide`` on the live
   property (closed loop, ``--http-seconds``), ``POST /api/v1/adjustments`` (closed loop, each
   body sent once), ``POST /api/v1/decide`` on the property without live rules and
   ``POST /bench/trivial`` (a DRF view answering ``{"ok": true}``: the floor). Every
   report carries the token of its own decision's first plan entry: the bodies are built
   beforehand from in-process decides on the live property (the visitors' sessions first,
   then new sessions of theirs), so no report takes the idempotent path; the run counts the
   firings each round created (fresh) and how many were applied or refused, by reason.
   Budget: a report's server CPU <= 0.35 x a page-load decision's.
3. The report path profiled in process (Django test client, same middleware and view):
   CPU per request against decide's, and cProfile's table (process time) of where it goes.

Always pass the Redis databases explicitly (each is flushed at the start):

    .venv/bin/python benchmarks/bench_live.py --redis-url redis://127.0.0.1:6379/15 \\
        --broker-url redis://127.0.0.1:6379/14 --db bench_live
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.bench_decide import (  # noqa: E402
    SLOTS,
    Case,
    bench_database,
    bench_env,
    build_targeting,
    build_visitors,
    code_state,
    cpu_model,
    cpu_per_request,
    decisions_api,
    flush_worker,
    loadgen,
    ms,
    preload,
    redis_flush,
    write_bodies,
)
from benchmarks.bench_ingest import analyze, free_port, gunicorn, log  # noqa: E402

RESULTS = BASE_DIR / "benchmarks" / "RESULTS.md"
BUDGET_DECIDE_RATIO = 1.1
BUDGET_REPORT_RATIO = 0.35
# The page part added to a live rule's condition, in turn, and the values a page reports.
PAGE_CLAUSES: tuple[dict[str, Any], ...] = (
    {"page.scroll_speed": {"$gt": 1000}},
    {"page.dwell_s": {"$gte": 20}},
    {"page.exit_intent": True},
    {"page.idle_s": {"$gt": 15}},
    {"page.scroll_depth": {"$gte": 60}},
)
PAGE_VALUES = {
    "page.scroll_speed": 3100,
    "page.dwell_s": 42,
    "page.exit_intent": True,
    "page.idle_s": 18,
    "page.scroll_depth": 75,
}
ORIGIN = "https://shop.example"


# --------------------------------------------------------------------------- setup


def make_live(prop: Any, cases: list[Case], count: int) -> list[dict[str, Any]]:
    """``count`` of the property's rules made live (a ``page.*`` clause added): per slot,
    those ranking first or second among the slot's holding rules for the most visitors."""
    from personalization.models import Rule
    from personalization.ruleset import ruleset_for
    from personalization.services.rules import rule_save

    ruleset = ruleset_for(prop.pk)
    attributes = preload(prop, cases).attributes
    ranked: Counter[str] = Counter()
    holds: Counter[str] = Counter()
    for attrs in attributes.values():
        for s in SLOTS:
            holding = [
                r
                for r in ruleset.rules_by_slot.get(s, [])
                if r.condition(attrs, ruleset.saved_groups)
            ]
            holds.update(r.key for r in holding)
            holding.sort(key=lambda r: -r.priority)
            ranked.update(r.key for r in holding[:2])
    chosen: list[str] = []
    per_slot = max(1, count // len(SLOTS))
    for s in SLOTS:
        rules = sorted(ruleset.rules_by_slot.get(s, []), key=lambda r: (-ranked[r.key], r.key))
        chosen.extend(r.key for r in rules[:per_slot])
    made = []
    for i, key in enumerate(chosen[:count]):
        rule = Rule.objects.get(property=prop, key=key)
        page = PAGE_CLAUSES[i % len(PAGE_CLAUSES)]
        rule.condition = {**rule.condition, **page}
        rule_save(rule=rule)
        made.append(
            {
                "rule": key,
                "priority": rule.priority,
                "page": page,
                "server_part_holds_share": round(holds[key] / len(attributes), 3),
            }
        )
    compiled = ruleset_for(prop.pk)
    live = [r.key for rules in compiled.rules_by_slot.values() for r in rules if r.partial]
    if sorted(live) != sorted(chosen[:count]):
        raise RuntimeError(f"live rules compiled {live}, expected {made}")
    return made


def setup(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.cache import cache

    from personalization.models import Property
    from personalization.services.properties import property_create

    cache.clear()  # the run's Redis (--redis-url): the hot state starts empty
    redis_flush(args.redis_url)
    props, keys = [], []
    for name in ("Bench live: no live rules", "Bench live: 10 live rules"):
        prop, key = property_create(name=name, origins=[ORIGIN])
        Property.objects.filter(pk=prop.pk).update(holdout_pct=0)
        prop.refresh_from_db()
        props.append(prop)
        keys.append(key["publishable"])
    targeting = build_targeting(props[0], args.seed, 0)
    build_targeting(props[1], args.seed, 0)
    cases, visitors = build_visitors(props[0], args.visitors, args.days, args.seed)
    same, _ = build_visitors(props[1], args.visitors, args.days, args.seed)
    pairs = [(c.visitor_id, c.session_id) for c in cases]
    if pairs != [(c.visitor_id, c.session_id) for c in same]:
        raise RuntimeError("the two properties' visitors differ")
    analyze()
    live = make_live(props[1], cases, args.live_rules)
    log(f"live rules: {live}")
    return {
        "props": props,
        "keys": keys,
        "cases": cases,
        "targeting": targeting,
        "visitors": visitors,
        "live": live,
    }


# --------------------------------------------------------------------------- 1. in process


def run_in_process(props: list[Any], cases: list[Case], count: int, warmup: int) -> dict:
    """The whole decide() on both properties for the same visitor, interleaved."""
    from personalization import hotstate

    decide = decisions_api().decide
    for c in cases[::2]:
        for prop in props:
            decide(prop, c.request())
    for i in range(warmup):
        for prop in props:
            decide(prop, cases[(2 * i) % len(cases)].request())
    times: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    personalized = [0, 0]
    entries: list[int] = []
    perf, proc = time.perf_counter, time.process_time
    for i in range(count):
        case = cases[i % len(cases)]
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            request = case.request()
            c0, t0 = proc(), perf()
            result = decide(props[k], request)
            times[k].append(perf() - t0)
            cpu[k].append(proc() - c0)
            personalized[k] += result.personalized
            if k == 1:
                entries.append(len(result.live))
    flushed = hotstate.decision_log_flush()
    without, with_ = ms(times[0]), ms(times[1])
    carrying = [n for n in entries if n]
    return {
        "decisions_per_property": count,
        "without_plans_ms": without,
        "with_plans_ms": with_,
        "ratio_p50": round(with_["p50"] / without["p50"], 4),
        "ratio_p99": round(with_["p99"] / without["p99"], 4),
        "ratio_mean": round(with_["mean"] / without["mean"], 4),
        "cpu_ms_without": round(statistics.fmean(cpu[0]) * 1000, 4),
        "cpu_ms_with": round(statistics.fmean(cpu[1]) * 1000, 4),
        "cpu_ratio": round(statistics.fmean(cpu[1]) / statistics.fmean(cpu[0]), 4),
        "personalized_share": [round(p / count, 3) for p in personalized],
        "with_plan_entries_share": round(len(carrying) / count, 3),
        "entries_per_decision_mean": round(statistics.fmean(entries), 3),
        "entries_when_any_mean": round(statistics.fmean(carrying), 3) if carrying else 0.0,
        "log_entries_flushed_after": flushed,
    }


def cheap_tokens() -> None:
    """Experiment (not the product's code): plan entries' tokens signed in this process with
    an HMAC key derived once and a compact payload, instead of ``signing.dumps``, to size
    what signing costs decide (the tokens do not verify: parts 2 and 3 are not run)."""
    import base64
    import hashlib
    import hmac

    import orjson
    from django.conf import settings

    from personalization.decisions import plans

    key = hashlib.sha256(f"{plans.SALT}signer{settings.SECRET_KEY}".encode()).digest()

    def token(self: Any) -> str:
        fields = [getattr(self, f) for f in self.__dataclass_fields__]
        payload = base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=")
        mac = hmac.new(key, payload, hashlib.sha256).digest()
        return (payload + b":" + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()

    plans.Claims.token = token  # type: ignore[method-assign]


# --------------------------------------------------------------------------- 2. bodies


def page_signals(when: Any) -> dict[str, Any]:
    """The page signals an entry's ``when`` reads, with values that satisfy the clauses
    above (what the tracker sends with a firing)."""
    found: dict[str, Any] = {}
    stack = [when]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k.startswith("page."):
                    found[k] = PAGE_VALUES.get(k, 1)
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def report_bodies(prop: Any, cases: list[Case], needed: int) -> tuple[list[bytes], dict]:
    """``needed`` report bodies, each the first plan entry of its own decision (decided here,
    in process, on the live property): the visitors' sessions first, then new sessions."""
    from django.utils import timezone

    api = decisions_api()
    bodies: list[bytes] = []
    decisions = from_new_sessions = 0
    for round_ in range(100):
        for c in cases:
            session = c.session_id if round_ == 0 else f"{c.session_id}-n{round_}"
            result = api.decide(prop, api.DecideRequest(c.visitor_id, session, list(SLOTS),
                                                        c.context))  # fmt: skip
            decisions += 1
            if not result.live:
                continue
            entry = result.live[0]
            body = {
                "decision_id": str(result.decision_id),
                "slot": entry["slot"],
                "variant": entry["variant"],
                "token": entry["token"],
                "signals": page_signals(entry["when"]),
                "fired_at": timezone.now().isoformat(),
            }
            bodies.append(json.dumps(body, separators=(",", ":")).encode())
            from_new_sessions += round_ > 0
            if len(bodies) >= needed:
                return bodies, {
                    "bodies": len(bodies),
                    "decisions": decisions,
                    "from_new_sessions": from_new_sessions,
                }
    raise RuntimeError(f"only {len(bodies)} plan entries in {decisions} decisions")


def firing_counts(prop: Any) -> Counter[str]:
    """The property's firings so far, by outcome ("applied" or the refusal's reason)."""
    from django.db.models import Count

    from personalization.models import LiveFiring

    rows = LiveFiring.objects.filter(property=prop).values("applied", "reason")
    return Counter(
        {
            ("applied" if r["applied"] else r["reason"] or "?"): r["n"]
            for r in rows.annotate(n=Count("id"))
        }
    )


# --------------------------------------------------------------------------- 2. HTTP


def run_http(
    args: argparse.Namespace, env: dict[str, str], built: dict[str, Any], reports: list[bytes]
) -> dict[str, Any]:
    """Rounds of decide (live property), the adjustment reports, and decide (no live
    rules), server CPU per request of each from /proc (gunicorn and the flush worker)."""
    props, keys, cases = built["props"], built["keys"], built["cases"]
    workdir = Path(tempfile.mkdtemp(prefix="bench_live_"))
    out: dict[str, Any] = {"runs": {}}
    per_round = args.reports_per_round
    try:
        write_bodies(workdir / "warm.jsonl", cases, args.http_warmup)
        write_bodies(workdir / "decide.jsonl", cases, args.http_bodies, offset=args.http_warmup)
        (workdir / "reports-warm.jsonl").write_bytes(b"\n".join(reports[: args.report_warmup]))
        for rnd in range(args.http_rounds):
            start = args.report_warmup + rnd * per_round
            chunk = reports[start : start + per_round]
            (workdir / f"reports-{rnd}.jsonl").write_bytes(b"\n".join(chunk) + b"\n")
        port = free_port()
        worker_env = {**env, "TASKS_IN_PROCESS": "0", "CELERY_BROKER_URL": args.broker_url}
        redis_flush(args.broker_url)
        with contextlib.ExitStack() as stack:
            worker = stack.enter_context(flush_worker(args, worker_env, workdir / "celery.log"))
            server = stack.enter_context(gunicorn(args, worker_env, port, workdir / "g.log"))
            for key in keys:
                loadgen(args, port, key, workdir / "warm.jsonl", "/api/v1/decide", 60, 4)
            loadgen(args, port, keys[1], workdir / "reports-warm.jsonl", "/api/v1/adjustments",
                    60, args.concurrency)  # fmt: skip
            runs = (
                ("decide", "/api/v1/decide", keys[1], None),
                ("report", "/api/v1/adjustments", keys[1], "reports-{rnd}.jsonl"),
                ("decide_no_live", "/api/v1/decide", keys[0], None),
                ("trivial", "/bench/trivial", keys[1], None),
            )
            for rnd in range(args.http_rounds):
                for label, path, key, reports_file in runs:
                    bodies = workdir / (reports_file or "decide.jsonl").format(rnd=rnd)
                    seconds = 120.0 if reports_file else args.http_seconds
                    before = firing_counts(props[1]) if reports_file else None
                    r = loadgen(args, port, key, bodies, path, seconds, args.concurrency,
                                server_pgid=server.pid, worker_pgid=worker.pid)  # fmt: skip
                    if before is not None:
                        made = firing_counts(props[1])
                        made.subtract(before)
                        r["firings"] = {k: v for k, v in made.items() if v}
                        r["fresh"] = sum(made.values())
                    log(
                        f"HTTP {label} (round {rnd + 1}): {r['requests']} requests, "
                        f"{r['requests_per_s']:,.0f}/s, server CPU "
                        f"{r.get('server_cpu_ms_per_request')} ms/request (flush worker "
                        f"{r.get('flush_worker_cpu_ms_per_request')}), statuses "
                        f"{r['statuses']}, firings {r.get('firings', '-')}"
                    )
                    out["runs"].setdefault(label, []).append(r)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cpu: dict[str, float] = {}
    for label, runs_ in out["runs"].items():
        spent = sum(x.get("server_cpu_s", 0.0) for x in runs_)
        count = sum(x["requests"] for x in runs_ if "server_cpu_s" in x)
        cpu[label] = round(spent * 1000 / count, 3) if count else 0.0
    out["server_cpu_ms"] = cpu
    out["report_over_decide"] = round(cpu["report"] / cpu["decide"], 4)
    out["report_over_decide_no_live"] = round(cpu["report"] / cpu["decide_no_live"], 4)
    out["decide_over_decide_no_live"] = round(cpu["decide"] / cpu["decide_no_live"], 4)
    # The floor: a DRF endpoint that does nothing (authentication, rate limit, middleware).
    out["trivial_over_decide"] = round(cpu["trivial"] / cpu["decide"], 4)
    out["report_over_decide_beyond_trivial"] = round(
        (cpu["report"] - cpu["trivial"]) / (cpu["decide"] - cpu["trivial"]), 4
    )
    sent = sum(x["requests"] for x in out["runs"]["report"])
    ok = sum(x["requests_ok"] for x in out["runs"]["report"])
    fresh = sum(x["fresh"] for x in out["runs"]["report"])
    outcomes: Counter[str] = Counter()
    for x in out["runs"]["report"]:
        outcomes.update(x["firings"])
    out["reports"] = {"sent": sent, "ok": ok, "fresh": fresh, "outcomes": dict(outcomes)}
    return out


# --------------------------------------------------------------------------- 3. profile


def run_profile(args: argparse.Namespace, built: dict[str, Any], reports: Iterator[bytes]) -> str:
    """The report path in process, against decide's, and where its CPU goes (cProfile)."""
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {built['keys'][1]}", HTTP_ORIGIN=ORIGIN)
    decide_bodies = [c.body() for c in built["cases"]]

    def report(m: int) -> None:
        for _ in range(m):
            response = client.post("/api/v1/adjustments", next(reports),
                                   content_type="application/json")  # fmt: skip
            assert response.status_code == 200, response.content[:300]

    def decide(m: int, offset: list[int] = [0]) -> None:  # noqa: B006 (a running offset)
        for _ in range(m):
            body = decide_bodies[offset[0] % len(decide_bodies)]
            offset[0] += 1
            response = client.post("/api/v1/decide", body, content_type="application/json")
            assert response.status_code == 200, response.content[:300]

    report(20)  # warm
    decide(20)
    return cpu_per_request(report, decide, args.profile_reports, args.profile_top,
                           labels=("report", "decide"))  # fmt: skip


# --------------------------------------------------------------------------- report


def summary_lines(r: dict[str, Any]) -> list[str]:
    p = r["in_process"]
    lines = [
        f"date            {r['date']}",
        f"command         {r['command']}",
        f"machine         {r['machine']['cpu']}, {r['machine']['cores']} cores; load average "
        f"{r['machine']['loadavg_start']} at start, {r['machine']['loadavg_end']} at the end",
        f"code            HEAD {r['code']['head']}; measured modules modified: "
        f"{', '.join(r['code']['modified_vs_head']) or 'none'}",
        f"scale           {r['targeting']['rules']} rules on {r['targeting']['slots']} slots, "
        f"{len(r['live'])} live on the second property; {r['visitors']['visitors']} visitors, "
        f"{r['visitors']['sessions']} sessions, {r['visitors']['events']} events (each property)",
        "live rules      "
        + "; ".join(
            f"{m['rule']} (prio {m['priority']}, server part holds "
            f"{m['server_part_holds_share']:.0%}) + {json.dumps(m['page'])}"
            for m in r["live"]
        ),
        f"1. decide() in process, Redis hot state, {p['decisions_per_property']} decisions a "
        "property, interleaved"
        + (" (EXPERIMENT: tokens by a kept HMAC key)" if p["experiment_cheap_tokens"] else "")
        + ":",
        f"   without plans  p50 {p['without_plans_ms']['p50']} ms  p99 "
        f"{p['without_plans_ms']['p99']} ms  mean {p['without_plans_ms']['mean']} ms  "
        f"(CPU {p['cpu_ms_without']} ms)",
        f"   with plans     p50 {p['with_plans_ms']['p50']} ms  p99 "
        f"{p['with_plans_ms']['p99']} ms  mean {p['with_plans_ms']['mean']} ms  "
        f"(CPU {p['cpu_ms_with']} ms)",
        f"   ratio with/without  p50 {p['ratio_p50']:.3f}  p99 {p['ratio_p99']:.3f}  (mean "
        f"{p['ratio_mean']:.3f}, CPU {p['cpu_ratio']:.3f}); budget <= {BUDGET_DECIDE_RATIO}: "
        + ("MET" if max(p["ratio_p50"], p["ratio_p99"]) <= BUDGET_DECIDE_RATIO else "NOT MET"),
        f"   decisions carrying plan entries {p['with_plan_entries_share']:.0%} (entries per "
        f"decision {p['entries_per_decision_mean']}, {p['entries_when_any_mean']} when any); "
        f"personalized at page load: without {p['personalized_share'][0]:.0%}, with "
        f"{p['personalized_share'][1]:.0%}",
    ]
    h = r.get("http")
    if h:
        cpu, rep = h["server_cpu_ms"], h["reports"]
        runs = h["runs"]
        lines += [
            "2. HTTP (gunicorn -w 2 sync on core 1 with the flush worker, loadgen on core 0; "
            "server CPU from /proc, all rounds):",
            *(
                f"   {label:<15} {cpu[label]:.3f} ms server CPU/request  ({sum(x['requests'] for x in runs[label])} "  # noqa: E501
                f"requests; rates {[round(x['requests_per_s']) for x in runs[label]]}/s; statuses "
                f"{dict(sum((Counter(x['statuses']) for x in runs[label]), Counter()))})"
                for label in ("decide", "report", "decide_no_live", "trivial")
            ),
            f"   report / decide (live property)  {h['report_over_decide']:.3f}  (budget <= "
            f"{BUDGET_REPORT_RATIO}: "
            + ("MET" if h["report_over_decide"] <= BUDGET_REPORT_RATIO else "NOT MET")
            + f"); report / decide without live rules {h['report_over_decide_no_live']:.3f}; "
            f"decide with / without live rules {h['decide_over_decide_no_live']:.3f}",
            f"   the floor: the trivial endpoint / decide {h['trivial_over_decide']:.3f}; beyond "
            f"the trivial endpoint, report / decide {h['report_over_decide_beyond_trivial']:.3f}",
            f"   reports: {rep['sent']} sent, {rep['ok']} answered 200, {rep['fresh']} fresh "
            f"(a new firing each: no idempotent repeats); outcomes {rep['outcomes']} "
            f"(applied {rep['outcomes'].get('applied', 0) / max(1, rep['fresh']):.0%})",
            f"   bodies: {r['bodies']['bodies']} from {r['bodies']['decisions']} in-process "
            f"decisions ({r['bodies']['from_new_sessions']} from new sessions of the visitors)",
        ]
    if r.get("profile"):
        lines += ["3. the report path in process (Django test client):", r["profile"]]
    return lines


def record(report: dict[str, Any], path: Path) -> None:
    """Append the run, dated, at the end of RESULTS.md."""
    block = [
        "",
        f"### bench_live.py run of {report['date']}",
        "",
        "```",
        *summary_lines(report),
        "```",
        "",
    ]
    text = path.read_text().rstrip("\n") + "\n"
    path.write_text(text + "\n".join(block))


def measure(args: argparse.Namespace, env: dict[str, str], started: datetime) -> int:
    from django.db import connections

    built = setup(args)
    props, cases = built["props"], built["cases"]
    if args.cheap_tokens:
        cheap_tokens()
    log(f"1. in process: {args.decisions} decisions a property, interleaved")
    in_process = run_in_process(props, cases, args.decisions, args.warmup)
    in_process["experiment_cheap_tokens"] = args.cheap_tokens
    log(f"   {in_process}")
    reports: list[bytes] = []
    bodies: dict[str, Any] = {}
    if not (args.skip_http and args.no_profile):
        needed = args.report_warmup + args.http_rounds * args.reports_per_round
        needed += 0 if args.no_profile else 4 * args.profile_reports + 20
        log(f"building {needed} report bodies from in-process decisions")
        reports, bodies = report_bodies(props[1], cases, needed)
        log(f"   {bodies}")
    http = None
    if not args.skip_http:
        connections.close_all()
        http = run_http(args, env, built, reports)
    prof = ""
    if not args.no_profile:
        connections.close_all()
        sent = args.report_warmup + args.http_rounds * args.reports_per_round
        prof = run_profile(args, built, iter(reports[0 if args.skip_http else sent :]))
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_live.py", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "loadavg_start": args.loadavg_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "code": args.code_state,
        "targeting": built["targeting"],
        "visitors": built["visitors"],
        "live": built["live"],
        "in_process": in_process,
        "bodies": bodies,
        "http": http,
        "profile": prof,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n===== Live plans benchmark =====")
    print("\n".join(summary_lines(report)))
    if not args.no_record:
        record(report, RESULTS)
        log(f"appended to {RESULTS.relative_to(BASE_DIR)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visitors", type=int, default=1000)
    p.add_argument("--days", type=float, default=14.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--live-rules", type=int, default=10, help="of the 50, made live")
    p.add_argument("--decisions", type=int, default=3000, help="1: decisions a property")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--db", default="bench_live", help="database to create (bench_live*)")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--redis-url", required=True, help="the run's Redis db (flushed)")
    p.add_argument("--broker-url", required=True, help="the flush worker's broker (flushed)")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--client-core", type=int, default=0)
    p.add_argument("--http-seconds", type=float, default=5.0, help="per decide run")
    p.add_argument("--http-bodies", type=int, default=30000)
    p.add_argument("--http-warmup", type=int, default=300)
    p.add_argument("--http-rounds", type=int, default=3)
    p.add_argument("--reports-per-round", type=int, default=1000)
    p.add_argument("--report-warmup", type=int, default=100)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--profile-reports", type=int, default=300)
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument(
        "--cheap-tokens",
        action="store_true",
        help="experiment: tokens by a kept HMAC key (with --skip-http --no-profile)",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    p.set_defaults(no_redis=False, db_path=False, worker_class="sync", threads=1)
    args = p.parse_args(argv)
    if not args.db.startswith("bench_live"):
        p.error("--db must start with 'bench_live' (the benchmark drops and recreates it)")
    if args.cheap_tokens and not (args.skip_http and args.no_profile):
        p.error("--cheap-tokens makes tokens that do not verify: add --skip-http --no-profile")
    args.loadavg_start = [round(x, 2) for x in os.getloadavg()]
    args.code_state = code_state()
    started = datetime.now(UTC)
    env, _ = bench_env(args)
    with bench_database(args, env):
        return measure(args, env, started)


if __name__ == "__main__":
    sys.exit(main())
