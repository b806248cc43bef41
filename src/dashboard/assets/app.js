// distill dashboard page: draws the grid from the snapshot, applies the server-sent changes,
// fetches one attempt's full text on demand, and writes its own timings into #perf.
"use strict";
const $ = (id) => document.getElementById(id);
const STATES = { w: "waiting", r: "running", s: "streaming", y: "right", n: "wrong", d: "done", f: "failed", k: "skipped", x: "not run" };
const GRADED_KINDS = new Set(["reason", "continue", "grade", "vote"]);
let S = null;            // the snapshot, kept up to date
let cellEls = [];        // [row][col] → element
let sel = null;          // the selected attempt {r, c, p, s, n, units, loading, queue}
let es = null;
let dirty = false;
const perf = $("perf");

function esc(s) {
  return String(s).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[ch]));
}
function short(a, n) { a = String(a); return a.length > n ? a.slice(0, n - 1) + "…" : a; }
function fmtInt(x) { return x == null ? "–" : Number(x).toLocaleString("en-US"); }
function pct(a, b) { return b > 0 ? (100 * a / b).toFixed(1) + "%" : "–"; }
function isSummaryCol(c) { return S.grid.cols[c][2] === "summarize"; }

function cellClass(cell, c) {
  let k = "c st-" + cell[0];
  if (cell[1]) k += " cached";
  if (cell[3] > 0) k += " retry";
  if (isSummaryCol(c)) k += " k-s";
  return k;
}
function cellText(cell, c) {
  const st = cell[0];
  if (st === "f") return "!";
  if (st === "k") return "–";
  if (st === "x") return "·";
  if (st === "r" || st === "s") return "…";
  if (isSummaryCol(c)) return st === "w" ? "" : "Σ";
  if (cell[2] != null) return esc(short(cell[2], 8));
  return "";
}
function cellTitle(r, c) {
  const cell = S.grid.cells[r][c];
  const [pi, s] = S.grid.rows[r];
  let t = S.grid.problems[pi][0] + (s ? " #" + s : "") + " · " + S.grid.cols[c][0] + " · " + STATES[cell[0]];
  if (cell[1]) t += " (cached)";
  if (cell[3]) t += " · " + cell[3] + " retr" + (cell[3] > 1 ? "ies" : "y");
  if (cell[2] != null) t += " · answer " + cell[2];
  return t;
}

function renderGrid() {
  const t0 = performance.now();
  const g = S.grid;
  let h = '<div class="lab"><b>problem</b></div>';
  g.cols.forEach((col, c) => {
    h += '<div class="h' + (col[2] === "summarize" ? " k-s" : "") + '" title="' + esc(col[0] + " (round " + col[1] + ", " + col[2] + ")") + '">' +
      (col[2] === "summarize" ? "Σ" + col[1] : "r" + col[1] + " " + esc(col[0])) + "</div>";
  });
  $("gridhead").innerHTML = h;
  const parts = [];
  const multi = g.rows.some((row) => row[1] > 0);
  g.rows.forEach((row, r) => {
    const p = g.problems[row[0]];
    const st = g.status[row[0]];
    let line = '<div class="row" data-r="' + r + '"><div class="lab' + (st ? " " + esc(st) : "") + '" title="' + esc(p[1]) + '">' +
      esc(p[0]) + (multi ? " #" + row[1] : "") + "</div>";
    g.cells[r].forEach((cell, c) => {
      line += '<div class="' + cellClass(cell, c) + '" data-c="' + c + '">' + cellText(cell, c) + "</div>";
    });
    parts.push(line + "</div>");
  });
  const grid = $("grid");
  grid.innerHTML = parts.join("");
  cellEls = [];
  for (const rowEl of grid.children) {
    cellEls.push(Array.prototype.slice.call(rowEl.children, 1));
  }
  if (sel) markSelected();
  void grid.offsetHeight;
  const dt = performance.now() - t0;
  perf.dataset.gridMs = dt.toFixed(1);
  perf.dataset.gridRows = String(g.rows.length);
  afterPaint(() => { perf.dataset.gridPaintMs = (performance.now() - t0).toFixed(1); });
}
function afterPaint(f) { requestAnimationFrame(() => setTimeout(f, 0)); }

function markSelected() {
  document.querySelectorAll(".c.sel").forEach((e) => e.classList.remove("sel"));
  const el = cellEls[sel.r] && cellEls[sel.r][sel.c];
  if (el) el.classList.add("sel");
}

function setCell(r, c, cell) {
  const rowCells = S.grid.cells[r];
  if (!rowCells) return;
  const old = rowCells[c];
  rowCells[c] = cell;
  const el = cellEls[r] && cellEls[r][c];
  if (el) {
    el.className = cellClass(cell, c) + (sel && sel.r === r && sel.c === c ? " sel" : "");
    el.innerHTML = cellText(cell, c);
  }
  if (sel && sel.r === r && sel.c === c) {
    const restarted = (cell[0] === "r" && old && old[0] !== "r") || (old && cell[3] > old[3]);
    if (restarted && !sel.loading && sel.units != null) { $("ptext").textContent = ""; sel.units = 0; }
    showCellGrade(cell);
  }
  dirty = true;
}
function applyCells(list) { if (list) for (const [r, c, cell] of list) setCell(r, c, cell); }

function refresh() {
  if (!dirty || !S) return;
  dirty = false;
  renderAccuracy();
  renderStats();
}
setInterval(refresh, 250);

// Accuracy per graded column as the report counts it: over attempts with a verdict; a cell
// skipped by `when:` carries the row's previous verdict; failed and not-run cells are counts
// apart, outside the denominator.
function renderAccuracy() {
  const g = S.grid;
  const rows = [];
  const last = g.cells.map(() => null); // the row's latest verdict, "y" or "n"
  g.cols.forEach((col, c) => {
    let y = 0, n = 0, d = 0, run = 0, carried = 0, failed = 0, notRun = 0;
    g.cells.forEach((rc, ri) => {
      let st = rc[c][0];
      if (st === "k" && GRADED_KINDS.has(col[2]) && last[ri]) { st = last[ri]; carried++; }
      if (st === "y") y++; else if (st === "n") n++; else if (st === "d") d++;
      else if (st === "r" || st === "s") run++; else if (st === "f") failed++; else if (st === "x") notRun++;
      if ((st === "y" || st === "n") && GRADED_KINDS.has(col[2]) && col[2] !== "vote") last[ri] = st;
    });
    if (y + n === 0 && !(GRADED_KINDS.has(col[2]) && d === 0)) return;
    const graded = y + n + d;
    const acc = pct(y, graded);
    const extra = [carried ? carried + " carried" : "", failed ? failed + " failed" : "", notRun ? notRun + " not run" : ""].filter((x) => x).join(", ");
    rows.push('<tr id="acc-' + esc(col[0]) + '" data-node="' + esc(col[0]) + '" data-round="' + col[1] + '" data-correct="' + y + '" data-graded="' + graded + '" data-acc="' + acc + '"><td>' +
      col[1] + "</td><td>" + esc(col[0]) + (run ? ' <span class="muted">(' + run + " running)</span>" : "") + (extra ? ' <span class="muted">(' + esc(extra) + ")</span>" : "") + "</td><td>" + y + "/" + graded +
      "</td><td><b>" + acc + '</b><div class="bar" style="width:' + (graded ? (100 * y / graded) : 0) + '%"></div></td></tr>');
  });
  $("acc").tBodies[0].innerHTML = rows.join("") || '<tr><td colspan="4" class="muted">no graded node yet</td></tr>';
}

function renderStats() {
  const m = S.metrics || {};
  const g = S.grid;
  let failed = 0, cells = 0, done = 0;
  for (const rc of g.cells) for (const cell of rc) { cells++; if (cell[0] === "f") failed++; if ("yndfkx".includes(cell[0])) done++; }
  const probDone = g.status.filter((s) => s != null).length;
  const ch = m.cache || {};
  const lookups = (ch.hits || 0) + (ch.misses || 0);
  const tok = m.tokens || {};
  const retries = m.retries != null ? m.retries : S.retries;
  const stats = [
    ["problems done", probDone + "/" + g.problems.length, "problems"],
    ["nodes done", done + "/" + cells, "nodes"],
    ["calls sent", fmtInt(m.calls), "calls"],
    ["cache hit rate", lookups ? pct(ch.hits || 0, lookups) : "–", "cache"],
    ["nodes from cache", fmtInt(m.node_cache_hits), "nodehits"],
    // "~": some figures were counted by distill because the server reported no usage
    ["prompt tokens" + (m.usage_estimated_calls ? " (~ estimated)" : ""), (m.usage_estimated_calls ? "~" : "") + fmtInt(tok.prompt), "ptok"],
    ["completion tokens" + (m.usage_estimated_calls ? " (~ estimated)" : ""), (m.usage_estimated_calls ? "~" : "") + fmtInt(tok.completion), "ctok"],
    ["spend (this run)", m.spend_usd != null ? "$" + Number(m.spend_usd).toFixed(4) : "–", "spend"],
    ["cost incl. cached", m.total_cost_usd != null ? "$" + Number(m.total_cost_usd).toFixed(4) : "–", "cost"],
    ["retries", fmtInt(retries), "retries"],
    ["failed nodes", fmtInt(failed), "failed"],
    ["wall time", m.wall_time_s != null ? Number(m.wall_time_s).toFixed(1) + " s" : "–", "wall"],
  ];
  // provider batches (batch models): those in flight with their status
  const bt = m.batches || {}, bf = bt.in_flight || [];
  if (bt.submitted || bf.length) stats.push(["batches in flight", bf.length ? bf.map((x) => x.id + " " + x.status + " (" + x.requests + ")").join(", ") : "none (" + fmtInt(bt.submitted) + " submitted)", "batches"]);
  $("stats").innerHTML = stats.map(([k, v, id]) => '<div class="stat" id="stat-' + id + '"><b>' + esc(v) + "</b><span>" + esc(k) + "</span></div>").join("");
  const b = $("badge");
  const allDone = probDone === g.problems.length && g.problems.length > 0;
  if (S.mode === "view") { b.textContent = "finished run (read-only)"; b.className = "badge view"; }
  else if (S.summary != null) { b.textContent = "run finished · still serving until Ctrl-C"; b.className = "badge end"; }
  else { b.textContent = "running"; b.className = "badge live"; }
  b.dataset.allDone = allDone ? "1" : "0";
}

function renderLegend() {
  $("legend").innerHTML = Object.entries(STATES).map(([k, v]) => '<span><i class="st-' + k + '"></i>' + v + "</span>").join("") +
    '<span><i class="st-y" style="background-image:repeating-linear-gradient(135deg,rgba(255,255,255,.5) 0 3px,transparent 3px 7px)"></i>cached</span>' +
    '<span><i class="st-w" style="box-shadow:inset 0 0 0 2px #8a3ffc"></i>retried</span>';
}

function onSnapshot(m) {
  S = m;
  $("title").textContent = "distill · " + (m.title || "run");
  document.title = "distill · " + (m.title || "run");
  if (m.files) $("files").innerHTML = m.files.map((f) => '<a href="run/' + encodeURIComponent(f) + '" target="_blank">' + esc(f) + "</a>").join("");
  renderGrid();
  dirty = true;
  refresh();
  if (sel) reselect(); else fromHash();
}

function handle(m) {
  switch (m.t) {
    case "snapshot": onSnapshot(m); break;
    case "batch": m.m.forEach(handle); break;
    case "c":
      if (m.grid) { S.grid = m.grid; renderGrid(); } else applyCells(m.cells);
      S.retries = m.retries; dirty = true; break;
    case "p":
      if (m.grid) { S.grid = m.grid; renderGrid(); } else applyCells(m.cells);
      S.grid.status[m.p] = m.status;
      { const lab = cellRowsOf(m.p); lab.forEach((el) => { el.className = "lab " + m.status; }); }
      if (sel && S.grid.rows[sel.r][0] === m.p && sel.source !== "record") loadAttempt();
      dirty = true; break;
    case "d":
      if (m.grid) { S.grid = m.grid; renderGrid(); } else applyCells(m.cells);
      for (const [r, c, o, t] of m.d) if (sel && sel.r === r && sel.c === c) onDelta(o, t);
      break;
    case "m": S.metrics = m.metrics; dirty = true; break;
    case "end": S.summary = m.summary; dirty = true; break;
    case "resync": es.close(); connect(); break;
  }
}
function cellRowsOf(pi) {
  const out = [];
  S.grid.rows.forEach((row, r) => { if (row[0] === pi) { const el = $("grid").children[r]; if (el) out.push(el.firstChild); } });
  return out;
}

// Long texts go into blocks of about CHUNK characters that the browser lays out only when
// scrolled into view (content-visibility), so a 100 KB trace shows at once.
const CHUNK = 6000;
function setText(el, text) {
  el.textContent = "";
  let i = 0;
  while (i < text.length) {
    let j = Math.min(text.length, i + CHUNK);
    if (j < text.length) { const nl = text.lastIndexOf("\n", j); const sp = text.lastIndexOf(" ", j); const cut = Math.max(nl, sp); if (cut > i) j = cut + 1; }
    appendChunk(el, text.slice(i, j));
    i = j;
  }
}
function appendChunk(el, t) { const d = document.createElement("div"); d.className = "chunk"; d.textContent = t; el.appendChild(d); return d; }
function appendText(el, t) {
  const last = el.lastElementChild;
  if (last && last.textContent.length < CHUNK) last.appendChild(document.createTextNode(t));
  else appendChunk(el, t);
}

function onDelta(o, t) {
  if (sel.loading) { sel.queue.push([o, t]); return; }
  if (sel.units == null) return;
  const end = o + t.length;
  if (end <= sel.units) return;
  if (o > sel.units) { loadAttempt(); return; }
  appendText($("ptext"), t.slice(sel.units - o));
  sel.units = end;
}

function select(r, c, fromClick) {
  const [pi, s] = S.grid.rows[r];
  sel = { r, c, p: S.grid.problems[pi][0], s, n: S.grid.cols[c][0], units: null, loading: false, queue: [], t0: performance.now() };
  markSelected();
  if (fromClick) history.replaceState(null, "", "#sel=" + encodeURIComponent(sel.p) + "/" + s + "/" + encodeURIComponent(sel.n));
  loadAttempt();
}
function reselect() {
  // after a fresh snapshot: find the selection again by its ids
  const pi = S.grid.problems.findIndex((p) => p[0] === sel.p);
  const r = S.grid.rows.findIndex((row) => row[0] === pi && row[1] === sel.s);
  const c = S.grid.cols.findIndex((col) => col[0] === sel.n);
  if (r >= 0 && c >= 0) select(r, c, false);
}
function fromHash() {
  const h = decodeURIComponent(location.hash);
  const mm = /^#sel=(.*)\/(\d+)\/([^/]*)$/.exec(h);
  if (!mm) return;
  sel = { p: mm[1], s: Number(mm[2]), n: mm[3] };
  reselect();
}

async function loadAttempt() {
  const me = sel;
  me.loading = true;
  me.queue = [];
  let a = null;
  try {
    const res = await fetch("api/attempt?p=" + encodeURIComponent(me.p) + "&s=" + me.s + "&n=" + encodeURIComponent(me.n));
    if (res.ok) a = await res.json();
  } catch (e) { /* shown as empty */ }
  if (sel !== me) return;
  perf.dataset.selectFetchMs = (performance.now() - me.t0).toFixed(1);
  showAttempt(a);
  me.loading = false;
  const q = me.queue; me.queue = [];
  for (const [o, t] of q) onDelta(o, t);
  void $("ptext").offsetHeight;
  perf.dataset.selectMs = (performance.now() - me.t0).toFixed(1);
  perf.dataset.selectChars = String($("ptext").textContent.length);
  afterPaint(() => { if (sel === me) perf.dataset.selectPaintMs = (performance.now() - me.t0).toFixed(1); });
}

function showAttempt(a) {
  $("pempty").hidden = true;
  $("pbody").hidden = false;
  if (!a) { $("ptitle").textContent = sel.p + " · " + sel.n; $("ptext").textContent = "(not found)"; return; }
  const rec = a.record || {};
  const out = rec.output || {};
  sel.source = a.source;
  $("ptitle").textContent = a.problem + (a.sample ? " #" + a.sample : "") + " · " + a.node;
  const meta = ["round " + a.round, a.kind || rec.kind || "", STATES[a.cell[0]] + (a.cell[1] ? " (cached)" : "")];
  if (out.model) meta.push(out.model);
  if (out.finish_reason) meta.push("finish: " + out.finish_reason);
  if (out.usage && out.usage.completion_tokens != null) meta.push(fmtInt(out.usage.prompt_tokens) + " prompt / " + fmtInt(out.usage.completion_tokens) + " completion tokens" + (out.usage.estimated ? " (estimated)" : ""));
  if (rec.latency_ms) meta.push(rec.latency_ms + " ms");
  if (a.cell[3]) meta.push(a.cell[3] + " retries");
  $("pmeta").textContent = meta.filter(Boolean).join(" · ");
  $("pquestion").textContent = a.question || "";
  $("pprompt").textContent = out.prompt || (a.source === "live" ? "(shown when the problem finishes)" : "(not recorded)");
  let text;
  if (a.source === "record") {
    text = out.text != null ? out.text : (out.reasoning || "");
    sel.units = null;
    $("ptexthead").textContent = "Output";
  } else {
    text = a.streamed || "";
    if (a.truncated) text += "\n[… streamed text beyond the kept size is not shown …]\n";
    sel.units = a.units || 0;
    $("ptexthead").textContent = "Streamed output (live)";
  }
  setText($("ptext"), text);
  const sum = out.summary;
  $("psummary").hidden = !sum;
  $("psumtext").textContent = sum || "";
  const err = rec.error || a.error;
  $("perror").hidden = !err;
  $("perror").textContent = err ? "error: " + err : "";
  sel.truth = a.truth;
  showCellGrade(a.cell, out);
}

function showCellGrade(cell, out) {
  const g = $("pgrade");
  const ans = out && out.answer !== undefined ? out.answer : cell[2];
  const truth = sel.truth != null ? ' <span class="muted">· expected ' + esc(sel.truth) + "</span>" : "";
  if (cell[0] === "y") g.innerHTML = 'answer <b>' + esc(ans) + '</b> <span class="ok">✓ right</span>' + truth;
  else if (cell[0] === "n") g.innerHTML = 'answer <b>' + esc(ans == null ? "(none)" : ans) + '</b> <span class="no">✗ wrong</span>' + truth;
  else if (cell[0] === "d") g.innerHTML = ans != null ? "answer <b>" + esc(ans) + "</b>" + truth : '<span class="muted">done (not graded)</span>';
  else g.innerHTML = '<span class="muted">' + STATES[cell[0]] + "</span>" + truth;
}

$("grid").addEventListener("click", (ev) => {
  const el = ev.target.closest(".c");
  if (!el) return;
  select(Number(el.parentNode.dataset.r), Number(el.dataset.c), true);
});
$("cfg").addEventListener("toggle", async () => {
  if (!$("cfg").open || $("cfg").dataset.loaded) return;
  $("cfg").dataset.loaded = "1";
  try { $("cfgtext").textContent = JSON.stringify(await (await fetch("api/config")).json(), null, 2); }
  catch (e) { $("cfgtext").textContent = "(could not load the config)"; }
});

function connect() {
  es = new EventSource("api/events");
  es.onopen = () => { $("conn").textContent = ""; };
  es.onmessage = (e) => handle(JSON.parse(e.data));
  es.onerror = () => { $("conn").textContent = S && S.summary != null ? "" : "reconnecting…"; };
}
renderLegend();
connect();
