// Renders a /verify/{certificate_id} answer and checks its audit proof in this browser.
import { h, fill, badge, fmtTime } from "./app.js";
import { checkInclusion } from "./proof.js";

const HEADLINE = {
  valid: "Valid",
  revoked: "Revoked",
  superseded: "Superseded",
  expired: "Expired",
  invalid: "Invalid",
  issued: "Not yet validated",
  unknown: "Unknown",
  not_found: "Not found",
  unverified: "Not verified",
};

const EXPLAIN = {
  valid: "Every check passed, the certificate is within its validity period and has not been revoked.",
  revoked: "The issuer revoked this certificate. It must not be relied on.",
  superseded: "A newer certificate replaces this one.",
  expired: "The certificate's validity period has ended.",
  invalid: "The certificate failed validation. See the failed checks below.",
  issued: "The certificate was received but the validator has not judged it yet.",
  unknown: "The platform cannot tell the state of this certificate.",
  not_found: "No certificate with this id is known to this platform.",
  unverified: "The server says valid, but the audit proof it sent does not check out in your browser. Do not rely on it.",
};

function checkMark(outcome) {
  const o = String(outcome || "").toUpperCase();
  if (o === "PASS") return h("span", { class: "mark pass" }, "✓");
  if (o === "FAIL") return h("span", { class: "mark fail" }, "✗");
  return h("span", { class: "mark skip" }, "–");
}

export function checksList(checks) {
  if (!checks || !checks.length) return h("p", { class: "empty" }, "No checks recorded.");
  return h("ul", { class: "checks" }, checks.map((c) =>
    h("li", { dataset: { check: c.check, outcome: c.outcome } }, checkMark(c.outcome), h("strong", {}, c.check),
      c.detail ? h("span", { class: "hint" }, " — ", c.detail) : null)));
}

// The verdict banner. ``status`` is the API's status, or "not_found".
export function verdictBanner(status, subtitle) {
  const s = HEADLINE[status] ? status : "unknown";
  return h("div", { class: `verdict ${s}`, id: "verdict", dataset: { status: s } },
    h("div", { class: "big" }, HEADLINE[s]),
    h("div", { class: "why" }, subtitle || EXPLAIN[s]));
}

// The note with each signature line shortened to its start and size (ML-DSA-65 signatures are 3.3 KB).
function abbreviated(note) {
  return note.split("\n").map((line) => {
    const m = /^(\u2014 \S+ )(\S+)$/.exec(line);
    if (!m || m[2].length <= 60) return line;
    return `${m[1]}${m[2].slice(0, 44)}… (${Math.floor(m[2].length * 3 / 4)} bytes)`;
  }).join("\n");
}

// The in-browser proof check panel; resolves to the result of checkInclusion (or null).
export async function proofPanel(container, v) {
  if (!v.proof) {
    fill(container, h("h2", {}, "Audit log inclusion"),
      h("div", { id: "proof-check", dataset: { ok: "none" } },
        h("p", { class: "empty" }, v.proof_unavailable || "No inclusion proof was returned.")));
    return null;
  }
  const p = v.proof;
  fill(container, h("h2", {}, "Audit log inclusion"), h("p", { class: "empty" }, "Checking the proof in this browser…"));
  const result = await checkInclusion(p, v.log_public_key);
  const lines = [
    ["Log", p.log_id],
    ["Leaf", `${p.leaf_index} of ${p.tree_size}`],
    ["Recorded at", `${p.source.topic} · partition ${p.source.partition} · offset ${p.source.offset}`],
    ["Leaf hash", p.leaf_hash],
    ["Leaf data", result.leafData === null ? "not sent" : result.leafData ? "hashes to the leaf hash ✓" : "does NOT hash to the leaf hash ✗"],
    ["Audit path", `${p.hashes.length} hash${p.hashes.length === 1 ? "" : "es"}`],
    ["Recomputed root", result.computedRoot || "–"],
    ["Checkpoint root", result.checkpointRoot || "–"],
    ["Checkpoint Ed25519", result.ed25519 === null ? "not checked here (no key, or no Ed25519 in this browser)"
      : result.ed25519 ? "verifies with the log's key ✓" : "does NOT verify ✗"],
  ];
  fill(container,
    h("h2", {}, "Audit log inclusion"),
    h("div", { id: "proof-check", class: `proofline ${result.ok ? "ok" : "bad"}`, dataset: { ok: String(result.ok) } },
      h("span", { class: "icon" }, result.ok ? "✓" : "✗"),
      h("div", {}, h("div", { class: "what" }, result.ok ? "Inclusion proof checked in your browser" : "The inclusion proof does not check out"),
        h("div", { class: "why" }, result.reason))),
    h("table", { class: "kv mt" },
      lines.map(([k, val]) => h("tr", {}, h("th", {}, k), h("td", { class: "mono hash" }, val)))),
    h("p", { class: "hint" }, "Root recomputed with SHA-256 (WebCrypto) from the leaf hash and the audit path, "
      + "RFC 9162 §2.1.3.2, and compared with the signed checkpoint below. The ML-DSA-65 half of the "
      + "checkpoint's hybrid signature is checked by the server and by `qi audit verify-proof`."),
    h("h2", { class: "mt" }, "Signed checkpoint"),
    h("pre", { class: "note", id: "checkpoint-note" }, abbreviated(p.checkpoint.text)),
    h("details", { class: "note" }, h("summary", {}, "the whole signed note (C2SP tlog-checkpoint)"),
      h("pre", { class: "note" }, p.checkpoint.text)));
  return result;
}

// Everything about one verification: banner, facts, checks, key, proof.
// ``compact``: the certificate page already shows the facts and checks; only verdict, key, proof.
export async function renderVerification(root, v, { compact = false } = {}) {
  const proofBox = h("div", { class: "panel", id: "proof" });
  const failed = (v.validation && v.validation.checks || []).filter((c) => String(c.outcome).toUpperCase() === "FAIL");
  const subtitle = v.status === "invalid" && failed.length
    ? `Failed: ${failed.map((c) => c.check).join(", ")}.` : null;
  const key = v.issuer_key;
  const facts = compact ? null : h("div", { class: "panel" },
        h("h2", {}, "Certificate"),
        h("table", { class: "kv" },
          h("tr", {}, h("th", {}, "Certificate"), h("td", { class: "mono" }, v.certificate_id)),
          h("tr", {}, h("th", {}, "Status"), h("td", {}, badge(v.status))),
          h("tr", {}, h("th", {}, "Item (twin)"), h("td", { class: "mono" }, v.twin_id || "–")),
          h("tr", {}, h("th", {}, "Issuer"), h("td", { class: "mono" }, v.issuer_id || "–")),
          h("tr", {}, h("th", {}, "Issued"), h("td", {}, fmtTime(v.issued_at))),
          h("tr", {}, h("th", {}, "Valid"), h("td", {}, `${fmtTime(v.valid_from)} → ${fmtTime(v.valid_until)}`)),
          h("tr", {}, h("th", {}, "Checked"), h("td", {}, fmtTime(v.checked_at)))));
  const keys = h("div", { class: "panel" },
        h("h2", {}, "Signature and issuer key"),
        h("table", { class: "kv" },
          h("tr", {}, h("th", {}, "Signatures"), h("td", {},
            (v.signatures || []).length ? v.signatures.map((s) => h("div", { class: "mono" }, `${s.algorithm} · ${s.key_id}`)) : "–")),
          h("tr", {}, h("th", {}, "Signature check"), h("td", {},
            v.signature_check ? [checkMark(v.signature_check.outcome), " ", v.signature_check.detail || v.signature_check.outcome] : "–")),
          h("tr", {}, h("th", {}, "Issuer key"), h("td", { class: "mono" }, key ? key.key_id : "–")),
          h("tr", {}, h("th", {}, "Key at issue time"), h("td", {},
            !key || key.valid_at_issue === null || key.valid_at_issue === undefined ? "–"
              : key.valid_at_issue ? [checkMark("PASS"), " registered and not revoked"] : [checkMark("FAIL"), " not valid at issue time"])),
          key && key.revoked_at ? h("tr", {}, h("th", {}, "Key revoked"), h("td", {}, fmtTime(key.revoked_at))) : null));
  fill(root,
    verdictBanner(v.status, subtitle),
    compact ? h("div", { class: "grid halves" }, keys, h("div", { class: "panel" }, h("h2", {}, "Checked"),
      h("p", {}, fmtTime(v.checked_at)), h("p", { class: "hint" }, "by the public verification endpoint, ",
        h("a", { href: `/ui/verify?id=${encodeURIComponent(v.certificate_id)}` }, "open it on its own page"))))
      : h("div", { class: "grid halves" }, facts, keys),
    compact ? null : h("div", { class: "panel" }, h("h2", {}, "Checks of the latest validation"),
      v.validation ? checksList(v.validation.checks) : h("p", { class: "empty" }, "Not validated yet.")),
    proofBox);
  const result = await proofPanel(proofBox, v);
  // "valid" is shown only if this browser could confirm the certificate is in the signed log
  if (result && !result.ok && v.status === "valid") root.querySelector("#verdict").replaceWith(verdictBanner("unverified"));
  return result;
}
