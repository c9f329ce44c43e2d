// Checkout race: VUS buyers (200) go for a tier of SEATS seats (50) at the same instant.
// Each buyer reserves QUANTITY seats (1) once, under its own Idempotency-Key and X-Device-Id,
// and confirms a 201 with tok_visa. The run fails (k6 exits 99) when more than SEATS seats are
// won or confirmed, when the server's own books disagree with that afterwards (teardown), when
// fewer seats are sold than were free, on any unexpected status, or when p95 exceeds P95_MS.
// See tests/load/README.md.
//
//   API_URL=http://127.0.0.1:3000 TICKETS_ADMIN_TOKEN=... k6 run tests/load/checkout_race.js

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  API_URL, WARMUP_CONCURRENCY, WARMUP_ROUNDS, body, createEvent, daysFromNow, describe, errorCode, floatEnv,
  holderHeaders, intEnv, jsonHeaders, newRunId, requireReadyApi, summaryOutputs, warmUp,
} from './lib.js';

const VUS = intEnv('VUS', 200);
const SEATS = intEnv('SEATS', 50); // what the run asserts: the tier's capacity
// The capacity setup() really gives the tier. Only to show that the thresholds bite: EVENT_SEATS=60
// makes the server sell 60 seats where the run allows 50, as an overselling server would.
const EVENT_SEATS = intEnv('EVENT_SEATS', SEATS);
const QUANTITY = intEnv('QUANTITY', 1);
const MAX_PER_CUSTOMER = intEnv('MAX_PER_CUSTOMER', Math.max(2, QUANTITY)); // per-customer limits are on
const HOLD_SECONDS = intEnv('HOLD_SECONDS', 600);
const P95_MS = floatEnv('P95_MS', 8000);
const MAX_DURATION = __ENV.MAX_DURATION || '5m';

if (VUS < 1 || SEATS < 1 || EVENT_SEATS < 1 || QUANTITY < 1) throw new Error('VUS, SEATS, EVENT_SEATS, QUANTITY must be >= 1');

// Seats that must be sold when demand exceeds supply: everything, bar a remainder smaller than
// one order (a request for 2 when 1 is left is refused with insufficient_inventory).
const MIN_SOLD = Math.min(VUS * QUANTITY, SEATS - ((SEATS % QUANTITY === 0) ? 0 : SEATS % QUANTITY));

const seatsWon = new Counter('seats_won'); // seats in 201 answers to reserve
const seatsConfirmed = new Counter('seats_confirmed'); // tickets in 200 answers to confirm
const reserveSuccesses = new Counter('reserve_successes');
const reserveSoldOut = new Counter('reserve_sold_out'); // 409 sold_out or insufficient_inventory
const confirmSuccesses = new Counter('confirm_successes');
const unexpectedStatus = new Counter('unexpected_status'); // the errors: anything the contract does not allow here
const oversoldSeats = new Counter('oversold_seats'); // teardown: seats held+confirmed beyond SEATS, by the server's books
const inventoryViolations = new Counter('inventory_violations'); // teardown: books that do not add up
const holdsCancelled = new Counter('holds_cancelled'); // cleanup of holds that were never confirmed
const reserveSentAt = new Trend('reserve_sent_at_ms', true); // ms since setup ended: the race window
const reserveAnsweredAt = new Trend('reserve_answered_at_ms', true);

export const options = {
  scenarios: {
    race: {
      executor: 'per-vu-iterations', // every VU starts at once and makes exactly one attempt
      vus: VUS,
      iterations: 1,
      maxDuration: MAX_DURATION,
    },
  },
  setupTimeout: '2m',
  teardownTimeout: '5m',
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // http.batch() (warm-up, setup, teardown) sends this many requests at once (k6's default: 6 per host).
  batch: Math.max(20, WARMUP_CONCURRENCY),
  batchPerHost: Math.max(20, WARMUP_CONCURRENCY),
  thresholds: {
    seats_won: [`count<=${SEATS}`, `count>=${MIN_SOLD}`],
    seats_confirmed: [`count<=${SEATS}`],
    unexpected_status: ['count==0'],
    oversold_seats: ['count==0'],
    inventory_violations: ['count==0'],
    checks: ['rate==1'],
    'http_req_duration{name:reserve}': [`p(95)<${P95_MS}`],
    'http_req_duration{name:confirm}': [`p(95)<${P95_MS}`],
  },
};

// 409 is an answer the race expects (sold out), not a failed request.
http.setResponseCallback(http.expectedStatuses(200, 201, 409));

const reserveUrl = (data) => `${API_URL}/events/${data.eventId}/reservations`;
const reserveBody = (data) => JSON.stringify({ quantity: QUANTITY, tier_id: data.tierId });
// Deterministic per VU, so that teardown can ask the server what each VU got (an idempotent replay).
const reserveHeaders = (data, vu) => jsonHeaders({
  'Idempotency-Key': `${data.runId}-reserve-${vu}`,
  'X-Device-Id': `${data.runId}-device-${vu}`,
});

export function setup() {
  requireReadyApi();
  const runId = newRunId('race');
  const event = createEvent({
    name: `k6 checkout race ${runId}`,
    venue: 'k6',
    starts_at: daysFromNow(365),
    currency: 'EUR',
    hold_seconds: HOLD_SECONDS,
    max_per_customer: MAX_PER_CUSTOMER,
    tiers: [{ name: 'Race', capacity: EVENT_SEATS, price: 2500, max_per_order: Math.max(QUANTITY, 1) }],
  });
  warmUpCheckout(runId);
  for (const c of [seatsWon, seatsConfirmed, reserveSuccesses, reserveSoldOut, confirmSuccesses, unexpectedStatus,
    oversoldSeats, inventoryViolations, holdsCancelled]) c.add(0);
  console.log(`checkout race ${runId}: ${VUS} VUs x ${QUANTITY} seat(s) for ${SEATS} seats, event ${event.event_id}`);
  return { runId, eventId: event.event_id, tierId: event.tiers[0].tier_id, startedAt: Date.now() };
}

/**
 * Warm the reserve and confirm functions on an event of their own (its seats are not the race's):
 * each round reserves WARMUP_CONCURRENCY single seats in parallel, then confirms them in parallel.
 */
function warmUpCheckout(runId) {
  if (WARMUP_ROUNDS < 1) return;
  const event = createEvent({
    name: `k6 checkout race warm-up ${runId}`, venue: 'k6', starts_at: daysFromNow(365), hold_seconds: HOLD_SECONDS,
    tiers: [{ name: 'Warm-up', capacity: WARMUP_ROUNDS * WARMUP_CONCURRENCY, price: 100, max_per_order: 1 }],
  });
  const url = `${API_URL}/events/${event.event_id}/reservations`;
  warmUp('reserve, confirm', (round) => {
    const reserves = [];
    for (let i = 0; i < WARMUP_CONCURRENCY; i += 1) {
      const headers = jsonHeaders({ 'Idempotency-Key': `${runId}-warm-${round}-${i}`, 'X-Device-Id': `${runId}-warm-${i}` });
      reserves.push(['POST', url, JSON.stringify({ quantity: 1 }), { headers, tags: { name: 'warmup' } }]);
    }
    const confirms = [];
    http.batch(reserves).forEach((res, i) => {
      if (res.status !== 201) { console.warn(`warm-up reserve: ${describe(res)}`); return; }
      const headers = holderHeaders(body(res), { 'Idempotency-Key': `${runId}-warm-confirm-${round}-${i}` });
      confirms.push(['POST', `${API_URL}/reservations/${body(res).reservation_id}/confirm`,
        JSON.stringify({ payment_token: 'tok_visa' }), { headers, tags: { name: 'warmup' } }]);
    });
    http.batch(confirms).forEach((res) => { if (res.status !== 200) console.warn(`warm-up confirm: ${describe(res)}`); });
  });
}

function unexpected(step, res) {
  const code = errorCode(res);
  unexpectedStatus.add(1, { step, status: String(res.status), code });
  console.warn(`unexpected answer to ${step}: ${describe(res)}`);
}

export default function (data) {
  const vu = exec.vu.idInTest;
  reserveSentAt.add(Date.now() - data.startedAt);
  const res = http.post(reserveUrl(data), reserveBody(data), { headers: reserveHeaders(data, vu), tags: { name: 'reserve' } });
  reserveAnsweredAt.add(Date.now() - data.startedAt);

  if (res.status === 409 && ['sold_out', 'insufficient_inventory'].includes(errorCode(res))) {
    reserveSoldOut.add(1);
    check(res, { 'reserve 409 has the error shape': (r) => typeof body(r).error.message === 'string' });
    return;
  }
  if (res.status !== 201) {
    unexpected('reserve', res);
    return;
  }
  const hold = body(res) || {};
  reserveSuccesses.add(1);
  seatsWon.add(QUANTITY);
  const holdOk = check(hold, {
    'reserve 201 is a held reservation of the asked quantity': (h) => h.status === 'held'
      && h.quantity === QUANTITY && h.tier_id === data.tierId && typeof h.reservation_id === 'string',
  });
  if (!holdOk) return;

  const confirm = http.post(`${API_URL}/reservations/${hold.reservation_id}/confirm`,
    JSON.stringify({ payment_token: 'tok_visa' }),
    { headers: holderHeaders(hold, { 'Idempotency-Key': `${data.runId}-confirm-${vu}` }), tags: { name: 'confirm' } });
  if (confirm.status === 200) {
    const sold = body(confirm) || {};
    confirmSuccesses.add(1);
    seatsConfirmed.add(Array.isArray(sold.tickets) ? sold.tickets.length : 0);
    check(sold, {
      'confirm 200 is confirmed with one ticket per seat and a captured payment': (s) => s.status === 'confirmed'
        && Array.isArray(s.tickets) && s.tickets.length === QUANTITY && s.payment && s.payment.status === 'captured',
    });
    return;
  }
  unexpected('confirm', confirm);
  // Not confirmed: give the seats back now rather than leave them held until the hold lapses.
  const cancel = http.del(`${API_URL}/reservations/${hold.reservation_id}`, null,
    { headers: holderHeaders(hold), tags: { name: 'cleanup' } });
  if (cancel.status === 200) holdsCancelled.add(1);
}

/** GET a JSON resource in teardown; null (and a violation) when it does not answer 200. */
function getJson(url, what, headers) {
  const res = http.get(url, { headers: headers || {}, tags: { name: 'teardown' } });
  if (res.status !== 200) {
    inventoryViolations.add(1, { what });
    console.error(`teardown: ${what} did not answer 200: ${describe(res)}`);
    return null;
  }
  return body(res);
}

function violation(ok, message) {
  check(null, { [message]: () => ok });
  if (!ok) {
    inventoryViolations.add(1);
    console.error(`teardown: VIOLATION: ${message}`);
  }
  return ok;
}

// Teardown runs once, after every VU has finished. VUs share no memory, so it asks the server
// what each VU got: a replay of a VU's reserve (same Idempotency-Key, same body) returns that
// VU's first answer without reserving again. It then reads each won reservation's status,
// compares the server's availability with those records, and cancels whatever is still held.
export function teardown(data) {
  if (!data || !data.eventId) return;
  const replays = [];
  for (let vu = 1; vu <= VUS; vu += 1) {
    replays.push(['POST', reserveUrl(data), reserveBody(data), { headers: reserveHeaders(data, vu), tags: { name: 'teardown' } }]);
  }
  const won = [];
  for (let i = 0; i < replays.length; i += 20) {
    for (const res of http.batch(replays.slice(i, i + 20))) {
      if (res.status === 201 && body(res)) won.push(body(res)); // the replay carries the secret too
      else if (!(res.status === 409 && ['sold_out', 'insufficient_inventory'].includes(errorCode(res)))) {
        inventoryViolations.add(1);
        console.error(`teardown: a replayed reserve answered ${describe(res)}`);
      }
    }
  }
  let confirmed = 0;
  let held = 0;
  const heldOnes = [];
  for (const hold of won) {
    const r = getJson(`${API_URL}/reservations/${hold.reservation_id}`, 'GET /reservations/{id}', holderHeaders(hold));
    if (!r) continue;
    if (r.status === 'confirmed') confirmed += r.quantity;
    else if (r.status === 'held') { held += r.quantity; heldOnes.push(hold); }
  }
  const event = getJson(`${API_URL}/events/${data.eventId}`, 'GET /events/{id}');
  const availability = getJson(`${API_URL}/events/${data.eventId}/availability`, 'GET /events/{id}/availability');
  if (!event || !availability) return;
  const capacity = event.tiers[0].capacity;
  const available = availability.tiers[0].available_seats;
  const takenByBooks = confirmed + held;
  const takenByAvailability = capacity - available;
  console.log(`teardown: capacity ${capacity}, available_seats ${available}, reservations won ${won.length}: `
    + `${confirmed} seats confirmed + ${held} held`);

  violation(available >= 0, `available_seats (${available}) is not negative`);
  violation(available <= capacity, `available_seats (${available}) is not above the capacity (${capacity})`);
  violation(capacity === SEATS, `the tier's capacity (${capacity}) is the SEATS the run asserts (${SEATS})`);
  violation(takenByBooks === takenByAvailability,
    `held+confirmed by the reservations (${takenByBooks}) = capacity - available_seats (${takenByAvailability})`);
  violation(takenByBooks >= MIN_SOLD, `held+confirmed (${takenByBooks}) reaches the ${MIN_SOLD} seats that were free`);
  const oversold = Math.max(takenByBooks, takenByAvailability) - SEATS;
  violation(oversold <= 0, `held+confirmed (${Math.max(takenByBooks, takenByAvailability)}) is within SEATS (${SEATS})`);
  if (oversold > 0) oversoldSeats.add(oversold);

  // Clean up: holds that were never confirmed go back now (the contract has no delete-event call).
  for (const hold of heldOnes) {
    const res = http.del(`${API_URL}/reservations/${hold.reservation_id}`, null,
      { headers: holderHeaders(hold), tags: { name: 'teardown' } });
    if (res.status === 200) holdsCancelled.add(1);
    else console.error(`teardown: cancelling held ${hold.reservation_id} failed: ${describe(res)}`);
  }
  if (heldOnes.length) console.log(`teardown: cancelled ${heldOnes.length} leftover hold(s)`);
}

export function handleSummary(data) {
  const m = (name, key) => (data.metrics[name] ? data.metrics[name].values[key] : undefined);
  const windowMs = (m('reserve_answered_at_ms', 'max') || 0) - (m('reserve_sent_at_ms', 'min') || 0);
  const answered = (m('reserve_successes', 'count') || 0) + (m('reserve_sold_out', 'count') || 0);
  const reqs = data.metrics['http_req_duration{name:reserve}'];
  const derived = {
    vus: VUS,
    seats: SEATS,
    event_seats: EVENT_SEATS,
    quantity: QUANTITY,
    race_window_ms: windowMs,
    reserve_answers: answered,
    reservations_per_second: windowMs > 0 ? answered / (windowMs / 1000) : null,
    holds_per_second: windowMs > 0 ? (m('reserve_successes', 'count') || 0) / (windowMs / 1000) : null,
    reserve_p95_ms: reqs ? reqs.values['p(95)'] : null,
    confirm_p95_ms: data.metrics['http_req_duration{name:confirm}'] ? data.metrics['http_req_duration{name:confirm}'].values['p(95)'] : null,
    seats_won: m('seats_won', 'count'),
    seats_confirmed: m('seats_confirmed', 'count'),
    sold_out_answers: m('reserve_sold_out', 'count'),
    unexpected_status: m('unexpected_status', 'count'),
  };
  const rate = derived.reservations_per_second;
  const facts = [
    `target ${API_URL}, event ${data.setup_data ? data.setup_data.eventId : '(setup failed)'}`,
    `${VUS} VUs x ${QUANTITY} seat(s) for ${SEATS} seats${EVENT_SEATS !== SEATS ? ` (EVENT_SEATS=${EVENT_SEATS}: the tier really has ${EVENT_SEATS})` : ''}`,
    `won ${derived.seats_won} seats, confirmed ${derived.seats_confirmed}, sold out ${derived.sold_out_answers}, unexpected ${derived.unexpected_status}`,
    `${answered} reserve answers in ${(windowMs / 1000).toFixed(2)} s: ${rate ? rate.toFixed(1) : '-'} reservations/s; `
      + `p95 reserve ${derived.reserve_p95_ms ? derived.reserve_p95_ms.toFixed(0) : '-'} ms, confirm ${derived.confirm_p95_ms ? derived.confirm_p95_ms.toFixed(0) : '-'} ms (bound ${P95_MS} ms)`,
  ];
  return summaryOutputs('checkout_race', data, derived, facts);
}

