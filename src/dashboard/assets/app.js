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
function fmtShare(x) { return Number.isInteger(x) ? String(x) : x.toFixed(2); }
function pct(a, b) { return b > 0 ? (100 * a / b).toFixed(1) + "%" : "–"; }
function isSummaryCol(c) { return S.grid.cols[c][2] === "summarize"; }
function runOf(c) { return (S.grid.col_run && S.grid.col_run[c]) || 0; }
function multi() { return S.grid.runs && S.grid.runs.length > 1; }
function runLabel(k) { const r = S.grid.runs && S.grid.runs[k]; return (r && r.label) || "run " + (k + 1); }
// a run's short name on the grid and in the tables: A, B, C, … (its card gives the label)
function runTag(k) { return k < 26 ? String.fromCharCode(65 + k) : "R" + (k + 1); }
// Wilson 95% interval of x right out of n, in percent
function wilson(x, n) {
  if (!(n > 0)) return null;
  const z = 1.959964, p = x / n, z2 = z * z / n;
  const mid = (p + z2 / 2) / (1 + z2), half = z * Math.sqrt(p * (1 - p) / n + z2 / (4 * n)) / (1 + z2);
  return [100 * Math.max(0, mid - half), 100 * Math.min(1, mid + half)];
}
// the page address that selects an attempt (each cell links to it)
function selHash(p, s, n, k) { return "#sel=" + encodeURIComponent(p) + "/" + s + "/" + encodeURIComponent(n) + (k ? "@" + k : ""); }
function attemptUrl(p, s, n, k) { return "api/attempt?p=" + encodeURIComponent(p) + "&s=" + s + "&n=" + encodeURIComponent(n) + "&r=" + (k || 0); }

function cellClass(cell, c) {
  let k = "c st-" + cell[0];
  if (cell[1]) k += " cached";
  if (cell[3] > 0) k += " retry";
  if (isSummaryCol(c)) k += " k-s";
  return k;
}
// A cell says what it holds: its answer, or why it has none ("no answer", "failed", the
// not-run reason such as "interrupted"); narrow summary cells keep a symbol.
function cellText(cell, c) {
  const st = cell[0];
  if (st === "r" || st === "s") return "…";
  if (isSummaryCol(c)) return st === "w" ? "" : ({ f: "!", k: "–", x: "·" }[st] || "Σ");
  if (cell[2] != null) return esc(short(cell[2], 8));
  if (cell[4] != null) return esc(short(cell[4], 11));
  if (st === "f") return "failed";
  if (st === "k") return "–";
  if (st === "x") return "not run";
  return "";
}
function cellTitle(r, c) {
  const cell = S.grid.cells[r][c];
  const [pi, s] = S.grid.rows[r];
  let t = S.grid.problems[pi][0] + (s ? " #" + s : "") + " · " + (multi() ? runTag(runOf(c)) + " " + runLabel(runOf(c)) + " · " : "") + S.grid.cols[c][0] + " · " + STATES[cell[0]];
  if (cell[4] != null && cell[4] !== STATES[cell[0]]) t += ": " + cell[4];
  if (cell[1]) t += " (cached)";
  if (cell[3]) t += " · " + cell[3] + " retr" + (cell[3] > 1 ? "ies" : "y");
  if (cell[2] != null) t += " · answer " + cell[2];
  return t;
}

function renderGrid() {
  const t0 = performance.now();
  const g = S.grid;
  const many = multi();
  let h = '<div class="lab"><b>problem</b></div>';
  g.cols.forEach((col, c) => {
    const k = runOf(c);
    const first = c > 0 && g.cols[c - 1][1] !== col[1] ? " round-start" : "";
    const tag = many ? '<span class="rt">' + runTag(k) + "</span>" : "";
    h += '<div class="h' + (col[2] === "summarize" ? " k-s" : "") + (many ? " run-" + (k % 6) : "") + first + '" data-c="' + c + '" data-run="' + k + '" title="' + esc((many ? runTag(k) + " " + runLabel(k) + " · " : "") + col[0] + " (round " + col[1] + ", " + col[2] + ")") + '">' +
      tag + (col[2] === "summarize" ? "Σ" + col[1] : "r" + col[1] + " " + esc(col[0])) + "</div>";
  });
  $("gridhead").innerHTML = h;
  const parts = [];
  const samples = g.rows.some((row) => row[1] > 0);
  g.rows.forEach((row, r) => {
    const p = g.problems[row[0]];
    // several runs: a problem's status differs by run (the cells say it)
    const st = many ? null : g.status[row[0]];
    let line = '<div class="row" data-r="' + r + '"><div class="lab' + (st ? " " + esc(st) : "") + '" title="' + esc(p[1]) + '">' +
      esc(p[0]) + (samples ? " #" + row[1] : "") + "</div>";
    g.cells[r].forEach((cell, c) => {
      const k = runOf(c), n = g.cols[c][0];
      const first = c > 0 && g.cols[c - 1][1] !== g.cols[c][1] ? " round-start" : "";
      line += '<a class="' + cellClass(cell, c) + first + '" data-c="' + c + '" data-run="' + k + '" href="' + esc(selHash(p[0], row[1], n, k)) +
        '" data-attempt="' + esc(attemptUrl(p[0], row[1], n, k)) + '" title="' + esc(cellTitle(r, c)) + '">' + cellText(cell, c) + "</a>";
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
    const first = c > 0 && S.grid.cols[c - 1][1] !== S.grid.cols[c][1] ? " round-start" : "";
    el.className = cellClass(cell, c) + first + (sel && sel.r === r && sel.c === c ? " sel" : "");
    el.innerHTML = cellText(cell, c);
    el.title = cellTitle(r, c);
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

// Accuracy per graded column as the report counts it, with one denominator: the attempts with
// a verdict (right + wrong, a cell skipped by `when:` carrying the row's previous verdict);
// running, waiting, failed and not-run cells are counts apart, outside it. The interval is
// the Wilson 95% interval over that denominator.
function renderAccuracy() {
  const g = S.grid;
  const rows = [];
  const many = multi();
  const last = g.cells.map(() => ({})); // per row and run: the latest verdict, "y" or "n"
  const sampled = g.rows.some((row) => row[1] > 0);
  g.cols.forEach((col, c) => {
    const k = runOf(c);
    let y = 0, n = 0, d = 0, run = 0, wait = 0, carried = 0, failed = 0, notRun = 0;
    const per = new Map(); // with samples: problem → [right, with a verdict]
    g.cells.forEach((rc, ri) => {
      let st = rc[c][0];
      if (st === "k" && GRADED_KINDS.has(col[2]) && last[ri][k]) { st = last[ri][k]; carried++; }
      if (st === "y") y++; else if (st === "n") n++; else if (st === "d") d++;
      else if (st === "r" || st === "s") run++; else if (st === "w") wait++; else if (st === "f") failed++; else if (st === "x") notRun++;
      if ((st === "y" || st === "n") && GRADED_KINDS.has(col[2]) && col[2] !== "vote") last[ri][k] = st;
      if (sampled && (st === "y" || st === "n" || st === "d")) {
        const pi = g.rows[ri][0], e = per.get(pi) || [0, 0];
        e[0] += st === "y" ? 1 : 0; e[1] += 1; per.set(pi, e);
      }
    });
    if (y + n === 0 && !(GRADED_KINDS.has(col[2]) && d === 0)) return;
    let right = y, graded = y + n + d;
    if (sampled) {
      // as the report counts samples: each problem's share over its samples with a verdict,
      // averaged over the problems with one (n = those problems)
      right = 0; graded = per.size;
      for (const [r, v] of per.values()) right += r / v;
    }
    const acc = pct(right, graded);
    const ci = wilson(right, graded);
    const ciText = ci ? ci[0].toFixed(1) + "–" + ci[1].toFixed(1) : "–";
    const extra = [carried ? carried + " carried" : "", run ? run + " running" : "", wait ? wait + " waiting" : "", failed ? failed + " failed" : "", notRun ? notRun + " not run" : ""].filter((x) => x).join(", ");
    const bar = ci ? '<div class="ci"><i style="left:' + ci[0] + "%;width:" + (ci[1] - ci[0]) + '%"></i><b style="left:' + (100 * right / graded) + '%"></b></div>' : "";
    rows.push([k, c, '<tr id="acc-' + esc(k + "-" + col[0]) + '" data-run="' + k + '" data-node="' + esc(col[0]) + '" data-round="' + col[1] + '" data-correct="' + fmtShare(right) + '" data-graded="' + graded + '" data-acc="' + acc +
      '" data-lo="' + (ci ? ci[0].toFixed(1) : "") + '" data-hi="' + (ci ? ci[1].toFixed(1) : "") + '">' + (many ? '<td class="runc run-' + (k % 6) + '" title="' + esc(runLabel(k)) + '">' + runTag(k) + "</td>" : "") + "<td>" +
      col[1] + "</td><td>" + esc(col[0]) + (extra ? '<div class="muted small">' + esc(extra) + "</div>" : "") + "</td><td>" + fmtShare(right) + "/" + graded +
      "</td><td><b>" + acc + '</b> <span class="muted cit">[' + ciText + "]</span>" + bar + "</td></tr>"]);
  });
  rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  $("acchead").innerHTML = (many ? "<th>run</th>" : "") + '<th>round</th><th>node</th><th title="right / attempts with a verdict">right / n</th><th>acc. [95% CI]</th>';
  $("acc").tBodies[0].innerHTML = rows.map((x) => x[2]).join("") || '<tr><td colspan="5" class="muted">no graded node yet</td></tr>';
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
  if (bt.submitted || bf.length) stats.push(["batches in flight", bf.length ? bf.map((x) => x.id + " " + x.status + (x.counts && x.counts.total ? " " + fmtInt(x.counts.completed + x.counts.failed) + "/" + fmtInt(x.counts.total) : " (" + fmtInt(x.requests) + ")")).join(", ") : "none (" + fmtInt(bt.submitted) + " submitted)", "batches"]);
  $("stats").innerHTML = multi() ? renderRuns() : stats.map(([k, v, id]) => '<div class="stat" id="stat-' + id + '"><b>' + esc(v) + "</b><span>" + esc(k) + "</span></div>").join("");
  const b = $("badge");
  const allDone = probDone === g.problems.length && g.problems.length > 0;
  if (S.mode === "view") { b.textContent = "finished run (read-only)"; b.className = "badge view"; }
  else if (S.summary != null) { b.textContent = "run finished · still serving until Ctrl-C"; b.className = "badge end"; }
  else { b.textContent = "running"; b.className = "badge live"; }
  b.dataset.allDone = allDone ? "1" : "0";
}

// Several runs: one card per run (its label, status, problems, calls and tokens).
function renderRuns() {
  return S.grid.runs.map((r, k) => {
    const m = r.metrics || {}, tok = m.tokens || {};
    const bits = [r.status || "", (r.problems != null ? r.problems + " problems" : ""), m.calls != null ? fmtInt(m.calls) + " calls" : "",
      tok.completion != null ? fmtInt(tok.completion) + " completion tokens" : ""].filter(Boolean).join(" · ");
    return '<div class="stat run-' + (k % 6) + '" id="run-' + k + '" title="' + esc(r.path || "") + '"><b>' + runTag(k) + " · " + esc(r.label) + "</b><span>" + esc(bits) + "</span></div>";
  }).join("");
}

function renderPlots() {
  const names = S.plots || [];
  $("plots").hidden = names.length === 0;
  $("plotlist").innerHTML = names.map((n) => '<a href="api/plot/' + encodeURIComponent(n) + '" target="_blank"><img alt="' + esc(n) + '" src="api/plot/' + encodeURIComponent(n) + '"></a>').join("");
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
  renderPlots();
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
      if (!multi()) { const lab = cellRowsOf(m.p); lab.forEach((el) => { el.className = "lab " + m.status; }); }
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
  sel = { r, c, p: S.grid.problems[pi][0], s, n: S.grid.cols[c][0], k: runOf(c), units: null, loading: false, queue: [], t0: performance.now() };
  markSelected();
  if (fromClick) history.replaceState(null, "", selHash(sel.p, s, sel.n, sel.k));
  loadAttempt();
}
function reselect() {
  // after a fresh snapshot: find the selection again by its ids
  const pi = S.grid.problems.findIndex((p) => p[0] === sel.p);
  const r = S.grid.rows.findIndex((row) => row[0] === pi && row[1] === sel.s);
  const c = S.grid.cols.findIndex((col, ci) => col[0] === sel.n && runOf(ci) === (sel.k || 0));
  if (r >= 0 && c >= 0) select(r, c, false);
}
function fromHash() {
  const h = decodeURIComponent(location.hash);
  const mm = /^#sel=(.*)\/(\d+)\/([^/@]*)(?:@(\d+))?$/.exec(h);
  if (!mm) return;
  sel = { p: mm[1], s: Number(mm[2]), n: mm[3], k: Number(mm[4] || 0) };
  reselect();
}

async function loadAttempt() {
  const me = sel;
  me.loading = true;
  me.queue = [];
  let a = null;
  try {
    const res = await fetch(attemptUrl(me.p, me.s, me.n, me.k));
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
  $("ptitle").textContent = a.problem + (a.sample ? " #" + a.sample : "") + " · " + (multi() ? runTag(a.run || 0) + " " + runLabel(a.run || 0) + " · " : "") + a.node;
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
  else if (cell[0] === "n") g.innerHTML = (ans == null ? "<b>no answer</b> (none extracted)" : "answer <b>" + esc(ans) + "</b>") + ' <span class="no">✗ wrong</span>' + truth;
  else if (cell[0] === "d") g.innerHTML = ans != null ? "answer <b>" + esc(ans) + "</b>" + truth : '<span class="muted">done (not graded)</span>';
  else g.innerHTML = '<span class="muted">' + STATES[cell[0]] + (cell[4] != null && cell[4] !== STATES[cell[0]] ? ": " + esc(cell[4]) : "") + "</span>" + truth;
}

$("grid").addEventListener("click", (ev) => {
  const el = ev.target.closest(".c");
  if (!el || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return; // a new tab follows the link
  ev.preventDefault();
  select(Number(el.parentNode.dataset.r), Number(el.dataset.c), true);
});
window.addEventListener("hashchange", () => { if (S) fromHash(); });
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
