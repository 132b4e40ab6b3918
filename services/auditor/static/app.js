// The auditor dashboard: reads this service's JSON API and draws the lineage and scores as inline SVG.
// Every value from the chain is written with textContent / setAttribute, never parsed as HTML.
"use strict";

const STATE_COLOURS = {
  committed: "#2e7d32",
  rejected: "#c62828",
  expired: "#ef6c00",
  stale: "#757575",
  open: "#1565c0",
  submitted: "#90caf9",
};
const state = { lineage: null, selected: null, names: {} };

// The auditor token (shared page.js): from `/#token=...`, which `tclearn auditor serve` prints, or the form.
const session = bearerSession("tclearn-auditor-token", "auditor token");
const api = session.api;

const ZERO_ADDRESS = /^0x0{40}$/;
const ADDRESS = /0x[0-9a-fA-F]{40}/g;
// A member's registered name, else a shortened address ("—" for the zero address of genesis's general).
function who(address) {
  if (!address || ZERO_ADDRESS.test(address)) return "—";
  return state.names[address] || `${address.slice(0, 6)}…${address.slice(-4)}`;
}

function stateBadge(name) {
  return el("span", { class: `badge state-${name}` }, name);
}

const pick = (id) => guarded(() => selectModel(id));

// ---- lineage graph -----------------------------------------------------------------------------------

function layoutLineage(models) {
  // Committed models on row 0; every other model one row above the last model placed under its parent.
  const column = new Map(models.map((m, i) => [m.id, i]));
  const row = new Map();
  const taken = new Map();
  for (const m of models) {
    if (m.state === "committed") row.set(m.id, 0);
    else {
      const next = (taken.get(m.parent_id) || 0) + 1;
      taken.set(m.parent_id, next);
      row.set(m.id, next);
    }
  }
  return { column, row, rows: Math.max(0, ...row.values()) + 1 };
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(
    ...Object.entries(STATE_COLOURS).map(([name, colour]) => {
      const item = el("span", { class: "legend-item" });
      const swatch = el("svg:svg", { width: 12, height: 12 });
      swatch.append(el("svg:circle", { cx: 6, cy: 6, r: 6, fill: colour }));
      item.append(swatch, document.createTextNode(` ${name}`));
      return item;
    }),
  );
}

function drawLineage(data) {
  const svg = document.getElementById("lineage");
  const models = data.models;
  const { column, row, rows } = layoutLineage(models);
  const dx = 70, dy = 70, pad = 40, radius = 18;
  const width = pad * 2 + Math.max(0, models.length - 1) * dx;
  const height = pad * 2 + (rows - 1) * dy;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const x = (id) => pad + column.get(id) * dx;
  const y = (id) => height - pad - row.get(id) * dy;
  const edges = el("svg:g", { class: "edges" });
  const nodes = el("svg:g", { class: "nodes" });
  for (const m of models) {
    if (m.id !== m.parent_id && column.has(m.parent_id)) {
      edges.append(
        el("svg:line", {
          x1: x(m.parent_id), y1: y(m.parent_id), x2: x(m.id), y2: y(m.id),
          class: m.state === "committed" ? "edge committed" : "edge",
        }),
      );
    }
    const node = el("svg:g", {
      class: "node", "data-id": m.id, "data-state": m.state, tabindex: 0,
      transform: `translate(${x(m.id)},${y(m.id)})`,
    });
    const circle = el("svg:circle", { r: radius, fill: STATE_COLOURS[m.state] || "#bdbdbd" });
    if (m.id === data.head) circle.setAttribute("class", "head");
    const title = el(
      "svg:title", {},
      `model ${m.id}: ${m.state}${m.reject_reason ? ` (${m.reject_reason})` : ""}; parent ${m.parent_id}; ` +
        `proposer ${who(m.proposer)}; ${m.approvals} approve / ${m.rejections} reject of ${m.eligible}`,
    );
    node.append(title, circle, el("svg:text", { "text-anchor": "middle", dy: "0.35em" }, m.id));
    node.addEventListener("click", pick(m.id));
    node.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(m.id)(); });
    nodes.append(node);
  }
  svg.replaceChildren(edges, nodes);
}

// ---- score over time ---------------------------------------------------------------------------------

function drawScores(points) {
  const svg = document.getElementById("scores");
  const width = 720, height = 260, left = 50, right = 20, top = 15, bottom = 40;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const parts = [];
  if (points.length === 0) {
    parts.push(el("svg:text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted" }, "no votes yet"));
    svg.replaceChildren(...parts);
    return;
  }
  const blocks = points.map((p) => p.block);
  const lo = Math.min(...blocks), hi = Math.max(...blocks);
  const x = (block) => left + 10 + (hi === lo ? 0.5 : (block - lo) / (hi - lo)) * (width - left - right - 20);
  // Scores live in [0, 1]; the axis stops a little above the best vote so that small differences show.
  const top_value = Math.min(1, Math.max(0.05, ...points.map((p) => p.max)) * 1.15);
  const y = (value) => top + (1 - Math.max(0, Math.min(top_value, value)) / top_value) * (height - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const tick = (top_value * i) / 4;
    parts.push(el("svg:line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }));
    parts.push(el("svg:text", { x: left - 6, y: y(tick), dy: "0.35em", "text-anchor": "end", class: "axis" }, tick.toFixed(2)));
  }
  parts.push(el("svg:text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, "block"));
  const committed = points.filter((p) => p.committed);
  if (committed.length > 1) {
    const d = committed.map((p, i) => `${i ? "L" : "M"}${x(p.block)},${y(p.mean)}`).join(" ");
    parts.push(el("svg:path", { d, class: "score-line" }));
  }
  for (const p of points) {
    const g = el("svg:g", { class: "score-point", "data-id": p.id, "data-state": p.state });
    g.append(
      el("svg:title", {}, `model ${p.id} (${p.state}): mean ${score(p.mean)}, votes ${score(p.min)}–${score(p.max)}, block ${p.block}`),
      el("svg:line", { x1: x(p.block), x2: x(p.block), y1: y(p.min), y2: y(p.max), class: "whisker" }),
      el("svg:circle", { cx: x(p.block), cy: y(p.mean), r: 5, fill: STATE_COLOURS[p.state] || "#bdbdbd" }),
      el("svg:text", { x: x(p.block), y: height - bottom + 14, "text-anchor": "middle", class: "axis" }, p.block),
    );
    g.addEventListener("click", pick(p.id));
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

// ---- tables ------------------------------------------------------------------------------------------

function drawModels(data) {
  fillTable(
    "models",
    data.models.map((m) => ({
      cells: [
        String(m.id), stateBadge(m.state + (m.reject_reason ? ` (${m.reject_reason})` : "")),
        String(m.parent_id), who(m.proposer), who(m.general),
        `${m.approvals} / ${m.rejections} / ${m.eligible}`, score(m.mean_score_global), short(m.model_hash),
      ],
      onClick: pick(m.id),
    })),
  );
}

function drawIntegrity(result) {
  const summary = document.getElementById("integrity-summary");
  summary.textContent = result.ok
    ? `${result.checked} blobs match the hashes on chain.`
    : `${result.bad.length} of ${result.checked} blobs do not match the chain: ` +
      result.bad.map((b) => `model ${b.model_id} ${b.what} is ${b.status}`).join("; ");
  summary.className = result.ok ? "ok" : "error";
  fillTable(
    "integrity",
    result.blobs.map((b) => ({
      cells: [String(b.model_id), b.what.replace(ADDRESS, who), short(b.sha256), b.status, new Date(b.checked_at * 1000).toLocaleTimeString()],
      className: b.ok ? "" : `bad ${b.severity}`,
    })),
  );
}

// Every proposal with who voted how ("✓" approves, "✗" rejects); addresses in an action shown by name.
function drawGovernance(proposals) {
  const summary = document.getElementById("governance-summary");
  const pending = proposals.filter((p) => p.state === "pending").length;
  summary.textContent = proposals.length
    ? `${proposals.length} proposals, ${pending} pending; each is carried by two thirds of the members active when it was made.`
    : "No proposal yet: the coalition is as its founders made it.";
  fillTable(
    "governance",
    proposals.map((p) => ({
      cells: [
        String(p.id), p.description.replace(ADDRESS, who), who(p.proposer),
        el("span", { class: `badge state-${p.state}` }, p.executable ? `${p.state} (executable)` : p.state),
        `${p.approvals} / ${p.needed}`,
        String(p.rejections), new Date(p.deadline * 1000).toLocaleString(),
        p.ballots.map((b) => `${who(b.member)} ${b.approve ? "✓" : "✗"} (block ${b.block})`).join(", "),
      ],
      className: "proposal",
    })),
  );
}

// ---- privacy budgets ---------------------------------------------------------------------------------
// Per hospital: the plain sum the chain charged (an upper bound), the accountant's tighter composition of all its
// increments, the cap and what is left; a bar of the spending against the cap (the composition a green tick).
const epsilon = (value) => (value === null || value === undefined ? "—" : Number(value.toPrecision(6)).toString());

function budgetBar(m, cap) {
  const width = 160, height = 14;
  const svg = el("svg:svg", { class: "budget", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const scale = Math.max(cap || 0, m.spent, m.composition.epsilon || 0) || 1;
  const x = (value) => Math.min(width, (value / scale) * width);
  svg.append(
    el("svg:title", {}, `${who(m.address)}: spent ${epsilon(m.spent)} of ${cap === null ? "no cap" : epsilon(cap)}` +
      (m.composition.epsilon === null ? "" : `; composed ${epsilon(m.composition.epsilon)}`)),
    el("svg:rect", { class: "track", x: 0, y: 0, width, height }),
    el("svg:rect", { class: cap !== null && m.spent > cap ? "spent over" : "spent", x: 0, y: 0, width: x(m.spent), height }),
  );
  if (m.composition.epsilon !== null && m.increments.length) {
    const at = Math.max(1.5, x(m.composition.epsilon));
    svg.append(el("svg:line", { class: "composed", x1: at, x2: at, y1: 0, y2: height }));
  }
  return svg;
}

function drawPrivacy(data) {
  const summary = document.getElementById("privacy-summary");
  const spent = data.members.filter((m) => m.spent_units > 0 || m.increments.length).length;
  const errors = data.findings.filter((f) => f.severity === "error").length;
  summary.textContent =
    (data.cap === null ? "No cap on chain. " : `Each hospital's cap on chain: epsilon ${epsilon(data.cap)}. `) +
    `${spent} of ${data.members.length} members spent privacy. ` +
    "On chain a hospital's increments add up (an upper bound); the accountant composes them tighter." +
    (data.findings.length ? ` ${data.findings.length} findings, ${errors} errors.` : "");
  summary.className = errors ? "error" : "muted";
  fillTable(
    "privacy-budgets",
    data.members.map((m) => ({
      cells: [
        m.name || who(m.address), epsilon(m.spent),
        !m.increments.length ? "— (no increment)" : m.composition.epsilon === null
          ? `— (${m.composition.reason})`
          : `${epsilon(m.composition.epsilon)} at delta ${m.composition.delta ?? "—"}${m.composition.accountant ? ` (${m.composition.accountant})` : ""}`,
        data.cap === null ? "no cap" : epsilon(m.cap), m.left === null ? "—" : epsilon(m.left), budgetBar(m, data.cap),
        m.increments.map((i) => `model ${i.model_id} (${i.state}): ${epsilon(i.charged)}`).join(", ") || "none",
      ],
      className: "budget-row",
    })),
  );
  const list = document.getElementById("privacy-findings");
  list.replaceChildren(
    ...data.findings.map((f) => el("li", { class: f.severity }, `${f.severity}: model ${f.model_id} ${f.what}`)),
  );
}

async function drawAccessLog(available) {
  const summary = document.getElementById("access-summary");
  if (!available) {
    summary.textContent = "This auditor has no access log configured (a vault service URL with a keystore, or access_db).";
    fillTable("access-log", []);
    return;
  }
  const entries = await api("/api/access-log?limit=200");
  summary.textContent = `${entries.length} most recent accesses, newest first.`;
  fillTable(
    "access-log",
    entries.map((e) => ({
      cells: [new Date(e.at * 1000).toLocaleString(), who(e.account), e.action, short(e.sha256), String(e.size)],
    })),
  );
}

// One table per vote: its scores on every stratum of G and of the validator's L against the head's.
function drawStrata(votes) {
  const shown = votes.filter((v) => v.strata && v.strata.length);
  const container = document.getElementById("strata");
  if (!shown.length) {
    container.replaceChildren(el("p", { class: "muted" }, "No vote of this model shows scores by stratum."));
    return;
  }
  container.replaceChildren(
    ...shown.map((v) => {
      const table = el("table", { class: "strata", "data-validator": v.validator });
      const caption = `${who(v.validator)}: ${v.approve ? "approve" : "reject"}${v.reason ? ` — ${v.reason}` : ""}`;
      table.append(el("caption", {}, caption));
      const head = el("tr");
      for (const name of ["set", "stratum", "samples", "candidate", "head", "tolerance", "outcome"]) {
        head.append(el("th", {}, name));
      }
      table.append(el("thead"), el("tbody"));
      table.tHead.append(head);
      for (const s of v.strata) {
        const row = el("tr", { class: `stratum outcome-${s.outcome.replace(" ", "-")}` });
        for (const cell of [s.set, s.name, String(s.samples), score(s.candidate), score(s.head), String(s.tolerance), s.outcome]) {
          row.append(el("td", {}, cell));
        }
        table.tBodies[0].append(row);
      }
      return table;
    }),
  );
}

async function selectModel(id) {
  const model = await api(`/api/models/${id}`);
  state.selected = id;
  Object.assign(state.names, model.names);
  document.getElementById("detail-id").textContent = String(id);
  document.getElementById("detail-summary").textContent =
    `${model.state}${model.reject_reason ? ` (${model.reject_reason})` : ""}; parent ${model.parent_id}; ` +
    `proposed by ${who(model.proposer)}, general ${who(model.general)}; ${model.approvals} approve, ` +
    `${model.rejections} reject of ${model.eligible} eligible; uri ${model.uri}; ` +
    `blobs: ${model.blobs.filter((b) => b.ok).length} of ${model.blobs.length} intact`;
  fillTable(
    "votes",
    model.votes.map((v) => ({
      cells: [who(v.validator), v.approve ? "approve" : "reject", score(v.score_global), score(v.score_local), short(v.evidence_hash), String(v.block)],
      className: v.approve ? "approve" : "reject",
    })),
  );
  drawStrata(model.votes);
  document.getElementById("verify-model").disabled = false;
  for (const node of document.querySelectorAll("#lineage .node")) {
    node.classList.toggle("selected", node.dataset.id === String(id));
  }
}

async function load() {
  setStatus("loading…");
  const health = await api("/health");
  document.getElementById("coalition").textContent =
    `${health.coalition} — chain ${health.chain_id}, contract ${health.contract}, events read to block ${health.read_to_block}`;
  const lineage = await api("/api/lineage");
  state.lineage = lineage;
  for (const m of lineage.members) state.names[m.address] = m.name || m.address;
  drawLineage(lineage);
  drawModels(lineage);
  drawScores(await api("/api/scores"));
  drawIntegrity(await api("/api/integrity"));
  drawGovernance(await api("/api/governance"));
  drawPrivacy(await api("/api/privacy"));
  await drawAccessLog(health.access_log);
  if (state.selected !== null) await selectModel(state.selected);
  else if (lineage.head !== undefined) await selectModel(lineage.head);
  setStatus(`head: model ${lineage.head}; lineage ${lineage.lineage.join(" → ")}; ${lineage.models.length} models`);
}

async function reverify(path, what) {
  setStatus(`re-verifying ${what}…`);
  const result = await api(path, { method: "POST" });
  const all = await api("/api/integrity");
  drawIntegrity(all);
  setStatus(result.ok ? `${what}: ${result.checked} blobs intact` : `${what}: ${result.bad.length} blobs broken`, !result.ok);
}


document.addEventListener("DOMContentLoaded", () => {
  session.takeFromUrl();
  drawLegend();
  session.bindLogin(guarded(load));
  document.getElementById("export-html").addEventListener(
    "click", guarded(() => session.download("/report.html", "audit-report.html")),
  );
  document.getElementById("export-json").addEventListener(
    "click", guarded(() => session.download("/report.json", "audit-report.json")),
  );
  document.getElementById("reload").addEventListener("click", guarded(load));
  document.getElementById("verify-all").addEventListener("click", guarded(() => reverify("/api/integrity", "every blob")));
  document.getElementById("verify-model").addEventListener(
    "click",
    guarded(() => reverify(`/api/integrity/${state.selected}`, `model ${state.selected}`)),
  );
  guarded(load)();
});
