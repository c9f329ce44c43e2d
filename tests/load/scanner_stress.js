// Scanner stress: SCANNERS door scanners (5 VUs) make SCANS check-ins (500) over TICKETS tickets
// (100) that setup() buys through the API. Every ticket is scanned several times on purpose: half
// of the tickets get all their scans back to back, so that several scanners scan the same ticket at
// the same moment; the other half get theirs spread over the run (a ticket shown again later).
// Expected: exactly one 200 per ticket, every other scan 409 already_checked_in. The run fails
// (k6 exits 99) on a second admission of any ticket, a ticket never admitted, any other status,
// a re-scan that does not report the first checked_in_at, or p95 above P95_MS.
// See tests/load/README.md.
//
//   API_URL=http://127.0.0.1:3000 TICKETS_ADMIN_TOKEN=... k6 run tests/load/scanner_stress.js

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  API_URL, WARMUP_CONCURRENCY, abort, body, createEvent, daysFromNow, describe, errorCode, floatEnv, intEnv,
  holderHeaders, jsonHeaders, newRunId, requireReadyApi, staffHeaders, summaryOutputs, warmUp,
} from './lib.js';

const SCANNERS = intEnv('SCANNERS', 5);
const SCANS = intEnv('SCANS', 500);
const TICKETS = intEnv('TICKETS', 100);
const P95_MS = floatEnv('P95_MS', 1000);
const MAX_ERROR_RATE = floatEnv('MAX_ERROR_RATE', 0); // share of check-ins answered other than 200/409
const CLOCK_SKEW_MS = intEnv('CLOCK_SKEW_MS', 60000); // between this machine and the server's clock
const MAX_DURATION = __ENV.MAX_DURATION || '5m';
const ORDER_SIZE = 10; // tickets per purchase in setup()

if (SCANNERS < 1 || TICKETS < 1) throw new Error('SCANNERS and TICKETS must be >= 1');
if (SCANS < TICKETS) throw new Error(`SCANS (${SCANS}) must be at least TICKETS (${TICKETS}): every ticket is scanned`);

const admissions = new Counter('admissions'); // 200s, tagged with the ticket's index
const alreadyCheckedIn = new Counter('already_checked_in'); // 409 already_checked_in
const unexpectedStatus = new Counter('unexpected_status'); // the errors: anything else
const checkinViolations = new Counter('checkin_violations'); // teardown: re-scans that do not add up
const scanSentAt = new Trend('scan_sent_at_ms', true); // ms since setup ended: the scanning window
const scanAnsweredAt = new Trend('scan_answered_at_ms', true);

const thresholds = {
  admissions: [`count==${TICKETS}`], // with at most one per ticket (below): exactly one per ticket
  already_checked_in: [`count==${SCANS - TICKETS}`],
  unexpected_status: ['count==0'],
  checkin_violations: ['count==0'],
  checks: ['rate==1'],
  'http_req_duration{name:checkin}': [`p(95)<${P95_MS}`],
  'http_req_failed{name:checkin}': [`rate<=${MAX_ERROR_RATE}`],
};
// One threshold per ticket: k6 VUs share no memory, but the summary counts each tag value apart.
for (let i = 0; i < TICKETS; i += 1) thresholds[`admissions{ticket:${i}}`] = ['count<=1'];

export const options = {
  scenarios: {
    scanners: {
      executor: 'shared-iterations', // SCANS scans shared by SCANNERS VUs, in plan order
      vus: SCANNERS,
      iterations: SCANS,
      maxDuration: MAX_DURATION,
    },
  },
  setupTimeout: '3m',
  teardownTimeout: '3m',
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // http.batch() (warm-up, setup, teardown) sends this many requests at once (k6's default: 6 per host).
  batch: Math.max(20, WARMUP_CONCURRENCY),
  batchPerHost: Math.max(20, WARMUP_CONCURRENCY),
  thresholds,
};

// 409 already_checked_in is the answer most scans expect, not a failed request.
http.setResponseCallback(http.expectedStatuses(200, 201, 409));

/**
 * The order of the scans: ticket indices, SCANS of them. Even tickets get their scans back to back
 * (taken at once by several scanners), odd tickets get theirs spread in rounds across the run.
 */
function scanPlan() {
  const per = (t) => Math.floor(SCANS / TICKETS) + (t < SCANS % TICKETS ? 1 : 0);
  const bursts = [];
  const spreadRounds = [];
  for (let t = 0; t < TICKETS; t += 1) {
    if (t % 2 === 0) {
      bursts.push(Array(per(t)).fill(t));
    } else {
      for (let r = 0; r < per(t); r += 1) (spreadRounds[r] = spreadRounds[r] || []).push(t);
    }
  }
  const spread = [].concat(...spreadRounds);
  const plan = [];
  let taken = 0;
  bursts.forEach((group, k) => {
    plan.push(...group);
    const upTo = Math.round(((k + 1) * spread.length) / bursts.length);
    plan.push(...spread.slice(taken, upTo));
    taken = upTo;
  });
  plan.push(...spread.slice(taken));
  return plan;
}

function buyTickets(runId, eventId) {
  const codes = [];
  const reservations = [];
  for (let n = 0; n * ORDER_SIZE < TICKETS; n += 1) {
    const quantity = Math.min(ORDER_SIZE, TICKETS - n * ORDER_SIZE);
    const headers = jsonHeaders({ 'Idempotency-Key': `${runId}-buy-${n}`, 'X-Device-Id': `${runId}-buyer` });
    reservations.push(['POST', `${API_URL}/events/${eventId}/reservations`, JSON.stringify({ quantity }),
      { headers, tags: { name: 'setup' } }]);
  }
  for (let i = 0; i < reservations.length; i += 10) {
    const holds = http.batch(reservations.slice(i, i + 10)).map((res) => {
      if (res.status !== 201) abort(`buying the test tickets failed: ${describe(res)}`);
      return body(res);
    });
    const confirms = holds.map((hold, k) => ['POST', `${API_URL}/reservations/${hold.reservation_id}/confirm`,
      JSON.stringify({ payment_token: 'tok_visa' }),
      { headers: holderHeaders(hold, { 'Idempotency-Key': `${runId}-pay-${i + k}` }), tags: { name: 'setup' } }]);
    http.batch(confirms).forEach((res, k) => {
      if (res.status !== 200) {
        http.del(`${API_URL}/reservations/${holds[k].reservation_id}`, null,
          { headers: holderHeaders(holds[k]), tags: { name: 'setup' } }); // leave no hold behind
        abort(`confirming the test tickets failed: ${describe(res)}`);
      }
      for (const t of body(res).tickets) codes.push(t.ticket_code);
    });
  }
  return codes;
}

export function setup() {
  requireReadyApi();
  const runId = newRunId('scan');
  const event = createEvent({
    name: `k6 scanner stress ${runId}`, venue: 'k6', starts_at: daysFromNow(365),
    tiers: [{ name: 'Door', capacity: TICKETS, price: 1500, max_per_order: ORDER_SIZE }],
  });
  const codes = buyTickets(runId, event.event_id);
  if (codes.length !== TICKETS || new Set(codes).size !== TICKETS) {
    abort(`setup bought ${codes.length} tickets (${new Set(codes).size} distinct), not ${TICKETS}`);
  }
  for (const c of [admissions, alreadyCheckedIn, unexpectedStatus, checkinViolations]) c.add(0);

  // Staff only: a scan without the token is 401 and admits nobody (ticket 0 must still get its 200).
  const anonymous = http.post(`${API_URL}/tickets/${codes[0]}/check-in`, null,
    { headers: jsonHeaders(), tags: { name: 'setup' } });
  if (!check(anonymous, { 'check-in without the token is 401 unauthorized': (r) => r.status === 401 && errorCode(r) === 'unauthorized' })) {
    console.error(`check-in without the token: ${describe(anonymous)}`);
  }
  warmUp('check-in', (round) => {
    const scans = [];
    for (let i = 0; i < WARMUP_CONCURRENCY; i += 1) {
      scans.push(['POST', `${API_URL}/tickets/WARMUP${round}X${i}X${runId.replace(/[^A-Za-z0-9]/g, '')}/check-in`, null,
        { headers: staffHeaders(), tags: { name: 'warmup' } }]);
    }
    http.batch(scans).forEach((res) => check(res, { 'an unknown ticket is 404 ticket_not_found': (r) => r.status === 404 && errorCode(r) === 'ticket_not_found' }));
  });
  const plan = scanPlan();
  console.log(`scanner stress ${runId}: ${SCANNERS} scanners, ${SCANS} scans of ${TICKETS} tickets, event ${event.event_id}`);
  return { runId, eventId: event.event_id, codes, plan, startedAt: Date.now() };
}

export default function (data) {
  const index = data.plan[exec.scenario.iterationInTest];
  const code = data.codes[index];
  scanSentAt.add(Date.now() - data.startedAt);
  const res = http.post(`${API_URL}/tickets/${code}/check-in`, null, { headers: staffHeaders(), tags: { name: 'checkin' } });
  scanAnsweredAt.add(Date.now() - data.startedAt);
  const answer = body(res);
  if (res.status === 200) {
    admissions.add(1, { ticket: String(index) });
    check(answer, {
      'check-in 200 names the ticket, its event and a time': (a) => a && a.ticket_code === code
        && a.event_id === data.eventId && !Number.isNaN(Date.parse(a.checked_in_at)),
    });
    return;
  }
  if (res.status === 409 && errorCode(res) === 'already_checked_in') {
    alreadyCheckedIn.add(1);
    check(answer, { 'check-in 409 carries the first checked_in_at': (a) => !Number.isNaN(Date.parse(a.error.checked_in_at)) });
    return;
  }
  unexpectedStatus.add(1, { status: String(res.status), code: errorCode(res) });
  console.warn(`unexpected answer to a check-in of ticket ${index}: ${describe(res)}`);
}

function violation(ok, message) {
  if (!ok) {
    checkinViolations.add(1);
    console.error(`teardown: VIOLATION: ${message}`);
  }
  return ok;
}

// Teardown, after every scan: each ticket is scanned twice more, one pass after the other. Both
// must be 409 already_checked_in with one and the same checked_in_at, from within the run: the
// time of the first admission, not of the latest scan (nothing a re-scan does may move it).
export function teardown(data) {
  if (!data || !data.codes) return;
  const teardownAt = Date.now();
  const rescan = () => {
    const times = [];
    for (let i = 0; i < data.codes.length; i += 20) {
      const requests = data.codes.slice(i, i + 20).map((code) => ['POST', `${API_URL}/tickets/${code}/check-in`, null,
        { headers: staffHeaders(), tags: { name: 'teardown' } }]);
      http.batch(requests).forEach((res, k) => {
        const ok = res.status === 409 && errorCode(res) === 'already_checked_in';
        violation(ok, `ticket ${i + k} re-scanned after the run: ${describe(res)}`);
        times.push(ok ? body(res).error.checked_in_at : null);
      });
    }
    return times;
  };
  const first = rescan();
  const second = rescan();
  let consistent = 0;
  first.forEach((at, i) => {
    if (at === null || second[i] === null) return;
    const when = Date.parse(at);
    const ok = violation(at === second[i], `ticket ${i}: checked_in_at moved from ${at} to ${second[i]} between two re-scans`)
      & violation(when >= data.startedAt - CLOCK_SKEW_MS && when <= teardownAt + CLOCK_SKEW_MS,
        `ticket ${i}: checked_in_at ${at} is not within the run`);
    if (ok) consistent += 1;
  });
  check(consistent, { 'every ticket re-scans as 409 with its first checked_in_at, twice': (n) => n === data.codes.length });
  console.log(`teardown: ${consistent} of ${data.codes.length} tickets re-scan as 409 with a stable first checked_in_at`);
}

export function handleSummary(data) {
  const m = (name, key) => (data.metrics[name] ? data.metrics[name].values[key] : undefined);
  const windowMs = (m('scan_answered_at_ms', 'max') || 0) - (m('scan_sent_at_ms', 'min') || 0);
  const duration = data.metrics['http_req_duration{name:checkin}'];
  const perTicket = Object.keys(data.metrics).filter((n) => n.startsWith('admissions{ticket:'));
  const doubled = perTicket.filter((n) => data.metrics[n].values.count > 1);
  const derived = {
    scanners: SCANNERS,
    scans: SCANS,
    tickets: TICKETS,
    scan_window_ms: windowMs,
    scans_per_second: windowMs > 0 ? SCANS / (windowMs / 1000) : null,
    checkin_p95_ms: duration ? duration.values['p(95)'] : null,
    admissions: m('admissions', 'count'),
    already_checked_in: m('already_checked_in', 'count'),
    unexpected_status: m('unexpected_status', 'count'),
    tickets_admitted_more_than_once: doubled.map((n) => n.replace(/^admissions\{ticket:(\d+)\}$/, '$1')),
  };
  const rate = derived.scans_per_second;
  const facts = [
    `target ${API_URL}, event ${data.setup_data ? data.setup_data.eventId : '(setup failed)'}`,
    `${SCANNERS} scanners, ${SCANS} scans of ${TICKETS} tickets`,
    `admitted ${derived.admissions} (expected ${TICKETS}), already_checked_in ${derived.already_checked_in} `
      + `(expected ${SCANS - TICKETS}), unexpected ${derived.unexpected_status}, tickets admitted twice: ${doubled.length}`,
    `${SCANS} scans in ${(windowMs / 1000).toFixed(2)} s: ${rate ? rate.toFixed(1) : '-'} scans/s; `
      + `p95 check-in ${derived.checkin_p95_ms ? derived.checkin_p95_ms.toFixed(0) : '-'} ms (bound ${P95_MS} ms)`,
  ];
  return summaryOutputs('scanner_stress', data, derived, facts, ['admissions{ticket:']);
}
