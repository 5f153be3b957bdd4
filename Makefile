# robotperf: `make run` starts the whole stack with demo data, `make test` runs the suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VAR := var
export REDIS_URL ?= redis://127.0.0.1:6379/0
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export CONVSTORE_TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
export PHONEME_URL ?= http://127.0.0.1:8001
# A throwaway Redis is recorded as started by this make (its pid), which stops only those.
MAKE_ID := $(shell echo $$PPID)
ENSURE_REDIS := python3 scripts/ensure_redis.py --owner $(MAKE_ID)
# $(call with_redis,COMMAND): setup, then COMMAND; whether it passes, fails or is interrupted
# (Ctrl-C), stop the Redis servers that setup started, and keep COMMAND's exit status.
with_redis = trap '$(ENSURE_REDIS) --stop $(VAR)' EXIT; \
	$(MAKE) --no-print-directory setup MAKE_ID=$(MAKE_ID) && $(1)

.PHONY: run test bench lint format setup venv system redis redis-stop migrate clean

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

# The project's suite, then the library's own (plain pytest, no Django).
test: venv
	$(call with_redis,$(MAKE) --no-print-directory lint && $(PY) -m pytest \
		&& cd convstore && ../$(PY) -m pytest)

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
