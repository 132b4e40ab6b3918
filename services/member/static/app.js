// The member console: the lineage with its scores, predictions drawn over an uploaded image (a slice browser for
// volumes, a second model side by side), training and fine-tuning jobs, and the committee's ranking. Uses the
// shared page.js (el, fillTable, setStatus, guarded, bearerSession); every call carries the operator token.
"use strict";

const session = bearerSession("tclearn-operator-token", "operator token");
const api = session.api;
const MAX_UPLOAD_BYTES = 32 * 1024 * 1024; // services/member/uploads.py
const POLL_MS = 500;
const state = { models: [], jobs: new Map(), polling: null };

const findings = (n) => `${n} finding${n === 1 ? "" : "s"}`;
const mean = (value) => (value === null || value === undefined ? "—" : value.toFixed(3));

function message(id, text, isError = false) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = isError ? "error" : "muted";
}

// ---- lineage -----------------------------------------------------------------------------------------

function fillModelChoices(committed, head) {
  const a = document.getElementById("model-a");
  const b = document.getElementById("model-b");
  const chosen = [a.value, b.value];
  const option = (m) => el("option", { value: m.id }, `model ${m.id}${m.id === head ? " (head)" : ""} — G ${mean(m.score_global)}`);
  a.replaceChildren(...committed.map(option));
  b.replaceChildren(el("option", { value: "" }, "— none —"), ...committed.map(option));
  a.value = committed.some((m) => String(m.id) === chosen[0]) ? chosen[0] : String(head);
  b.value = chosen[1];
}

async function loadLineage() {
  const models = await api("/console/lineage");
  state.models = models;
  const head = models.find((m) => m.head);
  const committed = models.filter((m) => m.state === "committed");
  fillTable(
    "models",
    models.map((m) => ({
      cells: [
        String(m.id) + (m.head ? " (head)" : ""),
        el("span", { class: `badge state-${m.state}` }, m.state + (m.reject_reason ? ` (${m.reject_reason})` : "")),
        String(m.parent_id), m.proposer_name || m.proposer,
        `${m.approvals} / ${m.rejections} / ${m.eligible}`, mean(m.score_global), mean(m.score_local), short(m.model_hash),
      ],
      className: `model state-row-${m.state}`,
      onClick: m.state === "committed" ? () => { document.getElementById("model-a").value = String(m.id); } : null,
    })),
  );
  fillModelChoices(committed, head ? head.id : committed.length ? committed[committed.length - 1].id : "");
  return head;
}

// ---- predictions -------------------------------------------------------------------------------------

function boxRows(prediction, z) {
  if (prediction.dims === 2) {
    return prediction.boxes.map((b) => ({
      cells: [b.label, `${b.min_row}–${b.max_row}`, `${b.min_col}–${b.max_col}`, b.probability.toFixed(3), String(b.area)],
    }));
  }
  return prediction.boxes.map((b) => ({
    cells: [b.label, `${b.min_x}–${b.max_x}`, `${b.min_y}–${b.max_y}`, `${b.min_z}–${b.max_z}`, b.probability.toFixed(3), String(b.voxels)],
    className: b.min_z <= z && z < b.max_z ? "in-slice" : "",
  }));
}

function boxTable(prediction, id) {
  const heads = prediction.dims === 2
    ? ["finding", "rows", "columns", "probability", "pixels"]
    : ["finding", "x", "y", "z", "probability", "voxels"];
  const table = el("table", { id, class: "boxes" });
  const row = el("tr");
  for (const name of heads) row.append(el("th", {}, name));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(row);
  return table;
}

// The overlay of slice `z` (a 2-D prediction has only one), fetched with the token and shown from a blob URL.
async function showSlice(panel, prediction, z) {
  const query = prediction.dims === 3 ? `?z=${z}` : "";
  const response = await session.authorized(`/predictions/${prediction.id}/overlay.png${query}`);
  if (!response.ok) throw new Error((await response.json()).message);
  const img = panel.querySelector("img.overlay");
  const old = img.getAttribute("src");
  img.src = URL.createObjectURL(await response.blob());
  if (old) URL.revokeObjectURL(old);
  img.dataset.z = String(z);
  img.alt = `model ${prediction.model_id} on ${prediction.image}` + (prediction.dims === 3 ? `, slice ${z}` : "");
  fillTable(panel.querySelector("table.boxes").id, boxRows(prediction, z));
  if (prediction.dims === 3) panel.querySelector(".slice-label").textContent = `z ${z} of ${prediction.depth - 1}`;
}

function resultPanel(which, prediction) {
  const panel = el("div", { class: "result", id: `result-${which}`, "data-model": prediction.model_id, "data-prediction": prediction.id });
  const found = findings(prediction.boxes.length);
  const truth = prediction.truth === null ? "" : `; truth: ${prediction.truth.length}`;
  panel.append(
    el("h3", {}, `Model ${prediction.model_id}: ${found}${truth} (${prediction.dims}-D, ${prediction.shape.slice(1).join(" × ")})`),
    el("img", { class: "overlay", alt: "" }),
  );
  let z = prediction.slices[0] || 0;
  if (prediction.dims === 3) {
    const slider = el("input", { type: "range", min: 0, max: prediction.depth - 1, value: z, class: "slice", "aria-label": "slice" });
    const previous = el("button", { type: "button", class: "previous" }, "◀");
    const next = el("button", { type: "button", class: "next" }, "▶");
    const go = (to) => guarded(async () => {
      z = Math.max(0, Math.min(prediction.depth - 1, to));
      slider.value = String(z);
      await showSlice(panel, prediction, z);
    })();
    slider.addEventListener("change", () => go(Number(slider.value)));
    previous.addEventListener("click", () => go(z - 1));
    next.addEventListener("click", () => go(z + 1));
    const controls = el("div", { class: "slices" });
    controls.append(previous, slider, next, el("span", { class: "slice-label" }));
    panel.append(controls);
  }
  panel.append(boxTable(prediction, `boxes-${which}`));
  return { panel, z };
}

async function predict(event) {
  event.preventDefault();
  const image = document.getElementById("image").files[0];
  const mask = document.getElementById("mask").files[0];
  const threshold = document.getElementById("threshold").value || "0.5";
  const chosen = [document.getElementById("model-a").value, document.getElementById("model-b").value].filter((v) => v !== "");
  const results = document.getElementById("results");
  if (!image) return message("predict-message", "choose an image to upload", true);
  const tooBig = [image, mask].find((f) => f && f.size > MAX_UPLOAD_BYTES);
  if (tooBig) {
    return message("predict-message", `${tooBig.name} is ${tooBig.size} bytes; the service takes uploads up to ${MAX_UPLOAD_BYTES} bytes`, true);
  }
  if (!chosen.length) return message("predict-message", "no committed model to predict with yet", true);
  message("predict-message", `predicting with model ${chosen.join(" and ")}…`);
  const button = document.getElementById("predict-button");
  button.disabled = true;
  try {
    const predictions = [];
    for (const modelId of chosen) {
      const form = new FormData();
      form.append("image", image, image.name);
      if (mask) form.append("mask", mask, mask.name);
      predictions.push(await api(`/models/${modelId}/predictions?threshold=${encodeURIComponent(threshold)}`, { method: "POST", body: form }));
    }
    const panels = predictions.map((p, i) => resultPanel(i ? "b" : "a", p));
    results.replaceChildren(...panels.map((p) => p.panel));
    await Promise.all(panels.map((p, i) => showSlice(p.panel, predictions[i], p.z)));
    message("predict-message", predictions.map((p) => `model ${p.model_id}: ${findings(p.boxes.length)}`).join("; "));
  } catch (error) {
    results.replaceChildren();
    message("predict-message", error.message, true);
  } finally {
    button.disabled = false;
  }
}

// ---- jobs --------------------------------------------------------------------------------------------

function jobOutcome(job) {
  if (job.error) return job.error;
  if (job.kind === "finetune" && job.result) {
    const scores = job.result.local_test;
    return `${scores.metric} on L ${mean(scores.before)} → ${mean(scores.after)}; kept in ${job.result.folder}`;
  }
  return job.state === "done" ? "submitted" : "";
}

function drawJobs() {
  const jobs = [...state.jobs.values()].sort((a, b) => b.created_at - a.created_at);
  fillTable(
    "jobs",
    jobs.map((j) => ({
      cells: [
        j.id.slice(0, 8), j.kind, j.state, j.phase,
        el("progress", { max: 1, value: j.progress, "data-job": j.id }, `${Math.round(j.progress * 100)} %`),
        j.model_id === null ? "—" : `model ${j.model_id}`, jobOutcome(j),
      ],
      className: `job job-${j.state}`,
    })),
  );
}

async function poll() {
  const running = [...state.jobs.values()].filter((j) => j.state === "queued" || j.state === "running");
  for (const job of running) state.jobs.set(job.id, await api(`/jobs/${job.id}`));
  drawJobs();
  if (running.some((j) => state.jobs.get(j.id).state === "done")) await loadLineage();
  const still = [...state.jobs.values()].some((j) => j.state === "queued" || j.state === "running");
  state.polling = still ? setTimeout(guarded(poll), POLL_MS) : null;
}

async function startJob(path, body) {
  const options = { method: "POST" };
  if (body) Object.assign(options, { body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  try {
    const job = await api(path, options);
    state.jobs.set(job.id, job);
    message("jobs-message", `${job.kind} job ${job.id.slice(0, 8)} started`);
  } catch (error) {
    return message("jobs-message", error.message, true);
  }
  drawJobs();
  if (state.polling === null) state.polling = setTimeout(guarded(poll), POLL_MS);
}

async function loadJobs() {
  for (const job of await api("/jobs?limit=20")) state.jobs.set(job.id, job);
  drawJobs();
  if (state.polling === null && [...state.jobs.values()].some((j) => !["done", "failed", "cancelled"].includes(j.state))) {
    state.polling = setTimeout(guarded(poll), POLL_MS);
  }
}

// ---- committee ranking (POST /active/rank; its thumbnails fetched with the token into blob: URLs) ------------

const THUMBNAIL_FETCHES = 4; // at once
const ranking = { generation: 0, urls: [] };

function rankRequest() {
  const budget = document.getElementById("rank-budget").value.trim();
  const folder = document.getElementById("rank-folder").value.trim();
  const body = {
    budget: /^[0-9]+$/.test(budget) ? Number(budget) : budget, // a count, or a share such as "10%"
    committee: Number(document.getElementById("rank-committee").value),
    method: document.getElementById("rank-method").value,
    measure: document.getElementById("rank-measure").value,
  };
  if (folder) body.unlabelled = folder;
  return body;
}

function proposerName(modelId, address) {
  const model = state.models.find((m) => m.id === modelId);
  return model && model.proposer_name ? `${model.proposer_name} (${address})` : address;
}

function drawRanking(result) {
  fillTable(
    "ranking-committee",
    result.committee.map((m) => ({ cells: [`model ${m.model_id}`, proposerName(m.model_id, m.proposer), short(m.model_hash)] })),
  );
  fillTable(
    "ranked",
    result.ranked.map((r) => ({
      cells: [
        String(r.rank),
        el("img", { class: "thumbnail", alt: r.name, "data-src": r.thumbnail }),
        r.name,
        r.score.toFixed(3),
        r.chosen ? el("span", { class: "badge state-committed" }, "chosen") : "",
        short(r.sha256),
      ],
      className: r.chosen ? "ranked chosen" : "ranked",
    })),
  );
  document.getElementById("ranking-result").hidden = false;
}

// Each thumbnail fetched with the token (an <img src> could not carry it), a few at a time; a newer ranking stops
// the loading of an older one.
async function loadThumbnails(generation) {
  const pending = [...document.querySelectorAll("#ranked img.thumbnail")];
  const worker = async () => {
    for (let img = pending.shift(); img && generation === ranking.generation; img = pending.shift()) {
      const response = await session.authorized(img.dataset.src);
      if (!response.ok) {
        img.alt += `: no thumbnail (HTTP ${response.status})`;
        continue;
      }
      const blob = await response.blob();
      if (generation !== ranking.generation) return;
      const url = URL.createObjectURL(blob);
      ranking.urls.push(url);
      img.src = url;
    }
  };
  await Promise.all(Array.from({ length: THUMBNAIL_FETCHES }, worker));
}

function forgetRanking() {
  ranking.generation += 1;
  for (const url of ranking.urls.splice(0)) URL.revokeObjectURL(url);
  document.getElementById("ranking-result").hidden = true;
  fillTable("ranking-committee", []);
  fillTable("ranked", []);
}

async function rank() {
  const body = rankRequest();
  const button = document.getElementById("rank");
  forgetRanking();
  const generation = ranking.generation;
  message("ranking-message", `ranking by ${body.method}…`);
  button.disabled = true;
  let result;
  try {
    result = await api("/active/rank", {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
  } catch (error) {
    // A 404 of the router itself (code http_error): this member service has no /active routes.
    const text = error.status === 404 && error.code === "http_error"
      ? "Committee ranking is not available on this member service."
      : error.message;
    return message("ranking-message", text, true);
  } finally {
    button.disabled = false;
  }
  const how = result.measure ? `${result.method} (${result.measure})` : result.method;
  message(
    "ranking-message",
    `${result.ranked.length} images ranked by ${how}; the first ${result.budget} chosen (ranking ${result.ranking_id})`,
  );
  if (result.committee.some((m) => !state.models.some((known) => known.id === m.model_id))) await loadLineage();
  drawRanking(result);
  await loadThumbnails(generation);
}

// ---- page --------------------------------------------------------------------------------------------

async function load() {
  setStatus("loading…");
  const info = await api("/coalition");
  document.getElementById("coalition").textContent =
    `${info.site.name} (${info.site.address}) — variant ${info.variant} coalition, chain ${info.chain_id}, contract ${info.contract}`;
  await loadLineage();
  await loadJobs();
  setStatus(`head: model ${info.head}; ${info.models} models; ${info.active_members} active members`);
}

document.addEventListener("DOMContentLoaded", () => {
  session.takeFromUrl();
  session.bindLogin(guarded(load));
  document.getElementById("reload").addEventListener("click", guarded(load));
  document.getElementById("predict-form").addEventListener("submit", predict);
  document.getElementById("train").addEventListener("click", () => startJob("/jobs/train"));
  document.getElementById("finetune").addEventListener("click", () =>
    startJob("/jobs/finetune", { epochs: Number(document.getElementById("finetune-epochs").value) || 1 }),
  );
  document.getElementById("rank-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(rank)();
  });
  guarded(load)();
});
