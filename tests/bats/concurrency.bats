#!/usr/bin/env bats
# Concurrent purchases against limited seats, over HTTP, on the local stage or a deployed one.
#
#   bats tests/bats                                   # the local stage of `make dev`
#   API_URL=https://… TICKETS_ADMIN_TOKEN=… [DATABASE_URL=…] bats tests/bats
#   CONCURRENCY=100 bats tests/bats                   # buyers per round (default 50)
#
# Every buyer has its own X-Device-Id and Idempotency-Key; organizer calls carry the bearer
# token. Events are named bats-<run>-<case>; teardown cancels every hold the suite made and,
# when DATABASE_URL answers, purges its events (tests/support/purge_event.sql). See README.md.

setup_file() {
  load helpers
  resolve_stage
  CONCURRENCY="${CONCURRENCY:-50}"
  if ! [[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]]; then
    echo "CONCURRENCY must be a positive whole number, not '$CONCURRENCY'" >&2
    return 1
  fi
  for tool in curl jq flock; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; return 1; }
  done
  RUN_ID="bats-$(date -u +%Y%m%dT%H%M%SZ)-$$"
  export CONCURRENCY RUN_ID
  : >"$BATS_FILE_TMPDIR/events"
  : >"$BATS_FILE_TMPDIR/reservations"
  : >"$BATS_FILE_TMPDIR/secrets"

  api GET /health
  if [[ "$HTTP_STATUS" != 200 ]]; then
    echo "GET $API_URL/health answered $HTTP_STATUS: $HTTP_BODY" >&2
    return 1
  fi
  DB_REACHABLE=0
  if db_reachable; then
    DB_REACHABLE=1
  elif [[ -n "$DATABASE_URL" ]]; then
    note "DATABASE_URL is set but does not answer (or psql is missing): database checks are skipped"
  fi
  export DB_REACHABLE
  note "target: $API_URL ($STAGE_DESCRIPTION); concurrency $CONCURRENCY; run $RUN_ID;" \
    "database checks: $([[ $DB_REACHABLE == 1 ]] && echo on || echo off)"

  # The events, with known constraints: "event_id tier_id" each (a failed create fails the setup).
  local ids
  ids="$(create_event many 10 10)"
  read -r MANY_EVENT MANY_TIER <<<"$ids"
  ids="$(create_event exact 10 10)"
  read -r EXACT_EVENT EXACT_TIER <<<"$ids"
  ids="$(create_event over 10 10)"
  read -r OVER_EVENT OVER_TIER <<<"$ids"
  ids="$(create_event five 5 5)"
  read -r FIVE_EVENT FIVE_TIER <<<"$ids"
  ids="$(create_event partial 10 3)"
  read -r PARTIAL_EVENT PARTIAL_TIER <<<"$ids"
  ids="$(create_event recycle 10 10)"
  read -r RECYCLE_EVENT RECYCLE_TIER <<<"$ids"
  ids="$(create_event offer 50 10)"
  read -r OFFER_EVENT OFFER_TIER <<<"$ids"
  admin_api POST "/events/$OFFER_EVENT/offers" '{"code": "FIRST5", "percent_off": 20, "max_claims": 5}'
  [[ "$HTTP_STATUS" == 201 ]] || { echo "POST /events/$OFFER_EVENT/offers answered $HTTP_STATUS: $HTTP_BODY" >&2; return 1; }
  export OFFER_EVENT OFFER_TIER
  ids="$(create_seated_event seat 10)"
  read -r SEAT_EVENT SEAT_TIER <<<"$ids"
  export SEAT_EVENT SEAT_TIER
  ids="$(create_event hall 20 10 8)"
  read -r HALL_EVENT HALL_TIER <<<"$ids"
  export HALL_EVENT HALL_TIER MANY_EVENT MANY_TIER EXACT_EVENT EXACT_TIER OVER_EVENT OVER_TIER FIVE_EVENT FIVE_TIER \
    PARTIAL_EVENT PARTIAL_TIER RECYCLE_EVENT RECYCLE_TIER
}

setup() {
  load helpers
}

teardown_file() {
  load helpers
  local problems=0 id http status cancelled=0 kept=0
  # Every hold the suite made goes back, all at once (a confirmed one answers 409 reservation_confirmed).
  # shellcheck disable=SC2046 # one argument per reservation id
  while read -r id http status; do
    case "$http $status" in
      "200 cancelled") cancelled=$((cancelled + 1)) ;;
      "409 reservation_confirmed" | "410 reservation_expired") kept=$((kept + 1)) ;;
      *)
        echo "teardown: DELETE /reservations/$id answered $http $status" >&2
        problems=$((problems + 1))
        ;;
    esac
  done < <(parallel_calls "$BATS_FILE_TMPDIR/teardown" DELETE /reservations/ \
    $(sort -u "$BATS_FILE_TMPDIR/reservations" 2>/dev/null))
  local events purged=0
  events=$(grep -c . "$BATS_FILE_TMPDIR/events" 2>/dev/null || true)
  events=${events:-0}
  if [[ "${DB_REACHABLE:-0}" == 1 ]]; then
    while read -r id; do
      [[ -n "$id" ]] || continue
      if PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v event_id="$id" \
        -f "$PURGE_SQL" >/dev/null 2>"$BATS_FILE_TMPDIR/purge.err"; then
        purged=$((purged + 1))
      else
        echo "teardown: purging event $id failed: $(cat "$BATS_FILE_TMPDIR/purge.err")" >&2
        problems=$((problems + 1))
      fi
    done <"$BATS_FILE_TMPDIR/events"
    note "teardown: $cancelled holds cancelled, $kept already final; $purged of $events events purged from the database"
  else
    note "teardown: $cancelled holds cancelled, $kept already final; $events events left on the stage" \
      "(no database access): names start with ${RUN_ID:-bats-}"
  fi
  ((problems == 0))
}

@test "CONCURRENCY buyers race for 10 seats: exactly min(10, CONCURRENCY) get a hold, the rest 409 sold_out" {
  local wins=$((CONCURRENCY < 10 ? CONCURRENCY : 10))
  fire_reservations many "$MANY_EVENT" "$MANY_TIER" 1 "$CONCURRENCY"
  report_round many "$CONCURRENCY buyers x 1 seat, 10 seats"
  assert_round many "$wins" sold_out 0
  assert_holds many "$MANY_EVENT" "$MANY_TIER" 1
  assert_available "$MANY_EVENT" $((10 - wins))
  assert_db "$MANY_EVENT" 10 "$wins" 0 "$wins"
}

@test "exactly at capacity: 10 simultaneous buyers for 10 seats all get a hold; availability reads 0" {
  fire_reservations exact "$EXACT_EVENT" "$EXACT_TIER" 1 10
  report_round exact "10 buyers x 1 seat, 10 seats"
  assert_round exact 10 sold_out 0
  assert_holds exact "$EXACT_EVENT" "$EXACT_TIER" 1
  assert_available "$EXACT_EVENT" 0
  assert_db "$EXACT_EVENT" 10 10 0 10
}

@test "one over capacity: 11 simultaneous buyers for 10 seats: 10 holds, 1 x 409 sold_out" {
  fire_reservations over "$OVER_EVENT" "$OVER_TIER" 1 11
  report_round over "11 buyers x 1 seat, 10 seats"
  assert_round over 10 sold_out 0
  assert_holds over "$OVER_EVENT" "$OVER_TIER" 1
  assert_available "$OVER_EVENT" 0
  assert_db "$OVER_EVENT" 10 10 0 10
}

@test "10 buyers each ask for all 5 seats: one wins, nine get 409 sold_out; the winner confirms and gets 5 tickets" {
  fire_reservations five "$FIVE_EVENT" "$FIVE_TIER" 5 10
  report_round five "10 buyers x 5 seats, 5 seats"
  assert_round five 1 sold_out 0
  assert_holds five "$FIVE_EVENT" "$FIVE_TIER" 5
  assert_available "$FIVE_EVENT" 0
  assert_db "$FIVE_EVENT" 5 5 0 1

  local winner
  winner="$(won_reservations five)"
  api POST "/reservations/$winner/confirm" '{"payment_token": "tok_visa"}' -H "Idempotency-Key: $RUN_ID-five-confirm" \
    -H "X-Reservation-Secret: $(secret_of "$winner")"
  expect_eq "$HTTP_STATUS" 200 "POST /reservations/$winner/confirm ($HTTP_BODY)"
  expect_eq "$(jq -r '.status' <<<"$HTTP_BODY")" confirmed "status after confirm"
  expect_eq "$(jq -r '.tickets | length' <<<"$HTTP_BODY")" 5 "tickets of the confirmed reservation"
  expect_eq "$(jq -r '[.tickets[].ticket_code] | unique | map(select(length >= 16)) | length' <<<"$HTTP_BODY")" 5 \
    "distinct, unguessable-length ticket codes"
  expect_eq "$(jq -r '.payment.status' <<<"$HTTP_BODY")" captured "payment status"
  expect_eq "$(jq -r '.payment.amount == .total_amount and .total_amount == 12500' <<<"$HTTP_BODY")" true \
    "payment amount = total_amount = 5 x 2500"

  api GET "/reservations/$winner" "" -H "X-Reservation-Secret: $(secret_of "$winner")"
  expect_eq "$(jq -r '[.status, (.tickets | length)] | map(tostring) | join(" ")' <<<"$HTTP_BODY")" "confirmed 5" \
    "reservation read back after confirm (status, tickets)"
  assert_available "$FIVE_EVENT" 0
  assert_db "$FIVE_EVENT" 5 0 5 1
  if [[ "$DB_REACHABLE" == 1 ]]; then
    local sold
    sold="$(psql_event "$FIVE_EVENT" <<'SQL'
SELECT (SELECT count(*) FROM tickets WHERE event_id = :'event_id') || ' ' ||
       (SELECT count(*) FROM payments p JOIN reservations r USING (reservation_id)
        WHERE r.event_id = :'event_id' AND p.status = 'captured');
SQL
)"
    expect_eq "$sold" "5 1" "tickets and captured payments of the event in the database"
  fi
}

@test "CONCURRENCY buyers ask for 3 of 10 seats: 3 holds, the rest 409 insufficient_inventory (1 left); the last seat still sells" {
  local wins=$((CONCURRENCY < 3 ? CONCURRENCY : 3))
  fire_reservations partial "$PARTIAL_EVENT" "$PARTIAL_TIER" 3 "$CONCURRENCY"
  report_round partial "$CONCURRENCY buyers x 3 seats, 10 seats"
  assert_round partial "$wins" insufficient_inventory 1
  assert_holds partial "$PARTIAL_EVENT" "$PARTIAL_TIER" 3
  assert_available "$PARTIAL_EVENT" $((10 - 3 * wins))
  assert_db "$PARTIAL_EVENT" 10 $((3 * wins)) 0 "$wins"

  # Never refused while the seats asked for are free: what is left (1 seat) sells, then sold_out.
  local left=$((10 - 3 * wins)) buys=0 take
  while ((left > 0)); do
    take=$((left < 3 ? left : 3))
    buys=$((buys + 1))
    fire_reservations "partial-last-$buys" "$PARTIAL_EVENT" "$PARTIAL_TIER" "$take" 1
    assert_round "partial-last-$buys" 1 sold_out 0
    left=$((left - take))
  done
  assert_available "$PARTIAL_EVENT" 0
  fire_reservations partial-after "$PARTIAL_EVENT" "$PARTIAL_TIER" 1 1
  assert_round partial-after 0 sold_out 0
  assert_db "$PARTIAL_EVENT" 10 10 0 $((wins + buys))
}

@test "cancelled holds free their seats at once: cancel all concurrently, then CONCURRENCY buyers race again" {
  local wins=$((CONCURRENCY < 10 ? CONCURRENCY : 10))
  fire_reservations recycle-1 "$RECYCLE_EVENT" "$RECYCLE_TIER" 1 "$CONCURRENCY"
  assert_round recycle-1 "$wins" sold_out 0
  assert_available "$RECYCLE_EVENT" $((10 - wins))

  local cancels bad
  # shellcheck disable=SC2046
  cancels="$(parallel_calls "$BATS_FILE_TMPDIR/recycle-cancel" DELETE /reservations/ $(won_reservations recycle-1))"
  expect_eq "$(grep -c ' 200 cancelled$' <<<"$cancels" || true)" "$wins" "DELETE answers 200 cancelled"
  bad="$(grep -v ' 200 cancelled$' <<<"$cancels" || true)"
  expect_eq "$bad" "" "DELETE answers other than 200 cancelled"
  assert_available "$RECYCLE_EVENT" 10
  assert_db "$RECYCLE_EVENT" 10 0 0 0

  fire_reservations recycle-2 "$RECYCLE_EVENT" "$RECYCLE_TIER" 1 "$CONCURRENCY"
  report_round recycle-2 "$CONCURRENCY buyers x 1 seat after cancelling $wins holds"
  assert_round recycle-2 "$wins" sold_out 0
  assert_available "$RECYCLE_EVENT" $((10 - wins))
  assert_db "$RECYCLE_EVENT" 10 "$wins" 0 "$wins"
}

@test "a quota binds below its tier: CONCURRENCY buyers for a tier of 20 in a hall of 8: min(8, CONCURRENCY) holds" {
  local wins=$((CONCURRENCY < 8 ? CONCURRENCY : 8))
  fire_reservations hall "$HALL_EVENT" "$HALL_TIER" 1 "$CONCURRENCY"
  report_round hall "$CONCURRENCY buyers x 1 seat, tier 20 in a hall of 8"
  assert_round hall "$wins" sold_out 0
  assert_holds hall "$HALL_EVENT" "$HALL_TIER" 1
  assert_available "$HALL_EVENT" $((8 - wins))
  api GET "/events/$HALL_EVENT/availability"
  expect_eq "$(jq -r '.quotas[0].available_seats' <<<"$HTTP_BODY")" $((8 - wins)) "the hall's available_seats"
  assert_db_counters "$HALL_EVENT" "$wins"
}

@test "an offer of 5 claims: CONCURRENCY buyers with its code on a tier of 50: min(5, CONCURRENCY) holds, the rest 409 offer_exhausted" {
  local wins=$((CONCURRENCY < 5 ? CONCURRENCY : 5))
  fire_reservations offer "$OFFER_EVENT" "$OFFER_TIER" 1 "$CONCURRENCY" first5
  report_round offer "$CONCURRENCY buyers x 1 seat with an offer of 5 claims, 50 seats"
  expect_eq "$(outcome_count offer 201)" "$wins" "holds with the offer"
  expect_eq "$(outcome_count offer 409 offer_exhausted)" $((CONCURRENCY - wins)) "409 offer_exhausted"
  api GET "/events/$OFFER_EVENT/offers/FIRST5"
  expect_eq "$(jq -r '.claims_left' <<<"$HTTP_BODY")" $((5 - wins)) "claims_left of the offer"
  assert_available "$OFFER_EVENT" $((50 - wins))
}

@test "assigned seats: CONCURRENCY buyers name seat A-1 of a row of 10: exactly one holds it, the rest 409 seats_unavailable" {
  fire_reservations seat "$SEAT_EVENT" "$SEAT_TIER" 1 "$CONCURRENCY" "" '["A-1"]'
  report_round seat "$CONCURRENCY buyers x seat A-1, 10 assigned seats"
  assert_round seat 1 seats_unavailable
  local bad
  bad="$(awk -F'\t' '$2 == 409 { print $1 }' "$BATS_FILE_TMPDIR/seat.tsv" | while read -r i; do
    jq -c '.error.unavailable_seats' "$BATS_FILE_TMPDIR/seat/$i.body"; done | grep -vx '\["A-1"\]' || true)"
  expect_eq "$bad" "" "409 answers whose unavailable_seats is not [\"A-1\"]"
  expect_eq "$(jq -c '.seats' "$BATS_FILE_TMPDIR/seat/$(awk -F'\t' '$2 == 201 { print $1 }' "$BATS_FILE_TMPDIR/seat.tsv").body")" \
    '["A-1"]' "the winner's seats"
  api GET "/events/$SEAT_EVENT/tiers/$SEAT_TIER/seats"
  expect_eq "$HTTP_STATUS" 200 "GET the seat map ($HTTP_BODY)"
  expect_eq "$(jq -r '[.seats[] | .status] | group_by(.) | map("\(.[0]) \(length)") | join(", ")' <<<"$HTTP_BODY")" \
    "available 9, held 1" "the seat map"
  expect_eq "$(jq -r '.seats[0] | "\(.seat) \(.status)"' <<<"$HTTP_BODY")" "A-1 held" "seat A-1 in the seat map"
  assert_available "$SEAT_EVENT" 9
  assert_db "$SEAT_EVENT" 10 1 0 1
  if [[ "$DB_REACHABLE" == 1 ]]; then
    local owned
    owned="$(psql_event "$SEAT_EVENT" <<'SQL'
SELECT count(*) || ' ' || count(DISTINCT reservation_id) FROM seats s JOIN tiers t USING (tier_id)
WHERE t.event_id = :'event_id' AND s.reservation_id IS NOT NULL;
SQL
)"
    expect_eq "$owned" "1 1" "seats held in the database (seats, reservations)"
  fi
}
