#!/usr/bin/env bash
# schemathesis against openapi.json on a stage: every operation, with the organizer token, in all
# its phases (examples, coverage, fuzzing, stateful), failing on any 5xx, any status the operation
# does not declare and any response that breaks its declared schema.
#
#   bash tests/fuzz/run.sh            # `make fuzz`; CI runs it
#
# Without API_URL it starts a private local stage (tests/support/local_stage.sh) and stops it on
# exit; with API_URL and TICKETS_ADMIN_TOKEN it fuzzes that stage instead (it creates events and
# holds there: not a production stage). The hooks (tests/fuzz/hooks.py) give schemathesis what the
# contract says in prose: the reservation secret header, links between operations, a fresh
# Idempotency-Key per request.
#
# Environment: FUZZ_MAX_EXAMPLES (50 test cases per operation and phase), FUZZ_SEED (1: the same
# cases every run; set another to explore), FUZZ_WORKERS (1), STAGE_PORTS ("3201-3299").
#
# One worker by default: with two, schemathesis runs hypothesis in threads, and CPython 3.11.7's
# AST constructor keeps its recursion depth in interpreter-wide state (cpython#106905), so two
# threads describing strategies at once fail now and then with "AST constructor recursion depth
# mismatch" (it failed a CI run). One worker takes about 40 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${STAGE_PYTHON:-$ROOT/.venv/bin/python}"
ST="$(dirname "$PYTHON")/st"
[[ -x "$ST" ]] || { echo "fuzz: $ST is missing (make installs schemathesis into .venv)" >&2; exit 1; }
STARTED=$SECONDS

# shellcheck source=tests/support/local_stage.sh
source "$ROOT/tests/support/local_stage.sh"
STAGE_PYTHON="$PYTHON"
STAGE_LOG=""
trap local_stage_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${API_URL:-}" ]]; then
  STAGE_LOG="$(mktemp /tmp/fuzz-stage-log.XXXXXX)"
  echo "=== starting a local stage (log $STAGE_LOG)"
  local_stage_start fuzz-stage "${STAGE_PORTS:-3201-3299}" "$STAGE_LOG" || exit 1
  echo "=== a private local stage at $API_URL (pid $STAGE_PID, started in $((SECONDS - STARTED)) s)"
else
  : "${TICKETS_ADMIN_TOKEN:?TICKETS_ADMIN_TOKEN must be set with API_URL (the organizer token of that stage)}"
fi
API_URL="${API_URL%/}"

echo "=== schemathesis against $API_URL: openapi.json, ${FUZZ_MAX_EXAMPLES:-50} cases per operation, seed ${FUZZ_SEED:-1}"
rc=0
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=tests.fuzz.hooks "$ST" run "$ROOT/openapi.json" \
  --url "$API_URL" \
  --header "Authorization: Bearer $TICKETS_ADMIN_TOKEN" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
  --max-examples "${FUZZ_MAX_EXAMPLES:-50}" \
  --seed "${FUZZ_SEED:-1}" \
  --workers "${FUZZ_WORKERS:-1}" \
  --request-timeout 30 \
  --generation-database none \
  --no-color || rc=$?

if [[ -n "$STAGE_DIR" ]]; then
  requests="$(grep -cE '" [1-5][0-9]{2} ' "$STAGE_LOG" || true)"
  errors="$(grep -cE '" 5[0-9]{2} |unhandled|Traceback' "$STAGE_LOG" || true)"
  echo "=== local stage log: $requests requests, $errors 5xx or unhandled errors; by status:"
  grep -oE '" [1-5][0-9]{2} ' "$STAGE_LOG" | tr -d '" ' | sort | uniq -c | sort -rn | tr '\n' ' '
  echo
  if ((errors > 0)); then
    grep -E '" 5[0-9]{2} |unhandled' "$STAGE_LOG" | head -n 10
    rc=1
  fi
fi
if ((rc != 0)); then
  echo "=== fuzz FAILED against $API_URL ($((SECONDS - STARTED)) s)"
  exit 1
fi
echo "=== fuzz passed against $API_URL in $((SECONDS - STARTED)) s"
