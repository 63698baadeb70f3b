// The plant overview: twins, every sensor's latest reading and score, alerts; live over SSE.
import { api, h, fill, header, $, badge, fmtTime, fmtNumber, enc, session, signIn, liveStream, feedIndicator, showError } from "./app.js";

header("overview");
const page = $("#page");
const feedState = h("span", { id: "feed-state", class: "hint" });
const stat = (id, label) => h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, "–"));
const sensorsBox = h("div", { class: "sensors", id: "sensors" });
const twinsBox = h("div", { id: "twins" });
const alertsBox = h("ul", { class: "alerts", id: "alerts" });
fill(page,
  h("div", { class: "titlebar" },
    h("h1", {}, "Plant overview"), feedState),
  h("p", { class: "subtitle" }, "Twins, their sensors and anomaly alerts, updated live from the event log."),
  h("div", { class: "stats" },
    stat("stat-twins", "Twins"), stat("stat-sensors", "Sensors"), stat("stat-open", "Open alerts"), stat("stat-live", "Live updates")),
  h("div", { class: "grid two" },
    h("div", {},
      h("div", { class: "panel" }, h("h2", {}, "Sensors"), sensorsBox),
      h("div", { class: "panel" }, h("h2", {}, "Twins"), twinsBox)),
    h("div", {}, h("div", { class: "panel" }, h("h2", {}, "Alerts"), alertsBox))));

const sensors = new Map();   // "twin/sensor" -> {card, reading, score}
const openAlerts = new Map(); // "twin/sensor" -> last state
const seenAlerts = new Set();
let liveCount = 0;

function setStat(id, v) { $(`#${id}`).textContent = String(v); }

function sensorCard(twin, sensor) {
  const key = `${twin}/${sensor}`;
  let s = sensors.get(key);
  if (s) return s;
  const value = h("span", { class: "v" }, "–");
  const unit = h("span", { class: "unit" });
  const when = h("div", { class: "when" }, "no reading yet");
  const bar = h("span");
  const scoreText = h("span", { class: "score" }, "score –");
  const flag = h("span");
  const card = h("div", { class: "sensor", id: `sensor-${twin}-${sensor}`, dataset: { twin, sensor } },
    h("div", { class: "name" }, h("a", { href: `/ui/twins/${enc(twin)}` }, `${twin} / ${sensor}`), flag),
    h("div", { class: "reading" }, value, unit),
    when,
    h("div", { class: "scorebar" }, bar),
    h("div", { class: "scoreline" }, scoreText, h("span", { class: "hint" }, "anomaly score")));
  s = { card, value, unit, when, bar, scoreText, flag, t: 0 };
  sensors.set(key, s);
  const cards = [...sensors.keys()].sort();
  const i = cards.indexOf(key);
  const next = cards[i + 1] && sensors.get(cards[i + 1]).card;
  sensorsBox.insertBefore(card, next && next.parentNode === sensorsBox ? next : null);
  setStat("stat-sensors", sensors.size);
  return s;
}

function showReading(twin, sensor, value, unit, t, live) {
  const s = sensorCard(twin, sensor);
  if (t < s.t) return;
  s.t = t;
  s.value.textContent = fmtNumber(value);
  s.card.dataset.value = String(value);
  s.unit.textContent = unit || "";
  s.when.textContent = fmtTime(t);
  if (live) {
    s.card.classList.add("flash");
    setTimeout(() => s.card.classList.remove("flash"), 600);
  }
}

function showScore(twin, sensor, score, anomalous) {
  const s = sensorCard(twin, sensor);
  const pct = Math.max(0, Math.min(1, score)) * 100;
  s.bar.style.width = `${pct}%`;
  s.bar.className = score >= 0.5 ? "high" : score >= 0.25 ? "mid" : "";
  s.scoreText.textContent = `score ${score.toFixed(2)}`;
  s.card.dataset.score = String(score);
  s.card.classList.toggle("anomalous", !!anomalous);
  fill(s.flag, anomalous ? badge("anomaly") : null);
}

function alertItem(a, fresh) {
  const id = a.event_id || a.id;
  if (seenAlerts.has(id)) return;
  seenAlerts.add(id);
  const key = `${a.twin_id}/${a.sensor_id}`;
  const li = h("li", { class: fresh ? "new" : "", dataset: { id, twin: a.twin_id, sensor: a.sensor_id, state: a.state } },
    badge(a.state),
    h("span", { class: "what" }, h("a", { href: `/ui/twins/${enc(a.twin_id)}` }, key),
      ` score ${Number(a.score).toFixed(2)} ${a.state === "RAISED" ? "≥" : "<"} ${Number(a.threshold).toFixed(2)}`),
    h("span", { class: "meta" }, `${fmtTime(a.occurred_at)} · anomaly ${a.state === "RAISED" ? "raised" : "cleared"}`));
  // newest first, by occurrence time
  const t = Date.parse(a.occurred_at);
  li.dataset.t = String(t);
  let before = null;
  for (const other of alertsBox.children) {
    if (Number(other.dataset.t) < t) { before = other; break; }
  }
  alertsBox.insertBefore(li, before);
  const prev = openAlerts.get(key);
  if (!prev || prev.t <= t) openAlerts.set(key, { state: a.state, t });
  setStat("stat-open", [...openAlerts.values()].filter((x) => x.state === "RAISED").length);
  const empty = $("#alerts-empty");
  if (empty) empty.remove();
}

function certificateAlert(a) {
  if (seenAlerts.has(a.id)) return;
  seenAlerts.add(a.id);
  alertsBox.prepend(h("li", { class: "new", dataset: { id: a.id, twin: a.twin, state: "EXPIRING" } },
    badge("expiring"),
    h("span", { class: "what" }, h("a", { href: `/ui/certificates/${enc(a.certificate)}` }, a.certificate), " expires soon"),
    h("span", { class: "meta" }, `valid until ${fmtTime(a.valid_until)} · ${a.twin}`)));
}

async function load() {
  if (!session.token) {
    fill(sensorsBox, h("p", { class: "empty" }, "Sign in with a reader token to see the plant."));
    fill(twinsBox, h("button", { type: "button", onclick: () => signIn.ask() }, "Sign in"));
    feedIndicator(feedState)("denied");
    return false;
  }
  const [twins, list, alerts] = await Promise.allSettled([
    api("/twins?limit=200"), api("/ui/api/sensors?limit=500"), api("/alerts?limit=50")]);
  if (twins.status === "fulfilled") {
    const items = twins.value.items;
    setStat("stat-twins", items.length + (twins.value.next_cursor ? "+" : ""));
    fill(twinsBox, items.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Twin"), h("th", {}, "Name"), h("th", {}, "Kind"), h("th", {}, "Status"))),
      h("tbody", {}, items.map((t) => h("tr", { dataset: { twin: t.twin_id } },
        h("td", {}, h("a", { href: `/ui/twins/${enc(t.twin_id)}`, class: "mono" }, t.twin_id)),
        h("td", {}, t.name || "–"), h("td", {}, t.kind || "–"), h("td", {}, badge(t.status)))))) :
      h("p", { class: "empty" }, "No twins registered yet."));
  } else showError(twinsBox, twins.reason);
  if (list.status === "fulfilled") {
    for (const s of list.value.items) {
      if (s.value !== null && s.value !== undefined) showReading(s.twin_id, s.sensor_id, s.value, s.unit, Date.parse(s.last_at), false);
      else sensorCard(s.twin_id, s.sensor_id);
      if (s.score !== null && s.score !== undefined) showScore(s.twin_id, s.sensor_id, s.score, s.is_anomaly);
    }
  } else showError(sensorsBox, list.reason);
  if (!sensors.size && list.status === "fulfilled") sensorsBox.append(h("p", { class: "empty", id: "sensors-empty" }, "No readings yet; sensors appear as their readings arrive."));
  if (alerts.status === "fulfilled") {
    if (!alerts.value.items.length) alertsBox.append(h("li", { class: "empty", id: "alerts-empty" }, "No alerts."));
    for (const a of alerts.value.items) alertItem(a, false);
  } else alertsBox.append(h("li", {}, h("div", { class: "error" }, alerts.reason.message)));
  setStat("stat-open", [...openAlerts.values()].filter((x) => x.state === "RAISED").length);
  setStat("stat-sensors", sensors.size);
  setStat("stat-live", liveCount);
  return true;
}

function onLive(event, items) {
  if (event !== "items") return;
  for (const it of items) {
    if (it.kind === "reading") {
      const empty = $("#sensors-empty");
      if (empty) empty.remove();
      showReading(it.twin, it.sensor, it.value, it.unit, it.t, true);
      liveCount += 1;
    } else if (it.kind === "score") {
      showScore(it.twin, it.sensor, it.score, it.is_anomaly);
    } else if (it.kind === "alert" && it.type === "AnomalyDetected") {
      alertItem({ event_id: it.id, twin_id: it.twin, sensor_id: it.sensor, state: it.state, score: it.score,
                  threshold: it.threshold, occurred_at: new Date(it.t).toISOString() }, true);
    } else if (it.kind === "alert" && it.type === "CertificateExpiring") {
      certificateAlert(it);
    }
  }
  setStat("stat-live", liveCount);
}

load().then((ok) => {
  if (ok) liveStream("/ui/live", { onevent: onLive, onstate: feedIndicator(feedState) });
}).catch((e) => showError(sensorsBox, e));
