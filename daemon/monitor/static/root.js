// The root page: polls api/experiments and lists every experiment, the acquiring ones first.
"use strict";

const POLL_MS = 2000;

function ago(seconds) {
  if (seconds === null) return "-";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(e, now) {
  const tr = document.createElement("tr");
  tr.className = e.state;
  const name = document.createElement("td");
  const link = document.createElement("a");
  link.href = e.page;  // the server quotes the name
  link.textContent = e.name;
  name.appendChild(link);
  const units = `${e.done} of ${e.planned === null ? "?" : e.planned} done`;
  const alerts = e.open_alerts && `${e.open_alerts} open alert${e.open_alerts === 1 ? "" : "s"}`;
  const note = [alerts, e.error, e.held_by && `held by ${e.held_by}`].filter((n) => n).join("; ");
  tr.append(
    name, cell(e.layout || "-"), cell(e.state, `state ${e.state}`), cell(units),
    cell(String(e.failures), e.failures ? "failures" : ""),
    cell(e.last_activity === null ? "-" : `${ago(now - e.last_activity)} ago`),
    cell(e.eta_s === null ? "-" : ago(e.eta_s)), cell(note, "note"),
  );
  return tr;
}

function draw(listing) {
  document.getElementById("root").textContent = listing.root;
  const list = listing.experiments;
  const count = (state) => list.filter((e) => e.state === state).length;
  document.getElementById("summary-line").textContent = list.length ?
    `${list.length} experiments: ${count("acquiring")} acquiring, ${count("complete")} complete, ` +
    `${count("failed")} failed` : "no experiments yet";
  document.querySelector("#experiments tbody").replaceChildren(...list.map((e) => row(e, listing.now)));
  document.getElementById("updated").textContent = `updated ${new Date().toISOString()}`;
}

async function poll() {
  try {
    const response = await fetch("api/experiments");
    if (response.ok) {
      draw(await response.json());
      document.body.dataset.polls = String(parseInt(document.body.dataset.polls || "0", 10) + 1);
    }
  } catch (err) {
    document.getElementById("summary-line").textContent = "no connection";
  }
  setTimeout(poll, POLL_MS);
}

poll();
