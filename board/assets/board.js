// Kiln board: plain JavaScript, no build step. The server lists runs and
// serves their files; everything else happens here. Formats are the run
// directory contract of trainer/rundir.go: metrics.jsonl, histograms.jsonl,
// visuals.json, summary.json, config.yaml, and a tune's results.csv.
'use strict';

const RUN_COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#8cd17d'];
const DEFAULT_SELECTED = 8;

const state = {
  listing: null,
  files: new Map(), // path -> {size, modified, offset, records | json | text}
  selected: new Set(),
  touched: false, // the user chose the overlaid runs
  focus: null,
  focusChosen: false,
  colors: new Map(),
  // Off at first: metrics.jsonl holds epoch and validation averages, which
  // are smooth already; the slider is there for long, noisy runs.
  smoothing: 0,
  xaxis: 'step',
  filter: '',
  histKind: 'weight',
  onlyWrong: false,
  tune: null,
  sort: { col: null, desc: false },
  colorBy: null,
  logY: {},
  sguToken: new Map(), // layer -> token index
  charts: new Map(), // metric -> {u, key, zoomed, card}
};

const $ = (sel, el = document) => el.querySelector(sel);
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') { for (const [dk, dv] of Object.entries(v)) if (dv != null) el.dataset[dk] = dv; }
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const finite = (v) => typeof v === 'number' && Number.isFinite(v);
function fmt(v, digits = 4) {
  if (!finite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return Number(v.toPrecision(digits)).toString();
}
// tickLabels writes a linear axis's ticks with the decimals their spacing
// needs, so that ticks 0.0002 apart read 0.9812, 0.9814 (as TensorBoard's
// do), not 0.981 twice.
function tickLabels(vs, incr) {
  const big = vs.some((v) => Math.abs(v) >= 1e6);
  if (!finite(incr) || incr <= 0 || incr < 1e-6 || big) return vs.map((v) => fmt(v, 3));
  const text = String(Number(incr.toPrecision(12)));
  const decimals = text.includes('.') ? text.length - text.indexOf('.') - 1 : 0;
  return vs.map((v) => (!finite(v) ? '–' : decimals ? v.toFixed(decimals) : v.toLocaleString('en-US')));
}
const pct = (v) => (finite(v) ? (100 * v).toFixed(2) + '%' : '–');
function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
function withAlpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

// ---------- data loading ----------

const fileURL = (p) => 'api/file?path=' + encodeURIComponent(p);
const joinPath = (dir, name) => (dir === '.' ? name : dir + '/' + name);
const decoder = new TextDecoder();

// ---------- records ----------

// A run's files are read while they are written, copied between machines and
// edited by hand: a bad record (null, a stray line, a wrong type, a number out
// of range) is skipped, counted and said on the page, never thrown. The rules
// are kiln plot's (trainer/plots/records.go).
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v) => Number.isInteger(v) && v >= 0;
const optNum = (v) => v == null || finite(v);
const optStr = (v) => v == null || typeof v === 'string';
const optInt = (v) => v == null || Number.isInteger(v);
const METRIC_NUMBERS = ['epoch', 'loss', 'accuracy', 'top5', 'rmse', 'mae', 'r2', 'lr', 'wall_seconds', 'images_per_sec'];

function validMetric(m) {
  return isObj(m) && isCount(m.step) && typeof m.split === 'string' && m.split !== '' && optStr(m.time) && METRIC_NUMBERS.every((k) => optNum(m[k]));
}

// A histogram record is bad as a whole when one of its parameters is: its
// line is written whole or not at all.
function validHistogram(r) {
  return isObj(r) && Number.isInteger(r.step) && optNum(r.epoch) && Array.isArray(r.params) && r.params.every(validParam);
}
function validParam(p) {
  if (!isObj(p) || typeof p.name !== 'string' || p.name === '' || typeof p.kind !== 'string' || !finite(p.min) || !finite(p.max)) return false;
  const e = p.edges, c = p.counts;
  if (!Array.isArray(e) || !Array.isArray(c) || e.length < 2 || c.length !== e.length - 1) return false;
  for (let i = 0; i < e.length; i++) if (!finite(e[i]) || (i > 0 && e[i] < e[i - 1])) return false;
  return c.every(isCount);
}
const VALID_LINE = { 'metrics.jsonl': validMetric, 'histograms.jsonl': validHistogram };

const newBad = () => ({ count: 0, where: [] });
const MAX_LISTED = 10;
function addBad(bad, where) {
  bad.count++;
  if (bad.where.length < MAX_LISTED) bad.where.push(where);
}

// parseLines parses the complete lines of bytes, the first of them line
// number first, into records; it returns the number of lines read. It
// decodes PARSE_CHUNK bytes at a time, cut at a newline: a file of 512 MiB
// is past the longest string a browser makes, and read whole it showed as no
// data at all.
let PARSE_CHUNK = 1 << 24;
function parseLines(bytes, into, first, bad, valid) {
  let n = 0;
  for (let start = 0; start < bytes.length;) {
    let end = Math.min(start + PARSE_CHUNK, bytes.length);
    if (end < bytes.length) {
      const nl = bytes.lastIndexOf(10, end - 1);
      end = nl >= start ? nl + 1 : bytes.indexOf(10, end) + 1 || bytes.length; // a line longer than a chunk
    }
    const lines = decoder.decode(bytes.subarray(start, end)).split('\n');
    lines.pop(); // what follows the chunk's last newline: nothing, as each chunk ends with one
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let r;
      try { r = JSON.parse(line); } catch (e) { r = undefined; }
      if (r !== undefined && valid(r)) into.push(r); else addBad(bad, first + n + i);
    });
    n += lines.length;
    start = end;
  }
  return n;
}

// shapeFits: rank dimensions, each an integer ≥ 1, holding exactly data's
// values (numbers, or null for NaN).
function shapeFits(shape, rank, data) {
  if (!Array.isArray(shape) || shape.length !== rank || !Array.isArray(data)) return false;
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) return false;
    n *= d;
  }
  return n === data.length && data.every((x) => x === null || finite(x));
}

// cleanVisuals keeps the good parts of visuals.json: a bad filters,
// confusion or classes is left out, and so is each bad sample, attention
// map or SGU matrix.
function cleanVisuals(raw, bad) {
  const v = {};
  if (!isObj(raw)) { bad.unreadable = 'not a JSON object'; return v; }
  const part = (name, ok) => {
    if (raw[name] == null) return;
    if (ok(raw[name])) v[name] = raw[name]; else addBad(bad, name);
  };
  part('step', Number.isInteger);
  part('classes', (c) => Array.isArray(c) && c.every((x) => typeof x === 'string'));
  part('filters', (f) => isObj(f) && optStr(f.name) && shapeFits(f.shape, 4, f.data));
  part('confusion', (m) => Array.isArray(m) && m.every((row) => Array.isArray(row) && row.length === m.length && row.every(isCount)));
  let first = null; // kiln plot draws samples of one shape, the first's
  v.samples = goodItems(raw, 'samples', bad, (s) => {
    if (!(optInt(s.index) && shapeFits(s.shape, 3, s.pixels) && (s.label == null || isCount(s.label)) && optNum(s.pred) && optNum(s.target) && optNum(s.prob))) return false;
    first = first || s.shape;
    return s.shape.every((d, i) => d === first[i]);
  });
  v.attention = goodItems(raw, 'attention', bad, (a) => optStr(a.layer) && optStr(a.kind) && optInt(a.sample) && shapeFits(a.shape, 2, a.data));
  v.sgu = goodItems(raw, 'sgu', bad, (g) => optStr(g.layer) && shapeFits(g.shape, 2, g.data));
  return v;
}
function goodItems(raw, name, bad, ok) {
  const x = raw[name];
  if (x == null) return [];
  if (!Array.isArray(x)) { addBad(bad, name); return []; }
  return x.filter((item, i) => {
    if (isObj(item) && ok(item)) return true;
    addBad(bad, `${name}[${i}]`);
    return false;
  });
}

const SUMMARY_NUMBERS = ['params', 'test_accuracy', 'test_top5', 'test_rmse', 'test_mae', 'test_r2', 'test_loss', 'train_images_per_sec'];
function cleanSummary(raw, bad) {
  const ok = isObj(raw) && SUMMARY_NUMBERS.every((k) => optNum(raw[k])) && ['model', 'dataset', 'stop_reason'].every((k) => optStr(raw[k])) &&
    (raw.stopped_early == null || typeof raw.stopped_early === 'boolean');
  if (ok) return raw;
  bad.unreadable = 'not the summary a run writes';
  return null;
}
const CLEAN_JSON = { 'visuals.json': cleanVisuals, 'summary.json': cleanSummary };

// parseJSON reads a whole-file record: a text that is not JSON, or not what
// the file holds, is skipped and said.
function parseJSON(path, text, bad) {
  let raw;
  try { raw = JSON.parse(text); } catch (e) {
    bad.unreadable = `not JSON (${e.message})`;
    return null;
  }
  const clean = CLEAN_JSON[path.split('/').pop()];
  return clean ? clean(raw, bad) : raw;
}

// badNote is the page's line for what a file's reader skipped, as kiln plot
// says it: "metrics.jsonl: skipped 1 bad record (line 7)"; null when nothing.
function badNote(name, bad, torn = 0, unit = 'record') {
  if (!bad) return null;
  if (bad.unreadable) return `${name}: skipped, ${bad.unreadable}`;
  const parts = [];
  if (bad.count) {
    const lines = bad.where.length && Number.isInteger(bad.where[0]);
    const list = (lines ? (bad.count > 1 ? 'lines ' : 'line ') : '') + bad.where.join(', ');
    const more = bad.count - bad.where.length;
    parts.push(`${bad.count} bad ${unit}${bad.count > 1 ? 's' : ''} (${list}${more > 0 ? ` and ${more} more` : ''})`);
  }
  if (torn) parts.push(`the last line (${torn}) cut short`);
  return parts.length ? `${name}: skipped ${parts.join('; ')}` : null;
}

// fileNote says what was skipped in a loaded file; a JSON-lines file whose
// last line has no newline yet says so too.
function fileNote(path) {
  const f = state.files.get(path);
  if (!f) return null;
  const torn = f.records && f.size > f.offset ? f.line + 1 : 0;
  return badNote(path.split('/').pop(), f.bad, torn);
}

// load fetches a file when the listing says it changed. JSON-lines files that
// only grew are fetched from where the last complete line ended; the lines
// and bad records counted so far carry on. A file that grew is fetched from a
// little before that point, and read whole again unless those bytes are still
// the ones read last: it was rewritten (a resumed run trims histograms.jsonl),
// not appended to.
async function load(path, info) {
  const c = state.files.get(path);
  if (!info) { state.files.delete(path); return null; }
  if (c && c.size === info.size && c.modified === info.modified) return c;
  const jsonl = path.endsWith('.jsonl');
  const valid = VALID_LINE[path.split('/').pop()] || isObj;
  try {
    let whole = null; // the server's answer to a tail request for a file that shrank
    if (jsonl && c && c.offset > 0 && info.size > c.offset) {
      const res = await fetch(fileURL(path), { headers: { Range: `bytes=${c.offset - c.tail.length}-` }, cache: 'no-store' });
      if (res.status === 200) whole = res;
      const all = res.status === 206 ? new Uint8Array(await res.arrayBuffer()) : null;
      if (all && all.length >= c.tail.length && c.tail.every((x, i) => all[i] === x)) {
        const buf = all.subarray(c.tail.length);
        const end = buf.lastIndexOf(10) + 1;
        const next = { size: info.size, modified: info.modified, offset: c.offset + end, records: c.records.slice(), bad: { count: c.bad.count, where: c.bad.where.slice() } };
        next.line = c.line + parseLines(buf.subarray(0, end), next.records, c.line + 1, next.bad, valid);
        next.tail = tailOf(c.tail, buf.subarray(0, end));
        state.files.set(path, next);
        return next;
      }
    }
    const res = whole || await fetch(fileURL(path), { cache: 'no-store' });
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    const next = { size: info.size, modified: info.modified, bad: newBad() };
    if (jsonl) {
      const buf = new Uint8Array(await res.arrayBuffer());
      const end = buf.lastIndexOf(10) + 1;
      next.records = [];
      next.line = parseLines(buf.subarray(0, end), next.records, 1, next.bad, valid);
      next.offset = end;
      next.tail = tailOf(new Uint8Array(0), buf.subarray(0, end));
    } else if (path.endsWith('.json')) {
      next.json = parseJSON(path, await res.text(), next.bad);
    } else {
      next.text = await res.text();
    }
    state.files.set(path, next);
    return next;
  } catch (e) {
    console.warn('board: loading', path, e);
    return c || null;
  }
}

// tailOf is the last TAIL bytes of what was read: prev, then chunk.
const TAIL = 256;
function tailOf(prev, chunk) {
  if (chunk.length >= TAIL) return chunk.slice(chunk.length - TAIL);
  const t = new Uint8Array(Math.min(TAIL, prev.length + chunk.length));
  const keep = t.length - chunk.length;
  t.set(prev.subarray(prev.length - keep), 0);
  t.set(chunk, keep);
  return t;
}

const runByID = (id) => state.listing && state.listing.runs.find((r) => r.id === id);
function runFile(id, name) {
  const f = state.files.get(joinPath(id, name));
  return f || null;
}

// ---------- refresh cycle ----------

let pending = null;
let running = false;
function schedule(listing) {
  pending = listing;
  if (!running) drain();
}
async function drain() {
  running = true;
  document.body.dataset.ready = 'false';
  while (pending) {
    const l = pending;
    pending = null;
    try { await refresh(l); } catch (e) { console.error('board: refresh', e); }
  }
  running = false;
  document.body.dataset.ready = 'true';
}

function reconcile(l) {
  const ids = new Set(l.runs.map((r) => r.id));
  l.runs.forEach((r) => { if (!state.colors.has(r.id)) state.colors.set(r.id, RUN_COLORS[state.colors.size % RUN_COLORS.length]); });
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  if (!state.touched) {
    // The newest runs, leaving a tune's trials to its table unless there is
    // nothing else: fifty trials would bury the curves.
    const own = l.runs.filter((r) => !r.tune);
    const recent = [...(own.length ? own : l.runs)].sort((a, b) => b.modified - a.modified).slice(0, DEFAULT_SELECTED);
    state.selected = new Set(recent.map((r) => r.id));
  }
  if (!ids.has(state.focus) || !state.focusChosen) {
    // From the same pool as the default selection, so that the run the
    // page heads with is one of the curves drawn.
    const own = l.runs.filter((r) => !r.tune);
    const newest = [...(own.length ? own : l.runs)].sort((a, b) => b.modified - a.modified)[0];
    if (!ids.has(state.focus)) state.focusChosen = false;
    if (!state.focusChosen) state.focus = newest ? newest.id : null;
  }
  const tuneIDs = l.tunes.map((t) => t.id);
  if (!tuneIDs.includes(state.tune)) {
    const f = runByIDIn(l, state.focus);
    state.tune = f && f.tune && tuneIDs.includes(f.tune) ? f.tune : tuneIDs[0] || null;
  }
}
const runByIDIn = (l, id) => l.runs.find((r) => r.id === id);

async function refresh(l) {
  state.listing = l;
  reconcile(l);
  const loads = [];
  for (const r of l.runs) {
    if (state.selected.has(r.id) || r.id === state.focus) loads.push(load(joinPath(r.id, 'metrics.jsonl'), r.files['metrics.jsonl']));
  }
  const f = runByID(state.focus);
  if (f) for (const name of ['histograms.jsonl', 'visuals.json', 'summary.json', 'config.yaml']) loads.push(load(joinPath(f.id, name), f.files[name]));
  const t = l.tunes.find((x) => x.id === state.tune);
  if (t) loads.push(load(joinPath(t.id, 'results.csv'), t.files['results.csv']));
  await Promise.all(loads);
  render();
}

function render() {
  document.body.dataset.focus = state.focus || '';
  const ld = $('#logdir');
  ld.textContent = state.listing.logdir.split(/[\\/]/).filter(Boolean).pop() || state.listing.logdir;
  ld.title = 'log directory ' + state.listing.logdir;
  renderRunList();
  renderOverview();
  renderScalars();
  renderHistograms();
  const vis = state.focus && runFile(state.focus, 'visuals.json');
  const v = (vis && vis.json) || {};
  renderFilters(v);
  renderConfusion(v);
  renderAttention(v);
  renderSamples(v);
  renderTune();
}

// ---------- run list ----------

function renderRunList() {
  const box = $('#runs');
  const l = state.listing;
  box.replaceChildren();
  if (!l.runs.length) {
    box.append(h('p', { class: 'empty' }, 'No runs yet. A run is any directory holding metrics.jsonl (kiln train --run-dir ', h('code', {}, 'DIR'), ').'));
    return;
  }
  const q = state.filter.toLowerCase();
  const shown = l.runs.filter((r) => !q || r.name.toLowerCase().includes(q));
  const groups = [{ title: 'Runs', runs: shown.filter((r) => !r.tune) }];
  for (const t of l.tunes) groups.push({ title: 'Tune ' + t.name, runs: shown.filter((r) => r.tune === t.id) });
  const now = Date.now();
  for (const g of groups) {
    if (!g.runs.length) continue;
    const el = h('div', { class: 'group' }, h('div', { class: 'group-title' }, h('span', {}, g.title), h('span', {}, g.runs.length)));
    for (const r of g.runs) {
      // A trial's name within its tune ("." when the log directory is the tune).
      const name = r.tune ? r.name.slice(r.tune === '.' ? 0 : r.tune.length + 1).replace(/^trials\//, '') : r.name;
      const live = now - r.modified < 30000 && !r.files['summary.json'];
      const metrics = runFile(r.id, 'metrics.jsonl');
      const lastVal = metrics && [...metrics.records].reverse().find((m) => m.split === 'val');
      const meta = lastVal ? (finite(lastVal.accuracy) ? pct(lastVal.accuracy) : fmt(lastVal.loss, 3)) : '';
      const row = h('div', { class: 'run' + (r.id === state.focus ? ' focus' : ''), dataset: { run: r.id }, title: r.id + ' — click to inspect, tick to overlay' },
        h('input', { type: 'checkbox', checked: state.selected.has(r.id), onclick: (e) => { e.stopPropagation(); toggleRun(r.id, e.target.checked); } }),
        h('span', { class: 'dot', style: `background:${state.colors.get(r.id)}` }),
        h('span', { class: 'name' }, name),
        live ? h('span', { class: 'pulse', title: 'training' }) : null,
        metrics && metrics.bad.count ? h('span', { class: 'warn', title: fileNote(joinPath(r.id, 'metrics.jsonl')) }, '!') : null,
        h('span', { class: 'meta' }, meta));
      row.addEventListener('click', () => focusRun(r.id));
      el.append(row);
    }
    box.append(el);
  }
}

function toggleRun(id, on) {
  state.touched = true;
  if (on) state.selected.add(id); else state.selected.delete(id);
  schedule(state.listing);
}
function focusRun(id) {
  state.focus = id;
  state.focusChosen = true;
  state.selected.add(id);
  const r = runByID(id);
  if (r && r.tune) state.tune = r.tune;
  schedule(state.listing);
}

// ---------- overview ----------

function renderOverview() {
  const box = $('#overview');
  box.replaceChildren();
  const r = runByID(state.focus);
  if (!r) return;
  const metrics = runFile(r.id, 'metrics.jsonl');
  const recs = metrics ? metrics.records : [];
  const summary = runFile(r.id, 'summary.json');
  const s = (summary && summary.json) || null;
  const last = recs[recs.length - 1];
  const lastVal = [...recs].reverse().find((m) => m.split === 'val');
  const lastTrain = [...recs].reverse().find((m) => m.split === 'train');
  const stats = [];
  const add = (k, v) => { if (v != null && v !== '–') stats.push(h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v))); };
  if (s) {
    if (finite(s.test_accuracy)) add('test accuracy', pct(s.test_accuracy));
    if (finite(s.test_rmse)) add('test RMSE', fmt(s.test_rmse));
    add('test loss', fmt(s.test_loss));
  }
  if (lastVal) {
    if (finite(lastVal.accuracy)) add('val accuracy', pct(lastVal.accuracy));
    if (finite(lastVal.rmse)) add('val RMSE', fmt(lastVal.rmse));
    add('val loss', fmt(lastVal.loss));
  }
  if (last) add('step', fmt(last.step));
  if (last) add('epoch', fmt(Math.round(last.epoch * 100) / 100));
  const ips = (s && s.train_images_per_sec) || (lastTrain && lastTrain.images_per_sec);
  if (finite(ips)) add('images / s', fmt(Math.round(ips)));
  if (s && finite(s.params)) add('parameters', fmt(s.params));
  const status = s ? (s.stopped_early ? 'stopped early' : 'finished') + (s.stop_reason ? ' · ' + s.stop_reason : '') : (Date.now() - r.modified < 30000 ? 'training…' : 'no summary yet');
  box.append(h('div', { class: 'title' },
    h('span', { class: 'dot', style: `display:inline-block;width:12px;height:12px;border-radius:3px;background:${state.colors.get(r.id)}` }),
    h('h1', {}, r.name), h('span', { class: 'state' }, [s && s.model, s && s.dataset, status].filter(Boolean).join(' · '))));
  box.append(h('div', { class: 'stats', id: 'stats' }, stats));
  const notes = ['metrics.jsonl', 'histograms.jsonl', 'visuals.json', 'summary.json'].map((name) => fileNote(joinPath(r.id, name))).filter(Boolean);
  if (notes.length) box.append(h('div', { class: 'bad-records', id: 'bad-records', title: 'records the page could not read, left out' }, notes.map((n) => h('div', {}, n))));
  const cfg = runFile(r.id, 'config.yaml');
  if (cfg && cfg.text) box.append(h('details', { class: 'config' }, h('summary', {}, 'config.yaml'), h('pre', {}, cfg.text)));
}

// ---------- scalars ----------

const METRICS = [
  { key: 'loss', title: 'Loss', splits: ['train_step', 'train', 'val'], log: true },
  { key: 'accuracy', title: 'Accuracy', splits: ['train_step', 'train', 'val'] },
  { key: 'top5', title: 'Top-5 accuracy', splits: ['train_step', 'train', 'val'] },
  { key: 'rmse', title: 'RMSE', splits: ['train_step', 'train', 'val'], log: true },
  { key: 'mae', title: 'MAE', splits: ['train_step', 'train', 'val'] },
  { key: 'r2', title: 'R²', splits: ['train_step', 'train', 'val'] },
  { key: 'lr', title: 'Learning rate', splits: [null] },
  { key: 'images_per_sec', title: 'Images per second', splits: ['train'] },
];

function xOf(m) {
  if (state.xaxis === 'epoch') return m.epoch;
  if (state.xaxis === 'wall') return m.wall_seconds;
  return m.step;
}

// TensorBoard's smoothing: an exponential moving average, debiased so the
// first points are not pulled towards zero.
function smooth(ys, w) {
  if (!(w > 0)) return ys.slice();
  let last = 0, n = 0;
  return ys.map((y) => {
    if (!finite(y)) return y;
    last = last * w + (1 - w) * y;
    n++;
    return last / (1 - Math.pow(w, n));
  });
}

function seriesFor(metric) {
  const out = [];
  for (const r of state.listing.runs) {
    if (!state.selected.has(r.id)) continue;
    const f = runFile(r.id, 'metrics.jsonl');
    if (!f) continue;
    for (const split of metric.splits) {
      const byX = new Map();
      for (const m of f.records) {
        if (split ? m.split !== split : m.split === 'test') continue;
        const x = xOf(m), y = m[metric.key];
        if (finite(x) && finite(y)) byX.set(x, y);
      }
      if (!byX.size) continue;
      const xs = [...byX.keys()].sort((a, b) => a - b);
      out.push({ run: r, split, xs, ys: xs.map((x) => byX.get(x)), label: r.name + (split ? ' ' + split : '') });
    }
  }
  return out;
}

function renderScalars() {
  const box = $('#charts');
  const seen = new Set();
  for (const metric of METRICS) {
    const series = seriesFor(metric);
    if (!series.length) continue;
    seen.add(metric.key);
    drawChart(box, metric, series);
  }
  for (const [key, c] of state.charts) if (!seen.has(key)) destroyChart(key);
  // Keep cards in the METRICS order.
  for (const metric of METRICS) { const c = state.charts.get(metric.key); if (c) box.append(c.card); }
  const empty = $('#charts-empty');
  if (!seen.size && !empty) box.append(h('p', { class: 'empty', id: 'charts-empty' }, 'No metrics yet: select a run on the left.'));
  if (seen.size && empty) empty.remove();
}

function destroyChart(key) {
  const c = state.charts.get(key);
  if (!c) return;
  c.resize.disconnect();
  c.u.destroy();
  c.card.remove();
  state.charts.delete(key);
}

function drawChart(box, metric, series) {
  const w = state.smoothing;
  const tables = [];
  const spec = [];
  for (const s of series) {
    const color = state.colors.get(s.run.id);
    // --log-every's step records (train_step) thin and dotted under the
    // epoch means (train, dashed) and validation (solid).
    const dash = s.split === 'train' ? [6, 4] : s.split === 'train_step' ? [2, 3] : undefined;
    if (w > 0) {
      tables.push([s.xs, s.ys]);
      spec.push({ label: s.label + ' (raw)', stroke: withAlpha(color, 0.22), width: 1, dash, spanGaps: true, points: { show: false }, raw: true });
    }
    tables.push([s.xs, smooth(s.ys, w)]);
    const width = { train: 1.6, train_step: 1 }[s.split] ?? 2.2;
    spec.push({ label: s.label, stroke: color, width, dash, spanGaps: true, color, split: s.split, n: s.xs.length });
  }
  const log = state.logY[metric.key] ?? false;
  let data = uPlot.join(tables);
  if (log) data = data.map((col, i) => (i === 0 ? col : col.map((v) => (v > 0 ? v : null))));
  const key = [state.xaxis, log, ...spec.map((s) => s.label)].join('|');
  let c = state.charts.get(metric.key);
  if (c && c.key === key) {
    c.u.setData(data, !c.zoomed);
    c.spec = spec;
  } else {
    if (c) destroyChart(metric.key);
    const card = h('div', { class: 'chart card', dataset: { metric: metric.key } });
    const logBtn = h('button', { class: log ? 'on' : '', title: 'logarithmic y axis', onclick: () => { state.logY[metric.key] = !log; renderScalars(); } }, 'log');
    card.append(h('div', { class: 'chart-head' }, h('h3', {}, metric.title), logBtn));
    const plot = h('div', { class: 'plot' });
    const readout = h('div', { class: 'readout' });
    card.append(plot, readout);
    box.append(card);
    c = { card, key, zoomed: false, spec, readout };
    const text = cssVar('--muted'), grid = cssVar('--grid');
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif' };
    const xlabel = { step: 'step', epoch: 'epoch', wall: 'wall time' }[state.xaxis];
    const opts = {
      width: Math.max(280, plot.clientWidth || 400), height: 210,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [
        { ...axis, values: state.xaxis === 'wall' ? (u, vs) => vs.map(clock) : undefined },
        { ...axis, size: 58, values: (u, vs, _ax, _space, incr) => {
          const labels = log ? vs.map((v) => fmt(v, 3)) : tickLabels(vs, incr);
          card.dataset.yticks = labels.join('|');
          return labels;
        } },
      ],
      series: [{ label: xlabel }, ...spec.map((s) => ({ label: s.label, stroke: s.stroke, width: s.width, dash: s.dash, spanGaps: true, points: s.points || { show: s.n <= 40, size: 5, fill: s.color } }))],
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { size: 7 } },
      hooks: {
        setCursor: [(u) => showReadout(c, u, u.cursor.idx)],
        setSelect: [(u) => { if (u.select.width > 0) c.zoomed = true; }],
        ready: [(u) => u.over.addEventListener('dblclick', () => { c.zoomed = false; })],
      },
    };
    c.u = new uPlot(opts, data, plot);
    c.resize = new ResizeObserver(() => {
      const wd = plot.clientWidth;
      if (wd > 0 && Math.abs(wd - c.u.width) > 2) c.u.setSize({ width: wd, height: 210 });
    });
    c.resize.observe(plot);
    state.charts.set(metric.key, c);
  }
  c.card.dataset.series = String(series.length);
  c.card.dataset.drawn = String(c.u.series.length - 1);
  c.card.dataset.points = String(series.reduce((a, s) => a + s.xs.length, 0));
  showReadout(c, c.u, null);
}

function clock(s) {
  if (!finite(s)) return '';
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

// The readout under a chart: values under the cursor, or the latest values.
function showReadout(c, u, idx) {
  const items = [];
  const xs = u.data[0];
  if (idx != null) items.push(h('span', {}, u.series[0].label + ' ', h('b', {}, state.xaxis === 'wall' ? clock(xs[idx]) : fmt(xs[idx]))));
  c.spec.forEach((s, i) => {
    if (s.raw) return;
    const col = u.data[i + 1];
    let v = null;
    if (idx != null) v = col[idx];
    else for (let j = col.length - 1; j >= 0; j--) if (col[j] != null) { v = col[j]; break; }
    if (v == null) return;
    const sw = 'sw' + (s.split === 'train_step' ? ' dot' : s.dash ? ' dash' : '');
    items.push(h('span', { title: s.label }, h('span', { class: sw, style: `border-color:${s.color}` }), s.label + ' ', h('b', {}, fmt(v))));
  });
  c.readout.replaceChildren(...items);
}

// ---------- histograms ----------

function renderHistograms() {
  const box = $('#hists');
  box.replaceChildren();
  const f = state.focus && runFile(state.focus, 'histograms.jsonl');
  if (!f || !f.records.length) {
    box.append(h('p', { class: 'empty' }, 'No histograms.jsonl in this run yet (one line per validation).'));
    return;
  }
  const byName = new Map();
  for (const rec of f.records) {
    for (const p of rec.params || []) {
      if (p.kind !== state.histKind || !Array.isArray(p.counts) || !Array.isArray(p.edges)) continue;
      if (!byName.has(p.name)) byName.set(p.name, []);
      byName.get(p.name).push({ step: rec.step, epoch: rec.epoch, ...p });
    }
  }
  if (!byName.size) {
    box.append(h('p', { class: 'empty' }, `No ${state.histKind} histograms in this run.`));
    return;
  }
  const color = state.histKind === 'grad' ? '#e07b39' : '#3f7fbf';
  for (const [name, snaps] of byName) {
    const canvas = h('canvas', { dataset: { kind: state.histKind } });
    const first = snaps[0], last = snaps[snaps.length - 1];
    const card = h('div', { class: 'hist-card', dataset: { param: name } }, h('h3', {}, name), canvas,
      h('div', { class: 'cap' }, `steps ${first.step}–${last.step} (${snaps.length}) · now [${fmt(last.min, 3)}, ${fmt(last.max, 3)}]`));
    box.append(card);
    drawRidges(canvas, snaps, color);
  }
}

function setupCanvas(canvas, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

// drawRidges draws histograms over time as offset ridgelines, TensorBoard's
// "offset" view: the oldest at the back (top), the newest in front.
function drawRidges(canvas, all, color) {
  const maxRidges = 24;
  let snaps = all;
  if (all.length > maxRidges) {
    snaps = [];
    for (let i = 0; i < maxRidges; i++) snaps.push(all[Math.round((i * (all.length - 1)) / (maxRidges - 1))]);
  }
  const W = canvas.parentElement.clientWidth - 20 || 300, H = 150;
  const ctx = setupCanvas(canvas, W, H);
  const padL = 6, padR = 46, padT = 6, padB = 18;
  let lo = Infinity, hi = -Infinity;
  for (const s of snaps) { lo = Math.min(lo, s.edges[0]); hi = Math.max(hi, s.edges[s.edges.length - 1]); }
  if (!(hi > lo)) { lo -= 1e-6; hi += 1e-6; }
  const plotW = W - padL - padR, plotH = H - padT - padB;
  const peak = snaps.length > 1 ? plotH * 0.45 : plotH;
  const gap = snaps.length > 1 ? (plotH - peak) / (snaps.length - 1) : 0;
  const X = (v) => padL + ((v - lo) / (hi - lo)) * plotW;
  const text = cssVar('--muted');
  ctx.font = '10px system-ui, sans-serif';
  snaps.forEach((s, i) => {
    const base = padT + peak + i * gap;
    const t = snaps.length > 1 ? i / (snaps.length - 1) : 1;
    let m = 0;
    for (const c of s.counts) m = Math.max(m, c);
    ctx.beginPath();
    ctx.moveTo(X(s.edges[0]), base);
    s.counts.forEach((c, b) => {
      const x = X((s.edges[b] + s.edges[b + 1]) / 2);
      ctx.lineTo(x, base - (m > 0 ? (c / m) * peak : 0));
    });
    ctx.lineTo(X(s.edges[s.edges.length - 1]), base);
    ctx.closePath();
    ctx.fillStyle = withAlpha(color, 0.1 + 0.55 * t);
    ctx.fill();
    ctx.strokeStyle = withAlpha(color, 0.35 + 0.65 * t);
    ctx.lineWidth = i === snaps.length - 1 ? 1.6 : 0.8;
    ctx.stroke();
    if (i === 0 || i === snaps.length - 1 || (snaps.length > 4 && i === Math.floor(snaps.length / 2))) {
      ctx.fillStyle = text;
      ctx.textAlign = 'left';
      ctx.fillText(String(s.step), W - padR + 6, base);
    }
  });
  ctx.fillStyle = text;
  ctx.textAlign = 'left';
  ctx.fillText(fmt(lo, 2), padL, H - 4);
  ctx.textAlign = 'right';
  ctx.fillText(fmt(hi, 2), padL + plotW, H - 4);
  if (lo < 0 && hi > 0) { ctx.textAlign = 'center'; ctx.fillText('0', X(0), H - 4); }
}

// ---------- colour maps ----------

// A diverging map for signed values (blue, neutral, red) and viridis for
// magnitudes.
function diverging(t) { // t in [-1, 1]
  const a = [33, 102, 172], mid = [247, 247, 247], b = [178, 24, 43];
  const u = Math.max(-1, Math.min(1, t));
  const [p, q, s] = u < 0 ? [mid, a, -u] : [mid, b, u];
  return [0, 1, 2].map((k) => Math.round(p[k] + (q[k] - p[k]) * s));
}
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  const u = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(u)), f = u - i;
  return [0, 1, 2].map((k) => Math.round(VIRIDIS[i][k] + (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) * f));
}

function paint(canvas, w, hgt, pixel) {
  canvas.width = w;
  canvas.height = hgt;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, hgt);
  for (let y = 0; y < hgt; y++) {
    for (let x = 0; x < w; x++) {
      const [r, g, b, a] = pixel(x, y);
      const o = 4 * (y * w + x);
      img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = a ?? 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

// imageCanvas draws a sample's pixels (c×h×w floats in [0,1]).
function imageCanvas(sample) {
  const [c, hh, ww] = sample.shape || [];
  const px = sample.pixels || [];
  const canvas = document.createElement('canvas');
  if (!(c > 0 && hh > 0 && ww > 0) || px.length < c * hh * ww) return paint(canvas, 1, 1, () => [40, 40, 40]);
  const v = (ch, y, x) => Math.round(255 * Math.max(0, Math.min(1, px[ch * hh * ww + y * ww + x])));
  return paint(canvas, ww, hh, (x, y) => (c >= 3 ? [v(0, y, x), v(1, y, x), v(2, y, x)] : [v(0, y, x), v(0, y, x), v(0, y, x)]));
}

function legendBar(left, right, map) {
  const c = paint(document.createElement('canvas'), 64, 1, (x) => map(x / 63));
  return h('div', { class: 'legend-bar' }, h('span', {}, left), c, h('span', {}, right));
}

// ---------- filters ----------

function renderFilters(v) {
  const box = $('#filter-grid');
  box.replaceChildren();
  const f = v.filters;
  const shape = f && f.shape;
  if (!shape || shape.length !== 4 || !Array.isArray(f.data) || f.data.length < shape.reduce((a, b) => a * b, 1)) {
    box.append(h('p', { class: 'empty' }, 'No first-layer filters in visuals.json (a convolutional model writes them).'));
    return;
  }
  const [o, i, kh, kw] = shape;
  const rgb = i === 3;
  const grid = h('div', { class: 'filters', style: `--tile:${o <= 16 ? 72 : o <= 32 ? 56 : 46}px` });
  for (let k = 0; k < o; k++) {
    const w = f.data.slice(k * i * kh * kw, (k + 1) * i * kh * kw);
    let canvas;
    if (rgb) {
      let lo = Infinity, hi = -Infinity;
      for (const x of w) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      const n = (x) => Math.round((255 * (x - lo)) / (hi - lo || 1));
      canvas = paint(document.createElement('canvas'), kw, kh, (x, y) => [n(w[y * kw + x]), n(w[kh * kw + y * kw + x]), n(w[2 * kh * kw + y * kw + x])]);
    } else {
      // One tile per filter: the input channels averaged, scaled by the
      // filter's largest weight so the sign shows.
      const m = new Float64Array(kh * kw);
      for (let ch = 0; ch < i; ch++) for (let p = 0; p < kh * kw; p++) m[p] += w[ch * kh * kw + p] / i;
      let a = 0;
      for (const x of m) a = Math.max(a, Math.abs(x));
      canvas = paint(document.createElement('canvas'), kw, kh, (x, y) => diverging(m[y * kw + x] / (a || 1)));
    }
    canvas.className = 'filter-tile';
    canvas.title = `${f.name} [${k}]`;
    grid.append(canvas);
  }
  box.append(h('div', { class: 'count' }, `${f.name}: ${o} filters of ${i}×${kh}×${kw}` + (rgb ? ' (RGB, each scaled to its own range)' : i > 1 ? ' (input channels averaged)' : '')), grid);
  if (!rgb) box.append(legendBar('negative', 'positive', (t) => diverging(2 * t - 1)));
}

// ---------- confusion ----------

function renderConfusion(v) {
  const box = $('#confusion-matrix');
  // Drawn again only when visuals.json changed: a thousand classes' table
  // took 40 s, and the page redraws at every live update.
  if (box.drawnFrom === v) return;
  box.drawnFrom = v;
  box.replaceChildren();
  const m = v.confusion;
  if (!Array.isArray(m) || !m.length) {
    box.append(h('p', { class: 'empty' }, 'No confusion matrix in visuals.json (classification runs write one).'));
    return;
  }
  const n = m.length;
  const names = Array.isArray(v.classes) && v.classes.length === n ? v.classes : m.map((_, i) => String(i));
  let total = 0, right = 0;
  const table = h('table', { class: 'confusion' });
  table.append(h('tr', {}, h('th', {}, ''), names.map((c) => h('th', { title: 'predicted ' + c }, c))));
  const accent = cssVar('--accent') || '#2f6fdb', bad = cssVar('--bad') || '#d1434b';
  m.forEach((row, i) => {
    const sum = row.reduce((a, b) => a + b, 0);
    total += sum;
    right += row[i] || 0;
    table.append(h('tr', {}, h('th', { title: 'true ' + names[i] }, names[i]), row.map((c, j) => {
      const frac = sum ? c / sum : 0;
      const base = i === j ? accent : bad;
      const bg = c ? `background:color-mix(in srgb, ${base} ${Math.round(8 + 80 * Math.sqrt(frac))}%, transparent)` : '';
      return h('td', { class: 'cell' + (c ? '' : ' zero'), style: bg, title: `true ${names[i]} → predicted ${names[j]}: ${c} (${(100 * frac).toFixed(1)}% of row)` }, c);
    })));
  });
  box.append(h('div', { class: 'confusion-wrap' }, table),
    h('div', { class: 'axis-note' }, `${total.toLocaleString('en-US')} samples, ${pct(total ? right / total : NaN)} on the diagonal` + (v.step != null ? ` · step ${v.step}` : '')));
}

// ---------- attention ----------

// overlayCanvas draws an input image in grey with a heat map (h×w) over it.
function overlayCanvas(sample, map, shape, colorize, size = 104) {
  const canvas = document.createElement('canvas');
  const ctx = setupCanvas(canvas, size, size);
  if (sample) {
    const img = imageCanvas(sample);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = 1;
    ctx.filter = 'grayscale(1)';
    ctx.drawImage(img, 0, 0, size, size);
    ctx.filter = 'none';
  }
  const [hh, ww] = shape;
  const heat = paint(document.createElement('canvas'), ww, hh, (x, y) => colorize(map[y * ww + x]));
  ctx.imageSmoothingEnabled = true;
  ctx.globalAlpha = sample ? 0.6 : 1;
  ctx.drawImage(heat, 0, 0, size, size);
  ctx.globalAlpha = 1;
  return canvas;
}

function renderAttention(v) {
  const box = $('#attention-maps');
  box.replaceChildren();
  const samples = Array.isArray(v.samples) ? v.samples : [];
  const byIndex = new Map(samples.map((s) => [s.index, s]));
  const att = (Array.isArray(v.attention) ? v.attention : []).filter((a) => Array.isArray(a.shape) && a.shape.length === 2 && Array.isArray(a.data));
  const sgu = (Array.isArray(v.sgu) ? v.sgu : []).filter((a) => Array.isArray(a.shape) && a.shape.length === 2 && Array.isArray(a.data));
  if (!att.length && !sgu.length) {
    box.append(h('p', { class: 'empty' }, 'No attention maps in visuals.json (the cbam and gmlp models write them).'));
    return;
  }
  const rows = h('div', { class: 'attn-rows' });
  const layers = new Map();
  for (const a of att) { if (!layers.has(a.layer)) layers.set(a.layer, []); layers.get(a.layer).push(a); }
  for (const [layer, maps] of layers) {
    const tiles = h('div', { class: 'tiles' });
    for (const a of maps) {
      let lo = Infinity, hi = -Infinity;
      for (const x of a.data) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      const s = byIndex.get(a.sample);
      const c = overlayCanvas(s, a.data, a.shape, (x) => [...viridis((x - lo) / (hi - lo || 1)), 255]);
      const label = s ? `#${a.sample} · ${labelName(v, truth(s))}` : `#${a.sample}`;
      tiles.append(h('figure', { class: 'attn-tile', style: 'margin:0', dataset: { layer, sample: a.sample } }, c, label));
    }
    rows.append(h('div', { class: 'attn-row' }, h('h3', {}, layer, ' ', h('span', { class: 'sub' }, (maps[0].kind === 'cbam_spatial' ? 'CBAM spatial attention' : maps[0].kind || '') + ' over the input')), tiles));
  }
  if (att.length) rows.append(legendBar('low', 'high', viridis));
  const first = samples[0];
  for (const g of sgu) rows.append(sguCard(g, first));
  box.append(rows);
}

// sguCard shows a gMLP spatial gating unit's token-mixing weights (T×T) and,
// when the tokens are a square grid of patches, one token's row over an input
// image: where that token gathers from. Hover either picture to pick a token.
function sguCard(g, sample) {
  const [T, T2] = g.shape;
  let a = 0;
  for (const x of g.data) a = Math.max(a, Math.abs(x));
  const matrix = paint(document.createElement('canvas'), T2, T, (x, y) => diverging(g.data[y * T2 + x] / (a || 1)));
  matrix.title = `${g.layer}: ${T}×${T2} spatial weights (row: output token, column: input token)`;
  const side = Math.round(Math.sqrt(T2));
  const card = h('div', { class: 'sgu-card', dataset: { layer: g.layer } });
  const head = h('h3', {}, g.layer, ' ', h('span', { class: 'sub' }, 'gMLP spatial gating: token-mixing weights'));
  const wrap = h('div', {}, head, card);
  card.append(h('figure', {}, matrix, `${T}×${T2} weights`));
  if (side * side !== T2 || T !== T2) return wrap;
  const fig = h('figure', {});
  card.append(fig);
  const draw = (t) => {
    state.sguToken.set(g.layer, t);
    let m = 0;
    const row = g.data.slice(t * T2, (t + 1) * T2);
    for (const x of row) m = Math.max(m, Math.abs(x));
    const c = overlayCanvas(sample, row, [side, side], (x) => [...diverging(x / (m || 1)), 255], 220);
    const ctx = c.getContext('2d');
    const cell = 220 / side;
    ctx.strokeStyle = '#ffd400';
    ctx.lineWidth = 2;
    ctx.strokeRect((t % side) * cell + 1, Math.floor(t / side) * cell + 1, cell - 2, cell - 2);
    c.addEventListener('mousemove', (e) => {
      const r = c.getBoundingClientRect();
      const tx = Math.min(side - 1, Math.floor(((e.clientX - r.left) / r.width) * side));
      const ty = Math.min(side - 1, Math.floor(((e.clientY - r.top) / r.height) * side));
      if (ty * side + tx !== t) draw(ty * side + tx);
    });
    fig.replaceChildren(c, `token (${Math.floor(t / side)}, ${t % side}) gathers from`);
  };
  matrix.addEventListener('mousemove', (e) => {
    const r = matrix.getBoundingClientRect();
    const t = Math.min(T - 1, Math.floor(((e.clientY - r.top) / r.height) * T));
    if (t !== state.sguToken.get(g.layer)) draw(t);
  });
  draw(state.sguToken.get(g.layer) ?? Math.floor(T / 2) - (side % 2 ? 0 : side / 2));
  return wrap;
}

// ---------- samples ----------

// A classifier's sample carries its label, a regressor's its target.
const truth = (s) => s.label ?? s.target;

function labelName(v, x) {
  if (Array.isArray(v.classes) && Number.isInteger(x) && v.classes[x] != null) return v.classes[x];
  return finite(x) ? fmt(x, 3) : String(x);
}

function renderSamples(v) {
  const box = $('#sample-grid');
  box.replaceChildren();
  const samples = Array.isArray(v.samples) ? v.samples : [];
  if (!samples.length) {
    box.append(h('p', { class: 'empty' }, 'No samples in visuals.json yet.'));
    return;
  }
  const classify = Array.isArray(v.classes) && v.classes.length > 0;
  $('#samples-note').textContent = classify ? 'misclassified first, most confident first' : 'largest error first';
  $('#only-wrong-label').hidden = !classify;
  const wrong = (s) => classify && s.label !== s.pred;
  const err = (s) => Math.abs((s.pred ?? 0) - (truth(s) ?? 0));
  const sorted = samples.map((s, i) => ({ s, i })).sort((a, b) => {
    if (!classify) return err(b.s) - err(a.s);
    const wa = wrong(a.s), wb = wrong(b.s);
    if (wa !== wb) return wa ? -1 : 1;
    if (wa) return (b.s.prob ?? 0) - (a.s.prob ?? 0); // confident mistakes first
    return a.i - b.i;
  }).map((x) => x.s);
  const nWrong = samples.filter(wrong).length;
  box.append(h('div', { class: 'count' }, classify ? `${nWrong} of ${samples.length} misclassified` : `${samples.length} samples, largest error first`));
  const grid = h('div', { class: 'samples' });
  for (const s of sorted) {
    if (state.onlyWrong && classify && !wrong(s)) continue;
    const prob = finite(s.prob) ? ` ${Math.round(100 * s.prob)}%` : '';
    grid.append(h('div', { class: 'sample', dataset: { index: s.index, correct: classify ? String(!wrong(s)) : null }, title: `sample #${s.index}` },
      imageCanvas(s),
      h('div', { class: 'lbl' }, h('span', { class: 'pred' }, labelName(v, s.pred)), h('span', { class: 'truth' }, prob),
        h('br'), h('span', { class: 'truth' }, 'true ' + labelName(v, truth(s))))));
  }
  box.append(grid);
}

// ---------- tune ----------

function parseCSV(text) {
  const rows = [];
  let row = [], field = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"') { if (text[i + 1] === '"') { field += '"'; i++; } else q = false; } else field += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else field += ch;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

const isNum = (s) => s !== '' && s != null && Number.isFinite(Number(s));

function tuneTable() {
  const t = state.listing.tunes.find((x) => x.id === state.tune);
  if (!t) return null;
  const f = runFile(t.id, 'results.csv');
  if (!f || !f.text) return { tune: t, cols: [], rows: [] };
  const [head = [], ...all] = parseCSV(f.text);
  // A row of another length than the header's is not one trial: skipped.
  const bad = newBad();
  const body = all.filter((r, i) => r.length === head.length || (addBad(bad, i + 2), false));
  const cols = head.map((name, j) => {
    const vals = body.map((r) => r[j] ?? '');
    const numeric = vals.some((x) => x !== '') && vals.every((x) => x === '' || isNum(x));
    return { name, j, numeric, constant: new Set(vals).size <= 1, empty: vals.every((x) => x === '') };
  }).filter((c) => !c.empty);
  return { tune: t, cols, rows: body, note: badNote('results.csv', bad, 0, 'row') };
}

// The metric column: kiln tune writes it right after status; any other
// table, the first numeric column whose name says it is a metric.
function metricColumn(cols) {
  const st = cols.findIndex((c) => /^status$/i.test(c.name));
  if (st >= 0 && cols[st + 1] && cols[st + 1].numeric) return cols[st + 1];
  const re = /(loss|acc|rmse|mae|r2|metric|score|objective)/i;
  return cols.find((c) => c.numeric && re.test(c.name) && !/^trial/i.test(c.name)) || cols.filter((c) => c.numeric && !/^trial/i.test(c.name)).pop();
}

// trialRuns returns the lookup of tune t's run for a results.csv trial
// value: by name, else by number (leading zeros aside). One pass over the
// runs: a lookup that scanned them for every row took 20 s a redraw at
// 5,000 trials.
function trialRuns(t) {
  const byName = new Map(), byNumber = new Map();
  for (const r of state.listing.runs) {
    if (r.tune !== t.id) continue;
    const name = r.id.split('/').pop();
    if (!byName.has(name)) byName.set(name, r);
    const number = name.replace(/\D/g, '').replace(/^0+/, '');
    if (!byNumber.has(number)) byNumber.set(number, r);
  }
  return (value) => {
    const digits = String(value).replace(/\D/g, '');
    return byName.get(String(value)) || (digits !== '' ? byNumber.get(digits.replace(/^0+/, '')) : undefined);
  };
}

function renderTune() {
  const pick = $('#tune-pick');
  const table = $('#tune-table');
  const par = $('#parallel');
  pick.replaceChildren();
  table.replaceChildren();
  par.replaceChildren();
  const tunes = state.listing.tunes;
  if (!tunes.length) {
    table.append(h('p', { class: 'empty' }, 'No tune in this log directory (kiln tune writes DIR/results.csv and DIR/trials/).'));
    return;
  }
  if (tunes.length > 1) {
    const sel = h('select', { onchange: (e) => { state.tune = e.target.value; state.sort = { col: null, desc: false }; schedule(state.listing); } },
      tunes.map((t) => h('option', { value: t.id, selected: t.id === state.tune }, t.name)));
    pick.append(sel);
  } else pick.append(h('small', {}, tunes[0].name));
  const tt = tuneTable();
  if (tt && tt.note) table.append(h('p', { class: 'bad-records' }, tt.note));
  if (!tt || !tt.cols.length) {
    table.append(h('p', { class: 'empty' }, 'No results.csv yet: trials are still running.'));
    return;
  }
  const { tune, cols } = tt;
  let rows = tt.rows.map((r, i) => ({ r, i }));
  if (state.sort.col != null) {
    const c = cols[state.sort.col];
    rows.sort((a, b) => {
      const x = a.r[c.j] ?? '', y = b.r[c.j] ?? '';
      let d;
      if (c.numeric) d = (x === '' ? Infinity : Number(x)) - (y === '' ? Infinity : Number(y));
      else d = x.localeCompare(y, undefined, { numeric: true });
      return state.sort.desc ? -d : d;
    });
  }
  const metric = metricColumn(cols);
  const colorCol = cols.find((c) => c.name === state.colorBy) || metric || cols[0];
  const trialCol = cols.find((c) => /^trial/i.test(c.name)) || cols[0];
  const el = h('table', { class: 'results' });
  el.append(h('thead', {}, h('tr', {}, cols.map((c, k) => h('th', {
    class: [c.numeric ? '' : 'text', state.sort.col === k ? 'sorted' : '', state.sort.col === k && state.sort.desc ? 'desc' : ''].join(' ').trim(),
    title: 'sort by ' + c.name,
    onclick: () => { state.sort = { col: k, desc: state.sort.col === k ? !state.sort.desc : false }; renderTune(); },
  }, c.name)))));
  const tbody = h('tbody');
  const trialRun = trialRuns(tune);
  for (const { r, i } of rows) {
    const run = trialRun(r[trialCol.j]);
    tbody.append(h('tr', {
      class: run ? 'linked' : '', dataset: { row: i }, title: run ? 'show ' + run.id : null,
      onclick: run ? () => focusRun(run.id) : null,
      onmouseenter: () => highlight(i, true), onmouseleave: () => highlight(i, false),
    }, cols.map((c) => {
      const x = r[c.j] ?? '';
      if (/^status$/i.test(c.name)) return h('td', { class: 'text' }, h('span', { class: 'pill ' + x.toLowerCase() }, x));
      return h('td', { class: c.numeric ? '' : 'text' }, c.numeric && c !== trialCol && x !== '' ? fmt(Number(x)) : x);
    })));
  }
  el.append(tbody);
  table.append(h('div', { class: 'tune-wrap' }, el));
  parallel(par, cols, tt.rows, colorCol, trialCol);
}

function highlight(i, on) {
  const p = document.querySelector(`#parallel path[data-row="${i}"]`);
  const r = document.querySelector(`table.results tr[data-row="${i}"]`);
  if (p) p.classList.toggle('hl', on);
  if (r) r.classList.toggle('hl', on);
  $('#parallel').classList.toggle('hovering', on);
}

// parallel draws the trials in parallel coordinates: one vertical axis per
// varying column, one line per trial, coloured by the metric.
function parallel(box, cols, rows, colorCol, trialCol) {
  // Not the error messages: free text, not a setting or a metric.
  const axes = cols.filter((c) => c !== trialCol && !c.constant && c.name !== 'error');
  if (axes.length < 2 || !rows.length) return;
  const NS = 'http://www.w3.org/2000/svg';
  const s = (tag, attrs = {}) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const W = Math.max(480, box.clientWidth || 800), H = 250, top = 30, bottom = 26, left = 50, right = 50;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, height: H, role: 'img', 'aria-label': 'parallel coordinates of the trials' });
  const scales = axes.map((c) => {
    const vals = rows.map((r) => r[c.j] ?? '');
    if (c.numeric) {
      const nums = vals.filter(isNum).map(Number);
      let lo = Math.min(...nums), hi = Math.max(...nums);
      const logScale = lo > 0 && hi / lo > 50;
      const f = logScale ? Math.log10 : (x) => x;
      const a = f(lo), b = f(hi);
      return { c, lo, hi, logScale, y: (x) => (isNum(x) ? H - bottom - ((f(Number(x)) - a) / (b - a || 1)) * (H - top - bottom) : null) };
    }
    const cats = [...new Set(vals)].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    return { c, cats, y: (x) => H - bottom - (cats.length > 1 ? cats.indexOf(x) / (cats.length - 1) : 0.5) * (H - top - bottom) };
  });
  const X = (k) => left + (k * (W - left - right)) / (axes.length - 1);
  const cv = rows.map((r) => r[colorCol.j]).filter(isNum).map(Number);
  const clo = Math.min(...cv), chi = Math.max(...cv);
  rows.forEach((r, i) => {
    const pts = scales.map((sc, k) => [X(k), sc.y(r[sc.c.j] ?? '')]).filter((p) => p[1] != null);
    if (pts.length < 2) return;
    const v = Number(r[colorCol.j]);
    const [cr, cg, cb] = isNum(r[colorCol.j]) ? viridis((v - clo) / (chi - clo || 1)) : [150, 150, 150];
    const p = s('path', { class: 'trial', d: 'M' + pts.map((p) => p.join(',')).join('L'), stroke: `rgb(${cr},${cg},${cb})`, 'data-row': i });
    const title = s('title');
    title.textContent = cols.map((c) => `${c.name}: ${r[c.j] ?? ''}`).join('\n');
    p.append(title);
    p.addEventListener('mouseenter', () => highlight(i, true));
    p.addEventListener('mouseleave', () => highlight(i, false));
    svg.append(p);
  });
  scales.forEach((sc, k) => {
    const g = s('g', { class: 'axis' });
    g.append(s('line', { x1: X(k), x2: X(k), y1: top, y2: H - bottom }));
    const name = s('text', { x: X(k), y: 14, 'text-anchor': 'middle', class: 'axis-name' + (sc.c === colorCol ? ' color-by' : '') });
    name.textContent = sc.c.name;
    name.addEventListener('click', () => { if (sc.c.numeric) { state.colorBy = sc.c.name; renderTune(); } });
    g.append(name);
    const label = (y, txt) => { const t = s('text', { x: X(k) + 5, y: y + 4 }); t.textContent = txt; g.append(t); };
    if (sc.c.numeric) { label(top, fmt(sc.hi, 3)); label(H - bottom, fmt(sc.lo, 3)); } else sc.cats.forEach((cat) => label(sc.y(cat), cat));
    svg.append(g);
  });
  box.append(svg);
}

// ---------- start ----------

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  localStorage.setItem('kiln-board-theme', t);
  for (const key of [...state.charts.keys()]) destroyChart(key);
  $('#confusion-matrix').drawnFrom = null; // its colours are the theme's
  if (state.listing) render();
}

function start() {
  const saved = localStorage.getItem('kiln-board-theme');
  document.documentElement.dataset.theme = saved || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  $('#theme').addEventListener('click', () => applyTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark'));
  const sm = $('#smoothing');
  const savedSmoothing = localStorage.getItem('kiln-board-smoothing');
  if (savedSmoothing != null && isNum(savedSmoothing)) sm.value = savedSmoothing;
  state.smoothing = Number(sm.value);
  $('#smoothing-value').textContent = state.smoothing.toFixed(2);
  sm.addEventListener('input', () => {
    state.smoothing = Number(sm.value);
    $('#smoothing-value').textContent = state.smoothing.toFixed(2);
    localStorage.setItem('kiln-board-smoothing', sm.value);
    if (state.listing) renderScalars();
  });
  $('#xaxis').addEventListener('change', (e) => { state.xaxis = e.target.value; if (state.listing) renderScalars(); });
  $('#filter').addEventListener('input', (e) => { state.filter = e.target.value; if (state.listing) renderRunList(); });
  $('#select-all').addEventListener('click', () => { state.touched = true; state.listing.runs.forEach((r) => state.selected.add(r.id)); schedule(state.listing); });
  $('#select-none').addEventListener('click', () => { state.touched = true; state.selected.clear(); schedule(state.listing); });
  $('#only-wrong').addEventListener('change', (e) => { state.onlyWrong = e.target.checked; if (state.listing) render(); });
  for (const b of document.querySelectorAll('#hist-kind button')) {
    b.addEventListener('click', () => {
      state.histKind = b.dataset.kind;
      document.querySelectorAll('#hist-kind button').forEach((x) => x.classList.toggle('on', x === b));
      if (state.listing) renderHistograms();
    });
  }
  const live = $('#live');
  const setLive = (s, text) => { live.dataset.state = s; live.textContent = text; };
  if (window.EventSource) {
    const es = new EventSource('api/events');
    es.addEventListener('runs', (e) => { setLive('live', 'live'); live.title = 'live updates'; schedule(JSON.parse(e.data)); });
    // The server cannot list the log directory (moved or deleted): say so
    // rather than show the last listing as live.
    es.addEventListener('problem', (e) => { setLive('offline', 'offline'); live.title = JSON.parse(e.data); });
    es.onopen = () => setLive('live', 'live');
    es.onerror = () => setLive('offline', 'reconnecting');
  } else {
    const poll = () => fetch('api/runs', { cache: 'no-store' }).then((r) => r.json()).then(schedule).catch(() => setLive('offline', 'offline'));
    poll();
    setInterval(poll, 2000);
    setLive('live', 'polling');
  }
}

start();
