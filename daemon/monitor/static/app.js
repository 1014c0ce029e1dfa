// The live page: polls /api/state and redraws. No library, nothing loaded from elsewhere.
"use strict";

const POLL_MS = 1000;
// Every state the grid can hold (status's, and "interrupted": running under a daemon that is gone).
const STATES = ["not seen", "acquiring", "pending", "running", "interrupted", "done", "failed"];
const STATE_COLORS = {
  "not seen": "#e0e0e0", acquiring: "#fdbe85", pending: "#9ecae1", running: "#3182bd",
  interrupted: "#8c6bb1", done: "#31a354", failed: "#de2d26",
};
const OUTLIER_SD = 3.5;  // robust standard deviations from the median that make a tile an outlier
const RAMP_SD = 4;  // robust standard deviations from the median to either end of the colour ramp
const SVG = "http://www.w3.org/2000/svg";
let last = null;

function url(path, params = {}) {
  const q = new URLSearchParams(params).toString();
  return q ? `${path}?${q}` : path;
}

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) {
    const title = document.createElementNS(SVG, "title");
    title.textContent = text;
    node.appendChild(title);
  }
  return node;
}

function count(units, state) {
  return units[state.replace(" ", "_")] || 0;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function tileList(tiles) {
  return `${tiles.length === 1 ? "tile" : "tiles"} ${tiles.join(", ")}`;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

// Tile placement: stage x, y scaled to an SVG; tile side = smallest spacing between tiles.
function tileLayout(state) {
  const ids = Object.keys(state.grid || {}).map((t) => parseInt(t.slice(4), 10));
  const pos = {};
  let col = 0;
  for (const t of ids) {
    const p = state.tiles[String(t)];
    pos[t] = p ? [p.x, p.y] : null;
  }
  const known = Object.values(pos).filter((p) => p);
  let side = Infinity;
  for (let i = 0; i < known.length; i++)
    for (let j = i + 1; j < known.length; j++) {
      const d = Math.max(Math.abs(known[i][0] - known[j][0]), Math.abs(known[i][1] - known[j][1]));
      if (d > 0) side = Math.min(side, d);
    }
  if (!isFinite(side)) side = 100;
  const xs = known.map((p) => p[0]), ys = known.map((p) => p[1]);
  const y0 = known.length ? Math.max(...ys) + side : 0;
  for (const t of ids) if (!pos[t]) pos[t] = [(col++) * side, y0];  // no position yet: a row below
  const all = Object.values(pos);
  if (!all.length) return { ids, pos, side, minX: 0, minY: 0, w: side, h: side };  // no tile yet
  const minX = Math.min(...all.map((p) => p[0])), minY = Math.min(...all.map((p) => p[1]));
  const maxX = Math.max(...all.map((p) => p[0])) + side, maxY = Math.max(...all.map((p) => p[1])) + side;
  return { ids, pos, side, minX, minY, w: maxX - minX, h: maxY - minY };
}

function tileMap(layout, cell, label, px = 180) {
  const scale = px / Math.max(layout.w, layout.h, 1e-9);
  const svg = el("svg", { width: Math.ceil(layout.w * scale), height: Math.ceil(layout.h * scale) });
  for (const t of layout.ids) {
    const [x, y] = layout.pos[t];
    const c = cell(t);
    const rect = el("rect", {
      x: (x - layout.minX) * scale + 1, y: (y - layout.minY) * scale + 1,
      width: Math.max(layout.side * scale - 2, 1), height: Math.max(layout.side * scale - 2, 1),
      fill: c.color, ...c.data,
    }, c.title);
    svg.appendChild(rect);
    if (c.mark) {  // a word on the tile itself: seen without hovering
      const side = layout.side * scale;
      const mark = el("text", {
        x: (x - layout.minX) * scale + side / 2, y: (y - layout.minY) * scale + side / 2,
        "text-anchor": "middle", "dominant-baseline": "middle", class: "mark",
        "font-size": Math.max(8, Math.min(13, side / 5)),
      });
      mark.textContent = c.mark;
      svg.appendChild(mark);
    }
  }
  const box = document.createElement("div");
  box.className = "map";
  box.appendChild(svg);
  box.appendChild(document.createElement("br"));
  box.appendChild(document.createTextNode(label));
  return box;
}

function drawRounds(state, layout) {
  const rounds = document.getElementById("rounds");
  rounds.replaceChildren();
  const names = Object.keys(Object.values(state.grid)[0] || {});
  for (const rname of names) {
    const round = parseInt(rname.slice(5), 10);
    const failed = Object.values(state.grid).filter((r) => r[rname] === "failed").length;
    rounds.appendChild(tileMap(layout, (t) => {
      const tname = `tile${String(t).padStart(4, "0")}`;
      const st = state.grid[tname][rname];
      const error = state.failed[`${tname}/${rname}`];
      return {
        color: STATE_COLORS[st],
        data: { "data-tile": t, "data-round": round, "data-state": st, class: "tile" },
        title: `${tname} ${rname}: ${st}${error ? " - " + error : ""}`,
        mark: st === "failed" ? "failed" : null,
      };
    }, failed ? `${rname}: ${failed} failed` : rname));
  }
}

// Heatmap colours: dark blue (low) to yellow (high), a viridis-like ramp.
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(f) {
  f = Math.min(1, Math.max(0, f)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(f), RAMP.length - 2), r = f - i;
  const c = RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * r));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function channelKey(row) {
  return row.kind === "round" ? `round${String(row.entry_index).padStart(4, "0")}` : `bit${String(row.entry_index).padStart(3, "0")}`;
}

function fillSelect(select, values) {
  const current = select.value;
  const have = Array.from(select.options).map((o) => o.value);
  if (have.join() === values.join()) return;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (values.includes(current)) select.value = current;
}

function median(values) {
  const v = [...values].sort((x, y) => x - y), m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Robust scale: the median and the MAD (times 1.4826, the standard deviation of normal data),
// so one bad tile neither stretches the colours of the normal ones nor hides among them.
function robustScale(values) {
  const mid = median(values);
  const sd = 1.4826 * median(values.map((v) => Math.abs(v - mid)));
  const z = (v) => (sd > 0 ? (v - mid) / sd : v === mid ? 0 : Math.sign(v - mid) * Infinity);
  return { mid, sd, z };
}

const FIDUCIAL_MEASURES = new Set(["fiducial_relative", "fiducial_shift_um", "match_quality"]);

// One fiducial's registration in words: the reference, not yet comparable, or its shift.
function shiftText(r) {
  if (!r) return ["-", "not converted yet"];
  if (r.reference_round === null || r.reference_round === undefined) {
    return r.is_reference ? ["reference", "the tile's reference round"] : ["-", "no reference yet"];
  }
  const match = `match ${r.match_quality.toFixed(2)}`;
  if (r.fiducial_shift_um === null) return [`no shift, ${match}`, "a blank fiducial"];
  const axes = ["z", "y", "x"].map((a) => `${a} ${r[`shift_${a}_um`].toFixed(3)}`).join(", ");
  return [`${r.fiducial_shift_um.toFixed(2)} µm, ${match}`,
    `vs round ${r.reference_round}: ${axes} µm`];
}

// The registration QC per tile (rows) and round (columns), in words a person reads.
function drawShifts(state) {
  const fiducials = state.quality.filter((r) => r.kind === "round");
  const table = document.getElementById("shifts");
  if (!fiducials.length) { table.replaceChildren(); return; }
  const rounds = [...new Set(fiducials.map((r) => r.round))].sort((a, b) => a - b);
  const tiles = [...new Set(fiducials.map((r) => r.tile))].sort((a, b) => a - b);
  const byKey = Object.fromEntries(fiducials.map((r) => [`${r.tile}/${r.round}`, r]));
  const cell = (tag, text, title = "") =>
    Object.assign(document.createElement(tag), { textContent: text, title });
  const head = document.createElement("tr");
  head.replaceChildren(cell("th", "tile"), ...rounds.map((n) => cell("th", `round ${n}`)));
  const lines = tiles.map((t) => {
    const row = document.createElement("tr");
    row.replaceChildren(cell("th", `tile ${t}`),
      ...rounds.map((n) => cell("td", ...shiftText(byKey[`${t}/${n}`]))));
    return row;
  });
  table.replaceChildren(head, ...lines);
}

function drawHeatmap(state, layout) {
  const measure = document.getElementById("measure").value;
  const select = document.getElementById("quality-channel");
  let rows = state.quality;
  if (FIDUCIAL_MEASURES.has(measure)) rows = rows.filter((r) => r.kind === "round");
  const channels = [...new Set(rows.map(channelKey))].sort();
  fillSelect(select, channels);
  const chosen = rows.filter((r) => channelKey(r) === select.value);
  const byTile = Object.fromEntries(chosen.map((r) => [r.tile, r]));
  const values = chosen.map((r) => r[measure]).filter((v) => v !== null && v !== undefined);
  const scale = robustScale(values);
  const outliers = [], unmeasured = [], noSignal = [];
  const heat = document.getElementById("heatmap");
  heat.replaceChildren(tileMap(layout, (t) => {
    const r = byTile[t];
    const data = { "data-tile": t, class: "heat" };
    if (!r) {
      unmeasured.push(t);
      return { color: "#fff", data: { ...data, class: "heat unmeasured" }, title: `tile ${t}: not measured yet` };
    }
    const v = r[measure];
    if (v === null || v === undefined) {
      noSignal.push(t);
      return { color: "#777", data, title: `tile ${t} ${r.entry}: no signal`, mark: "no signal" };
    }
    const z = scale.z(v);
    const outlier = Math.abs(z) > OUTLIER_SD;
    if (outlier) outliers.push(`${t} (${v.toPrecision(4)}, ${z < 0 ? "low" : "high"})`);
    return {
      color: ramp(0.5 + z / (2 * RAMP_SD)),
      data: { ...data, "data-value": v, class: outlier ? "heat outlier" : "heat" },
      title: `tile ${t} ${r.entry}: ${measure} = ${v.toPrecision(4)}` +
        ` (saturated ${(100 * r.saturated_fraction).toFixed(3)} %, best plane ${r.best_focus_plane})`,
      mark: outlier ? "outlier" : null,
    };
  }, `${measure} - ${select.value || "nothing measured yet"}`, 260));
  const lines = values.length ? [
    `colour: median ${scale.mid.toPrecision(4)} in the middle, ±${RAMP_SD} robust SD ` +
      `(1.4826 × MAD = ${scale.sd.toPrecision(3)}) to dark (low) and yellow (high)`,
    `outliers: ${outliers.length ? tileList(outliers) : "none"} (more than ${OUTLIER_SD} robust SD from the median)`,
  ] : [];
  if (unmeasured.length) lines.push(`not measured yet: ${tileList(unmeasured)}`);
  if (noSignal.length) lines.push(`no signal: ${tileList(noSignal)}`);
  const note = document.getElementById("heat-scale");
  note.replaceChildren(...lines.map((line) => Object.assign(document.createElement("div"), { textContent: line })));
}

// The time unit that keeps the axis' numbers readable.
function timeUnit(span) {
  return span >= 7200 ? ["h", 3600] : span >= 120 ? ["min", 60] : ["s", 1];
}

function svgText(x, y, text, attrs = {}) {
  const node = el("text", { x, y, "font-size": 12, ...attrs });
  node.textContent = text;
  return node;
}

// Done and backlog as step plots: a count holds its value until the next unit event changes it.
function drawHistory(state) {
  const box = document.getElementById("history");
  const pts = state.history;
  box.replaceChildren();
  if (!pts.length) { box.textContent = "no units yet"; return; }
  const L = 50, W = 560, H = 140, T = 8;  // left margin, plot width and height, top margin
  const t0 = pts[0].t;
  const end = Math.max(state.daemon_pid ? state.now : pts[pts.length - 1].t, t0 + 1);
  const [unit, per] = timeUnit(end - t0);
  const top = Math.max(1, ...pts.map((p) => Math.max(p.done, p.backlog)));
  const x = (t) => (L + ((t - t0) / (end - t0)) * W).toFixed(1);
  const y = (n) => (T + H - (n / top) * H).toFixed(1);
  const svg = el("svg", { width: L + W + 20, height: T + H + 55, id: "history-chart" });
  svg.appendChild(el("polyline", {
    fill: "none", stroke: "#888", points: `${L},${T} ${L},${T + H} ${L + W},${T + H}`,
  }));
  const step = (key, color) => {
    const points = [[x(pts[0].t), y(pts[0][key])]];
    for (let i = 1; i < pts.length; i++)
      points.push([x(pts[i].t), y(pts[i - 1][key])], [x(pts[i].t), y(pts[i][key])]);
    points.push([x(end), y(pts[pts.length - 1][key])]);
    return el("polyline", {
      fill: "none", stroke: color, "stroke-width": 2, class: key,
      points: points.map((p) => p.join(",")).join(" "),
    });
  };
  svg.appendChild(step("done", "#31a354"));
  svg.appendChild(step("backlog", "#de2d26"));
  svg.appendChild(svgText(L - 6, T + H, "0", { "text-anchor": "end" }));
  svg.appendChild(svgText(L - 6, T + 10, String(top), { "text-anchor": "end" }));
  svg.appendChild(svgText(14, T + H / 2, "datasets", {
    "text-anchor": "middle", transform: `rotate(-90 14 ${T + H / 2})`,
  }));
  svg.appendChild(svgText(L, T + H + 16, "0", { "text-anchor": "middle" }));
  svg.appendChild(svgText(L + W, T + H + 16, ((end - t0) / per).toFixed(1), { "text-anchor": "middle" }));
  svg.appendChild(svgText(L + W / 2, T + H + 16, `time (${unit}) since the first dataset`, { "text-anchor": "middle" }));
  svg.appendChild(svgText(L, T + H + 40, "done (green) and backlog (red: seen, not finished)"));
  box.appendChild(svg);
}

function drawEvents(state) {
  const list = document.getElementById("events");
  list.replaceChildren(...state.events.map((e) => {
    const li = document.createElement("li");
    li.className = e.event;
    li.textContent = `${new Date(e.t * 1000).toISOString().slice(11, 19)} ${e.unit} ${e.event}` +
      (e.error ? `: ${e.error}` : "");
    return li;
  }));
}

function drawBadges(state) {
  const health = document.getElementById("health");
  const failed = state.units ? state.units.failed : 0;
  health.textContent = state.health === "failures" ? `${plural(failed, "unit")} failed` : state.health;
  health.className = "badge " + state.health.replace(" ", "-");
  const daemon = document.getElementById("daemon");
  if (!state.units) { daemon.textContent = state.error || ""; return; }  // error: a bad override
  const interrupted = count(state.units, "interrupted");
  daemon.textContent = state.daemon_pid ? `daemon running (pid ${state.daemon_pid})` :
    "daemon not running" + (interrupted ?
      `: ${plural(interrupted, "unit")} interrupted, converted again when it restarts` : "");
}

function drawSummary(state) {
  document.getElementById("experiment").textContent = state.experiment;
  drawBadges(state);
  if (!state.units) return;
  const u = state.units;
  const others = STATES.filter((s) => s !== "done" && count(u, s)).map((s) => `${count(u, s)} ${s}`);
  document.getElementById("counts").textContent =
    [`${u.done}${u.expected !== null ? " of " + u.expected : ""} done`, ...others].join(", ");
  const sp = state.throughput;
  document.getElementById("throughput").textContent = sp.mb_s ? `${sp.mb_s.toFixed(1)} MB/s` : "-";
  document.getElementById("backlog").textContent = `${state.backlog.units} units`;
  document.getElementById("eta").textContent = fmtSeconds(state.eta_s);
  document.getElementById("last-unit").textContent =
    state.seconds_since_last_unit === null ? "-" : `${fmtSeconds(state.seconds_since_last_unit)} ago`;
  document.getElementById("state-legend").replaceChildren(...STATES.map((s) => {
    const span = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = STATE_COLORS[s];
    span.dataset.state = s;
    span.append(i, `${s} ${count(u, s)}`);
    return span;
  }));
}

// A wall-clock time as read in the lab: "14:02" today, else with its date.
function clock(t) {
  const d = new Date(t * 1000), pad = (n) => String(n).padStart(2, "0");
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toDateString() === new Date().toDateString() ? hm :
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

// A banner per open alert at the top of the page, the most urgent first (the server's order),
// a colour per severity; acknowledged ones muted. Gone at the next poll once the alert clears.
function drawAlerts(state) {
  const open = (state.alerts && state.alerts.open) || [];
  const box = document.getElementById("alerts");
  box.hidden = !open.length;
  box.replaceChildren(...open.map((a) => {
    const div = document.createElement("div");
    div.className = `alert ${a.severity}${a.acknowledged_at === null ? "" : " acknowledged"}`;
    div.textContent = `${a.title}: ${a.subject} - ${a.message} since ${clock(a.started_at)}` +
      (a.acknowledged_at === null ? "" : " (acknowledged)");
    return div;
  }));
}

// Every failed unit, in plain text at the top of the page: the dataset and why.
function drawFailures(state) {
  const list = state.failures || [];
  document.getElementById("failures-section").hidden = !list.length;
  document.getElementById("failures").replaceChildren(...list.map((f) => {
    const li = document.createElement("li");
    li.textContent = `${f.unit} (dataset ${f.dataset}): ${f.error}`;
    return li;
  }));
}

async function drawPreview(state) {
  const section = document.getElementById("preview-section");
  const names = state.previews || [];
  section.hidden = !names.length;
  if (!names.length) return;
  const select = document.getElementById("preview-channel");
  fillSelect(select, names);
  const response = await fetch(`api/preview/${select.value}`);
  if (!response.ok) return;
  const w = parseInt(response.headers.get("x-width"), 10), h = parseInt(response.headers.get("x-height"), 10);
  const pixels = new Uint8Array(await response.arrayBuffer());
  const canvas = document.getElementById("preview");
  canvas.width = w; canvas.height = h;
  canvas.style.width = `${Math.min(600, w * Math.max(1, Math.floor(600 / Math.max(w, h))))}px`;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < pixels.length; i++) {
    image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = pixels[i];
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  canvas.dataset.drawn = select.value;
  canvas.dataset.nonzero = pixels.some((p) => p > 0) ? "yes" : "no";
  document.getElementById("preview-note").textContent =
    `${select.value}: max projection per tile, downsampled, at the stage positions (${w} x ${h} px)`;
}

function draw(state) {
  drawAlerts(state);
  drawSummary(state);
  drawFailures(state);
  if (!state.grid) return;
  const layout = tileLayout(state);
  drawRounds(state, layout);
  drawHeatmap(state, layout);
  drawShifts(state);
  drawHistory(state);
  drawEvents(state);
  document.getElementById("updated").textContent = `updated ${new Date().toISOString()}`;
}

// The run's state as of a new answer, else null. Asked `since` the last answer, the server
// sends the grid's cells changed since then (`changed_only`) and the quality rows of the
// tiles changed since then (`quality_changed_only`), merged into those kept here; the first
// answer, or one the server could not answer so, holds the whole grid. The tiles' stage
// positions come when they changed since the last answer, else the page keeps its own.
// Quality rows come a page of tiles at a time, and the tiles' positions a few hundred more
// at a time: while the server has more (`quality_more`, `tiles_more`) the page asks again
// at once, and each answer adds the next tiles' rows (and all the positions read so far).
// The grid comes a page of tiles at a time too (`grid_more`): the first answer holds the first
// tiles' cells, each next one the cells changed since and the next tiles'. A server just
// started on a large run reads its units a page at a time too (`units_more`): the page asks
// again at once, and each answer brings the grid's cells of the units read since (the counts
// are whole from the first answer).
async function fetchState() {
  const response = await fetch(url("api/state", last && last.since ? { since: last.since } : {}));
  if (!response.ok) return null;
  const answer = await response.json();
  if (answer.quality) answer.quality = namedRows(answer.quality);
  if (!last) return answer;
  let grid = answer.grid;
  if (answer.changed_only && last.grid) {
    grid = last.grid;
    for (const [tile, rounds] of Object.entries(answer.grid)) grid[tile] = Object.assign(grid[tile] || {}, rounds);
  }
  let quality = answer.quality;
  if (answer.quality_changed_only && last.quality) quality = mergeTiles(last.quality, answer.quality);
  return { ...answer, grid, quality, tiles: answer.tiles || last.tiles };
}

// The quality rows as objects: the server sends each row's values in `fields` order.
function namedRows({ fields, rows }) {
  return rows.map((values) => Object.fromEntries(fields.map((f, i) => [f, values[i]])));
}

// Rows kept, with the tiles that came in `changed` replaced by their new rows, in tile order
// (a tile travels whole: its rows depend on each other).
function mergeTiles(kept, changed) {
  if (changed.length === 0) return kept;
  const tiles = new Set(changed.map((r) => r.tile));
  const merged = kept.filter((r) => !tiles.has(r.tile)).concat(changed);
  return merged.sort((a, b) => a.tile - b.tile);  // stable: each tile's rows keep their order
}

async function poll() {
  try {
    const state = await fetchState();
    if (state) {
      last = state;
      draw(last);
      await drawPreview(last);
      document.body.dataset.polls = String(parseInt(document.body.dataset.polls || "0", 10) + 1);
    }
  } catch (err) {
    document.getElementById("health").textContent = "no connection";
  }
  setTimeout(poll, last && (last.units_more || last.grid_more || last.quality_more || last.tiles_more) ? 0 : POLL_MS);
}

// A run page of a data root (/exp/<name>/): a link back to the list of every experiment.
const rootAt = location.pathname.indexOf("/exp/");
if (rootAt >= 0) {
  const link = document.getElementById("root-link");
  link.href = location.pathname.slice(0, rootAt + 1);
  link.hidden = false;
}
for (const id of ["measure", "quality-channel"])
  document.getElementById(id).addEventListener("change", () => last && draw(last));
document.getElementById("preview-channel").addEventListener("change", () => last && drawPreview(last));
poll();
