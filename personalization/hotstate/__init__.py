"""The decision engine's hot state in Redis: cooldown and cap counters, session budgets
and sticky slots, and the pending decision log.

With ``DECIDE_REDIS_URL`` set (by default ``REDIS_URL``), a decision reads the visitor's
counters and the session's budget in one pipelined round trip and, in a second, applies its
adjustments and appends its log entry with one Lua script: all or nothing, so two
concurrent decisions never take the last unit of a cap or of a budget, and an adjustment
is counted only together with its log entry. The entries wait in Redis lists (the log's
shards, see ``LOG_SHARDS``) until ``decision_log_flush`` copies them into
``Decision``/``Adjustment`` rows in batches (idempotent by ``decision_id``): from the Celery
beat every few seconds, and from a decision that finds its shard long. Redis is one server
or a Redis Cluster (``redis+cluster://``, personalization/redis_client.py). Readers of the
log that must see every acknowledged decision (experiment results, access exports,
erasure) flush first.

The same first round trip reads copies of the visitor's latest consent record (by keyed
hash) and of the visitor's and session's live-signal states, so a decision usually runs no
SQL at all. The copies are versioned (consent: the record id, then suppression; signals: a
revision ingest bumps under the visitor's row lock) and only ever replaced by a newer
version: the consent services and ingest drop them inside their transaction and write the
committed value after it; a decision that misses reads the database and fills them in. A
consent withdrawal is therefore seen by the very next decision. Erasure and retention
delete the signal copies with the visitor's rows (the consent copy, like the records, is
keyed and then says "suppressed"). The consent writers try Redis even while a reader
skips it after a failure, and if Redis does not take their drop or write they bump the
property's ``hot_epoch``, part of every consent copy's key, which orphans them all. Ingest
does not wait on Redis: a signal copy its drop missed may be up to ``CACHE_TTL`` old.

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
import random
import string
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from redis.backoff import NoBackoff
from redis.retry import Retry

from consent import selectors as consent_selectors
from consent.faults import fault_pause
from consent.hashing import visitor_key

from .. import guard_rails
from ..cache import local_cache_register
from ..db import _dumps, insert_returning_new, insert_rows
from ..models import Adjustment, Decision, Property
from ..redis_client import Client, connect

logger = logging.getLogger(__name__)

DOWN_FOR = 1.0  # seconds without trying Redis after it failed
# On a Redis Cluster a script may touch keys of one hash slot only: a decision's script
# touches the visitor's counters, the session's budget and the decision log. So the log is
# LOG_SHARDS lists, and every key of a visitor carries the hash tag of the shard its keyed
# hash falls in (``_shard``): one slot for the script, and for the decision's first read
# (the consent copy is stored by the keyed hash, which is all the consent writers know), and
# a visitor's keys are named from the visitor alone (an erasure needs no scan). The flush
# drains every shard. Fixed: a different number (or a new VISITOR_HASH_KEY) renames every
# visitor's keys (their counters start again, their copies are read from the database).
LOG_SHARDS = 64
# The single list of the releases before the shards: still drained (single Redis only).
LEGACY_LOG_KEY = "pz:decision-log"
LEGACY_LOCK_KEY = "pz:decision-log:flush"
FLUSH_BATCH = 1000
# A decision that leaves this many entries pending in its shard asks for a flush (besides
# the beat): about LOG_SHARDS × FLUSH_AT pending in all.
FLUSH_AT = 64
# A flush holds its shard's lock this long, renewed with every batch it stores: a worker
# killed in the middle of a flush delays that shard's next flush by at most this.
LOCK_TTL = 10
MIN_TTL = 8 * 24 * 3600  # week caps need a week and a day of history
BUDGET_TTL = 2 * 24 * 3600
NONE = guard_rails.NO_LIMIT  # "no cap" / "no limit" in the script's arguments

# The guard rails are specified in ``guard_rails`` (``step``: the cooldown, then the caps, then
# the session's budget). This script is that rule over Redis: its reasons and sentinels are
# formatted in from the specification, and time comes from the caller, never from Redis's
# clock (``TIME``): ``now`` (stored as the last application) and each winner's cooldown
# cut-off (``GuardRails.cooldown_cutoff``), so tests drive it with any clock.
# KEYS: counters hash, budget hash, log list (one hash slot: the visitor's shard).
# ARGV: now, session key, day key, week key, budget limit, ttl, budget ttl, session id,
#   entry, then per winner: rule id, slot, cooldown cut-off (epoch seconds, or NO_CUTOFF),
#   cap session, cap day, cap week, sticky entry.
# Checks every winner first; applies all and appends the entry only if none is blocked.
# Returns {0, pending} when applied, else {1, slot, reason, slot, reason, ...}.
_APPLY_TEMPLATE = """
local sk, dk, wk = ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local blocked = {}
local i = 10
while i <= #ARGV do
  local rid, slot = ARGV[i], ARGV[i + 1]
  local cutoff = ARGV[i + 2]
  local caps = {tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])}
  local c = redis.call('HMGET', KEYS[1], rid .. ':s', rid .. ':sc', rid .. ':d', rid .. ':dc',
                       rid .. ':w', rid .. ':wc', rid .. ':t')
  local reason = nil
  if c[7] and cutoff ~= '$NO_CUTOFF' and tonumber(c[7]) > tonumber(cutoff) then
    reason = '$COOLDOWN'
  elseif c[7] then
    local keys = {sk, dk, wk}
    for w = 1, 3 do
      local cap = caps[w]
      if cap ~= $NO_LIMIT and c[w * 2 - 1] == keys[w] and tonumber(c[w * 2]) >= cap then
        reason = '$FREQUENCY_CAP'
      end
    end
  end
  if not reason and limit ~= $NO_LIMIT and n >= limit then
    reason = '$SESSION_BUDGET'
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
  -- a model's answer ("m:<key>") has no counters: only the budget and stickiness
  if string.sub(rid, 1, 2) ~= 'm:' then
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
  end
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
_APPLY = string.Template(_APPLY_TEMPLATE).substitute(
    NO_LIMIT=guard_rails.NO_LIMIT,
    NO_CUTOFF=guard_rails.NO_CUTOFF,
    SESSION_BUDGET=guard_rails.SESSION_BUDGET,
    COOLDOWN=guard_rails.COOLDOWN,
    FREQUENCY_CAP=guard_rails.FREQUENCY_CAP,
)

# Copies of what the database holds, read in the decision's one pipelined round trip.
# Each carries a version that only grows with the database's commits, and every write is
# "set unless the copy there is newer": the writers (consent changes, event ingest) write
# the committed value after their commit, a decision that missed fills in what it read, and
# a fill that read before a commit can never overwrite the write that followed it.
# Writers also drop the copy inside their transaction, so a transaction whose after-commit
# write never runs (rolled back, or a test's transaction) leaves no stale copy behind.
# Seconds a copy lives after its last write or fill: bounds how long it could outlive a
# change whose drop and rewrite did not reach Redis (while it still answered reads).
CACHE_TTL = 600
CONSENT_TTL = CACHE_TTL

# KEYS: the consent key. ARGV: version, value (JSON list whose first item is the version), ttl.
_CONSENT_SET = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^%[(%-?%d+)'))
  if v and v > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# KEYS: the visitor's signals hash. ARGV: revision, ttl, visitor state, then pairs of
# session field, session state. A newer revision replaces the hash (its other sessions may
# be stale); the same revision adds sessions (the same committed state); an older is ignored.
_SIGNALS_SET = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'rev') or '-1')
local rev = tonumber(ARGV[1])
if cur > rev then return 0 end
if cur < rev then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'v', ARGV[3])
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: a shard's log list, its lock. ARGV: token, entries stored, lock ttl. The stored
# entries leave the list only while the lock is still this flush's (then it is renewed): a
# flush that lost its lock (slower than LOCK_TTL) must not trim entries another one read.
_TRIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""
# KEYS: a lock. ARGV: token. Deletes the lock if it is still the token's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

_lock = threading.Lock()
_clients: dict[str, tuple[Client, Any]] = {}
_trims: dict[str, tuple[Any, Any]] = {}
_scripts: dict[str, tuple[Any, Any]] = {}
_down_until = 0.0


def _down_forget() -> None:
    global _down_until
    _down_until = 0.0


local_cache_register("hotstate.down_until", _down_forget)


class Unavailable(Exception):
    """Redis did not answer: the caller uses the database path."""


class Required(ConnectionError):
    """Redis did not answer a step that must not be skipped (a visitor's erasure or access
    export reaches their data in Redis too): the task retries (a ``ConnectionError``)."""


# How long a required flush waits for another flush to finish before its task retries.
REQUIRED_LOCK_WAIT = 30.0


def _connect(url: str) -> tuple[Client, Any]:
    with _lock:
        if url not in _clients:
            # One quick retry: a connection broken by a Redis restart reconnects unnoticed;
            # a Redis that is away fails within ~0.2 s and is then skipped for DOWN_FOR.
            r = connect(
                url,
                socket_connect_timeout=0.1,
                socket_timeout=0.5,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
            _clients[url] = (r, r.register_script(_APPLY))
            _scripts[url] = (r.register_script(_CONSENT_SET), r.register_script(_SIGNALS_SET))
            _trims[url] = (r.register_script(_TRIM), r.register_script(_RELEASE))
        return _clients[url]


def client() -> Client | None:
    """The hot-state Redis, or None: not configured, or skipped for a moment after a failure."""
    url = settings.DECIDE_REDIS_URL
    if not url or time.monotonic() < _down_until:
        return None
    try:
        return _connect(url)[0]
    except redis.RedisError as exc:  # a cluster none of whose nodes answered
        _failed(exc)
        return None


def _writer() -> tuple[Client, tuple[Any, Any]]:
    """For writers dropping or rewriting copies (only when ``DECIDE_REDIS_URL`` is set):
    Redis even in the moment a reader skips it after a failure (a copy left stale by a
    skipped drop would be read again as soon as Redis is back). Raises ``RedisError``
    when it cannot connect (a cluster none of whose nodes answers)."""
    url = settings.DECIDE_REDIS_URL
    return _connect(url)[0], _scripts[url]


def _failed(exc: Exception) -> Unavailable:
    global _down_until
    _down_until = time.monotonic() + DOWN_FOR
    logger.warning("hot state in Redis unavailable, using the database for %ss: %s", DOWN_FOR, exc)
    return Unavailable(str(exc))


def _shard_of(keyed: str) -> int:
    # CRC-32 (as Redis's own slots): the same in every process, unlike hash().
    return zlib.crc32(keyed.encode()) % LOG_SHARDS


def _shard(property_id: int, visitor_id: str) -> int:
    return _shard_of(visitor_key(property_id, visitor_id))


def _tag(shard: int) -> str:
    # A hash tag: Redis Cluster places a key by the part between its first braces.
    return "{pz" + str(shard) + "}"


def _visitor_prefix(property_id: int, visitor_id: str) -> str:
    return f"{_tag(_shard(property_id, visitor_id))}:{property_id}:{visitor_id}"


def _counters_key(property_id: int, visitor_id: str) -> str:
    return f"{_visitor_prefix(property_id, visitor_id)}:rc"


def _budget_key(property_id: int, visitor_id: str, session_id: str) -> str:
    return f"{_visitor_prefix(property_id, visitor_id)}:b:{session_id}"


def _log_keys(shard: int) -> tuple[str, str]:
    """A shard of the decision log: its list and its flush lock."""
    return f"{_tag(shard)}:decision-log", f"{_tag(shard)}:decision-log:flush"


def log_key(property_id: int, visitor_id: str) -> str:
    """The list a visitor's decisions wait in until the flush."""
    return _log_keys(_shard(property_id, visitor_id))[0]


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
    return _parse_state(raw_counters, raw_budget)


def _parse_state(
    raw_counters: dict[bytes, bytes], raw_budget: dict[bytes, bytes]
) -> tuple[dict[int, CounterState], BudgetState]:
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


def _signals_key(property_id: int, visitor_id: str) -> str:
    return f"{_visitor_prefix(property_id, visitor_id)}:sig"


def _run_scripts(r: Client, calls: list[tuple[Any, list[str], list[Any]]]) -> None:
    """Run single-key "set unless newer" scripts: in one pipelined round trip on one Redis;
    one by one on a cluster (redis-py's cluster pipeline runs no scripts)."""
    if isinstance(r, redis.Redis):
        pipe = r.pipeline(transaction=False)
        for script, keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        pipe.execute()
        return
    for script, keys, args in calls:
        script(keys=keys, args=args, client=r)


def _consent_key(property_id: int, keyed: str, epoch: int) -> str:
    # By the keyed hash, like the consent records themselves: no raw visitor id. The
    # property's ``hot_epoch`` is part of the key: a bump orphans every copy (see
    # ``consent_changed``).
    return f"{_tag(_shard_of(keyed))}:{property_id}:c{epoch}:{keyed}"


def _epoch(property_id: int) -> int:

    return Property.objects.filter(pk=property_id).values_list("hot_epoch", flat=True).first() or 0


def _epoch_bump(property_id: int) -> None:
    """Orphan every consent copy of the property: decisions read the database until the
    copies are filled in again under the new epoch (every process within a second: the
    property comes with the API key, re-read from the database at least that often)."""

    Property.objects.filter(pk=property_id).update(hot_epoch=F("hot_epoch") + 1)


def _consent_version(row: Any) -> int:
    # Records only grow (the latest is the highest id) and a suppression is never lifted.
    return 0 if row is None else int(row[0]) * 2 + int(bool(row[4]))


def _consent_value(row: Any) -> bytes:
    if row is None:
        return orjson.dumps([0, None])
    rid, granted, policy_id, created_at, suppressed = row
    return orjson.dumps(
        [_consent_version(row), [rid, granted, policy_id, created_at.isoformat(), suppressed]]
    )


def _consent_row(raw: bytes) -> Any:
    row = orjson.loads(raw)[1]
    if row is None:
        return None
    return (row[0], row[1], row[2], datetime.fromisoformat(row[3]), bool(row[4]))


class Missing:
    """Not in Redis: the caller reads the database and fills it in."""


MISSING = Missing()


@dataclass
class Snapshot:
    """What a decision reads, in one pipelined round trip: the visitor's latest consent
    record, the visitor's and session's live-signal states, the counters and the budget."""

    consent: Any  # consent.selectors.LatestRow | None, or MISSING
    signals: Any  # (revision, visitor state | None, session state | None), or MISSING
    raw_counters: dict[bytes, bytes]
    raw_budget: dict[bytes, bytes]

    def state(self) -> tuple[dict[int, CounterState], BudgetState]:
        return _parse_state(self.raw_counters, self.raw_budget)


def snapshot(
    property_id: int, visitor_id: str, session_id: str, keyed: str, epoch: int
) -> Snapshot:
    """Consent, signals, counters and budget in one round trip (``keyed``: the visitor's
    keyed hash, which the consent copy is stored under; ``epoch``: the property's
    ``hot_epoch``)."""
    r = client()
    if r is None:
        raise Unavailable("not configured")
    try:
        pipe = r.pipeline(transaction=False)
        pipe.get(_consent_key(property_id, keyed, epoch))
        pipe.hmget(_signals_key(property_id, visitor_id), "rev", "v", "s:" + session_id)
        pipe.hgetall(_counters_key(property_id, visitor_id))
        pipe.hgetall(_budget_key(property_id, visitor_id, session_id))
        raw_consent, (rev, v, sess), raw_counters, raw_budget = pipe.execute()
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    consent = MISSING if raw_consent is None else _consent_row(raw_consent)
    signals: Any = MISSING
    if rev is not None and v is not None and sess is not None:
        signals = (int(rev), orjson.loads(v), orjson.loads(sess))
    return Snapshot(consent, signals, raw_counters, raw_budget)


def fill(
    property_id: int,
    visitor_id: str,
    session_id: str,
    keyed: str,
    epoch: int,
    *,
    consent: Any = MISSING,
    signals: Any = MISSING,
) -> None:
    """Fill in what a decision missed and read from the database, unless a newer copy is
    there (a writer committed since the read): one round trip. Best effort."""
    if consent is MISSING and signals is MISSING:
        return
    r = client()
    if r is None:
        return
    consent_set, signals_set = _scripts[settings.DECIDE_REDIS_URL]
    calls: list[tuple[Any, list[str], list[Any]]] = []
    if consent is not MISSING:
        version, value = _consent_version(consent), _consent_value(consent)
        calls.append((consent_set, [_consent_key(property_id, keyed, epoch)],
                      [version, value, CONSENT_TTL]))  # fmt: skip
    if signals is not MISSING:
        rev, visitor_state, session_state = signals
        calls.append((signals_set, [_signals_key(property_id, visitor_id)],
                      [rev, CACHE_TTL, _dumps(visitor_state), "s:" + session_id,
                       _dumps(session_state)]))  # fmt: skip
    try:
        _run_scripts(r, calls)
    except redis.RedisError as exc:
        _failed(exc)


def consent_changed(property_id: int, keys: list[str]) -> None:
    """A consent listener (consent.registry): drop the copies now, inside the writer's
    transaction, and write the committed records after its commit.

    If Redis does not take the drop, a copy from before the change could be read again
    once Redis answers: the property's epoch is bumped in the same transaction instead,
    which orphans every copy. A consent change never waits on, or fails with, Redis."""
    if not settings.DECIDE_REDIS_URL:
        return
    epoch = _epoch(property_id)
    try:
        _writer()[0].delete(*[_consent_key(property_id, k, epoch) for k in keys])
    except redis.RedisError as exc:
        logger.error(
            "consent copies of %d visitor(s) not dropped from Redis: every copy of the "
            "property orphaned (epoch bumped)",
            len(keys),
        )
        _failed(exc)
        _epoch_bump(property_id)
    transaction.on_commit(lambda: consent_refresh(property_id, keys))


def consent_refresh(property_id: int, keys: list[str]) -> None:
    """Write the visitors' committed latest records (one query, one round trip)."""

    if not settings.DECIDE_REDIS_URL:
        return
    rows = consent_selectors.latest_rows(property_id, keys)
    epoch = _epoch(property_id)
    try:
        r, (consent_set, _) = _writer()
        _run_scripts(r, [
            (consent_set, [_consent_key(property_id, key, epoch)],
             [_consent_version(row), _consent_value(row), CONSENT_TTL])
            for key, row in rows.items()
        ])  # fmt: skip
    except redis.RedisError as exc:
        # A decision that missed while the change was uncommitted may have filled in the
        # record from before it; the newer one could not replace it: orphan them all.
        logger.error(
            "consent copies of %d visitor(s) not written to Redis: every copy of the "
            "property orphaned (epoch bumped)",
            len(keys),
        )
        _failed(exc)
        _epoch_bump(property_id)


def signals_changed(property_id: int, visitor_ids: Iterable[str]) -> None:
    """Event ingest is about to commit new live signals: drop the copies now (inside its
    transaction); ``signals_write`` writes the new ones after the commit."""
    # (Skipped while this process skips Redis after a failure: ingest must not wait on it.
    # A copy left behind then is at most CACHE_TTL old.)
    r = client()
    names = [_signals_key(property_id, vid) for vid in visitor_ids]
    if r is None or not names:
        return
    try:
        r.delete(*names)
    except redis.RedisError as exc:
        logger.error("signal copies of %d visitor(s) not dropped from Redis", len(names))
        _failed(exc)


def signals_write(property_id: int, states: dict[str, tuple[int, dict, dict[str, dict]]]) -> None:
    """After ingest's commit: each visitor's revision, state and its touched sessions'."""
    r = client()
    if r is None or not states:
        return
    signals_set = _scripts[settings.DECIDE_REDIS_URL][1]
    calls: list[tuple[Any, list[str], list[Any]]] = []
    for vid, (rev, visitor_state, sessions) in states.items():
        args: list[Any] = [rev, CACHE_TTL, _dumps(visitor_state)]
        for sid, session_state in sessions.items():
            args += ["s:" + sid, _dumps(session_state)]
        calls.append((signals_set, [_signals_key(property_id, vid)], args))
    try:
        _run_scripts(r, calls)
    except redis.RedisError as exc:
        logger.error("signal copies of %d visitor(s) not written to Redis", len(states))
        _failed(exc)


def signals_forget(property_id: int, visitor_ids: Iterable[str]) -> int:
    """Delete the visitors' signal copies (erasure, retention); returns keys removed."""
    names = [_signals_key(property_id, vid) for vid in visitor_ids]
    if not settings.DECIDE_REDIS_URL or not names:
        return 0
    try:
        return int(_writer()[0].delete(*names))
    except redis.RedisError as exc:
        raise _failed(exc) from exc


def on_visitor_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """post_delete of a Visitor (an erasure, a retention purge): its signal copy goes now and
    again after the commit (a decision may have filled it in between). Redis away: the copy
    expires within CACHE_TTL."""
    pid, vid = instance.property_id, instance.visitor_id

    def forget() -> None:
        try:
            signals_forget(pid, [vid])
        except Unavailable:
            logger.error("signal copy of a deleted visitor not removed from Redis")

    forget()
    transaction.on_commit(forget)


@dataclass(frozen=True)
class Winner:
    slot: str
    rule_id: int | str  # a rule's id, or "m:<key>" for a model's answer (no counters)
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
    url = settings.DECIDE_REDIS_URL
    if not url or time.monotonic() < _down_until:
        raise Unavailable("not configured")
    try:
        r, script = _connect(url)
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    ttl = max([MIN_TTL, *(w.cooldown_s + 3600 for w in winners)])
    args: list[Any] = [
        now.timestamp(),
        session_id,
        day_key,
        week_key,
        NONE if limit is None else limit,  # (limit: guard_rails.session_limit)
        ttl,
        BUDGET_TTL,
        session_id,
        _dumps(entry),
    ]
    for w in winners:
        rails = guard_rails.GuardRails.of(w)
        cutoff = rails.cooldown_cutoff(now)
        args += [w.rule_id, w.slot, guard_rails.NO_CUTOFF if cutoff is None else cutoff.timestamp()]
        args += [NONE if c is None else c for c in rails.caps()]
        args.append(_dumps(w.sticky))
    keys = [
        _counters_key(property_id, visitor_id),
        _budget_key(property_id, visitor_id, session_id),
        log_key(property_id, visitor_id),
    ]
    try:
        reply = script(keys=keys, args=args, client=r)
    except redis.RedisError as exc:
        raise _failed(exc) from exc
    if reply[0] == 0:
        if reply[1] >= FLUSH_AT and reply[1] % FLUSH_AT == 0:  # (this shard's length)
            _ask_for_flush()
        return {}
    rest = [v.decode() for v in reply[1:]]
    return dict(zip(rest[::2], rest[1::2], strict=True))


def _ask_for_flush() -> None:
    from .tasks import decision_log_flush_task  # noqa: PLC0415  (a service enqueuing its own task)

    try:
        decision_log_flush_task.delay()
    except Exception:  # the beat flushes anyway; the broker being away must not fail decide
        logger.warning("could not enqueue a decision-log flush", exc_info=True)


def _log_shards(r: Client) -> list[tuple[str, str]]:
    """Every list of the decision log with its lock: the shards, and on one Redis the list
    of the releases before them."""
    shards = [_log_keys(shard) for shard in range(LOG_SHARDS)]
    if isinstance(r, redis.Redis):
        shards.append((LEGACY_LOG_KEY, LEGACY_LOCK_KEY))
    return shards


def _pending(r: Client) -> list[tuple[str, str, int]]:
    """The shards with entries pending (list, lock, length): one pipelined round trip."""
    shards = _log_shards(r)
    pipe = r.pipeline(transaction=False)
    for log, _ in shards:
        pipe.llen(log)
    return [(log, lock, n) for (log, lock), n in zip(shards, pipe.execute(), strict=True) if n]


def pending_count() -> int:
    """Decisions acknowledged but not yet in the database (0 without Redis)."""
    r = client()
    if r is None:
        return 0
    return sum(n for _, _, n in _pending(r))


def decision_log_flush(*, batch: int = FLUSH_BATCH, required: bool = False) -> int:
    """Copy pending log entries into Decision/Adjustment rows; returns entries flushed.

    Every shard of the log is flushed by one flush at a time (its own Redis lock), so
    several workers share the work. Entries are removed from a list only after their rows
    are committed, and only while the flush still holds the shard's lock; an entry written
    twice (a flush that died between the commit and the trim, or a decision retried on the
    database path) is skipped by its decision_id.

    ``required`` (erasure, access export): every entry pending now is in the database on
    return. Redis is asked even while readers skip it after a failure, a flush in progress
    is waited for, and a Redis that does not answer raises ``Required``.
    """
    if not required:
        r = client()
        if r is None:
            return 0
        total = 0
        try:
            pending = _pending(r)
            random.shuffle(pending)  # workers flushing at once start on different shards
            for log, lock, _ in pending:
                token = uuid.uuid4().hex
                if r.set(lock, token, nx=True, ex=LOCK_TTL):
                    total += _flush_locked(r, log, lock, token, batch)
        except redis.RedisError as exc:
            raise _failed(exc) from exc
        return total
    if not settings.DECIDE_REDIS_URL:
        return 0
    try:
        return _flush_required(_writer()[0], batch)
    except redis.RedisError as exc:
        raise Required(f"the decision log in Redis is unavailable: {exc}") from exc


def _flush_required(r: Client, batch: int) -> int:
    total = 0
    for log, lock, _ in _pending(r):
        token = uuid.uuid4().hex
        deadline = time.monotonic() + REQUIRED_LOCK_WAIT
        while r.llen(log) and not r.set(lock, token, nx=True, ex=LOCK_TTL):
            if time.monotonic() >= deadline:
                raise Required("another flush of the decision log did not finish in time")
            time.sleep(0.05)
        if r.get(lock) == token.encode():
            total += _flush_locked(r, log, lock, token, batch)
    return total


def _flush_locked(r: Client, log: str, lock: str, token: str, batch: int) -> int:
    trim, release = _trims[settings.DECIDE_REDIS_URL]
    total = 0
    try:
        while True:
            items: list[bytes] = r.lrange(log, 0, batch - 1)  # type: ignore[assignment]
            if not items:
                break
            _store([orjson.loads(item) for item in items])
            fault_pause("DECISION_LOG_FAULT_PAUSE_SECONDS")
            if not trim(keys=[log, lock], args=[token, len(items), LOCK_TTL], client=r):
                break  # the lock expired: its new holder reads these again (stored once)
            total += len(items)
            if len(items) < batch:
                break
    finally:
        release(keys=[lock], args=[token], client=r)  # only our own lock
    return total


def log_entry(decision: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"decision": decision, "answers": answers}


def _store(entries: Iterable[dict[str, Any]]) -> None:

    decisions, answers = [], []
    for entry in entries:
        d = dict(entry["decision"])
        d["decision_id"] = uuid.UUID(d["decision_id"])
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        # Every row of a batch has the same columns (entries queued before these two existed
        # included): a page-load decision, or a live plan entry fired in the page.
        d.setdefault("trigger", "load")
        parent = d.get("parent_decision_id")
        d["parent_decision_id"] = uuid.UUID(parent) if parent else None
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
    if not settings.DECIDE_REDIS_URL:
        return 0
    # Not skipped while readers skip Redis after a failure: a Redis that does not answer
    # fails the step (``Required``) and the erasure retries.
    decision_log_flush(required=True)
    key = _counters_key(property_id, visitor_id)
    try:
        r = _writer()[0]
        # (all of them in the visitor's hash slot: one command on a cluster too)
        names: list[bytes] = r.hkeys(key)  # type: ignore[assignment]
        budgets = [
            _budget_key(property_id, visitor_id, name[2:].decode())
            for name in names
            if name.startswith(b"b:")
        ]
        # The copy of the visitor's live signals goes too (their consent copy stays: it is
        # keyed by the keyed hash, like the consent records, and now says "suppressed").
        return int(r.delete(key, *budgets, _signals_key(property_id, visitor_id)))
    except redis.RedisError as exc:
        raise Required(f"the visitor's hot state in Redis is unavailable: {exc}") from exc


def decisions_export(property_id: int, visitor_id: str) -> Iterator[dict[str, Any]]:
    """A visitor's decision-log rows for an access export, pending ones flushed first."""

    decision_log_flush(required=True)
    names = [f.attname for f in Decision._meta.concrete_fields]
    rows = Decision.objects.filter(property_id=property_id, visitor_id=visitor_id)
    return rows.order_by("pk").values(*names).iterator()
