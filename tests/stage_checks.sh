#!/usr/bin/env bash
# The stage checks over HTTP: the BATS suite (tests/bats) at several concurrency levels, then the
# race script (tests/race/race.py) at CONCURRENT_REQUESTS=200 (also its QUOTA=1 and SEATED=1 cases).
#
#   bash tests/stage_checks.sh [all|bats|race]      # `make test` runs it after pytest
#
# Without API_URL it starts a private local stage (its own temporary state directory, a free
# port, a generated organizer token), runs the checks against it and stops it (SIGTERM) on exit.
# With API_URL (and TICKETS_ADMIN_TOKEN, optionally DATABASE_URL) it checks that stage instead.
#
# Environment: BATS_LEVELS ("10 50 100"), RACE_CONCURRENCY (200), RACE_ITERATIONS (3),
# RACE_SEATS (1), RACE_QUANTITY (1), STAGE_PORTS (the first free port of "3101-3199").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHAT="${1:-all}"
case "$WHAT" in
  all | bats | race) ;;
  *)
    echo "usage: $0 [all|bats|race]" >&2
    exit 2
    ;;
esac
PYTHON="${STAGE_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
BATS_LEVELS="${BATS_LEVELS:-10 50 100}"
RACE_CONCURRENCY="${RACE_CONCURRENCY:-200}"
RACE_ITERATIONS="${RACE_ITERATIONS:-3}"
STARTED=$SECONDS

say() { printf '\n=== %s\n' "$*"; }

for tool in curl jq bats flock; do
  if [[ "$WHAT" != race || "$tool" == curl ]] && ! command -v "$tool" >/dev/null; then
    echo "stage checks: $tool is missing (Debian: apt-get install -y bats jq curl util-linux)" >&2
    exit 1
  fi
done

# shellcheck source=tests/support/local_stage.sh
source "$ROOT/tests/support/local_stage.sh"
STAGE_PYTHON="$PYTHON"
STAGE_LOG=""

if [[ -z "${API_URL:-}" ]]; then
  trap local_stage_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  STAGE_LOG="$(mktemp /tmp/bats-stage-log.XXXXXX)"
  say "starting a local stage (log $STAGE_LOG)"
  local_stage_start bats-stage "${STAGE_PORTS:-3101-3199}" "$STAGE_LOG" || exit 1
  STAGE_NAME="a private local stage (pid $STAGE_PID, started in $((SECONDS - STARTED)) s)"
else
  : "${TICKETS_ADMIN_TOKEN:?TICKETS_ADMIN_TOKEN must be set with API_URL (the organizer token of that stage)}"
  DATABASE_URL="${DATABASE_URL:-}"
  STAGE_NAME="the stage at API_URL"
fi
API_URL="${API_URL%/}"
export API_URL TICKETS_ADMIN_TOKEN DATABASE_URL

say "stage checks against $API_URL: $STAGE_NAME; database checks: $([[ -n "$DATABASE_URL" ]] && echo "DATABASE_URL set" || echo "off (no DATABASE_URL)")"

failed=()
if [[ -n "$STAGE_DIR" ]]; then
  # A fresh stage has one warm worker per function; a small race of 16 buyers for 16 seats grows
  # the reserve, reservation and cancel pools first, so that the first checks really run side by side.
  say "warming up the local stage: 16 buyers for 16 seats"
  if ! CONCURRENT_REQUESTS=16 TEST_ITERATIONS=1 SEATS=16 QUANTITY=1 "$PYTHON" "$ROOT/tests/race/race.py" |
    grep -E '^(iteration|  - |RESULT)'; then
    failed+=("warm-up race")
  fi
fi
if [[ "$WHAT" != race ]]; then
  for level in $BATS_LEVELS; do
    say "BATS suite at CONCURRENCY=$level against $API_URL"
    level_started=$SECONDS
    if CONCURRENCY="$level" bats "$ROOT/tests/bats"; then
      echo "--- BATS at CONCURRENCY=$level: passed in $((SECONDS - level_started)) s"
    else
      echo "--- BATS at CONCURRENCY=$level: FAILED after $((SECONDS - level_started)) s"
      failed+=("bats CONCURRENCY=$level")
    fi
  done
fi
if [[ "$WHAT" != bats ]]; then
  say "race script at CONCURRENT_REQUESTS=$RACE_CONCURRENCY, TEST_ITERATIONS=$RACE_ITERATIONS against $API_URL"
  if CONCURRENT_REQUESTS="$RACE_CONCURRENCY" TEST_ITERATIONS="$RACE_ITERATIONS" SEATS="${RACE_SEATS:-1}" \
    QUANTITY="${RACE_QUANTITY:-1}" "$PYTHON" "$ROOT/tests/race/race.py"; then
    :
  else
    failed+=("race CONCURRENT_REQUESTS=$RACE_CONCURRENCY")
  fi
  say "race script, quota case: 5 seats of a hall over a tier of 10, CONCURRENT_REQUESTS=$RACE_CONCURRENCY"
  if QUOTA=1 CONCURRENT_REQUESTS="$RACE_CONCURRENCY" TEST_ITERATIONS=1 SEATS=5 QUANTITY=1 \
    "$PYTHON" "$ROOT/tests/race/race.py"; then
    :
  else
    failed+=("race QUOTA=1")
  fi
  say "race script, seated case: every buyer names seat A-1 of a row of 10, CONCURRENT_REQUESTS=$RACE_CONCURRENCY"
  if SEATED=1 CONCURRENT_REQUESTS="$RACE_CONCURRENCY" TEST_ITERATIONS=1 SEATS=10 QUANTITY=1 \
    "$PYTHON" "$ROOT/tests/race/race.py"; then
    :
  else
    failed+=("race SEATED=1")
  fi
fi

if [[ -n "$STAGE_DIR" ]]; then
  errors="$(grep -cE '" 5[0-9]{2} |unhandled|Traceback' "$STAGE_LOG" || true)"
  say "local stage log: $(grep -c '" [1-5][0-9][0-9] ' "$STAGE_LOG" || true) requests, $errors 5xx or unhandled errors"
  if ((errors > 0)); then
    grep -E '" 5[0-9]{2} |unhandled' "$STAGE_LOG" | head -n 10
  fi
fi
if ((${#failed[@]})); then
  say "stage checks FAILED against $API_URL ($STAGE_NAME): ${failed[*]} ($((SECONDS - STARTED)) s)"
  exit 1
fi
say "stage checks passed against $API_URL ($STAGE_NAME) in $((SECONDS - STARTED)) s"
