# The README's two commands: `make dev` (the local stage) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR):$(CURDIR)/layers/tickets
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck openapi openapi-check migrate invoke validate clean sample-events

$(STAMP): requirements-dev.txt layers/tickets/requirements.txt
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "PostgreSQL server binaries are missing; installing (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import psycopg, aws_lambda_powertools, moto, pytest"
	touch $(STAMP)

dev: $(STAMP)  ## The whole API on 127.0.0.1:$${PORT:-3000}
	exec $(BIN)/python -m localstage

test: $(STAMP)  ## The test suite, on a throwaway PostgreSQL unless DATABASE_URL is set
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/tickets/tickets localstage tools

openapi: $(STAMP)  ## Regenerates openapi.json from the resolvers' routes and models
	$(BIN)/python -m tools.openapi > openapi.json

openapi-check: $(STAMP)  ## Fails when openapi.json is not what the routes generate
	$(BIN)/python -m tools.openapi | diff -u openapi.json - && echo "openapi.json is up to date"

validate: $(STAMP)  ## Lints the SAM template (what `sam validate --lint` runs)
	$(BIN)/cfn-lint template.yaml

migrate: $(STAMP)  ## Applies migrations to $$DATABASE_URL
	$(BIN)/python -m tickets.migrate

invoke: $(STAMP)  ## make invoke FUNCTION=reserve EVENT=events/reserve.json
	$(BIN)/python -m localstage invoke $(FUNCTION) $(EVENT)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

sample-events: $(STAMP)  ## Rewrites events/*.json (API Gateway HTTP API payload 2.0 samples)
	$(BIN)/python -m localstage.sample_events
