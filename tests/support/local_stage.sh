# shellcheck shell=bash
# Sourced by the stage runners (tests/stage_checks.sh, tests/load/run.sh): starts a private local
# stage and stops it again, so that each runner can aim at it or at a deployed $API_URL alike.
#
#   local_stage_start PREFIX PORT_RANGE LOG   # PORT_RANGE "3101-3199"; sets and exports API_URL,
#                                             # TICKETS_ADMIN_TOKEN, DATABASE_URL; sets STAGE_PID, STAGE_DIR
#   local_stage_stop                          # SIGTERM, wait (60 s, then SIGKILL), remove STAGE_DIR
#   trap local_stage_exit EXIT                # on failure the end of $STAGE_LOG; then stop, remove the log
#
# The stage gets its own temporary state directory (under /tmp, reachable by the `postgres` user
# PostgreSQL runs as under root), the first free port of the range and a generated organizer
# token. The caller installs `trap local_stage_stop EXIT`. With STAGE_DATABASE_URL set, the stage
# uses that database instead of a private cluster (`make test-pgbouncer`: PgBouncer in front of one).

STAGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGE_PYTHON="${STAGE_PYTHON:-$STAGE_ROOT/.venv/bin/python}"
STAGE_START_TIMEOUT="${STAGE_START_TIMEOUT:-180}"
STAGE_PID=""
STAGE_DIR=""

# stage.json's value for KEY, or nothing.
_stage_value() {
  "$STAGE_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    "$STAGE_DIR/stage.json" "$1" 2>/dev/null
}

# 0 once the stage on PORT answers /health with 200; 1 when its port was taken; 2 on failure.
_stage_start_on() {
  local port=$1 log=$2 deadline url
  (
    cd "$STAGE_ROOT" || exit 1
    unset DATABASE_URL TEST_DATABASE_URL LOCAL_STAGE_EXPIRY_INTERVAL
    if [[ -n "${STAGE_DATABASE_URL:-}" ]]; then export DATABASE_URL="$STAGE_DATABASE_URL"; fi
    export PORT="$port" LOCAL_STAGE_DIR="$STAGE_DIR" TICKETS_ADMIN_TOKEN PYTHONUNBUFFERED=1
    exec "$STAGE_PYTHON" -m localstage
  ) >"$log" 2>&1 </dev/null &
  STAGE_PID=$!
  deadline=$((SECONDS + STAGE_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$STAGE_PID" 2>/dev/null; then
      wait "$STAGE_PID" 2>/dev/null || true
      STAGE_PID=""
      grep -q "is busy" "$log" && return 1
      echo "local stage: it exited while starting; the end of its log ($log):" >&2
      tail -n 40 "$log" >&2
      return 2
    fi
    if [[ -s "$STAGE_DIR/stage.json" ]]; then
      url="$(_stage_value base_url)"
      if [[ -n "$url" ]] && [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/health")" == 200 ]]; then
        return 0
      fi
    fi
    sleep 0.5
  done
  echo "local stage: not ready within $STAGE_START_TIMEOUT s; the end of its log ($log):" >&2
  tail -n 40 "$log" >&2
  return 2
}

local_stage_start() {
  local prefix=$1 range=$2 log=$3 port rc
  [[ -x "$STAGE_PYTHON" ]] || { echo "local stage: $STAGE_PYTHON is missing (make sets up .venv)" >&2; return 2; }
  STAGE_DIR="$(mktemp -d "/tmp/$prefix.XXXXXX")"
  chmod 711 "$STAGE_DIR"
  TICKETS_ADMIN_TOKEN="$prefix-$("$STAGE_PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
  for port in $(seq "${range%-*}" "${range#*-}"); do
    rc=0
    _stage_start_on "$port" "$log" || rc=$?
    if ((rc == 0)); then
      API_URL="$(_stage_value base_url)"
      DATABASE_URL="$(_stage_value database_url)"
      export API_URL TICKETS_ADMIN_TOKEN DATABASE_URL
      return 0
    fi
    ((rc == 1)) || return 2
  done
  echo "local stage: no free port in $range" >&2
  return 2
}

local_stage_stop() {
  local waited=0
  if [[ -n "$STAGE_PID" ]] && kill -0 "$STAGE_PID" 2>/dev/null; then
    kill -TERM "$STAGE_PID" 2>/dev/null || true
    while kill -0 "$STAGE_PID" 2>/dev/null && ((waited < 600)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$STAGE_PID" 2>/dev/null; then
      echo "local stage: pid $STAGE_PID did not stop within 60 s; killing it and its PostgreSQL" >&2
      kill -KILL "$STAGE_PID" 2>/dev/null || true
      if [[ -f "$STAGE_DIR/pgdata/postmaster.pid" ]]; then
        kill -TERM "$(head -n 1 "$STAGE_DIR/pgdata/postmaster.pid")" 2>/dev/null || true
        sleep 2
      fi
    fi
    wait "$STAGE_PID" 2>/dev/null || true
  fi
  STAGE_PID=""
  if [[ -n "$STAGE_DIR" ]]; then rm -rf "$STAGE_DIR"; fi
  STAGE_DIR=""
  return 0
}

# A runner's EXIT trap: on a failure the end of the stage's log ($STAGE_LOG, when set), then
# local_stage_stop and the log removed; the runner's exit status stays.
local_stage_exit() {
  local rc=$?
  if ((rc != 0)) && [[ -n "${STAGE_LOG:-}" && -s "$STAGE_LOG" ]]; then
    echo "--- the last lines of the local stage's log ($STAGE_LOG):" >&2
    tail -n 40 "$STAGE_LOG" >&2
  fi
  local_stage_stop
  if [[ -n "${STAGE_LOG:-}" ]]; then rm -f "$STAGE_LOG"; fi
  exit "$rc"
}
