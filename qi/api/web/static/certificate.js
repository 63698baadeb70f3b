// One certificate: status, checks of the latest validation, validity, history, verification.
import { api, h, fill, header, $, badge, fmtTime, enc, session, signIn, showError } from "./app.js";
import { checksList, renderVerification } from "./verification.js";

header("overview");
const page = $("#page");
const certId = decodeURIComponent(location.pathname.replace(/^\/ui\/certificates\//, "").replace(/\/$/, ""));

function kv(rows) {
  return h("table", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v ?? "–"))));
}

async function load() {
  const verification = h("div", { id: "result" });
  if (!session.token) {
    fill(page, h("h1", {}, certId),
      h("p", { class: "subtitle" }, "Sign in with a reader token for the certificate's details; its public verification follows."),
      h("button", { type: "button", onclick: () => signIn.ask() }, "Sign in"),
      h("h2", { class: "section" }, "Verification"), verification);
  } else {
    let c;
    try {
      c = await api(`/certificates/${enc(certId)}`);
    } catch (e) {
      fill(page, h("h1", {}, certId));
      const box = h("div");
      page.append(box);
      showError(box, e);
      return;
    }
    const v = c.validation;
    fill(page,
      h("h1", {}, c.certificate_id, " ", badge(c.status)),
      h("p", { class: "subtitle" }, c.certificate_kind || "certificate", c.twin_id ? " for " : "",
        c.twin_id ? h("a", { href: `/ui/twins/${enc(c.twin_id)}`, class: "mono" }, c.twin_id) : null),
      h("div", { class: "grid halves" },
        h("div", { class: "panel" }, h("h2", {}, "Certificate"),
          kv([["Status", badge(c.status)], ["Lifecycle", c.lifecycle], ["Issuer", `${c.issuer_name || ""} (${c.issuer_id || "–"})`],
              ["Issued", fmtTime(c.issued_at)], ["Valid from", fmtTime(c.valid_from)], ["Valid until", fmtTime(c.valid_until)],
              c.revoked_by ? ["Revoked by", c.revoked_by] : null, c.reason ? ["Reason", c.reason] : null,
              c.superseded_by ? ["Superseded by", h("a", { href: `/ui/certificates/${enc(c.superseded_by)}` }, c.superseded_by)] : null])),
        h("div", { class: "panel" }, h("h2", {}, "Latest validation"),
          v ? [kv([["Verdict", badge(v.verdict)], ["Validated", fmtTime(v.validated_at)], ["Validator", v.validator_version]]),
               h("div", { class: "mt" }, checksList(v.checks))]
            : h("p", { class: "empty" }, "Not validated yet."))),
      h("div", { class: "panel" }, h("h2", {}, "History"),
        c.history.length ? h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Event"), h("th", {}, "Event id"))),
          h("tbody", {}, c.history.map((e) => h("tr", {}, h("td", {}, fmtTime(e.occurred_at)), h("td", {}, e.event_type),
            h("td", { class: "mono" }, e.event_id))))) : h("p", { class: "empty" }, "No events.")),
      h("h2", { class: "section" }, "Verification"), verification);
  }
  try {
    const result = await api(`/verify/${enc(certId)}`, { auth: false });
    await renderVerification(verification, result, { compact: !!session.token });
  } catch (e) {
    showError(verification, e);
  }
  verification.dataset.state = "done";
}

load().catch((e) => showError(page, e));
