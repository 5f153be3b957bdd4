# robotperf: `make run` starts the whole stack with demo data, `make serve` the production
# processes (DEBUG off), `make test` runs the suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VAR := var
export REDIS_URL ?= redis://127.0.0.1:6379/0
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export CONVSTORE_TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
# The archive's and compaction's tests run again on this PostgreSQL (empty: not at all).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
POSTGRES_TESTS := $(addprefix tests/sessions_app/,test_archive.py test_services.py \
	test_services_concurrency.py test_incarnations.py test_maintenance.py)
export PHONEME_URL ?= http://127.0.0.1:8001
# A throwaway Redis is recorded as started by this make (its pid), which stops only those.
MAKE_ID := $(shell echo $$PPID)
ENSURE_REDIS := python3 scripts/ensure_redis.py --owner $(MAKE_ID)
# $(call with_redis,COMMAND): setup, then COMMAND; whether it passes, fails or is interrupted
# (Ctrl-C), stop the Redis servers that setup started, and keep COMMAND's exit status.
with_redis = trap '$(ENSURE_REDIS) --stop $(VAR)' EXIT; \
	$(MAKE) --no-print-directory setup MAKE_ID=$(MAKE_ID) && $(1)

.PHONY: run serve serve-env test test-postgres bench lint format setup venv system redis redis-stop migrate clean

$(VENV)/.installed: requirements.txt convstore/pyproject.toml
	test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

system:
	scripts/ensure-system-packages

redis:
	mkdir -p $(VAR)
	$(ENSURE_REDIS) "$(REDIS_URL)" $(VAR)
	$(ENSURE_REDIS) "$(TEST_REDIS_URL)" $(VAR)
	$(ENSURE_REDIS) "$(CONVSTORE_TEST_REDIS_URL)" $(VAR)

# Stops every throwaway Redis recorded under var/ (e.g. left by `make setup`), no other.
redis-stop:
	python3 scripts/ensure_redis.py --stop $(VAR)

setup: venv system redis
	mkdir -p $(VAR)
	$(PY) manage.py compilemessages --ignore=.venv --ignore=var -v 0
	$(PY) manage.py migrate --noinput

# The session API's token (API_TOKEN, or one kept under var/) goes to the web process; its
# address and the token are printed beside the superuser's password.
run: venv
	$(call with_redis,$(PY) manage.py seed_demo && $(PY) manage.py create_demo_superuser \
		&& API_TOKEN="$$($(PY) manage.py demo_api_token)" && export API_TOKEN \
		&& $(VENV)/bin/honcho start -f Procfile)

# The production processes (Procfile.serve: gunicorn with uvicorn workers, the Celery worker and
# beat, the phoneme server) with DEBUG off; docs/OPERATIONS.md, "Deploying", lists the variables.
# The phoneme server listens where PHONEME_URL points.
serve: export DEBUG := 0
serve: export ALLOWED_HOSTS ?= 127.0.0.1,localhost
serve: export BIND ?= 127.0.0.1:8000
serve: export WEB_CONCURRENCY ?= 2
serve: export CELERY_CONCURRENCY ?= 2
# Every process of the stack writes its metrics there and /metrics adds them up; the values of
# the last run are cleared first (the counters start again from 0, as after any restart).
serve: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/$(VAR)/prometheus
serve: export PHONEME_HOST := $(firstword $(subst :, ,$(lastword $(subst /, ,$(PHONEME_URL)))))
serve: export PHONEME_PORT := $(lastword $(subst :, ,$(lastword $(subst /, ,$(PHONEME_URL)))))
serve: serve-env venv
	mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"
	$(call with_redis,$(PY) manage.py collectstatic --noinput -v 0 \
		&& $(PY) manage.py check --deploy --fail-level ERROR \
		&& find "$$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete \
		&& $(VENV)/bin/honcho start -f Procfile.serve)

# Secrets are never made up for production: without them, say how to set them, before any set-up.
serve-env:
	@missing=""; for name in SECRET_KEY API_TOKEN; do \
		[ -n "$${!name}" ] || missing="$${missing:+$$missing and }$$name"; done; \
	if [ -n "$$missing" ]; then \
		echo "make serve: $$missing must be set (DEBUG is off: no default)." >&2; \
		echo "For a trial on this machine, e.g.:" >&2; \
		echo '  export SECRET_KEY="$$(python3 -c "import secrets; print(secrets.token_urlsafe(50))")"' >&2; \
		echo '  export API_TOKEN="$$(python3 -c "import secrets; print(secrets.token_urlsafe(32))")"' >&2; \
		exit 1; fi

# The project's suite (its cluster tests start a cluster of their own), its archive tests on
# PostgreSQL, then the library's own (plain pytest, no Django), on one Redis and on a local
# Redis Cluster started for it under var/.
TEST_CLUSTER := python3 scripts/redis_cluster.py
test: venv
	$(call with_redis,$(MAKE) --no-print-directory lint && $(PY) -m pytest \
		&& $(MAKE) --no-print-directory test-postgres \
		&& trap '$(ENSURE_REDIS) --stop $(VAR); $(TEST_CLUSTER) stop $(VAR)/test-cluster' EXIT \
		&& CONVSTORE_TEST_CLUSTER_URL="$$($(TEST_CLUSTER) start $(VAR)/test-cluster \
			--port 0)" && export CONVSTORE_TEST_CLUSTER_URL \
		&& (cd convstore && ../$(PY) -m pytest))

# The archive and compaction against PostgreSQL, the production database (COPY, its errors);
# skipped, saying so, when none answers at TEST_POSTGRES_URL.
PG_ANSWERS := import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=2).close()
test-postgres: venv
	@if [ -n "$(TEST_POSTGRES_URL)" ] \
		&& $(PY) -c '$(PG_ANSWERS)' "$(TEST_POSTGRES_URL)" 2>/dev/null; then \
		DATABASE_URL="$(TEST_POSTGRES_URL)" $(PY) -m pytest $(POSTGRES_TESTS); \
	else echo "test-postgres: no PostgreSQL at TEST_POSTGRES_URL; its run is skipped"; fi

bench: venv
	$(call with_redis,$(PY) -m benchmarks)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd convstore && ../$(PY) -m mypy src

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(VAR) .pytest_cache .ruff_cache
