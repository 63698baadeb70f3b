// One twin: attributes, relationships, certificates, sensor charts with anomalies marked (uPlot).
import { api, h, fill, header, $, badge, fmtTime, fmtNumber, enc, session, signIn, liveStream, feedIndicator, showError } from "./app.js";

header("overview");
const page = $("#page");
const twinId = decodeURIComponent(location.pathname.replace(/^\/ui\/twins\//, "").replace(/\/$/, ""));
const MAX_POINTS = 1500;
const charts = new Map();   // sensor -> {plot, data, unit}

function kv(rows) {
  return h("table", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v ?? "–"))));
}

function anomalyPoints() {
  return {
    show: true, stroke: "#b42318", fill: "#b42318", width: 0,
    paths: () => null,
    points: { show: true, size: 9, stroke: "#b42318", fill: "#b42318", width: 1 },
  };
}

function makeChart(el, sensor, unit, series) {
  const width = Math.max(320, el.clientWidth - 8);
  const opts = {
    width, height: 220,
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    scales: { x: { time: true }, score: { range: [0, 1] } },
    axes: [
      { stroke: "#5d6b7e", grid: { stroke: "#eef1f5" } },
      { stroke: "#5d6b7e", grid: { stroke: "#eef1f5" }, label: unit, size: 60 },
      { side: 1, scale: "score", stroke: "#9aa6b5", grid: { show: false }, label: "score", size: 46 },
    ],
    series: [
      {},
      { label: `value (${unit || "–"})`, stroke: "#1f5fbf", width: 1.5, points: { show: false } },
      { label: "anomaly", ...anomalyPoints() },
      { label: "score", scale: "score", stroke: "rgba(93,107,126,.45)", width: 1, points: { show: false } },
    ],
  };
  return new uPlot(opts, series, el);
}

function seriesFrom(points) {
  const xs = [], vs = [], an = [], sc = [];
  for (const p of points) {
    xs.push(Date.parse(p.t) / 1000);
    vs.push(p.value);
    an.push(p.anomaly ? p.value : null);
    sc.push(p.score ?? null);
  }
  return [xs, vs, an, sc];
}

async function sensorChart(box, s) {
  const to = new Date(Date.parse(s.last_at) + 60_000);
  const from = new Date(to.getTime() - 24 * 3600_000);
  const holder = h("div");
  const info = h("span", { class: "legend" }, h("span", { class: "line" }), "value", h("span", { class: "mark" }), "anomaly");
  const card = h("div", { class: "chart", id: `chart-${s.sensor_id}`, dataset: { sensor: s.sensor_id } },
    h("div", { class: "title" }, h("strong", {}, `${s.sensor_id} · ${s.quantity || ""}`), info), holder);
  box.append(card);
  try {
    const q = `from=${enc(from.toISOString())}&to=${enc(to.toISOString())}&max_points=${MAX_POINTS}`;
    const r = await api(`/sensors/${enc(twinId)}/${enc(s.sensor_id)}/readings?${q}`);
    const data = seriesFrom(r.points);
    const plot = makeChart(holder, s.sensor_id, s.unit, data);
    const anomalies = r.points.filter((p) => p.anomaly).length;
    card.dataset.points = String(r.points.length);
    card.dataset.anomalies = String(anomalies);
    info.append(h("span", { class: "hint ml" },
      `${r.points.length} points${r.downsampled ? ` (${r.bucket_s.toFixed(0)} s buckets)` : ""} · ${anomalies} anomalous`));
    charts.set(s.sensor_id, { plot, data, card });
  } catch (e) {
    showError(holder, e);
  }
}

function onLive(event, items) {
  if (event !== "items") return;
  for (const it of items) {
    const c = charts.get(it.sensor);
    if (!c || it.twin !== twinId) continue;
    const [xs, vs, an, sc] = c.data;
    const x = it.t / 1000;
    if (it.kind === "reading") {
      if (xs.length && x <= xs[xs.length - 1]) continue;
      xs.push(x); vs.push(it.value); an.push(null); sc.push(null);
    } else if (it.kind === "score") {
      const i = xs.lastIndexOf(x);
      if (i < 0) continue;
      sc[i] = it.score;
      an[i] = it.is_anomaly ? vs[i] : null;
    } else continue;
    while (xs.length > MAX_POINTS * 2) { xs.shift(); vs.shift(); an.shift(); sc.shift(); }
    c.plot.setData(c.data);
  }
}

async function load() {
  if (!session.token) {
    fill(page, h("h1", {}, twinId), h("p", { class: "subtitle" }, "Sign in with a reader token to see this twin."),
      h("button", { type: "button", onclick: () => signIn.ask() }, "Sign in"));
    return;
  }
  let detail;
  try {
    detail = await api(`/twins/${enc(twinId)}`);
  } catch (e) {
    fill(page, h("h1", {}, twinId));
    const box = h("div");
    page.append(box);
    showError(box, e);
    return;
  }
  const t = detail.twin;
  const feed = h("span", { id: "feed-state", class: "hint" });
  const chartsBox = h("div", { class: "charts", id: "charts" });
  const attrs = Object.entries(t.attributes || {});
  fill(page,
    h("div", { class: "titlebar" },
      h("h1", {}, t.name || t.twin_id, " ", badge(t.status)), feed),
    h("p", { class: "subtitle mono" }, t.twin_id),
    h("div", { class: "grid halves" },
      h("div", { class: "panel" }, h("h2", {}, "Attributes"),
        kv([["Kind", t.kind], ["Manufacturer", t.manufacturer], ["Model", t.model], ["Serial number", t.serial_number],
            ["Owner", t.owner], ["Registered", fmtTime(t.registered_at)], ["Updated", fmtTime(t.updated_at)],
            t.decommission_reason ? ["Decommissioned", t.decommission_reason] : null,
            ...attrs.map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)])])),
      h("div", {},
        h("div", { class: "panel" }, h("h2", {}, "Relationships"),
          detail.relations.length ? h("table", {}, h("tbody", {}, detail.relations.map((r) => {
            const other = r.twin_id === twinId ? r.target_twin_id : r.twin_id;
            const dir = r.twin_id === twinId ? r.relation : `${r.relation} (of)`;
            return h("tr", {}, h("td", {}, dir), h("td", {}, h("a", { href: `/ui/twins/${enc(other)}`, class: "mono" }, other)));
          }))) : h("p", { class: "empty" }, "No relationships.")),
        h("div", { class: "panel" }, h("h2", {}, "Certificates"),
          detail.certificates.length ? h("table", { id: "certificates" },
            h("thead", {}, h("tr", {}, h("th", {}, "Certificate"), h("th", {}, "Issuer"), h("th", {}, "Valid until"), h("th", {}, "Status"))),
            h("tbody", {}, detail.certificates.map((c) => h("tr", { dataset: { certificate: c.certificate_id } },
              h("td", {}, h("a", { href: `/ui/certificates/${enc(c.certificate_id)}`, class: "mono" }, c.certificate_id)),
              h("td", {}, c.issuer_id || "–"), h("td", {}, fmtTime(c.valid_until)), h("td", {}, badge(c.status))))))
            : h("p", { class: "empty" }, "No certificates.")))),
    h("div", { class: "panel" }, h("h2", {}, "Sensors (last 24 hours of data)"), chartsBox));
  let sensors = [];
  try {
    sensors = (await api(`/ui/api/sensors?twin=${enc(twinId)}&limit=50`)).items;
  } catch (e) { showError(chartsBox, e); return; }
  if (!sensors.length) chartsBox.append(h("p", { class: "empty" }, "No readings from this twin yet."));
  await Promise.all(sensors.map((s) => sensorChart(chartsBox, s)));
  chartsBox.dataset.ready = "true";
  liveStream(`/ui/live?twin=${enc(twinId)}`, { onevent: onLive, onstate: feedIndicator(feed) });
}

load().catch((e) => showError(page, e));
