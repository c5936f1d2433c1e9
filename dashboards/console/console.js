// Security-room console: every open alarm (none hidden), acknowledge/reset with a note, gateway
// health, counters and dead letters. Plain DOM and text nodes only: no data goes through innerHTML.
"use strict";

const REFRESH_MS = 2000;
const REMIND_MS = 10000; // repeat the beep while a real alarm waits for a person
const FETCH_TIMEOUT_MS = 5000; // a hung request must not freeze the refresh loop
const $ = (id) => document.getElementById(id);
const rows = new Map(); // alarm id -> row; rows are kept between refreshes so typed notes survive
let heard = new Set(); // unacknowledged alarms already announced
let lastBeep = 0;
let lastAlarmsAt = null;
let audio = null;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node[key] = value;
  }
  return put(node, ...children);
}

// Children as nodes or strings, skipping empty ones; append() turns strings into text nodes,
// which is what keeps the page free of injected markup.
function put(node, ...children) {
  const empty = (c) => c === null || c === undefined || c === false || c === "";
  node.replaceChildren(...children.flat().filter((c) => !empty(c)));
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

function clock(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function age(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  if (s < 60) return `${s} s`;
  if (m < 60) return `${m} min ${pad(s % 60)} s`;
  if (h < 48) return `${h} h ${pad(m % 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// --- API --------------------------------------------------------------------------------------

async function api(path, options) {
  const resp = await fetch(path, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), ...options });
  const body = await resp.json().catch(() => null);
  return { ok: resp.ok, status: resp.status, body };
}

function detail(body) {
  const d = body && body.detail;
  return typeof d === "string" ? d : JSON.stringify(d ?? body);
}

async function getJson(path) {
  const r = await api(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${detail(r.body)}`);
  return r.body;
}

async function openAlarms() {
  const items = [];
  for (;;) {
    const page = await getJson(`/api/alarms?open=true&limit=1000&offset=${items.length}`);
    items.push(...page.items);
    if (page.items.length === 0 || items.length >= page.total) return items;
  }
}

// --- sound ------------------------------------------------------------------------------------

function setupAudio() {
  if (!window.AudioContext) return;
  audio = new AudioContext(); // browsers keep it suspended until the operator clicks or types
  const unlock = () => audio.resume().then(() => { $("sound-hint").hidden = true; });
  document.addEventListener("pointerdown", unlock);
  document.addEventListener("keydown", unlock);
  $("sound-hint").hidden = audio.state === "running";
}

function beep() {
  lastBeep = Date.now();
  if (!audio || $("mute").checked) return;
  if (audio.state !== "running") { $("sound-hint").hidden = false; return; }
  [0, 0.3].forEach((start, i) => {
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = i ? 660 : 880;
    gain.gain.value = 0.15;
    osc.connect(gain).connect(audio.destination);
    osc.start(audio.currentTime + start);
    osc.stop(audio.currentTime + start + 0.2);
  });
}

function announce(alarms) {
  const waiting = alarms.filter((a) => a.state === "new" && !a.test).map((a) => a.id);
  const arrived = waiting.some((id) => !heard.has(id));
  heard = new Set(waiting);
  if (arrived || (waiting.length && Date.now() - lastBeep >= REMIND_MS)) beep();
}

// --- alarms -----------------------------------------------------------------------------------

function newRow(id) {
  const row = { alarm: null, cells: [0, 1, 2, 3, 4].map(() => el("td")) };
  row.cells[2].className = "received";
  row.note = el("input", { maxLength: 2000, onkeydown: (e) => e.key === "Enter" && act(id) });
  row.button = el("button", { type: "button", onclick: () => act(id) });
  row.error = el("div", { class: "error", role: "alert" });
  row.tr = el("tr", {}, row.cells, el("td", { class: "action" }, row.note, row.button, row.error));
  row.tr.dataset.id = id;
  return row;
}

function handling(a) {
  if (!a.acknowledged_by) return null;
  const note = a.acknowledged_note ? `: "${a.acknowledged_note}"` : "";
  const by = `acknowledged by ${a.acknowledged_by} at ${clock(a.acknowledged_at)}${note}`;
  return el("div", { class: "small" }, by);
}

function deliveries(a) {
  if (!a.deliveries.length) return [a.test ? "not forwarded (test)" : "security room only"];
  return a.deliveries.map((d) => el("div", { class: d.status },
    `${d.endpoint}: ${d.status}`,
    d.status === "delivered" && d.delivered_at && ` ${clock(d.delivered_at).slice(11)}`,
    d.status !== "delivered" && ` (${d.attempts} attempt${d.attempts === 1 ? "" : "s"})`,
    d.status !== "delivered" && d.last_error && el("div", { class: "small" }, d.last_error)));
}

function fillRow(row, a) {
  row.alarm = a;
  row.tr.className = `c-${a.category} state-${a.state}${a.test ? " test" : ""}` +
    (a.state === "new" && !a.test ? " flash" : "");
  const [category, where, received, state, delivery] = row.cells;
  put(category, el("span", { class: "badge" }, a.category),
    a.test && el("span", { class: "badge testlabel" }, "TEST"),
    el("div", { class: "small" }, a.event));
  put(where, a.school, el("div", { class: "small" }, `${a.kind} / ${a.device}`),
    a.related_alarm_id && el("div", { class: "small" }, `about alarm ${a.related_alarm_id}`));
  put(received, clock(a.received_at), el("div", { class: "small" }, `${age(a.received_at)} ago`));
  put(state, el("span", { class: "state" }, a.state), handling(a),
    a.restored_at &&
      el("div", { class: "restored" }, `device restored ${clock(a.restored_at)}; still latched`));
  put(delivery, ...deliveries(a));
  const ack = a.state === "new";
  row.button.textContent = ack ? "Acknowledge" : "Reset";
  row.note.placeholder = ack ? "note: what you see" : "note: what was done";
}

function renderAlarms(alarms) {
  const ids = new Set(alarms.map((a) => a.id));
  for (const [id, row] of rows) if (!ids.has(id)) { row.tr.remove(); rows.delete(id); }
  const body = $("alarms");
  alarms.forEach((a, i) => {
    if (!rows.has(a.id)) rows.set(a.id, newRow(a.id));
    const row = rows.get(a.id);
    fillRow(row, a);
    // Only move a row when it is out of place: moving it would blur the note being typed.
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] ?? null);
  });
  const waiting = alarms.filter((a) => a.state === "new").length;
  $("alarms-title").textContent = `Open alarms: ${alarms.length} (${waiting} unacknowledged)`;
  $("no-alarms").hidden = alarms.length > 0;
  announce(alarms);
}

async function act(id) {
  const row = rows.get(id);
  const operator = $("operator").value.trim();
  if (!row || !row.alarm) return;
  if (!operator) {
    row.error.textContent = "Enter your name in the Operator field first.";
    $("operator").focus();
    return;
  }
  const action = row.alarm.state === "new" ? "ack" : "reset";
  row.button.disabled = true;
  row.error.textContent = "";
  try {
    const r = await api(`/api/alarms/${encodeURIComponent(id)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ operator, note: row.note.value }),
    });
    if (r.ok) row.note.value = "";
    else row.error.textContent = `HTTP ${r.status}: ${detail(r.body)}`;
  } catch (err) {
    row.error.textContent = `gateway unreachable: ${err.message}`;
  } finally {
    row.button.disabled = false;
  }
  refresh();
}

// --- health, counters, dead letters -----------------------------------------------------------

function healthReasons(h) {
  const reasons = [];
  for (const [name, s] of Object.entries(h.mqtt ?? {})) {
    if (!s.connected) reasons.push(`MQTT session ${name} down${s.error ? `: ${s.error}` : ""}`);
  }
  if (h.influxdb && !h.influxdb.reachable) {
    reasons.push(`InfluxDB unreachable${h.influxdb.error ? `: ${h.influxdb.error}` : ""}`);
  }
  if (h.store && !h.store.ok) reasons.push(`store error: ${h.store.error}`);
  for (const [name, state] of Object.entries(h.endpoints ?? {})) {
    if (state !== "up") reasons.push(`endpoint ${name} ${state}`);
  }
  return reasons;
}

function renderHealth(health, alarmsError) {
  const h = health.status === "fulfilled" ? health.value.body : null;
  const reasons = h && h.status ? healthReasons(h) : [];
  let title = h && h.status ? `Gateway ${h.status}` : "Gateway unreachable";
  if (!(h && h.status)) {
    title += ` (${health.status === "rejected" ? health.reason.message : health.value.status})`;
  } else if (h.status !== "ok" && !reasons.length) {
    reasons.push(JSON.stringify(h));
  }
  if (alarmsError) {
    const since = lastAlarmsAt ? clock(lastAlarmsAt) : "the page was opened";
    reasons.push(`alarm list not updated since ${since}: ${alarmsError.message}`);
  }
  const ok = Boolean(h && h.status === "ok") && !reasons.length;
  $("health").className = `banner ${ok ? "ok" : "bad"}`;
  put($("health"), `${title} `, el("span", { class: "small" }, `checked ${clock(new Date())}`),
    reasons.length > 0 && el("ul", {}, reasons.map((r) => el("li", {}, r))));
  $("alarms").classList.toggle("stale", Boolean(alarmsError));
}

const COUNTERS = [
  ["alarms_open", "open alarms (real)"], ["alarms_total", "alarms total"],
  ["alarms_forwarded", "forwarded"], ["deliveries_pending", "deliveries pending"],
  ["dead_letters", "dead letters"], ["devices", "devices"], ["devices_offline", "offline"],
  ["messages_in", "messages"],
  ["points_written", "points written"], ["points_pending", "points pending"],
  ["store_errors", "store errors"],
];

function renderCounters(stats) {
  put($("counters"), ...COUNTERS.filter(([key]) => key in stats)
    .map(([key, label]) => el("span", {}, `${label} `, el("b", {}, String(stats[key])))));
}

function letterRow(d) {
  const payload = d.payload_text !== null ? d.payload_text.slice(0, 200)
    : `(binary, ${d.size} bytes) ${d.payload_base64.slice(0, 80)}`;
  return el("tr", {}, el("td", {}, clock(d.received_at)), el("td", {}, d.topic),
    el("td", {}, d.reason), el("td", {}, payload));
}

function renderLetters(page) {
  const none = el("tr", {}, el("td", { colSpan: 4, class: "hint" }, "none"));
  put($("letters"), page.items.length ? page.items.map(letterRow) : none);
}

// --- refresh loop -----------------------------------------------------------------------------

let busy = false, again = false, timer = null;

async function update() {
  const [health, stats, alarms, letters] = await Promise.allSettled([
    api("/healthz"), getJson("/api/stats"), openAlarms(), getJson("/api/dead-letters?limit=20"),
  ]);
  if (alarms.status === "fulfilled") {
    renderAlarms(alarms.value);
    lastAlarmsAt = new Date();
  }
  renderHealth(health, alarms.status === "rejected" ? alarms.reason : null);
  if (stats.status === "fulfilled") renderCounters(stats.value);
  if (letters.status === "fulfilled") renderLetters(letters.value);
}

async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  clearTimeout(timer);
  try {
    await update();
  } finally {
    busy = false;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes ?? 0) + 1);
  }
  if (again) { again = false; refresh(); return; }
  timer = setTimeout(refresh, REFRESH_MS);
}

function setupOperator() {
  const input = $("operator");
  try {
    input.value = localStorage.getItem("console.operator") ?? "";
    input.addEventListener("input", () => localStorage.setItem("console.operator", input.value));
  } catch { /* storage disabled: the name is asked for on every load */ }
}

// Mute is deliberately not remembered: a console left muted would stay silent for the next shift.
setupOperator();
setupAudio();
refresh();
