# robotperf: `make run` starts the whole stack with demo data, `make test` runs the suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VAR := var
export REDIS_URL ?= redis://127.0.0.1:6379/0
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export PHONEME_URL ?= http://127.0.0.1:8001

.PHONY: run test bench lint format setup venv system redis migrate clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

system:
	scripts/ensure-system-packages

redis:
	mkdir -p $(VAR)
	python3 scripts/ensure_redis.py "$(REDIS_URL)" $(VAR)
	python3 scripts/ensure_redis.py "$(TEST_REDIS_URL)" $(VAR)

setup: venv system redis
	mkdir -p $(VAR)
	$(PY) manage.py migrate --noinput

run: setup
	$(PY) manage.py seed_demo
	$(PY) manage.py create_demo_superuser
	$(VENV)/bin/honcho start -f Procfile

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(VAR) .pytest_cache .ruff_cache
