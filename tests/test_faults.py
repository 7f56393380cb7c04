"""Faults: a database, a cache or a worker goes away; nothing acknowledged is lost or doubled.

Each test runs its own throwaway PostgreSQL (``initdb`` in a temporary folder, ports
55432–55439) or Redis (ports 56379–56389), so stopping it leaves the suite's own services
alone, and the app under gunicorn or a Celery worker in a subprocess, as in production.
"""

import contextlib
import hashlib
import http.client
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_py
from celery import Celery
from django.contrib.auth.models import Group
from django.utils import timezone

from benchmarks.load import processes as procs
from consent import tasks as consent_tasks
from consent.models import AccessExport, ErasureStep, PrivacyRequest, StepStatus
from dashboard import tasks as dashboard_tasks
from dashboard.models import (
    AdjustmentHourly,
    ConsentDaily,
    EventFateDaily,
    RollupState,
    SegmentSizeDaily,
    SurveyScoreDaily,
    SurveySeenDaily,
)
from dashboard.rollups import rollups_run
from personalization import cache as cache_backend
from personalization import tasks as personalization_tasks
from personalization.learning import propensity
from personalization.models import (
    ModelVersion,
    PropensityModel,
    Property,
    TrainingMember,
    VersionStatus,
)
from personalization.permissions import PRIVACY_OFFICERS
from tests.conftest import ALL_PURPOSES, is_postgres, needs
from tests.consent.test_privacy_worker import started, wait_for
from tests.dashboard.test_dashboard_rollups import SHORT, Log
from tests.dashboard.test_dashboard_rollups import (
    known as known,
)  # the rollups' known dataset (a fixture)
from tests.learning import cta_model, log_answers
from tests.privacy import media_root, raw_id, scan_db, scan_files, visitor_everywhere
from tests.servers import production_env, suite_database_url

PG_PORTS = range(55432, 55440)
# What ``dashboard_rollups_task`` writes (retention has a task of its own).
ROLLUP_TABLES = (
    AdjustmentHourly,
    SurveyScoreDaily,
    SurveySeenDaily,
    SegmentSizeDaily,
    EventFateDaily,
    ConsentDaily,
)
REDIS_PORTS = range(56379, 56390)


def needs_postgres_server() -> None:
    needs(procs.have_postgres_server(), "needs PostgreSQL's initdb and pg_ctl")


def needs_redis_server() -> None:
    needs(procs.have_redis_server(), "needs redis-server")


# ---- a client that behaves exactly like tracker.js's event delivery ----------------------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: float
    event_ids: list[str]


@dataclass
class TrackerClient:
    """tracker.js's delivery rules (flush/retry in personalization/static/…/tracker.js):

    events wait in a queue and go in batches of at most ``BATCH``, one request in flight; a
    408, 429, any 5xx or a network failure puts the batch back at the head of the queue,
    *with the same event ids*, and retries after ``max(min(retry_ms * 2**attempt, 60 s),
    min(Retry-After, 60 s))``, ``attempt`` growing by one each failure and reset by any
    other answer.
    """

    port: int
    key: str
    retry_ms: int = 200
    BATCH = 100
    queue: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0
    answers: list[Answer] = field(default_factory=list)

    def track(self, visitor_id: str, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            self.queue.append(
                {
                    "event_id": event_id,
                    "type": "page_view",
                    "visitor_id": visitor_id,
                    "session_id": "s-1",
                    "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "properties": {"path": "/"},
                    "context": {"url": "https://shop.example/"},
                }
            )
        return ids

    @staticmethod
    def retryable(status: int) -> bool:
        return status in (408, 429) or status >= 500

    def flush(self) -> float | None:
        """Send the oldest batch; the delay before the next try, or None when it went through."""
        batch, self.queue = self.queue[: self.BATCH], self.queue[self.BATCH :]
        answer = post(self.port, "/api/v1/events", self.key, {"events": batch})
        answer.event_ids = [e["event_id"] for e in batch]
        self.answers.append(answer)
        if answer.status == 0 or self.retryable(answer.status):
            self.queue = batch + self.queue
            backoff = min(self.retry_ms * 2**self.attempt, 60_000) / 1000
            self.attempt += 1
            return max(backoff, min(answer.retry_after, 60))
        self.attempt = 0
        return None

    def deliver(self, seconds: float) -> None:
        """Flush until the queue is empty, sleeping out each backoff (bounded in time)."""
        deadline = time.monotonic() + seconds
        while self.queue and time.monotonic() < deadline:
            delay = self.flush()
            if delay:
                time.sleep(delay)


def post(port: int, path: str, key: str, body: Any, timeout: float = 30) -> Answer:
    """POST JSON; status 0 for a network failure (as ``fetch`` rejecting)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        data = response.read()
    except OSError:
        return Answer(0, {}, 0, [])
    finally:
        conn.close()
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"raw": data[:300].decode("utf-8", "replace")}
    retry_after = float(response.getheader("Retry-After") or 0)
    return Answer(response.status, parsed, retry_after, [])


# ---- the app under gunicorn against a throwaway database ---------------------------------------


@dataclass
class App:
    port: int
    pk: str
    sk: str
    db: procs.ThrowawayPostgres
    env: dict[str, str]

    def stored(self, event_ids: list[str]) -> list[str]:
        """The ids of these events stored, one entry per stored row."""
        with psycopg.connect(self.db.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT event_id::text FROM personalization_event WHERE event_id::text = ANY(%s)",
                [event_ids],
            ).fetchall()
        return [r[0] for r in rows]


def app_env(database_url: str, redis_url: str = "") -> dict[str, str]:
    env = production_env(
        DATABASE_URL=database_url,
        TASKS_IN_PROCESS="1",  # nothing on these paths enqueues; no broker to stop
        DATABASE_CONN_MAX_AGE="60",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@pytest.fixture(scope="module")
def throwaway_db() -> Iterator[procs.ThrowawayPostgres]:
    needs_postgres_server()
    db = procs.ThrowawayPostgres(procs.free_port(PG_PORTS))
    db.start()
    try:
        procs.manage(app_env(db.url), "migrate", "--noinput")
        yield db
    finally:
        db.destroy()


@contextlib.contextmanager
def serve(db: procs.ThrowawayPostgres, tmp_path: Path, redis_url: str = "") -> Iterator[App]:
    env = app_env(db.url, redis_url)
    out = procs.manage(env, "create_property", "--name", f"Faults {uuid.uuid4().hex[:6]}")
    keys = {}
    for line in out.splitlines():
        name, _, value = line.strip().partition(": ")
        if name in ("publishable", "secret"):
            keys[name] = value.strip()
    pk, sk = keys["publishable"], keys["secret"]
    port = procs.free_port(range(18100, 18200))
    server = procs.start_gunicorn(env, port, workers=2, log=tmp_path / "gunicorn.log")
    try:
        yield App(port=port, pk=pk, sk=sk, db=db, env=env)
    finally:
        procs.stop(server)


def consented(app: App, visitor_id: str) -> None:
    body = {"visitor_id": visitor_id, "policy_version": 1, "purposes": ALL_PURPOSES}
    answer = post(app.port, "/api/v1/consent", app.pk, {**body, "method": "banner"})
    assert answer.status == 201, answer


def assert_unavailable(answer: Answer) -> None:
    assert answer.status == 503, answer
    assert answer.retry_after > 0, "a 503 carries Retry-After"
    assert set(answer.body) == {"error"}, answer.body
    assert set(answer.body["error"]) == {"code", "message", "details"}
    assert answer.body["error"]["code"] == "service_unavailable"


def test_events__postgres_stops__503_nothing_half_stored_then_tracker_delivers_exactly_once(
    throwaway_db, tmp_path
):
    # Given the app under gunicorn on its own PostgreSQL, and a visitor who consented
    with serve(throwaway_db, tmp_path) as app:
        consented(app, "v-fault")
        tracker = TrackerClient(app.port, app.pk)
        before = tracker.track("v-fault", 30)
        tracker.deliver(30)
        assert tracker.answers[-1].status == 200
        # When the database crashes while a full batch is on its way
        sent = tracker.track("v-fault", 250)
        stopper = threading.Timer(0.02, throwaway_db.stop)
        stopper.start()
        delay = tracker.flush()
        stopper.join()
        first = tracker.answers[-1]
        # (the batch either made it before the crash, whole, or was refused)
        if delay is None:
            assert first.status == 200 and first.body["accepted"] == TrackerClient.BATCH
            delay = tracker.flush()
        # Then the next batch gets a 503 with Retry-After in the error shape
        refused = tracker.answers[-1]
        assert_unavailable(refused)
        assert delay is not None and delay >= refused.retry_after
        # and when the database is back, none of a refused batch was stored half-way
        throwaway_db.start()
        for answer in tracker.answers[1:]:
            if answer.status == 503:
                assert app.stored(answer.event_ids) == [], "a refused batch stored nothing"
        # When the tracker goes on with its backoff
        time.sleep(delay)
        tracker.deliver(60)
        # Then every event arrived exactly once, and the retries were answered as duplicates
        assert tracker.queue == []
        log = [(a.status, len(a.event_ids), str(a.body)[:100]) for a in tracker.answers]
        stored = app.stored(before + sent)
        assert sorted(stored) == sorted(before + sent), log
        assert len(stored) == len(set(stored)) == 280


def test_events__redis_stops__still_accepted_and_cache_resumes_without_restart(
    throwaway_db, tmp_path
):
    needs_redis_server()
    # Given the app with its cache on a Redis of its own
    redis = procs.ThrowawayRedis(procs.free_port(REDIS_PORTS))
    redis.start()
    cache = redis_py.Redis.from_url(redis.url(1))
    try:
        with serve(throwaway_db, tmp_path, redis_url=redis.url(1)) as app:
            consented(app, "v-cache")
            tracker = TrackerClient(app.port, app.pk)
            ids = tracker.track("v-cache", 10)
            tracker.deliver(10)
            assert tracker.answers[-1].status == 200
            assert cache.dbsize() > 0, "the key and policy are cached in Redis"
            # When Redis stops
            redis.stop()
            more = tracker.track("v-cache", 10)
            tracker.flush()
            # Then events are still accepted at once (the cache is only a cache)
            down = tracker.answers[-1]
            assert down.status == 200, down
            assert down.body["accepted"] == 10
            # When Redis comes back (empty), the same processes use it again, no restart
            redis.start()
            time.sleep(cache_backend.DOWN_SECONDS + 0.5)
            again = tracker.track("v-cache", 10)
            tracker.flush()
            assert tracker.answers[-1].status == 200
            assert cache.dbsize() > 0, "the cache is written again"
            stored = app.stored(ids + more + again)
            assert sorted(stored) == sorted(ids + more + again)
    finally:
        redis.stop()


# ---- a Celery worker killed in the middle of a privacy task ------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    return media_root(settings, tmp_path)


@pytest.fixture
def broker() -> Iterator[procs.ThrowawayRedis]:
    needs_redis_server()
    redis = procs.ThrowawayRedis(procs.free_port(REDIS_PORTS))
    redis.start()
    yield redis
    redis.stop()


def worker_env(broker: procs.ThrowawayRedis, media: Path) -> dict[str, str]:
    return production_env(
        # the test database this test writes to (transactional: committed, visible)
        DATABASE_URL=suite_database_url(),
        CELERY_BROKER_URL=broker.url(0),
        MEDIA_ROOT=str(media),
        PRIVACY_ERASE_BATCH="1",
        PRIVACY_FAULT_PAUSE_SECONDS="0.3",
    )


def enqueue_on(broker: procs.ThrowawayRedis, monkeypatch) -> None:
    """The tasks ``request_start`` enqueues go to the throwaway broker, whatever the
    suite's own setting (even TASKS_IN_PROCESS=1)."""
    for task in (consent_tasks.access_export_task, consent_tasks.erasure_task):
        monkeypatch.setattr(
            task, "delay", lambda *args, _name=task.name: send_on(broker, _name, *args)
        )


def send_on(broker: procs.ThrowawayRedis, name: str, *args: Any) -> None:
    """Send the task ``name`` to the throwaway broker (the connection is explicit: Celery
    prefers the CELERY_BROKER_URL variable to an app's ``broker`` argument). Not the current
    app: the task proxies patched by ``enqueue_on`` must keep resolving to the same tasks."""
    sender = Celery("sender", set_as_current=False)
    with sender.connection_for_write(broker.url(0)) as conn:
        sender.send_task(name, args=args, connection=conn)


def kill_pool_child(worker, when, seconds: float = 60) -> int:
    """SIGKILL the worker's pool process as soon as ``when()`` holds: the task it runs dies
    mid-way, as under the OOM killer. Returns the killed pid."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if when():
            kids = procs.children(worker.pid)
            assert kids, "the prefork worker has a pool process"
            victim = kids[0]
            os.kill(victim, signal.SIGKILL)
            return victim
        time.sleep(0.05)
    raise AssertionError("the task never reached the point to kill it at")


@pytest.mark.django_db(transaction=True)
def test_privacy_tasks__worker_killed_mid_task__redelivered_and_complete_once(
    make_shop, staff, media, broker, monkeypatch, tmp_path
):
    needs(is_postgres(), "a worker in a subprocess shares the test database: needs PostgreSQL")
    # Given a visitor in every store, and a real worker whose tasks pause between batches
    Group.objects.get_or_create(name=PRIVACY_OFFICERS)
    shop = make_shop()
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    visitor_everywhere(shop, vid)
    enqueue_on(broker, monkeypatch)
    worker = procs.start_celery_worker(worker_env(broker, media), log=tmp_path / "worker.log")
    try:
        # When the worker is killed while the access export is half-way
        access = started(shop, officer, vid, "access")
        export = AccessExport.objects.filter(request=access)
        kill_pool_child(
            worker, lambda: export.filter(status="running", stores_done__gte=2).exists()
        )
        # Then the task is redelivered (acks_late, reject on worker lost) and completes
        assert wait_for(lambda: export.filter(status="ready").exists()), export.values().first()
        archives = list((media).rglob("*.zip"))
        assert len(archives) == 1 and not list(media.rglob("*.part")), archives
        assert scan_files(media, vid), "the archive holds the visitor's data"
        rows = export.get().rows
        # When the worker is killed while the erasure is half-way through its stores
        erasure = started(shop, officer, vid, "erasure")
        steps = ErasureStep.objects.filter(request=erasure)
        kill_pool_child(worker, lambda: steps.filter(status=StepStatus.DONE).count() >= 3)
        assert steps.exclude(status=StepStatus.DONE).exists(), "killed before the end"
        # Then it is redelivered, skips the done steps and finishes with a complete receipt
        done = PrivacyRequest.objects.filter(pk=erasure.pk, status="completed")
        assert wait_for(done.exists, 90), (tmp_path / "worker.log").read_text()[-3000:]
        receipt = done.get().receipt
        removed = sum(s["removed_total"] + s["caches_and_files"] for s in receipt["stores"])
        assert receipt["nothing_held"] is False and removed > 0
        assert scan_db(vid) == [] and scan_files(media, vid) == []
        # When both tasks run once more (a duplicate delivery)  Then nothing changes
        consent_tasks.access_export_task.delay(access.pk)
        consent_tasks.erasure_task.delay(erasure.pk)
        log = tmp_path / "worker.log"
        assert wait_for(lambda: log.read_text().count(" succeeded in ") >= 4)
        assert done.get().receipt == receipt
        # (the erased visitor's archive is not built again)
        assert export.get().rows == rows and export.get().status == "erased"
        assert scan_files(media, vid) == []
    finally:
        procs.stop(worker)


def test_cache__redis_unreachable__reads_miss_fills_skipped_invalidations_raise():
    # Given the shared cache pointed at a port where no Redis listens
    from redis.exceptions import RedisError

    port = procs.free_port(REDIS_PORTS)
    cache = cache_backend.FailSoftRedisCache(
        f"redis://127.0.0.1:{port}/0",
        {"OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.5}},
    )
    # When it is read and filled  Then it misses and skips, as a cache may
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.add("k", 1) is False
    cache.set("k", 1)
    assert cache.get_or_set("k", 2) == 2
    # but an invalidation that did not happen is an error the caller must see
    with pytest.raises(RedisError):
        cache.delete("k")
    with pytest.raises(RedisError):
        cache.delete_many(["a"])


# ---- a Celery worker killed in the middle of a rollup, or of a model training --------------------


def rollup_tables(*props: Property) -> dict[str, list[tuple]]:
    """Every rollup row of the properties, without ids: what the dashboards read."""
    return {
        model.__name__: sorted(
            tuple((k, v) for k, v in sorted(row.items()) if k != "id")
            for row in model.objects.filter(property__in=props).values()
        )
        for model in ROLLUP_TABLES
    }


def succeeded(log: Path, task: str) -> list[str]:
    """The worker log's lines of ``task`` succeeding (with its result)."""
    return [line for line in log.read_text().splitlines() if task in line and " succeeded " in line]


@pytest.mark.django_db(transaction=True)
def test_dashboard_rollups_task__worker_killed_mid_run__rerun_equals_clean_run(
    known, make_shop, media, broker, tmp_path
):
    needs(is_postgres(), "a worker in a subprocess shares the test database: needs PostgreSQL")
    # Given two properties with decisions and events, and a worker pausing after each step
    first = known["prop"]
    other = make_shop("Other").prop
    log = Log(other)
    answers: list[tuple[str, str, str, str, int | None]] = list(SHORT)
    for i in range(4):
        at = known["t0"] + timedelta(minutes=5 * i)
        decision = log.decide(f"o{i}", f"os{i}", at, answers, device="desktop")
        log.event("click", f"o{i}", f"os{i}", at + timedelta(minutes=1), decision)
    env = {**worker_env(broker, media), "DASHBOARD_FAULT_PAUSE_SECONDS": "0.4"}
    worker_log = tmp_path / "worker.log"
    worker = procs.start_celery_worker(env, log=worker_log)
    task = dashboard_tasks.dashboard_rollups_task.name
    states = RollupState.objects.filter(property__in=[first, other])
    try:
        # When the worker is killed once the first property is half rolled up
        send_on(broker, task)
        kill_pool_child(worker, lambda: states.filter(property=first).count() >= 2)
        assert states.count() < 10, "killed before the end"
        # Then the task is redelivered and runs (the dead run's advisory lock died with it)
        assert wait_for(lambda: succeeded(worker_log, task), 60), worker_log.read_text()[-3000:]
        assert "'runs': 10" in succeeded(worker_log, task)[0], "ran, not skipped"
        assert states.count() == 10
        rerun = rollup_tables(first, other)
        assert rerun["AdjustmentHourly"] and rerun["ConsentDaily"]
        # When it is delivered once more  Then nothing changes
        send_on(broker, task)
        assert wait_for(lambda: len(succeeded(worker_log, task)) == 2, 30)
        assert rollup_tables(first, other) == rerun
    finally:
        procs.stop(worker)
    # And the tables equal those of a clean run on the same data
    for model in (*ROLLUP_TABLES, RollupState):
        model.objects.all().delete()
    rollups_run()
    assert rollup_tables(first, other) == rerun


@pytest.mark.django_db(transaction=True)
def test_model_train_task__worker_killed_mid_training__one_version_promoted_once(
    make_shop, consent, media, broker, tmp_path
):
    needs(is_postgres(), "a worker in a subprocess shares the test database: needs PostgreSQL")
    # Given logged answers with a planted effect, a version to train, and a worker that
    # pauses between reading the log and fitting
    prop = make_shop().prop
    model = cta_model(prop)
    log_answers(prop, consent, 200)
    version = propensity.version_start(model=model)
    env = {**worker_env(broker, media), "LEARNING_FAULT_PAUSE_SECONDS": "1"}
    worker_log = tmp_path / "worker.log"
    worker = procs.start_celery_worker(env, log=worker_log)
    task = personalization_tasks.model_train_task.name
    training = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.TRAINING)
    try:
        # When the worker is killed while the version is being trained
        send_on(broker, task, version.pk)
        kill_pool_child(worker, lambda: training.filter(progress__gte=40).exists())
        assert training.exists(), "killed before the end"
        # Then the task is redelivered and trains the same version to the end
        assert wait_for(lambda: not training.exists(), 60), worker_log.read_text()[-3000:]
        version.refresh_from_db()
        assert version.status == VersionStatus.PROMOTED, version.message
        assert version.progress == 100 and version.auc is not None and version.auc > 0.7
        assert list(model.versions.values_list("version", "status")) == [(1, "promoted")]
        # with a consistent artifact and one membership row per visitor trained on
        assert version.artifact is not None
        raw = bytes(version.artifact)
        assert hashlib.sha256(raw).hexdigest() == version.digest
        assert propensity.artifact_load(raw)["features"] == version.features
        members = TrainingMember.objects.filter(model_version=version)
        assert version.rows == 200 and members.count() == 200
        trained = ModelVersion.objects.filter(pk=version.pk).values().get()
        # When it is delivered once more  Then nothing changes
        send_on(broker, task, version.pk)
        assert wait_for(lambda: len(succeeded(worker_log, task)) == 2, 30)
        assert ModelVersion.objects.filter(pk=version.pk).values().get() == trained
        assert model.versions.count() == 1 and members.count() == 200
    finally:
        procs.stop(worker)


def test_learning_scheduled_task__version_stuck_training__trained_not_left(shop, consent):
    # Given a version left "training" two hours ago by a worker killed with its message lost
    model = cta_model(shop.prop)
    log_answers(shop.prop, consent, 200)
    stuck = propensity.version_start(model=model)
    ModelVersion.objects.filter(pk=stuck.pk).update(
        created_at=timezone.now() - timedelta(hours=2), progress=40, message="fitting"
    )
    # and one that started a minute ago (its task may well be running)
    other = PropensityModel.objects.create(
        property=shop.prop, key="cta-click-2", slot=model.slot, goal=model.goal, min_rows=50
    )
    fresh = propensity.version_start(model=other)
    # When the daily learning task runs
    counts = personalization_tasks.learning_scheduled_task()
    # Then the stuck version is trained and promoted, with no second version of its model
    stuck.refresh_from_db()
    assert counts["resumed"] == 1
    assert stuck.status == VersionStatus.PROMOTED and stuck.progress == 100, stuck.message
    assert list(model.versions.values_list("version", flat=True)) == [1]
    # and the fresh one is left to its own task
    assert ModelVersion.objects.get(pk=fresh.pk).status == VersionStatus.TRAINING
    # When it runs again  Then nothing is resumed or changed
    assert personalization_tasks.learning_scheduled_task()["resumed"] == 0
    assert ModelVersion.objects.get(pk=stuck.pk).digest == stuck.digest


CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7100")


@pytest.fixture(params=["one Redis", "Redis Cluster"])
def hot_state_url(request, broker, settings) -> str:
    """The hot state on a throwaway Redis (the broker's, another database) or on the
    three-master cluster .ci/run starts; this process decides into it too."""
    from personalization.redis_client import connect

    url = broker.url(1)
    if request.param == "Redis Cluster":
        url = CLUSTER_URL
        try:
            answers = bool(connect(url, socket_connect_timeout=1).ping())
        except redis_py.RedisError:
            answers = False
        needs(answers, f"no Redis Cluster answers at {url} (start it: see .ci/run)")
        connect(url).flushall()
    settings.DECIDE_REDIS_URL = url
    return url


@pytest.mark.django_db(transaction=True)
def test_decision_log_flush__worker_killed_mid_flush__none_lost_none_twice(
    shop, consent, media, broker, hot_state_url, tmp_path
):
    from personalization import hotstate
    from personalization.decisions import DecideRequest, decide
    from personalization.models import Adjustment, Decision
    from tests.targeting import rule, slot

    needs(is_postgres(), "a worker in a subprocess shares the test database: needs PostgreSQL")
    # Given 240 acknowledged decisions pending in Redis, spread over the log's shards
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "x"}})
    slot(shop.prop, "cta", {"b": {"label": "Buy"}})
    rule(shop.prop, "r", "headline", "short")
    acknowledged = set()
    for i in range(240):
        if i % 2:  # (half of them personalized)
            consent(shop.prop, f"v-{i}")
        result = decide(shop.prop, DecideRequest(f"v-{i}", "s-1", ["headline", "cta"]))
        assert result.logged
        acknowledged.add(uuid.UUID(str(result.decision_id)))
    assert hotstate.pending_count() == 240 and not Decision.objects.exists()
    # and a worker whose flush pauses after each batch's commit, before the trim
    env = {**worker_env(broker, media), "DECIDE_REDIS_URL": hot_state_url}
    env["DECISION_LOG_FAULT_PAUSE_SECONDS"] = "0.1"
    worker_log = tmp_path / "worker.log"
    worker = procs.start_celery_worker(env, log=worker_log)
    task = personalization_tasks.decision_log_flush_task.name
    try:
        # When the worker is killed once a batch is committed, in the middle of the flush
        send_on(broker, task)
        kill_pool_child(worker, Decision.objects.exists)
        assert Decision.objects.count() < 240, "killed before the end"
        # Then the task is redelivered and flushes the rest (the dead flush's shard waits
        # for its lock to expire, then the next flush takes it)
        assert wait_for(lambda: succeeded(worker_log, task), 60), worker_log.read_text()[-3000:]
        time.sleep(hotstate.LOCK_TTL + 0.5)
        send_on(broker, task)
        assert wait_for(lambda: len(succeeded(worker_log, task)) >= 2, 60)
    finally:
        procs.stop(worker)
    # And every acknowledged decision is stored exactly once, with each of its answers
    assert hotstate.pending_count() == 0
    stored = list(Decision.objects.values_list("decision_id", flat=True))
    assert len(stored) == 240 and set(stored) == acknowledged
    assert Adjustment.objects.count() == 2 * 240
