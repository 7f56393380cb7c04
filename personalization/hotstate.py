"""The decision engine's hot state in Redis: cooldown and cap counters, session budgets
and sticky slots, and the pending decision log.

With ``DECIDE_REDIS_URL`` set (by default ``REDIS_URL``), a decision reads the visitor's
counters and the session's budget in one pipelined round trip and, in a second, applies its
adjustments and appends its log entry with one Lua script: all or nothing, so two
concurrent decisions never take the last unit of a cap or of a budget, and an adjustment
is counted only together with its log entry. The entries wait in a Redis list until
``decision_log_flush`` copies them into ``Decision``/``Adjustment`` rows in batches
(idempotent by ``decision_id``): from the Celery beat every few seconds, and from a
decision that finds the list long. Readers of the log that must see every acknowledged
decision (experiment results, access exports, erasure) flush first.

Durability: an acknowledged decision is in Redis only until the next flush. It survives a
Redis restart only with persistence on (``appendonly yes``; with ``appendfsync everysec``
a crash of the Redis host can lose up to a second of entries; ``always`` loses none).

When it is unset (``make run``'s SQLite mode), or Redis does not answer, ``client()``
returns None and the engine uses the database path (``RuleCounter``/``SessionBudget``
rows, the log written in the request's transaction). After a failure Redis is skipped for
``DOWN_FOR`` seconds, then tried again: decisions go back to Redis without a restart. The
two paths keep separate counters, so while Redis is away (and again when it returns) a
rule may apply up to its cap once more per window: the overshoot is bounded by one cap
per window per switch of path. Nothing pending is lost while Redis is away: it is
flushed when it returns.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

from .db import _dumps, insert_returning_new, insert_rows

logger = logging.getLogger(__name__)

DOWN_FOR = 1.0  # seconds without trying Redis after it failed
LOG_KEY = "pz:decision-log"
LOCK_KEY = "pz:decision-log:flush"
FLUSH_BATCH = 1000
# A decision that leaves this many entries pending asks for a flush (besides the beat).
FLUSH_AT = 500
MIN_TTL = 8 * 24 * 3600  # week caps need a week and a day of history
BUDGET_TTL = 2 * 24 * 3600
NONE = -1  # "no cap" / "no limit" in the script's arguments

# KEYS: counters hash, budget hash, log list.
# ARGV: now, session key, day key, week key, budget limit, ttl, budget ttl, session id,
#   entry, then per winner: rule id, slot, cooldown s, cap session, cap day, cap week,
#   sticky entry.
# Checks every winner first; applies all and appends the entry only if none is blocked.
# Returns {0, pending} when applied, else {1, slot, reason, slot, reason, ...}.
_APPLY = """
local now = tonumber(ARGV[1])
local sk, dk, wk = ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local blocked = {}
local i = 10
while i <= #ARGV do
  local rid, slot = ARGV[i], ARGV[i + 1]
  local cooldown = tonumber(ARGV[i + 2])
  local caps = {tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])}
  local c = redis.call('HMGET', KEYS[1], rid .. ':s', rid .. ':sc', rid .. ':d', rid .. ':dc',
                       rid .. ':w', rid .. ':wc', rid .. ':t')
  local reason = nil
  if limit >= 0 and n >= limit then
    reason = 'session_budget'
  elseif c[7] and cooldown > 0 and tonumber(c[7]) > now - cooldown then
    reason = 'cooldown'
  elseif c[7] then
    local keys = {sk, dk, wk}
    for w = 1, 3 do
      local cap = caps[w]
      if cap >= 0 and c[w * 2 - 1] == keys[w] and tonumber(c[w * 2]) >= cap then
        reason = 'frequency_cap'
      end
    end
  end
  if reason then
    table.insert(blocked, slot)
    table.insert(blocked, reason)
  else
    n = n + 1
  end
  i = i + 7
end
if #blocked > 0 then
  table.insert(blocked, 1, 1)
  return blocked
end
i = 10
n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
while i <= #ARGV do
  local rid = ARGV[i]
  local c = redis.call('HMGET', KEYS[1], rid .. ':s', rid .. ':sc', rid .. ':d', rid .. ':dc',
                       rid .. ':w', rid .. ':wc')
  local keys = {sk, dk, wk}
  local sets = {}
  for w = 1, 3 do
    local count = 1
    if c[w * 2 - 1] == keys[w] then count = tonumber(c[w * 2]) + 1 end
    local suffix = ({':s', ':d', ':w'})[w]
    table.insert(sets, rid .. suffix)
    table.insert(sets, keys[w])
    table.insert(sets, rid .. suffix .. 'c')
    table.insert(sets, count)
  end
  table.insert(sets, rid .. ':t')
  table.insert(sets, ARGV[1])
  redis.call('HSET', KEYS[1], unpack(sets))
  redis.call('HSET', KEYS[2], 's:' .. ARGV[i + 1], ARGV[i + 6])
  n = n + 1
  i = i + 7
end
if #ARGV >= 10 then
  redis.call('HSET', KEYS[2], 'n', n)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  -- the visitor's hash lists its budget keys, so an erasure finds them without a scan
  redis.call('HSET', KEYS[1], 'b:' .. ARGV[8], 1)
  local ttl = tonumber(ARGV[6])
  if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
end
return {0, redis.call('RPUSH', KEYS[3], ARGV[9])}
"""

_lock = threading.Lock()
_clients: dict[str, tuple[redis.Redis, Any]] = {}
_down_until = 0.0


class Unavailable(Exception):
    """Redis did not answer: the caller uses the database path."""


def _connect(url: str) -> tuple[redis.Redis, Any]:
    with _lock:
        if url not in _clients:
            # One quick retry: a connection broken by a Redis restart reconnects unnoticed;
            # a Redis that is away fails within ~0.2 s and is then skipped for DOWN_FOR.
            r = redis.Redis.from_url(
                url,
                socket_connect_timeout=0.1,
                socket_timeout=0.5,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
            _clients[url] = (r, r.register_script(_APPLY))
        return _clients[url]


def client() -> redis.Redis | None:
    """The hot-state Redis, or None: not configured, or skipped for a moment after a failure."""
    url = settings.DECIDE_REDIS_URL
    if not url or time.monotonic() < _down_until:
        return None
    return _connect(url)[0]


def _failed(exc: Exception) -> Unavailable:
    global _down_until
    _down_until = time.monotonic() + DOWN_FOR
    logger.warning("hot state in Redis unavailable, using the database for %ss: %s", DOWN_FOR, exc)
    return Unavailable(str(exc))


def _counters_key(property_id: int, visitor_id: str) -> str:
    return f"pz:{property_id}:{visitor_id}:rc"


def _budget_key(property_id: int, visitor_id: str, session_id: str) -> str:
    return f"pz:{property_id}:{visitor_id}:b:{session_id}"


@dataclass
class CounterState:
    """One rule's counters for a visitor: the attributes the engine reads of a RuleCounter."""

    session_key: str
    session_count: int
    day_key: str
    day_count: int
    week_key: str
    week_count: int
    last_applied_at: datetime


@dataclass
class BudgetState:
    adjustments: int = 0
    sticky: dict[str, dict] = field(default_factory=dict)


def state_get(
    property_id: int, visitor_id: str, session_id: str
) -> tuple[dict[int, CounterState], BudgetState]:
    """The visitor's counters and the session's budget, in one round trip."""
    r = client()
    if r is None:
        raise Unavailable("not configured")
    try:
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(_counters_key(property_id, visitor_id))
        pipe.hgetall(_budget_key(property_id, visitor_id, session_id))
        raw_counters, raw_budget = pipe.execute()
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    fields: dict[int, dict[str, bytes]] = {}
    for name, value in raw_counters.items():
        rid, _, suffix = name.decode().partition(":")
        if rid.isdigit():
            fields.setdefault(int(rid), {})[suffix] = value
    counters = {
        rid: CounterState(
            f["s"].decode(),
            int(f["sc"]),
            f["d"].decode(),
            int(f["dc"]),
            f["w"].decode(),
            int(f["wc"]),
            datetime.fromtimestamp(float(f["t"]), UTC),
        )
        for rid, f in fields.items()
        if "t" in f
    }
    budget = BudgetState(int(raw_budget.get(b"n", 0)))
    for name, value in raw_budget.items():
        if name.startswith(b"s:"):
            budget.sticky[name[2:].decode()] = orjson.loads(value)
    return counters, budget


@dataclass(frozen=True)
class Winner:
    slot: str
    rule_id: int
    cooldown_s: int
    cap_session: int | None
    cap_day: int | None
    cap_week: int | None
    sticky: dict[str, Any]


def apply_and_log(
    *,
    property_id: int,
    visitor_id: str,
    session_id: str,
    now: datetime,
    day_key: str,
    week_key: str,
    limit: int | None,
    winners: Sequence[Winner],
    entry: dict[str, Any],
) -> dict[str, str]:
    """Count the winners and append the decision's log entry, atomically: all or nothing.

    Returns the winners blocked by a concurrent decision (slot → reason); then nothing was
    counted or logged, and the caller decides again without them.
    """
    r = client()
    if r is None:
        raise Unavailable("not configured")
    script = _connect(settings.DECIDE_REDIS_URL)[1]
    ttl = max([MIN_TTL, *(w.cooldown_s + 3600 for w in winners)])
    args: list[Any] = [
        now.timestamp(),
        session_id,
        day_key,
        week_key,
        NONE if limit is None else limit,
        ttl,
        BUDGET_TTL,
        session_id,
        _dumps(entry),
    ]
    for w in winners:
        caps = (w.cap_session, w.cap_day, w.cap_week)
        args += [w.rule_id, w.slot, w.cooldown_s]
        args += [NONE if c is None else c for c in caps]
        args.append(_dumps(w.sticky))
    keys = [
        _counters_key(property_id, visitor_id),
        _budget_key(property_id, visitor_id, session_id),
        LOG_KEY,
    ]
    try:
        reply = script(keys=keys, args=args, client=r)
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    if reply[0] == 0:
        if reply[1] >= FLUSH_AT and reply[1] % FLUSH_AT == 0:
            _ask_for_flush()
        return {}
    rest = [v.decode() for v in reply[1:]]
    return dict(zip(rest[::2], rest[1::2], strict=True))


def _ask_for_flush() -> None:
    from .tasks import decision_log_flush_task

    try:
        decision_log_flush_task.delay()
    except Exception:  # the beat flushes anyway; the broker being away must not fail decide
        logger.warning("could not enqueue a decision-log flush", exc_info=True)


def pending_count() -> int:
    """Decisions acknowledged but not yet in the database (0 without Redis)."""
    r = client()
    if r is None:
        return 0
    return int(r.llen(LOG_KEY))


def decision_log_flush(*, batch: int = FLUSH_BATCH) -> int:
    """Copy pending log entries into Decision/Adjustment rows; returns entries flushed.

    One flush at a time (a Redis lock). Entries are removed from the list only after their
    rows are committed; an entry written twice (a flush that died between the commit and
    the trim, or a decision retried on the database path) is skipped by its decision_id.
    """
    r = client()
    if r is None:
        return 0
    token = uuid.uuid4().hex
    try:
        if not r.llen(LOG_KEY) or not r.set(LOCK_KEY, token, nx=True, ex=120):
            return 0
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    total = 0
    try:
        while True:
            items = r.lrange(LOG_KEY, 0, batch - 1)
            if not items:
                break
            _store([orjson.loads(item) for item in items])
            r.ltrim(LOG_KEY, len(items), -1)
            total += len(items)
            if len(items) < batch:
                break
    finally:
        # Release only our own lock (a flush slower than the lock's expiry lost it).
        if r.get(LOCK_KEY) == token.encode():
            r.delete(LOCK_KEY)
    return total


def log_entry(decision: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"decision": decision, "answers": answers}


def _store(entries: Iterable[dict[str, Any]]) -> None:
    from .models import Adjustment, Decision

    decisions, answers = [], []
    for entry in entries:
        d = dict(entry["decision"])
        d["decision_id"] = uuid.UUID(d["decision_id"])
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        decisions.append(d)
        for a in entry["answers"]:
            answers.append({**a, "created_at": d["created_at"], "decision_id": d["decision_id"]})
    with transaction.atomic():
        new = set(insert_returning_new(Decision, decisions, ["decision_id"], "decision_id"))
        if not new:
            return
        pks = dict(Decision.objects.filter(decision_id__in=new).values_list("decision_id", "pk"))
        rows = []
        for a in answers:
            decision_id = a.pop("decision_id")
            if decision_id in new:
                rows.append({**a, "decision": pks[decision_id]})
        insert_rows(Adjustment, rows)


def visitor_erase(property_id: int, visitor_id: str) -> int:
    """Delete a visitor's counters and session budgets; returns keys removed.

    Pending log entries are flushed first, so the erasure of the log's rows covers them.
    """
    r = client()
    if r is None:
        return 0
    decision_log_flush()
    key = _counters_key(property_id, visitor_id)
    names: list[bytes] = r.hkeys(key)  # type: ignore[assignment]
    budgets = [
        _budget_key(property_id, visitor_id, name[2:].decode())
        for name in names
        if name.startswith(b"b:")
    ]
    return int(r.delete(key, *budgets))


def decisions_export(property_id: int, visitor_id: str) -> Iterator[dict[str, Any]]:
    """A visitor's decision-log rows for an access export, pending ones flushed first."""
    from .models import Decision

    decision_log_flush()
    names = [f.attname for f in Decision._meta.concrete_fields]
    rows = Decision.objects.filter(property_id=property_id, visitor_id=visitor_id)
    return rows.order_by("pk").values(*names).iterator()
