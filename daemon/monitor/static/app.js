// The live page: polls /api/state and redraws. No library, nothing loaded from elsewhere.
"use strict";

const POLL_MS = 1000;
const STATES = ["not seen", "pending", "running", "done", "failed"];
const STATE_COLORS = {
  "not seen": "#d9d9d9", pending: "#9ecae1", running: "#3182bd", done: "#31a354", failed: "#de2d26",
};
const SVG = "http://www.w3.org/2000/svg";
const token = new URLSearchParams(location.search).get("token");
let last = null;

function url(path) {
  return token ? `${path}?token=${encodeURIComponent(token)}` : path;
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
    rounds.appendChild(tileMap(layout, (t) => {
      const tname = `tile${String(t).padStart(4, "0")}`;
      const st = state.grid[tname][rname];
      const error = state.failed[`${tname}/${rname}`];
      return {
        color: STATE_COLORS[st] || "#000",
        data: { "data-tile": t, "data-round": round, "data-state": st, class: "tile" },
        title: `${tname} ${rname}: ${st}${error ? " - " + error : ""}`,
      };
    }, rname));
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

function drawHeatmap(state, layout) {
  const measure = document.getElementById("measure").value;
  const select = document.getElementById("quality-channel");
  let rows = state.quality;
  if (measure === "fiducial_relative") rows = rows.filter((r) => r.kind === "round");
  const channels = [...new Set(rows.map(channelKey))].sort();
  fillSelect(select, channels);
  const chosen = rows.filter((r) => channelKey(r) === select.value);
  const byTile = Object.fromEntries(chosen.map((r) => [r.tile, r]));
  const values = chosen.map((r) => r[measure]).filter((v) => v !== null && v !== undefined);
  const lo = Math.min(...values), hi = Math.max(...values);
  const heat = document.getElementById("heatmap");
  heat.replaceChildren(tileMap(layout, (t) => {
    const r = byTile[t];
    const v = r ? r[measure] : null;
    if (v === null || v === undefined)
      return { color: "#d9d9d9", data: { "data-tile": t, class: "heat" }, title: `tile ${t}: not measured` };
    const f = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return {
      color: ramp(f),
      data: { "data-tile": t, "data-value": v, class: "heat" },
      title: `tile ${t} ${r.entry}: ${measure} = ${v.toPrecision(4)}` +
        ` (saturated ${(100 * r.saturated_fraction).toFixed(3)} %, best plane ${r.best_focus_plane})`,
    };
  }, `${measure} - ${select.value || "nothing measured yet"}`, 260));
  document.getElementById("heat-scale").textContent = values.length
    ? `low ${lo.toPrecision(4)} (dark) .. high ${hi.toPrecision(4)} (yellow)` : "";
}

function drawHistory(state) {
  const box = document.getElementById("history");
  const pts = state.history;
  box.replaceChildren();
  if (!pts.length) { box.textContent = "no units yet"; return; }
  const W = 600, H = 140, t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const maxDone = Math.max(1, ...pts.map((p) => p.done)), maxBack = Math.max(1, ...pts.map((p) => p.backlog));
  const svg = el("svg", { width: W, height: H + 20, id: "history-chart" });
  const line = (key, max, color) => el("polyline", {
    fill: "none", stroke: color, "stroke-width": 2,
    points: pts.map((p) => `${((p.t - t0) / (t1 - t0)) * W},${H - (p[key] / max) * (H - 5)}`).join(" "),
  }, key);
  svg.appendChild(line("done", maxDone, "#31a354"));
  svg.appendChild(line("backlog", maxBack, "#de2d26"));
  const legend = el("text", { x: 4, y: H + 15, "font-size": 12 });
  legend.textContent = `done (green, max ${maxDone}) and backlog (red, max ${maxBack}) over ${fmtSeconds(t1 - t0)}`;
  svg.appendChild(legend);
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

function drawSummary(state) {
  document.getElementById("experiment").textContent = state.experiment;
  const health = document.getElementById("health");
  health.textContent = state.health;
  health.className = "badge " + state.health.replace(" ", "-");
  if (!state.units) return;
  const u = state.units;
  document.getElementById("counts").textContent =
    `${u.done}${u.expected !== null ? " of " + u.expected : ""} done, ${u.running} running, ` +
    `${u.pending} pending, ${u.failed} failed` + (u.not_seen ? `, ${u.not_seen} not seen` : "");
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
    span.append(i, s);
    return span;
  }));
}

async function drawPreview(state) {
  const section = document.getElementById("preview-section");
  const names = state.previews || [];
  section.hidden = !names.length;
  if (!names.length) return;
  const select = document.getElementById("preview-channel");
  fillSelect(select, names);
  const response = await fetch(url(`api/preview/${select.value}`));
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
  drawSummary(state);
  if (!state.grid) return;
  const layout = tileLayout(state);
  drawRounds(state, layout);
  drawHeatmap(state, layout);
  drawHistory(state);
  drawEvents(state);
  document.getElementById("updated").textContent = `updated ${new Date().toISOString()}`;
}

async function poll() {
  try {
    const response = await fetch(url("api/state"));
    if (response.ok) {
      last = await response.json();
      draw(last);
      await drawPreview(last);
      document.body.dataset.polls = String(parseInt(document.body.dataset.polls || "0", 10) + 1);
    }
  } catch (err) {
    document.getElementById("health").textContent = "no connection";
  }
  setTimeout(poll, POLL_MS);
}

for (const id of ["measure", "quality-channel"])
  document.getElementById(id).addEventListener("change", () => last && draw(last));
document.getElementById("preview-channel").addEventListener("change", () => last && drawPreview(last));
poll();
