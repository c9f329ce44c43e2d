# Helpers of the BATS stage checks: configuration, HTTP calls, concurrent reservations, database checks.
# Loaded by concurrency.bats; needs bash, curl, jq, flock (util-linux) and, for the database
# checks, psql. See README.md.

REPO_ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
# shellcheck disable=SC2034 # used by concurrency.bats
PURGE_SQL="$REPO_ROOT/tests/support/purge_event.sql"
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# Where to send requests: $API_URL, else the local stage of `make dev` (its stage.json).
# Sets and exports API_URL, TICKETS_ADMIN_TOKEN, DATABASE_URL (may stay empty), STAGE_DESCRIPTION.
resolve_stage() {
  if [[ -z "${API_URL:-}" ]]; then
    local stage_json="${LOCAL_STAGE_DIR:-$REPO_ROOT/.local}/stage.json"
    if [[ ! -r "$stage_json" ]]; then
      echo "API_URL is not set and no local stage is running ($stage_json is missing)." >&2
      echo "Start one with 'make dev', or set API_URL and TICKETS_ADMIN_TOKEN for a deployed stage." >&2
      return 1
    fi
    API_URL="$(jq -r '.base_url' "$stage_json")"
    TICKETS_ADMIN_TOKEN="${TICKETS_ADMIN_TOKEN:-$(jq -r '.token' "$stage_json")}"
    # The database behind the local stage is the one in its stage.json, whatever the shell says.
    DATABASE_URL="$(jq -r '.database_url // empty' "$stage_json")"
    STAGE_DESCRIPTION="local stage from $stage_json"
  else
    STAGE_DESCRIPTION="API_URL"
  fi
  API_URL="${API_URL%/}"
  if [[ -z "${TICKETS_ADMIN_TOKEN:-}" ]]; then
    echo "TICKETS_ADMIN_TOKEN is not set: the organizer token of $API_URL is needed to create events." >&2
    return 1
  fi
  export API_URL TICKETS_ADMIN_TOKEN STAGE_DESCRIPTION
  export DATABASE_URL="${DATABASE_URL:-}"
}

# Prints a line on the terminal (bats shows fd 3), prefixed as a TAP comment.
note() {
  echo "# $*" >&3
}

# api METHOD PATH [JSON_BODY [extra curl args...]]: sets $HTTP_STATUS and $HTTP_BODY.
api() {
  local method=$1 path=$2 body=${3:-} out rc
  shift 3 2>/dev/null || shift $#
  local args=(-sS --max-time "${REQUEST_TIMEOUT:-60}" -X "$method" -w '%{http_code}'
              -H 'Content-Type: application/json' -o "$BATS_FILE_TMPDIR/api.body")
  [[ -n "$body" ]] && args+=(--data "$body")
  rc=0
  out="$(curl "${args[@]}" "$@" "$API_URL$path")" || rc=$?
  HTTP_STATUS="$out"
  HTTP_BODY="$(cat "$BATS_FILE_TMPDIR/api.body" 2>/dev/null || true)"
  if ((rc != 0)); then
    HTTP_STATUS="curl_exit_$rc"
  fi
}

# Organizer call: adds the bearer token.
admin_api() {
  local method=$1 path=$2 body=${3:-}
  api "$method" "$path" "$body" -H "Authorization: Bearer $TICKETS_ADMIN_TOKEN"
}

# expect_eq ACTUAL EXPECTED WHAT: fails the test with a readable message.
expect_eq() {
  if [[ "$1" != "$2" ]]; then
    echo "FAILED: $3: expected '$2', got '$1'" >&2
    return 1
  fi
}

# post_event PAYLOAD: creates the event (organizer), records it for teardown and prints
# "event_id tier_id" (its first tier).
post_event() {
  admin_api POST /events "$1"
  if [[ "$HTTP_STATUS" != 201 ]]; then
    echo "POST /events answered $HTTP_STATUS: $HTTP_BODY" >&2
    return 1
  fi
  local event_id tier_id
  event_id="$(jq -r '.event_id' <<<"$HTTP_BODY")"
  tier_id="$(jq -r '.tiers[0].tier_id' <<<"$HTTP_BODY")"
  [[ "$event_id" =~ $UUID_RE && "$tier_id" =~ $UUID_RE ]] || {
    echo "POST /events gave no event_id/tier_id: $HTTP_BODY" >&2
    return 1
  }
  echo "$event_id" >>"$BATS_FILE_TMPDIR/events"
  echo "$event_id $tier_id"
}

# create_event NAME CAPACITY MAX_PER_ORDER [HALL]: HALL, when given, is a quota over the tier: prints "event_id tier_id", records the event for teardown.
create_event() {
  local name=$1 capacity=$2 max_per_order=$3 hall=${4:-} payload
  payload="$(jq -cn --arg name "$RUN_ID-$name" --argjson capacity "$capacity" --argjson mpo "$max_per_order" \
    --arg hall "$hall" \
    '{name: $name, venue: "bats stage checks", starts_at: "2031-06-01T19:00:00Z", currency: "EUR",
      hold_seconds: 600, tiers: [{name: "General", capacity: $capacity, price: 2500, max_per_order: $mpo}]}
     + (if $hall == "" then {} else {quotas: [{name: "Hall", capacity: ($hall | tonumber), tiers: ["General"]}]} end)')"
  post_event "$payload"
}

# create_seated_event NAME SEATS: an event whose one tier has assigned seats, row A of SEATS
# (A-1 ... A-SEATS); prints "event_id tier_id".
create_seated_event() {
  local name=$1 seats=$2 payload
  payload="$(jq -cn --arg name "$RUN_ID-$name" --argjson seats "$seats" \
    '{name: $name, venue: "bats stage checks", starts_at: "2031-06-01T19:00:00Z", currency: "EUR",
      hold_seconds: 600, tiers: [{name: "Stalls", seating: "assigned", rows: [{row: "A", seats: $seats}],
                                  price: 2500, max_per_order: 10}]}')"
  post_event "$payload"
}

# fire_reservations NAME EVENT_ID TIER_ID QUANTITY COUNT [OFFER_CODE] [SEATS_JSON]
# COUNT buyers (distinct X-Device-Id, unique Idempotency-Key) reserve QUANTITY seats at the same
# moment: each is a background curl waiting on a shared flock gate that opens once all are ready.
# Writes $BATS_FILE_TMPDIR/NAME.tsv, one line per buyer:
#   buyer  status  code  reservation_id  available_seats  seconds  message
# (status is the HTTP status, or curl_exit_N when the request itself failed), and records the
# reservations it got for teardown.
fire_reservations() {
  local name=$1 event_id=$2 tier_id=$3 quantity=$4 count=$5 offer_code=${6:-} seats=${7:-}
  local dir="$BATS_FILE_TMPDIR/$name" gate i lock_fd payload
  mkdir -p "$dir"
  gate="$dir/gate"
  : >"$gate"
  payload="$(jq -cn --arg tier "$tier_id" --argjson q "$quantity" --arg offer "$offer_code" --arg seats "$seats" \
    '{quantity: $q, tier_id: $tier} + (if $offer == "" then {} else {offer_code: $offer} end)
     + (if $seats == "" then {} else {seats: ($seats | fromjson)} end)')"
  exec {lock_fd}>"$gate"
  flock -x "$lock_fd"
  local pids=()
  for ((i = 1; i <= count; i++)); do
    (
      touch "$dir/$i.ready"
      rc=0
      flock -s "$gate" curl -sS --max-time "${REQUEST_TIMEOUT:-60}" -o "$dir/$i.body" \
        -w '%{http_code} %{time_total}\n' -X POST "$API_URL/events/$event_id/reservations" \
        -H 'Content-Type: application/json' \
        -H "Idempotency-Key: $RUN_ID-$name-$i" \
        -H "X-Device-Id: $RUN_ID-$name-buyer-$i" \
        --data "$payload" >"$dir/$i.meta" 2>"$dir/$i.err" || rc=$?
      echo "$rc" >"$dir/$i.rc"
    ) 3>&- {lock_fd}>&- &
    pids+=($!)
  done
  local ready=0 waited=0
  while ((ready < count)); do
    ready=$(find "$dir" -name '*.ready' | wc -l)
    sleep 0.02
    waited=$((waited + 1))
    ((waited < 3000)) || break # 60 s: give up on the gate rather than hang
  done
  sleep 0.05 # let the last ones reach flock
  flock -u "$lock_fd"
  exec {lock_fd}>&-
  wait "${pids[@]}"

  # One jq for all bodies (a buyer's line starts with its number); a body that is not JSON makes
  # jq stop, and then each body is read on its own.
  local -A parsed=()
  local defs='def nonempty: if . == null or . == "" then "-" else tostring | gsub("[\t\n]"; " ") end;'
  local fields_of='[(.error.code | nonempty), (.reservation_id | nonempty), (.error.available_seats | nonempty),
                    (.error.message | nonempty)]'
  local lines line key
  if lines="$(cd "$dir" && jq -r "$defs [input_filename | ltrimstr(\"./\") | rtrimstr(\".body\")] + $fields_of | @tsv" \
    ./*.body 2>/dev/null)"; then
    while IFS= read -r line; do
      key="${line%%$'\t'*}"
      parsed[$key]="${line#*$'\t'}"
    done <<<"$lines"
  else
    for ((i = 1; i <= count; i++)); do
      [[ -s "$dir/$i.body" ]] || continue
      parsed[$i]="$(jq -r "$defs $fields_of | @tsv" "$dir/$i.body" 2>/dev/null)" ||
        parsed[$i]="$(printf 'not_json\t-\t-\t%s ' "$(head -c 200 "$dir/$i.body" | tr '\t\n' '  ')")"
    done
  fi

  local tsv="$BATS_FILE_TMPDIR/$name.tsv" rc status seconds fields code reservation_id available message
  : >"$tsv"
  for ((i = 1; i <= count; i++)); do
    rc=missing status=- seconds=-
    # shellcheck disable=SC2015 # read fails at a missing newline but still sets the variables
    [[ -r "$dir/$i.rc" ]] && read -r rc <"$dir/$i.rc" || true
    # shellcheck disable=SC2015
    [[ -r "$dir/$i.meta" ]] && read -r status seconds <"$dir/$i.meta" || true
    fields="${parsed[$i]:-}"
    if [[ "$rc" != 0 ]]; then
      status="curl_exit_$rc"
      fields="curl_error"$'\t-\t-\t'"$(tr '\t\n' '  ' <"$dir/$i.err" 2>/dev/null) "
    elif [[ -z "$fields" ]]; then
      fields=$'no_body\t-\t-\t-'
    fi
    IFS=$'\t' read -r code reservation_id available message <<<"$fields"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "${status:--}" "${code:--}" "${reservation_id:--}" \
      "${available:--}" "${seconds:--}" "${message:--}" >>"$tsv"
    if [[ "$status" == 201 && "$reservation_id" =~ $UUID_RE ]]; then
      echo "$reservation_id" >>"$BATS_FILE_TMPDIR/reservations"
      echo "$reservation_id $(jq -r '.reservation_secret' "$dir/$i.body")" >>"$BATS_FILE_TMPDIR/secrets"
    fi
  done
}

# secret_of ID: the reservation_secret its reserve answered (the holder's X-Reservation-Secret).
secret_of() {
  awk -v id="$1" '$1 == id { print $2; exit }' "$BATS_FILE_TMPDIR/secrets" 2>/dev/null
}

# outcome_count NAME STATUS [CODE]: how many buyers of fire_reservations NAME got STATUS (and CODE).
outcome_count() {
  local name=$1 status=$2 code=${3:-}
  awk -F'\t' -v s="$status" -v c="$code" '$2 == s && (c == "" || $3 == c) { n++ } END { print n + 0 }' \
    "$BATS_FILE_TMPDIR/$name.tsv"
}

# outcome_table NAME: "count status code" lines, for messages.
outcome_table() {
  awk -F'\t' '{ print $2, $3 }' "$BATS_FILE_TMPDIR/$1.tsv" | sort | uniq -c | sed 's/^ */    /'
}

# The reservations won by fire_reservations NAME, one id per line.
won_reservations() {
  awk -F'\t' '$2 == 201 { print $4 }' "$BATS_FILE_TMPDIR/$1.tsv"
}

# Prints the slowest response time and the outcome table of a round on the terminal.
report_round() {
  local name=$1 what=$2 slowest
  slowest="$(awk -F'\t' '$6 != "-" && $6 > m { m = $6 } END { printf "%.3f", m + 0 }' "$BATS_FILE_TMPDIR/$name.tsv")"
  note "$what: $(awk -F'\t' '{ print $2 ($3 == "-" ? "" : " " $3) }' "$BATS_FILE_TMPDIR/$name.tsv" | sort | uniq -c |
    awk '{ n = $1; $1 = ""; printf "%s%s x%s", sep, n, $0; sep = ", " }'); slowest ${slowest}s"
}

# assert_round NAME WINS LOSER_CODE [LOSER_AVAILABLE]: exactly WINS buyers got 201 and every
# other one 409 LOSER_CODE with a message and, when given, error.available_seats = LOSER_AVAILABLE.
assert_round() {
  local name=$1 wins=$2 loser_code=$3 loser_available=${4:-}
  local tsv="$BATS_FILE_TMPDIR/$name.tsv" total got_wins got_losers
  total=$(wc -l <"$tsv")
  got_wins=$(outcome_count "$name" 201)
  got_losers=$(outcome_count "$name" 409 "$loser_code")
  if ((got_wins != wins || got_losers != total - wins)); then
    echo "FAILED: $total buyers: expected $wins x 201 and $((total - wins)) x 409 $loser_code; got:" >&2
    outcome_table "$name" >&2
    echo "the first unexpected answers (buyer status code reservation available seconds message):" >&2
    awk -F'\t' -v c="$loser_code" '!($2 == 201 || ($2 == 409 && $3 == c))' "$tsv" | head -5 >&2
    return 1
  fi
  # Every loser: the contract's error shape, a sentence a person can act on, no "retry".
  local bad
  bad="$(awk -F'\t' -v a="$loser_available" '$2 == 409 && ($7 == "-" || length($7) < 10 || tolower($7) ~ /retry|try again|another process/ || (a != "" && $5 != a))' "$tsv")"
  if [[ -n "$bad" ]]; then
    echo "FAILED: 409 $loser_code answers without a usable message, asking to retry, or with available_seats other than '${loser_available}':" >&2
    head -5 <<<"$bad" >&2
    return 1
  fi
  if [[ "$loser_code" == sold_out ]]; then
    bad="$(awk -F'\t' '$2 == 409 && tolower($7) !~ /sold out/' "$tsv")"
    if [[ -n "$bad" ]]; then
      echo "FAILED: sold_out answers whose message does not say the tier is sold out:" >&2
      head -5 <<<"$bad" >&2
      return 1
    fi
  fi
  # Distinct holds: no reservation id or booking reference handed out twice.
  local dir="$BATS_FILE_TMPDIR/$name" ids refs
  ids=$(won_reservations "$name" | sort -u | grep -c . || true)
  expect_eq "$ids" "$wins" "distinct reservation ids among the winners of $name"
  refs=$(awk -F'\t' '$2 == 201 { print $1 }' "$tsv" | while read -r i; do jq -r '.booking_reference' "$dir/$i.body"; done |
    grep -E '^[A-Z]+-[0-9A-Z]{4,}$' | sort -u | grep -c . || true)
  expect_eq "$refs" "$wins" "distinct well-formed booking references among the winners of $name"
}

# parallel_calls DIR METHOD PATH_PREFIX ID...: one request per id ($API_URL$PATH_PREFIX$ID), all at once,
# each with its reservation's secret.
# Then prints one line per id: "id http_status body_status" (body_status: the reservation's
# .status, else .error.code, else -).
parallel_calls() {
  local dir=$1 method=$2 prefix=$3 n=0 id
  shift 3
  (($# > 0)) || return 0
  mkdir -p "$dir"
  local pids=()
  for id in "$@"; do
    n=$((n + 1))
    echo "$id" >"$dir/$n.id"
    curl -sS --max-time "${REQUEST_TIMEOUT:-60}" -X "$method" -o "$dir/$n.body" -w '%{http_code}\n' \
      -H "X-Reservation-Secret: $(secret_of "$id")" \
      "$API_URL$prefix$id" >"$dir/$n.status" 2>"$dir/$n.err" 3>&- &
    pids+=($!)
  done
  wait "${pids[@]}"
  # One jq for all bodies; when one is missing or not JSON, each is read on its own.
  local -A body_status=()
  local lines line key i
  local program='[(input_filename | rtrimstr(".body")), (.status // .error.code // "-")] | @tsv'
  if ! lines="$(cd "$dir" && jq -r "$program" $(seq -f '%g.body' 1 "$n") 2>/dev/null)"; then
    lines="$(cd "$dir" && for ((i = 1; i <= n; i++)); do
      jq -r "$program" "$i.body" 2>/dev/null || printf '%s\tnot_json\n' "$i"
    done)"
  fi
  while IFS=$'\t' read -r key line; do
    if [[ -n "$key" ]]; then body_status[$key]="$line"; fi
  done <<<"$lines"
  local status i
  for ((i = 1; i <= n; i++)); do
    read -r id <"$dir/$i.id"
    status=curl_error
    read -r status <"$dir/$i.status" || true
    [[ "$status" != 000 ]] || status=curl_error
    echo "$id $status ${body_status[$i]:--}"
  done
}

# assert_holds NAME EVENT_ID TIER_ID QUANTITY: every winner's 201 body is a held reservation of
# QUANTITY seats of this event and tier, and so is GET /reservations/{id} (read back all at once).
assert_holds() {
  local name=$1 event_id=$2 tier_id=$3 quantity=$4
  local dir="$BATS_FILE_TMPDIR/$name" tsv="$BATS_FILE_TMPDIR/$name.tsv" bad
  # shellcheck disable=SC2016 # a jq program
  bad="$(awk -F'\t' '$2 == 201 { print $1 ".body" }' "$tsv" | (cd "$dir" && xargs -r jq -r \
    --arg want "held $event_id $tier_id $quantity $((quantity * 2500))" \
    '[.status, .event_id, .tier_id, .quantity, .total_amount] | map(tostring) | join(" ")
     | select(. != $want)'))"
  if [[ -n "$bad" ]]; then
    echo "FAILED: 201 bodies that are not a hold of $quantity seats of event $event_id, tier $tier_id, total $((quantity * 2500)):" >&2
    head -5 <<<"$bad" >&2
    return 1
  fi
  local read_back
  # shellcheck disable=SC2046
  read_back="$(parallel_calls "$dir/read-back" GET /reservations/ $(won_reservations "$name") | awk '$2 " " $3 != "200 held"')"
  if [[ -n "$read_back" ]]; then
    echo "FAILED: reservations read back (id, HTTP status, status) that are not 200 held:" >&2
    head -5 <<<"$read_back" >&2
    return 1
  fi
}

# assert_available EVENT_ID SEATS: GET /events/{id}/availability reads SEATS (event and tier),
# and `available` is false exactly when SEATS is 0.
assert_available() {
  local event_id=$1 seats=$2
  api GET "/events/$event_id/availability"
  expect_eq "$HTTP_STATUS" 200 "GET /events/$event_id/availability"
  expect_eq "$(jq -r '.available_seats' <<<"$HTTP_BODY")" "$seats" "available_seats of event $event_id"
  expect_eq "$(jq -r '.tiers[0].available_seats' <<<"$HTTP_BODY")" "$seats" "available_seats of its tier"
  local available=true
  ((seats > 0)) || available=false
  expect_eq "$(jq -r '.available' <<<"$HTTP_BODY")" "$available" "available flag of event $event_id"
}

# True when DATABASE_URL is set and answers (psql installed).
db_reachable() {
  [[ -n "${DATABASE_URL:-}" ]] && command -v psql >/dev/null &&
    PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

# psql_event EVENT_ID: runs the SQL on stdin with :'event_id' set; tab-separated rows.
psql_event() {
  PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -v event_id="$1"
}

# assert_db EVENT_ID CAPACITY HELD CONFIRMED RESERVATIONS: the database agrees with the API, when
# it is reachable: held + confirmed seats = capacity - available_seats (the API's), seats_taken =
# held + confirmed, no tier over capacity, and exactly RESERVATIONS live (held or confirmed)
# reservation rows: none beyond the ones the API handed out.
assert_db() {
  local event_id=$1 capacity=$2 held=$3 confirmed=$4 reservations=$5
  [[ "${DB_REACHABLE:-0}" == 1 ]] || return 0 # setup_file said so once
  local row
  row="$(psql_event "$event_id" <<'SQL'
SELECT t.capacity, i.capacity, i.seats_taken,
       coalesce(sum(r.quantity) FILTER (WHERE r.status = 'held' AND r.expires_at > clock_timestamp()), 0),
       coalesce(sum(r.quantity) FILTER (WHERE r.status = 'confirmed'), 0),
       count(r.reservation_id) FILTER (WHERE r.status IN ('held', 'confirmed'))
FROM tiers t
JOIN tier_inventory i ON i.tier_id = t.tier_id
LEFT JOIN reservations r ON r.tier_id = t.tier_id
WHERE t.event_id = :'event_id'
GROUP BY t.tier_id, t.capacity, i.capacity, i.seats_taken;
SQL
)"
  if [[ -z "$row" ]]; then
    echo "FAILED: event $event_id is not in the database at DATABASE_URL: is it the database behind $API_URL?" >&2
    return 1
  fi
  local t_capacity i_capacity seats_taken db_held db_confirmed live_rows
  IFS=$'\t' read -r t_capacity i_capacity seats_taken db_held db_confirmed live_rows <<<"$row"
  api GET "/events/$event_id/availability"
  local api_available
  api_available="$(jq -r '.tiers[0].available_seats' <<<"$HTTP_BODY")"
  expect_eq "$t_capacity" "$capacity" "tiers.capacity in the database"
  expect_eq "$i_capacity" "$capacity" "tier_inventory.capacity in the database"
  expect_eq "$db_held" "$held" "seats in live holds in the database"
  expect_eq "$db_confirmed" "$confirmed" "seats confirmed in the database"
  expect_eq "$((db_held + db_confirmed))" "$((capacity - api_available))" \
    "held + confirmed seats in the database = capacity - available_seats from the API"
  expect_eq "$seats_taken" "$((db_held + db_confirmed))" "tier_inventory.seats_taken = held + confirmed seats"
  if ((db_held + db_confirmed > capacity || seats_taken > capacity)); then
    echo "FAILED: OVERSOLD: $((db_held + db_confirmed)) seats held or sold, seats_taken $seats_taken, capacity $capacity" >&2
    return 1
  fi
  expect_eq "$live_rows" "$reservations" "live (held or confirmed) reservation rows of the event in the database"
  note "  database: $db_held held + $db_confirmed confirmed of $capacity, seats_taken $seats_taken, $live_rows live reservations"
}

# assert_db_counters EVENT_ID SEATS: every counter of the event (its tier's and its quotas') has
# exactly SEATS seats taken, as many as its live holds and sales hold, and none is over capacity.
assert_db_counters() {
  local event_id=$1 seats=$2
  [[ "${DB_REACHABLE:-0}" == 1 ]] || return 0
  local rows line counter capacity taken counted
  rows="$(psql_event "$event_id" <<'SQL'
SELECT c.counter_id, c.capacity, c.capacity - (SELECT sum(free) FROM counter_shares s WHERE s.counter_id = c.counter_id),
       coalesce((SELECT sum(quantity) FROM reservations r WHERE r.tier_id IN (SELECT counter_tiers(c.counter_id))
                 AND r.status IN ('held', 'confirmed')), 0)
FROM counters c
WHERE c.counter_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id'
                       UNION ALL SELECT quota_id FROM quotas WHERE event_id = :'event_id');
SQL
)"
  expect_eq "$(grep -c . <<<"$rows")" 2 "counters of event $event_id (its tier and its quota)"
  while IFS=$'\t' read -r counter capacity taken counted; do
    expect_eq "$taken" "$seats" "seats taken on counter $counter"
    expect_eq "$counted" "$seats" "seats of live holds and sales counted by counter $counter"
    ((taken <= capacity)) || { echo "FAILED: OVERSOLD counter $counter: $taken of $capacity" >&2; return 1; }
  done <<<"$rows"
  note "  database: both counters hold $seats seats"
}
