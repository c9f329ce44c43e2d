// Benchmark (make bench-queue): the waiting room's join and poll beside reserve, on one stage in one
// run, one after the other at the same concurrency (VUS, 16) for PHASE_S seconds (15) each:
//   join              POST /events/{id}/queue, a new buyer each time (201)
//   poll              GET /events/{id}/queue/{token}, over POLL_ENTRIES (200) entries joined in setup
//   reserve           POST /events/{id}/reservations on an event without a waiting room (201)
//   reserve_admitted  the same on an event with a waiting room, with an admission token (201)
// (POLL_ENTRIES 200). Prints requests per second and p95 per phase; the figures are only comparable with each other
// (the machine is shared): the summary gives each phase's rate as a ratio to reserve's.

import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  API_URL, body, createEvent, daysFromNow, describe, intEnv, jsonHeaders, newRunId, requireReadyApi, abort,
  summaryOutputs,
} from './lib.js';

const VUS = intEnv('VUS', 16);
const PHASE_S = intEnv('PHASE_S', 15);
const GAP_S = 2;
const POLL_ENTRIES = intEnv('POLL_ENTRIES', 200);
const PHASES = ['join', 'poll', 'reserve', 'reserve_admitted'];
const failures = new Counter('failures');

const scenarios = {};
PHASES.forEach((phase, i) => {
  scenarios[phase] = {
    executor: 'constant-vus', vus: VUS, duration: `${PHASE_S}s`, startTime: `${i * (PHASE_S + GAP_S)}s`,
    exec: phase, tags: { phase },
  };
});

export const options = {
  scenarios,
  setupTimeout: '3m',
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  thresholds: Object.fromEntries([['failures', ['count==0']],
    ...PHASES.map((p) => [`http_req_duration{phase:${p}}`, ['p(95)>=0']]),
    ...PHASES.map((p) => [`http_reqs{phase:${p}}`, ['count>=0']])]),
  batch: 50,
  batchPerHost: 50,
};

const room = { admit_per_minute: 100000, admission_seconds: 3600 };
const tier = (capacity) => [{ name: 'Bench', capacity, price: 100, max_per_order: 1 }];

export function setup() {
  requireReadyApi();
  const runId = newRunId('bench-queue');
  const base = { venue: 'k6', starts_at: daysFromNow(365), hold_seconds: 3600 };
  const joinEvent = createEvent({ ...base, name: `bench join ${runId}`, waiting_room: room, tiers: tier(1000) });
  const pollEvent = createEvent({ ...base, name: `bench poll ${runId}`, waiting_room: room, tiers: tier(1000) });
  const plainEvent = createEvent({ ...base, name: `bench reserve ${runId}`, tiers: tier(1000000) });
  const roomEvent = createEvent({ ...base, name: `bench reserve admitted ${runId}`, waiting_room: room, tiers: tier(1000000) });
  const tokens = [];
  for (let i = 0; i < POLL_ENTRIES && tokens.length < POLL_ENTRIES; i += 1) {
    for (let attempt = 1; ; attempt += 1) { // a busy local stage may answer 503: try again
      const res = http.post(`${API_URL}/events/${pollEvent.event_id}/queue`, null,
        { headers: { 'X-Device-Id': `${runId}-poller-${i}` }, tags: { name: 'setup' } });
      if (res.status === 201) { tokens.push(body(res).queue_token); break; }
      if (attempt >= 5) abort(`setup join: ${describe(res)}`);
      sleep(1);
    }
  }
  // An admission for the admitted reserve phase (the queue admits once the opening is 3 s past).
  const joined = http.post(`${API_URL}/events/${roomEvent.event_id}/queue`, null,
    { headers: { 'X-Device-Id': `${runId}-admitted` }, tags: { name: 'setup' } });
  let entry = body(joined);
  for (let i = 0; i < 60 && entry && entry.state === 'waiting'; i += 1) {
    sleep(1);
    entry = body(http.get(`${API_URL}/events/${roomEvent.event_id}/queue/${entry.queue_token}`, { tags: { name: 'setup' } }));
  }
  if (!entry || entry.state !== 'admitted') abort(`setup: no admission: ${JSON.stringify(entry)}`);
  failures.add(0);
  console.log(`bench-queue ${runId}: ${VUS} VUs, ${PHASE_S} s per phase`);
  return { runId, joinEvent: joinEvent.event_id, pollEvent: pollEvent.event_id, plainEvent: plainEvent.event_id,
    roomEvent: roomEvent.event_id, tokens, admission: entry.admission_token };
}

function expect(res, status) {
  if (res.status !== status) {
    failures.add(1);
    if (Math.random() < 0.05) console.warn(describe(res));
  }
}

const unique = (data, what) => `${data.runId}-${what}-${exec.scenario.name}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;

export function join(data) {
  expect(http.post(`${API_URL}/events/${data.joinEvent}/queue`, null,
    { headers: { 'X-Device-Id': unique(data, 'joiner') } }), 201);
}

export function poll(data) {
  const token = data.tokens[Math.floor(Math.random() * data.tokens.length)];
  expect(http.get(`${API_URL}/events/${data.pollEvent}/queue/${token}`), 200);
}

function reserveOn(data, eventId, admission) {
  const headers = jsonHeaders({ 'Idempotency-Key': unique(data, 'key'), 'X-Device-Id': unique(data, 'buyer') });
  if (admission) headers['X-Admission-Token'] = admission;
  expect(http.post(`${API_URL}/events/${eventId}/reservations`, JSON.stringify({ quantity: 1 }), { headers }), 201);
}

export function reserve(data) { reserveOn(data, data.plainEvent, null); }
export function reserve_admitted(data) { reserveOn(data, data.roomEvent, data.admission); } // eslint-disable-line camelcase

export function handleSummary(data) {
  const rows = {};
  for (const phase of PHASES) {
    const reqs = data.metrics[`http_reqs{phase:${phase}}`];
    const duration = data.metrics[`http_req_duration{phase:${phase}}`];
    rows[phase] = {
      requests: reqs ? reqs.values.count : 0,
      requests_per_second: reqs ? reqs.values.count / PHASE_S : 0,
      p50_ms: duration ? duration.values.med : null,
      p95_ms: duration ? duration.values['p(95)'] : null,
    };
  }
  const reference = rows.reserve.requests_per_second || 1;
  for (const phase of PHASES) rows[phase].rate_vs_reserve = rows[phase].requests_per_second / reference;
  const table = [
    '| phase | requests/s | p50 ms | p95 ms | rate vs reserve |',
    '|---|---|---|---|---|',
    ...PHASES.map((p) => `| ${p} | ${rows[p].requests_per_second.toFixed(1)} | ${(rows[p].p50_ms || 0).toFixed(1)} | `
      + `${(rows[p].p95_ms || 0).toFixed(1)} | ${rows[p].rate_vs_reserve.toFixed(2)} |`),
  ];
  const facts = [`target ${API_URL}, ${VUS} VUs, ${PHASE_S} s per phase`, '', ...table];
  return summaryOutputs('bench_queue', data, { vus: VUS, phase_seconds: PHASE_S, phases: rows }, facts);
}
