// The public verification page: anyone enters a certificate id; no token needed.
import { api, ApiError, h, fill, header, $, showError } from "./app.js";
import { renderVerification, verdictBanner } from "./verification.js";

header("verify");
const page = $("#page");
const input = h("input", { type: "text", id: "certificate-id", name: "id", placeholder: "e.g. DCC-DEMO-0001",
  autocomplete: "off", spellcheck: "false", maxlength: "200", required: true });
const result = h("div", { id: "result" });
const form = h("form", { class: "inline", id: "verify-form" }, input, h("button", { type: "submit", id: "verify-button" }, "Verify"));
fill(page,
  h("h1", {}, "Verify a certificate"),
  h("p", { class: "subtitle" }, "Enter a certificate id to see whether it is valid. The answer comes with a proof that "
    + "the certificate is recorded in the platform's tamper-evident audit log, and your browser checks that proof itself."),
  h("div", { class: "panel" }, form),
  h("div", { class: "mt" }, result));

async function verify(id) {
  fill(result, h("p", { class: "empty" }, "Verifying…"));
  result.dataset.state = "loading";
  try {
    const v = await api(`/verify/${encodeURIComponent(id)}`, { auth: false });
    const check = await renderVerification(result, v);
    result.dataset.state = "done";
    return check;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) fill(result, verdictBanner("not_found"));
    else if (e instanceof ApiError && e.status === 429) showError(result, new Error("Too many verifications from your address; wait a moment and try again."));
    else showError(result, e);
    result.dataset.state = "done";
    return null;
  }
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = input.value.trim();
  if (!id) return;
  history.replaceState(null, "", `/ui/verify?id=${encodeURIComponent(id)}`);
  verify(id);
});

const initial = new URLSearchParams(location.search).get("id");
if (initial) { input.value = initial; verify(initial); }
