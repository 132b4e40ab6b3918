// What the service pages share (the auditor's dashboard, the member console): DOM helpers, tables, the status
// line, and the bearer token typed by the user. Every value from the API is written with textContent /
// setAttribute, never parsed as HTML. Loaded before each page's own script; it defines globals only.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function guarded(action) {
  return () => action().catch((error) => setStatus(error.message, true));
}

const short = (hash) => (hash ? `${hash.slice(0, 10)}…${hash.slice(-6)}` : "—");
const score = (value) => (value === null || value === undefined ? "—" : value.toFixed(4));

// rows: [{cells: [text or Node], className, onClick}] into the tbody of table `id`.
function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(
    ...rows.map(({ cells, className, onClick }) => {
      const tr = el("tr", className ? { class: className } : {});
      for (const cell of cells) {
        const td = el("td");
        if (cell instanceof Node) td.append(cell);
        else td.textContent = cell;
        tr.append(td);
      }
      if (onClick) {
        tr.classList.add("clickable");
        tr.addEventListener("click", onClick);
      }
      return tr;
    }),
  );
}

// ---- the bearer token --------------------------------------------------------------------------------
// Given once: in the URL's fragment (`#token=...`, which never reaches the server), or typed into the page's
// #login form. Kept for this browser tab only (sessionStorage under `key`), sent as a bearer token; a 401 shows
// the form again. `what` names the token in the form and messages ("auditor token", "operator token").
function bearerSession(key, what) {
  const token = () => sessionStorage.getItem(key);

  function takeFromUrl() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!match) return;
    sessionStorage.setItem(key, decodeURIComponent(match[1]));
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  function showLogin(message) {
    document.getElementById("login").hidden = false;
    document.getElementById("login-message").textContent = message;
  }

  async function authorized(path, options = {}) {
    const headers = { accept: "application/json", ...(options.headers || {}) };
    if (token()) headers.authorization = `Bearer ${token()}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      // Without a token the API's refusal speaks of what it lacks (for a member API: a peer's signature).
      const reason = token() ? (await response.json()).message || "unauthorized" : `this page needs the ${what}`;
      showLogin(reason);
      throw new Error(`${reason}: enter the ${what}`);
    }
    return response;
  }

  // The JSON answer, or an Error carrying the API's message, its HTTP status and error code.
  async function api(path, options = {}) {
    const response = await authorized(path, options);
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.message || `${path}: HTTP ${response.status}`);
      error.status = response.status;
      error.code = body.code;
      throw error;
    }
    return body;
  }

  // A file fetched with the token, then saved (a plain link could not carry the header).
  async function download(path, filename) {
    const response = await authorized(path);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  // Fills the page's empty <form id="login">: it stores the typed token, hides itself and calls `signedIn`.
  function bindLogin(signedIn) {
    const form = document.getElementById("login");
    const field = el("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: "" });
    const label = el("label", { for: "token" }, what[0].toUpperCase() + what.slice(1));
    form.replaceChildren(label, field, el("button", { type: "submit" }, "Sign in"), el("span", { id: "login-message", class: "muted" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(key, field.value.trim());
      field.value = "";
      form.hidden = true;
      signedIn();
    });
  }

  return { token, takeFromUrl, authorized, api, download, bindLogin };
}
