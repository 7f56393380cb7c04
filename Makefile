# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make run` chooses the embedded defaults explicitly: SQLite, and a real Celery worker with
# beat on kombu's folder broker (the scheduled work runs as in production, no Redis needed).
RUN_ENV := DJANGO_DEBUG=1 DATABASE_URL=sqlite:///db.sqlite3 CELERY_BROKER_URL=filesystem:// \
	DEMO_ENABLED=1
# `make test` uses DATABASE_URL and CELERY_BROKER_URL when given (CI gives PostgreSQL and
# Redis); on a laptop without them it falls back, explicitly, to SQLite and in-process tasks.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),sqlite:///test.sqlite3)
TEST_ENV := DJANGO_DEBUG=0 DJANGO_SECRET_KEY=test-only-secret-key \
	VISITOR_HASH_KEY=test-only-visitor-hash-key DATABASE_URL=$(TEST_DATABASE_URL) \
	$(if $(CELERY_BROKER_URL),CELERY_BROKER_URL=$(CELERY_BROKER_URL),TASKS_IN_PROCESS=1)

.PHONY: run test test-redis-cluster install lint typecheck demo worker beat manage clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput
	$(RUN_ENV) $(BIN)/python manage.py load_demo
	$(RUN_ENV) $(BIN)/python manage.py dashboard_rollup
	@echo "Serving on http://127.0.0.1:8000 (admin: /admin/, dashboards: /dashboard/)"
	@echo "Scheduled work: a Celery worker with beat, its log in var/celery.log"
	@mkdir -p var
	$(RUN_ENV) sh -c '$(BIN)/celery -A personalization worker -B -c 1 -l info \
		-s var/celerybeat-schedule >var/celery.log 2>&1 & worker=$$!; \
		trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
		$(BIN)/python manage.py runserver 127.0.0.1:8000

test: $(STAMP)
	$(TEST_ENV) $(BIN)/ruff check .
	$(TEST_ENV) $(BIN)/ruff format --check .
	$(TEST_ENV) $(BIN)/mypy .
	$(TEST_ENV) $(BIN)/lint-imports
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

# The tests that talk to Redis, again on a Redis Cluster (CI starts one: .ci/run).
REDIS_CLUSTER_TESTS := tests/personalization/decisions/test_decide_redis.py \
	tests/personalization/decisions/test_decide_hot_copies.py \
	tests/personalization/decisions/test_guard_rails_contract.py \
	tests/personalization/decisions/test_live_plans.py \
	tests/personalization/api/test_events_api.py tests/consent/test_privacy_erasure.py \
	tests/test_scale_out.py tests/personalization/test_security.py
test-redis-cluster: $(STAMP)
	$(TEST_ENV) REDIS_URL=$(or $(REDIS_CLUSTER_URL),redis+cluster://127.0.0.1:7100) \
		$(BIN)/pytest -q $(REDIS_CLUSTER_TESTS) \
		-k "not (test_startup or test_headers or test_check_deploy or test_csrf or test_csp)"

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Any management command on `make run`'s settings: make manage ARGS='create_property --name Shop'
manage: $(STAMP)
	@$(RUN_ENV) $(BIN)/python manage.py migrate --noinput -v 0
	$(RUN_ENV) $(BIN)/python manage.py $(ARGS)

worker: $(STAMP)
	$(BIN)/celery -A personalization worker -l info

beat: $(STAMP)
	$(BIN)/celery -A personalization beat -l info

clean:
	rm -rf $(VENV) db.sqlite3 test.sqlite3 .pytest_cache .mypy_cache .ruff_cache
