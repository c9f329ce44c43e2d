// Shared by the k6 scripts in this folder: configuration, API calls, the end-of-test summary.
// Runs inside k6 (not Node): http, check and exec come from k6's own modules.

import http from 'k6/http';
import exec from 'k6/execution';

export const API_URL = (__ENV.API_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '');
export const TOKEN = __ENV.TICKETS_ADMIN_TOKEN || '';
export const RESULTS_DIR = (__ENV.RESULTS_DIR || 'tests/load/results').replace(/\/+$/, '');

/** A whole number from the environment; a typo stops the run before it starts. */
export function intEnv(name, fallback) {
  const raw = (__ENV[name] || '').trim();
  if (raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a whole number, not ${JSON.stringify(raw)}`);
  return parseInt(raw, 10);
}

export function floatEnv(name, fallback) {
  const raw = (__ENV[name] || '').trim();
  if (raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number >= 0, not ${JSON.stringify(raw)}`);
  return value;
}

/** A short id that tells this run's data apart from every other run's. */
export function newRunId(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export function jsonHeaders(extra) {
  return Object.assign({ 'Content-Type': 'application/json', Accept: 'application/json' }, extra || {});
}

/** The headers of a holder acting on its reservation: the secret its reserve answered. */
export function holderHeaders(reservation, extra) {
  return jsonHeaders(Object.assign({ 'X-Reservation-Secret': reservation.reservation_secret }, extra || {}));
}

export function staffHeaders(extra) {
  return jsonHeaders(Object.assign({ Authorization: `Bearer ${TOKEN}` }, extra || {}));
}

/** The body as JSON, or null when it is not JSON (an HTML error page, an empty body). */
export function body(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

/** The contract's error code (`{"error": {"code": ...}}`), or '' when there is none. */
export function errorCode(res) {
  const parsed = body(res);
  return parsed && parsed.error && typeof parsed.error.code === 'string' ? parsed.error.code : '';
}

/** A response in one line, for logs: status, then the start of the body. */
export function describe(res) {
  const text = res.error ? `(${res.error})` : String(res.body || '').slice(0, 300);
  return `${res.request ? res.request.method : ''} ${res.url} -> ${res.status} ${text}`;
}

/** Stops the whole run (setup failed: nothing sensible can be measured). k6 exits 108. */
export function abort(message) {
  console.error(message);
  exec.test.abort(message);
}

/** setup(): the token is there and the API answers GET /health with 200. */
export function requireReadyApi() {
  if (!TOKEN) abort('TICKETS_ADMIN_TOKEN is not set: the organizer and staff calls need it.');
  const res = http.get(`${API_URL}/health`, { tags: { name: 'setup' }, timeout: '20s' });
  if (res.status !== 200) abort(`${API_URL}/health did not answer 200: ${describe(res)}`);
}

/** POST /events as the organizer; returns the created event. */
export function createEvent(event) {
  const res = http.post(`${API_URL}/events`, JSON.stringify(event),
    { headers: staffHeaders(), tags: { name: 'setup' }, timeout: '30s' });
  if (res.status !== 201) abort(`creating the test event failed: ${describe(res)}`);
  return body(res);
}

/**
 * Rounds of WARMUP_CONCURRENCY parallel requests (http.batch) before the measured part, so that
 * p95 measures warm functions: on the local stage (and on Lambda) a burst that finds no idle
 * execution environment waits for a cold start (seconds) even when a warm one frees up a moment
 * later. WARMUP_ROUNDS=0 measures the cold burst instead. `round(i)` makes one round's requests.
 */
export const WARMUP_ROUNDS = intEnv('WARMUP_ROUNDS', 2);
export const WARMUP_CONCURRENCY = intEnv('WARMUP_CONCURRENCY', 16);

export function warmUp(label, round) {
  const started = Date.now();
  for (let i = 0; i < WARMUP_ROUNDS; i += 1) round(i);
  if (WARMUP_ROUNDS > 0) {
    console.log(`warm-up (${label}): ${WARMUP_ROUNDS} round(s) of ${WARMUP_CONCURRENCY} parallel requests `
      + `in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

/** An ISO time `days` from now: the test events start in the future, so sales are open. */
export function daysFromNow(days) {
  return new Date(Date.now() + days * 86400 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------
// The end-of-test summary. A script that exports handleSummary() replaces k6's own text summary,
// and k6's textSummary() helper is only published on jslib.k6.io (a network import), so the text
// written to stdout is made here; the JSON file holds everything k6 collected.

function fmtNumber(value) {
  if (typeof value !== 'number') return String(value);
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(Math.abs(value) >= 100 ? 1 : 3);
}

function fmtMs(value) {
  if (typeof value !== 'number') return String(value);
  if (value >= 1000) return `${(value / 1000).toFixed(2)}s`;
  return `${value.toFixed(value >= 100 ? 0 : 1)}ms`;
}

function fmtValues(metric) {
  const v = metric.values;
  if (metric.type === 'trend') {
    const f = metric.contains === 'time' ? fmtMs : fmtNumber;
    return ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)']
      .filter((k) => k in v).map((k) => `${k}=${f(v[k])}`).join(' ');
  }
  if (metric.type === 'counter') return `count=${fmtNumber(v.count)} rate=${fmtNumber(v.rate)}/s`;
  if (metric.type === 'rate') return `rate=${(v.rate * 100).toFixed(2)}% (${v.passes} of ${v.passes + v.fails})`;
  if (metric.type === 'gauge') return `value=${fmtNumber(v.value)} min=${fmtNumber(v.min)} max=${fmtNumber(v.max)}`;
  return JSON.stringify(v);
}

/** Every threshold of the run: [{metric, expression, ok}]. */
export function thresholdResults(data) {
  const results = [];
  for (const [name, metric] of Object.entries(data.metrics)) {
    for (const [expression, verdict] of Object.entries(metric.thresholds || {})) {
      results.push({ metric: name, expression, ok: verdict.ok, values: metric.values });
    }
  }
  results.sort((a, b) => a.metric.localeCompare(b.metric));
  return results;
}

function checkResults(group, out) {
  for (const c of group.checks || []) out.push(c);
  for (const g of group.groups || []) checkResults(g, out);
  return out;
}

/**
 * The text for stdout. `collapse` names metric prefixes (such as 'admissions{ticket:') whose
 * many per-item thresholds are shown as one line: how many held, and the ones that did not.
 * `facts` are lines the script adds (rates, ids) under the title.
 */
export function textSummary(data, title, facts, collapse) {
  const results = thresholdResults(data);
  const failed = results.filter((r) => !r.ok);
  const lines = [];
  const verdict = failed.length === 0 ? 'PASS' : 'FAIL';
  lines.push('');
  lines.push(`=== ${title}: ${verdict} (thresholds: ${results.length - failed.length} held, ${failed.length} crossed) ===`);
  for (const fact of facts || []) lines.push(`  ${fact}`);
  lines.push('');
  lines.push('thresholds:');
  const collapsed = {};
  for (const r of results) {
    const prefix = (collapse || []).find((p) => r.metric.startsWith(p));
    if (prefix) {
      const group = (collapsed[prefix] = collapsed[prefix] || { total: 0, crossed: [] });
      group.total += 1;
      if (!r.ok) group.crossed.push(`${r.metric} ${r.expression} (${fmtValues(data.metrics[r.metric])})`);
      continue;
    }
    lines.push(`  ${r.ok ? 'ok     ' : 'CROSSED'} ${r.metric}: ${r.expression}   [${fmtValues(data.metrics[r.metric])}]`);
  }
  for (const [prefix, group] of Object.entries(collapsed)) {
    const held = group.total - group.crossed.length;
    lines.push(`  ${group.crossed.length ? 'CROSSED' : 'ok     '} ${prefix}*}: ${held} of ${group.total} held`);
    for (const c of group.crossed.slice(0, 20)) lines.push(`            ${c}`);
    if (group.crossed.length > 20) lines.push(`            ... and ${group.crossed.length - 20} more`);
  }
  const checks = checkResults(data.root_group, []);
  if (checks.length) {
    lines.push('');
    lines.push('checks:');
    for (const c of checks) {
      lines.push(`  ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${c.name}: ${c.passes} ok, ${c.fails} failed`);
    }
  }
  lines.push('');
  lines.push('metrics:');
  const names = Object.keys(data.metrics).filter((n) => !n.includes('{')).sort();
  const width = Math.max(...names.map((n) => n.length));
  for (const name of names) lines.push(`  ${name.padEnd(width)}  ${fmtValues(data.metrics[name])}`);
  const tagged = Object.keys(data.metrics)
    .filter((n) => n.includes('{') && !(collapse || []).some((p) => n.startsWith(p))).sort();
  for (const name of tagged) lines.push(`  ${name}  ${fmtValues(data.metrics[name])}`);
  lines.push('');
  return lines.join('\n') + '\n';
}

/** The stamp in the results file names: RUN_STAMP from the runner, else the current UTC time. */
export function runStamp() {
  return __ENV.RUN_STAMP || new Date().toISOString().replace(/[:.]/g, '-');
}

/**
 * handleSummary()'s answer: the text on stdout and the whole summary, with the script's derived
 * figures and the threshold verdicts, as JSON in RESULTS_DIR/<name>-<stamp>.json.
 */
export function summaryOutputs(name, data, derived, facts, collapse) {
  const file = `${RESULTS_DIR}/${name}-${runStamp()}.json`;
  const results = thresholdResults(data);
  const report = {
    script: name,
    api_url: API_URL,
    passed: results.every((r) => r.ok),
    thresholds_crossed: results.filter((r) => !r.ok).map((r) => `${r.metric}: ${r.expression}`),
    derived,
    setup_data: data.setup_data,
    k6: data,
  };
  const text = textSummary(data, name, (facts || []).concat([`summary JSON: ${file}`]), collapse);
  return { stdout: text, [file]: JSON.stringify(report, null, 2) };
}
