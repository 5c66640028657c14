// meterguard dashboard: login steps, live panels, buttons and forms over the JSON API.
// Served from 'self' (strict CSP: no inline script, no eval); panels are HTML rendered and
// escaped by the server, so this file never builds markup from data.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const statusLine = (text, bad) => {
  const el = document.getElementById("status");
  if (!el) return;
  el.textContent = text;
  el.className = bad ? "bad" : "ok";
};

async function api(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { ok: r.ok, status: r.status, data };
}

function explain(r) {
  if (r.status === 401) { window.location.assign("/login"); return "session ended"; }
  if (r.status === 403) return "not allowed";
  if (r.status === 404) return "not found (or no longer pending)";
  if (r.status === 422) return "check the values";
  if (r.status === 429) return "too many requests, wait a moment";
  return "failed (" + r.status + ")";
}

// ---------------------------------------------------------------- login page
function setupLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  const totp = document.getElementById("totp-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    statusLine("Checking…");
    const r = await api("POST", "/api/v1/auth/login", {
      username: form.elements.username.value, password: form.elements.password.value,
    });
    if (!r.ok) { statusLine(r.status === 429 ? explain(r) : "Wrong user name or password.", true); return; }
    if (r.data.mfa_required) {
      form.hidden = true; totp.hidden = false; statusLine("Password accepted.");
      document.getElementById("passkey-choice").hidden = !(r.data.webauthn && window.PublicKeyCredential);
      document.getElementById("totp").focus();
    } else { window.location.assign("/"); }
  });
  totp.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    statusLine("Verifying…");
    const r = await api("POST", "/api/v1/auth/totp", { code: totp.elements.code.value });
    if (r.ok) { window.location.assign("/"); return; }
    const detail = r.data && typeof r.data.detail === "string" ? r.data.detail : "";
    if (r.status === 429) { statusLine(detail ? "Too " + detail.slice(4) + "." : explain(r), true); return; }
    if (r.status === 401 && detail.includes("log in again")) {
      // The login was ended after too many wrong codes: back to the password.
      totp.hidden = true; form.hidden = false; form.elements.password.value = "";
      statusLine("Too many wrong codes: log in again.", true); return;
    }
    statusLine("That code was not accepted.", true);
  });
}

// ---------------------------------------------------------------- WebAuthn (API-5)
async function passkeyLogin() {
  statusLine("Touch your security key…");
  const o = await api("POST", "/api/v1/auth/webauthn/options");
  if (!o.ok) { statusLine(explain(o), true); return; }
  try {
    const cred = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o.data),
    });
    const r = await api("POST", "/api/v1/auth/webauthn", { credential: cred.toJSON() });
    if (!r.ok) { statusLine("The security key was not accepted.", true); return; }
    window.location.assign("/");
  } catch (e) { statusLine("No security key answered.", true); }
}

async function passkeyRegister() {
  statusLine("Touch your security key…");
  const o = await api("POST", "/api/v1/webauthn/register/options");
  if (!o.ok) { statusLine(explain(o), true); return; }
  try {
    const cred = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(o.data),
    });
    const r = await api("POST", "/api/v1/webauthn/register", { credential: cred.toJSON(), label: "security key" });
    statusLine(r.ok ? "Security key added: you can use it at your next login." : explain(r), !r.ok);
  } catch (e) { statusLine("No security key was added.", true); }
}

function setupPasskeys() {
  const login = document.getElementById("passkey-login");
  if (login) login.addEventListener("click", passkeyLogin);
  const reg = document.getElementById("passkey-register");
  if (reg) reg.addEventListener("click", passkeyRegister);
}

// ---------------------------------------------------------------- times
// The server writes UTC (in the text and in "datetime"); the viewer reads their own zone.
// A meter's simulated clock (a demo's) is labelled as such; the UTC text stays as tooltip.
function localize(root) {
  root.querySelectorAll("time[datetime]:not([data-local])").forEach((t) => {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    const text = d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
      timeZoneName: "short",
    });
    t.title = t.textContent;
    t.textContent = text + (t.hasAttribute("data-sim") ? " (simulated)" : "");
    t.dataset.local = "1";
  });
}

// ---------------------------------------------------------------- live panels
async function refresh(panel) {
  const name = panel.dataset.panel;
  const query = panel.dataset.query ? "?" + panel.dataset.query : "";
  panel.classList.add("loading");
  try {
    const r = await fetch("/ui/panel/" + name + query, { credentials: "same-origin" });
    if (r.status === 401 || r.redirected) { window.location.assign("/login"); return; }
    if (r.ok) {
      panel.innerHTML = await r.text();  // server-rendered, autoescaped HTML
      localize(panel);
    }
  } finally {
    panel.classList.remove("loading");
    panel.dataset.loaded = "1";
  }
}
// Panels marked "data-once" load with the page (or on request) and are not refreshed: a
// load may be a logged read, or a sum over a month that does not change every two seconds.
const refreshAll = (all) => Promise.all(
  [...document.querySelectorAll(all ? "[data-panel]" : "[data-panel]:not([data-once])")]
    .map(refresh));

function setupDashboard() {
  if (!document.querySelector("[data-panel]")) return;
  refreshAll(true);
  setInterval(() => refreshAll(false), 2000);
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
    b.disabled = true;
    statusLine("Working…");
    const body = b.dataset.body ? JSON.parse(b.dataset.body) : undefined;
    const r = await api("POST", b.dataset.action, body);
    statusLine(r.ok ? "Done." : explain(r), !r.ok);
    if (r.ok && b.classList.contains("move")) { window.location.reload(); return; }
    await refreshAll();
  });
  document.querySelectorAll("form.api-form").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const el of form.elements) {
        if (!el.name || el.disabled) continue;
        if (el.value === "" && el.hasAttribute("data-int")) continue;
        if (el.value === "" && el.hasAttribute("data-null")) { body[el.name] = null; continue; }
        body[el.name] = el.hasAttribute("data-int") ? Number(el.value) : el.value;
      }
      statusLine("Sending…");
      const r = await api(form.dataset.method, form.dataset.url, body);
      statusLine(r.ok ? "Saved." : explain(r), !r.ok);
      if (r.ok && form.id === "propose-form") form.reset();
      await refreshAll();
    });
  });
  // The fleet list: a search and filters above it, sort buttons and a pager inside it.
  document.querySelectorAll("form.fleet-filter").forEach((form) => {
    const panel = document.getElementById(form.dataset.target);
    let timer = null;
    const apply = () => {
      const q = new URLSearchParams();
      for (const el of form.elements) {
        if (el.name && el.value && el.value !== "0") q.set(el.name, el.value);
      }
      const kept = new URLSearchParams(panel.dataset.query || "");
      for (const k of ["sort", "order"]) if (kept.get(k)) q.set(k, kept.get(k));
      q.set("page", "1");
      panel.dataset.query = q.toString();
      refresh(panel);
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
    form.addEventListener("change", apply);
    form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 250); });
  });
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-set-query]");
    if (!b) return;
    const panel = b.closest("[data-panel]");
    panel.dataset.query = b.dataset.setQuery;
    refresh(panel);
  });
  // A meter picker: the fleet's search API fills the choices (values only, no markup).
  document.querySelectorAll("input[data-meter-picker]").forEach((input) => {
    const list = document.getElementById(input.getAttribute("list"));
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = input.value.replace(/[^A-Za-z0-9]/g, "").slice(0, 32);
        const r = await api("GET", "/api/v1/fleet/meters?per_page=20&q=" + encodeURIComponent(q));
        if (!r.ok) return;
        list.replaceChildren(...r.data.meters.map((m) => {
          const o = document.createElement("option");
          o.value = m.meter_id;
          o.label = m.state + (m.open_alarms ? ", " + m.open_alarms + " alarm(s)" : "");
          return o;
        }));
      }, 200);
    });
  });
  document.querySelectorAll("button[data-load]").forEach((b) => {
    b.addEventListener("click", () => {
      const panel = document.getElementById(b.dataset.load);
      panel.dataset.panel = panel.dataset.lazyPanel;
      panel.dataset.once = "1";
      refresh(panel);
    });
  });
  // A command's value field only for the commands that take one.
  document.querySelectorAll("select.command-kind").forEach((sel) => {
    const label = sel.form.querySelector(".command-value");
    const show = () => {
      const takes = sel.selectedOptions[0].dataset.takes;
      label.hidden = !takes;
      label.querySelector("input").disabled = !takes;
      label.querySelector(".unit").textContent = takes || "";
    };
    sel.addEventListener("change", show);
    show();
  });
  document.querySelectorAll("select.usage-period").forEach((sel) => {
    sel.addEventListener("change", () => {
      const panel = document.getElementById(sel.dataset.target);
      panel.dataset.query = panel.dataset.query.replace(/period=\w+/, "period=" + sel.value);
      refresh(panel);
    });
  });
}

function setupLogout() {
  const b = document.getElementById("logout");
  if (!b) return;
  b.addEventListener("click", async () => {
    await api("POST", "/api/v1/auth/logout");
    window.location.assign("/login");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localize(document);
  setupLogin(); setupDashboard(); setupLogout(); setupPasskeys();
});
