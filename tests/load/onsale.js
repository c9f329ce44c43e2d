// On-sale through the waiting room: BUYERS buyers (2,000) join the queue of an event of SEATS seats
// (200) with a waiting room admitting ADMIT_PER_MINUTE (1,200) a minute. Sales open OPEN_IN_S
// seconds (45) after setup, so that the crowd joins before the opening (a lottery); each buyer polls
// with back-off until its entry is admitted, then reserves 1 seat with the X-Admission-Token and
// confirms it. Every fifth buyer first tries to reserve without an admission, and with a forged one.
// The run fails (k6 exits 99) unless: SEATS seats are sold and no more; no reserve is accepted
// without a valid admission; the admissions, per minute and per 10 s, stay within the limit (plus
// one second's worth: a buyer learns of its admission at its next poll, at most POLL_FLOOR_S after);
// every buyer not admitted ends sold_out (none is left waiting); statuses are the contract's.
// See tests/load/README.md.
//
//   API_URL=http://127.0.0.1:3000 TICKETS_ADMIN_TOKEN=... k6 run tests/load/onsale.js

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  API_URL, body, createEvent, daysFromNow, describe, errorCode, floatEnv, holderHeaders, intEnv, jsonHeaders,
  newRunId, requireReadyApi, staffHeaders, summaryOutputs,
} from './lib.js';

const BUYERS = intEnv('BUYERS', 2000);
const SEATS = intEnv('SEATS', 200);
const ADMIT_PER_MINUTE = intEnv('ADMIT_PER_MINUTE', 1200);
const ADMISSION_SECONDS = intEnv('ADMISSION_SECONDS', 120);
const OPEN_IN_S = intEnv('OPEN_IN_S', 45);
const POLL_FLOOR_S = floatEnv('POLL_FLOOR_S', 1); // the shortest wait between polls
const POLL_CEILING_S = floatEnv('POLL_CEILING_S', 30); // the longest (the back-off's cap)
const MAX_DURATION = __ENV.MAX_DURATION || '9m';
const GIVE_UP_S = intEnv('GIVE_UP_S', 420); // a buyer stops polling this long after joining (and fails the run)
const WINDOWS = intEnv('WINDOWS', 54); // 10-s windows watched from the opening (54: 9 min)

// A local stage queues requests while its workers are busy rather than refusing them: wait.
const WAIT = __ENV.REQUEST_TIMEOUT || '180s';

if (BUYERS < 1 || SEATS < 1 || ADMIT_PER_MINUTE < 1) throw new Error('BUYERS, SEATS, ADMIT_PER_MINUTE must be >= 1');

// What a buyer may see: its admission lags the cursor by at most one poll interval near the front.
const LAG_ALLOWANCE = Math.ceil(ADMIT_PER_MINUTE / 60 * POLL_FLOOR_S);
const PER_10S = Math.floor(ADMIT_PER_MINUTE / 6) + 1 + LAG_ALLOWANCE;
const PER_MINUTE = ADMIT_PER_MINUTE + 1 + LAG_ALLOWANCE;

const joins = new Counter('joins'); // 201 to the first join
const admissions = new Counter('admissions'); // tagged window (10 s) and minute, from the opening
const seatsWon = new Counter('seats_won');
const seatsConfirmed = new Counter('seats_confirmed');
const admittedTooLate = new Counter('admitted_but_sold_out'); // admitted, then 409 sold_out on reserve
const endedSoldOut = new Counter('ended_sold_out'); // the entry answered sold_out
const endedExpired = new Counter('ended_expired');
const leftWaiting = new Counter('left_waiting'); // still waiting when the buyer gave up: must be 0
const acceptedWithoutAdmission = new Counter('reserves_accepted_without_valid_admission'); // must be 0
const refusedWithoutAdmission = new Counter('reserves_refused_without_valid_admission');
const unexpectedStatus = new Counter('unexpected_status');
const oversoldSeats = new Counter('oversold_seats');
const bookViolations = new Counter('book_violations');
const pollsPerBuyer = new Trend('polls_per_buyer');
const waitedSeconds = new Trend('waited_s'); // join to admission, for the admitted

const thresholds = {
  seats_confirmed: [`count==${SEATS}`],
  seats_won: [`count>=${SEATS}`],
  oversold_seats: ['count==0'],
  book_violations: ['count==0'],
  reserves_accepted_without_valid_admission: ['count==0'],
  reserves_refused_without_valid_admission: ['count>0'],
  left_waiting: ['count==0'],
  unexpected_status: ['count==0'],
  checks: ['rate==1'],
  // Reported, not bounded: a local stage's latency says more about the machine than the queue.
  'http_req_duration{name:join}': ['p(95)>=0'],
  'http_req_duration{name:poll}': ['p(95)>=0'],
  'http_req_duration{name:reserve}': ['p(95)>=0'],
  'http_req_duration{name:confirm}': ['p(95)>=0'],
};
for (let w = 0; w < WINDOWS; w += 1) thresholds[`admissions{window:${w}}`] = [`count<=${PER_10S}`];
for (let m = 0; m * 6 < WINDOWS; m += 1) thresholds[`admissions{minute:${m}}`] = [`count<=${PER_MINUTE}`];

export const options = {
  scenarios: {
    onsale: { executor: 'per-vu-iterations', vus: BUYERS, iterations: 1, maxDuration: MAX_DURATION },
  },
  setupTimeout: '2m',
  teardownTimeout: '2m',
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  thresholds,
};

// 403 (the admission checks) and 409 (sold out) are answers the run expects.
http.setResponseCallback(http.expectedStatuses(200, 201, 403, 409));

export function setup() {
  requireReadyApi();
  const runId = newRunId('onsale');
  const opening = Math.ceil(Date.now() / 1000) + OPEN_IN_S;
  const event = createEvent({
    name: `k6 on-sale ${runId}`, venue: 'k6', starts_at: daysFromNow(365), hold_seconds: 120,
    sales_start_at: new Date(opening * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
    waiting_room: { admit_per_minute: ADMIT_PER_MINUTE, admission_seconds: ADMISSION_SECONDS },
    tiers: [{ name: 'On-sale', capacity: SEATS, price: 4500, max_per_order: 1 }],
  });
  for (const c of [joins, seatsWon, seatsConfirmed, admittedTooLate, endedSoldOut, endedExpired, leftWaiting,
    acceptedWithoutAdmission, refusedWithoutAdmission, unexpectedStatus, oversoldSeats, bookViolations]) c.add(0);
  console.log(`on-sale ${runId}: ${BUYERS} buyers for ${SEATS} seats, ${ADMIT_PER_MINUTE} admitted a minute, `
    + `opening at ${new Date(opening * 1000).toISOString()}, event ${event.event_id}`);
  return { runId, eventId: event.event_id, opening };
}

function unexpected(step, res) {
  unexpectedStatus.add(1, { step, status: String(res.status), code: errorCode(res) });
  console.warn(`unexpected answer to ${step}: ${describe(res)}`);
}

function reserve(data, vu, admission, attempt) {
  const headers = jsonHeaders({ 'Idempotency-Key': `${data.runId}-reserve-${vu}-${attempt}`,
    'X-Device-Id': `${data.runId}-buyer-${vu}` });
  if (admission !== null) headers['X-Admission-Token'] = admission;
  return http.post(`${API_URL}/events/${data.eventId}/reservations`, JSON.stringify({ quantity: 1 }),
    { headers, tags: { name: attempt === 'admitted' ? 'reserve' : 'reserve_unadmitted' }, timeout: WAIT });
}

/** Every fifth buyer tries the door without an admission and with a forged one: both must be 403. */
function tryWithoutAdmission(data, vu) {
  const forged = `${data.eventId.replace(/-/g, '')}.${data.opening + 3600}.${'A'.repeat(22)}.${'B'.repeat(43)}`;
  for (const [admission, code] of [[null, 'admission_required'], [forged, 'admission_invalid']]) {
    const res = reserve(data, vu, admission, code);
    if (res.status === 201) {
      acceptedWithoutAdmission.add(1);
      console.error(`a reserve without a valid admission was accepted: ${describe(res)}`);
    } else if (res.status === 403 && errorCode(res) === code) refusedWithoutAdmission.add(1);
    else unexpected('reserve without admission', res);
  }
}

export default function (data) {
  const vu = exec.vu.idInTest;
  const device = { 'X-Device-Id': `${data.runId}-buyer-${vu}` };
  const joined = http.post(`${API_URL}/events/${data.eventId}/queue`, null,
    { headers: jsonHeaders(device), tags: { name: 'join' }, timeout: WAIT });
  if (joined.status !== 201) { unexpected('join', joined); return; }
  joins.add(1);
  const joinedAt = Date.now();
  let entry = body(joined);
  if (vu % 5 === 0) tryWithoutAdmission(data, vu);

  let polls = 0;
  while (entry.state === 'waiting') {
    // Back off by the server's estimate: half of it, within [POLL_FLOOR_S, POLL_CEILING_S], with
    // jitter so that pollers spread out (a buyer far back polls twice a minute, one near the front
    // every second).
    const pause = Math.max(POLL_FLOOR_S, Math.min(POLL_CEILING_S, (entry.estimated_wait_seconds || 0) / 2));
    sleep(pause * (0.75 + Math.random() * 0.5));
    if (Date.now() - joinedAt > GIVE_UP_S * 1000) break;
    const res = http.get(`${API_URL}/events/${data.eventId}/queue/${entry.queue_token}`, { tags: { name: 'poll' }, timeout: WAIT });
    polls += 1;
    if (res.status === 0) { unexpected('poll', res); break; } // no answer (timeout, run interrupted)
    if (res.status !== 200) { unexpected('poll', res); continue; }
    entry = body(res);
  }
  pollsPerBuyer.add(polls);

  if (entry.state === 'waiting') { leftWaiting.add(1); return; }
  if (entry.state === 'sold_out') { endedSoldOut.add(1); return; }
  if (entry.state === 'expired') { endedExpired.add(1); return; }
  if (!check(entry, { 'admitted with an admission token': (e) => e.state === 'admitted' && !!e.admission_token })) return;

  const admittedAt = Date.parse(entry.admission_expires_at) / 1000 - ADMISSION_SECONDS;
  const since = Math.max(0, admittedAt - data.opening);
  admissions.add(1, { window: String(Math.floor(since / 10)), minute: String(Math.floor(since / 60)) });
  waitedSeconds.add((Date.now() - joinedAt) / 1000);

  const held = reserve(data, vu, entry.admission_token, 'admitted');
  if (held.status === 409 && ['sold_out', 'insufficient_inventory'].includes(errorCode(held))) {
    admittedTooLate.add(1);
    return;
  }
  if (held.status !== 201) { unexpected('reserve', held); return; }
  seatsWon.add(1);
  const hold = body(held);
  const sold = http.post(`${API_URL}/reservations/${hold.reservation_id}/confirm`,
    JSON.stringify({ payment_token: 'tok_visa' }),
    { headers: holderHeaders(hold, { 'Idempotency-Key': `${data.runId}-confirm-${vu}` }), tags: { name: 'confirm' }, timeout: WAIT });
  if (sold.status === 200) seatsConfirmed.add((body(sold).tickets || []).length);
  else unexpected('confirm', sold);
}

// The server's own books afterwards: nothing oversold, no entry left waiting.
export function teardown(data) {
  if (!data || !data.eventId) return;
  const availability = http.get(`${API_URL}/events/${data.eventId}/availability`, { tags: { name: 'teardown' } });
  let stats;
  for (let attempt = 1; attempt <= 5; attempt += 1) { // it reads every entry: a busy stage may time out
    stats = http.get(`${API_URL}/events/${data.eventId}/queue`, { headers: staffHeaders(), tags: { name: 'teardown' }, timeout: WAIT });
    if (stats.status !== 503) break;
    sleep(5);
  }
  if (availability.status !== 200 || stats.status !== 200) {
    bookViolations.add(1);
    console.error(`teardown: ${describe(availability)} / ${describe(stats)}`);
    return;
  }
  const free = body(availability).available_seats;
  const counts = body(stats);
  console.log(`teardown: available_seats ${free}; queue ${JSON.stringify(counts)}`);
  if (free < 0) oversoldSeats.add(-free);
  if (free !== 0) { bookViolations.add(1); console.error(`teardown: ${free} seats left unsold`); }
  if (counts.waiting !== 0) { bookViolations.add(1); console.error(`teardown: ${counts.waiting} entries still waiting`); }
  const total = counts.waiting + counts.admitted + counts.expired + counts.sold_out;
  if (total !== BUYERS) { bookViolations.add(1); console.error(`teardown: ${total} entries for ${BUYERS} buyers`); }
}

export function handleSummary(data) {
  const m = (name, key) => (data.metrics[name] ? data.metrics[name].values[key] : undefined);
  const p95 = (name) => (data.metrics[`http_req_duration{name:${name}}`]
    ? data.metrics[`http_req_duration{name:${name}}`].values['p(95)'] : null);
  const windows = Object.keys(data.metrics).filter((n) => n.startsWith('admissions{window:'))
    .map((n) => [parseInt(n.slice('admissions{window:'.length), 10), data.metrics[n].values.count])
    .filter(([, count]) => count > 0).sort((a, b) => a[0] - b[0]);
  const derived = {
    buyers: BUYERS,
    seats: SEATS,
    admit_per_minute: ADMIT_PER_MINUTE,
    allowed_per_10s: PER_10S,
    allowed_per_minute: PER_MINUTE,
    joins: m('joins', 'count'),
    admissions: m('admissions', 'count'),
    admissions_per_10s_window: Object.fromEntries(windows),
    seats_won: m('seats_won', 'count'),
    seats_confirmed: m('seats_confirmed', 'count'),
    admitted_but_sold_out: m('admitted_but_sold_out', 'count'),
    ended_sold_out: m('ended_sold_out', 'count'),
    ended_expired: m('ended_expired', 'count'),
    left_waiting: m('left_waiting', 'count'),
    reserves_accepted_without_valid_admission: m('reserves_accepted_without_valid_admission', 'count'),
    reserves_refused_without_valid_admission: m('reserves_refused_without_valid_admission', 'count'),
    polls: m('polls_per_buyer', 'avg') !== undefined ? Math.round(m('polls_per_buyer', 'avg') * BUYERS) : null,
    join_p95_ms: p95('join'),
    poll_p95_ms: p95('poll'),
    reserve_p95_ms: p95('reserve'),
    confirm_p95_ms: p95('confirm'),
  };
  const facts = [
    `target ${API_URL}, event ${data.setup_data ? data.setup_data.eventId : '(setup failed)'}`,
    `${BUYERS} buyers for ${SEATS} seats at ${ADMIT_PER_MINUTE}/min (allowed: ${PER_10S} per 10 s, ${PER_MINUTE} per minute)`,
    `joined ${derived.joins}, admitted ${derived.admissions}, sold ${derived.seats_confirmed}, admitted too late `
      + `${derived.admitted_but_sold_out}, ended sold_out ${derived.ended_sold_out}, left waiting ${derived.left_waiting}`,
    `admissions per 10 s from the opening: ${windows.map(([w, c]) => `${w}:${c}`).join(' ') || '-'}`,
    `p95 join ${derived.join_p95_ms ? derived.join_p95_ms.toFixed(0) : '-'} ms, poll ${derived.poll_p95_ms ? derived.poll_p95_ms.toFixed(0) : '-'} ms, `
      + `reserve ${derived.reserve_p95_ms ? derived.reserve_p95_ms.toFixed(0) : '-'} ms; ${derived.polls} polls`,
  ];
  return summaryOutputs('onsale', data, derived, facts, ['admissions{window:', 'admissions{minute:']);
}
