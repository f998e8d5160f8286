// The sbiserve dashboard: plain ES module, no build step. Every request goes to the
// service's own /v1 API with the API key (if one is entered); images are fetched as blobs
// for the same reason (an <img src> cannot send a header). Text from the service (names,
// errors) is only ever set as textContent, never parsed as HTML.

const KEY_STORAGE = "sbiserve-api-key";
const view = document.getElementById("view");
const notice = document.getElementById("notice");
let cleanup = []; // aborts the live streams and timers of the current page
let blobUrls = [];

// ---------------------------------------------------------------- helpers
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

function headers(extra = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, "X-API-Key": key } : extra;
}

class ApiError extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error.message;
    } catch (_) {
      /* not the API's JSON error body */
    }
    if (response.status === 401) message += " — enter the API key at the top right";
    throw new ApiError(message);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

async function imageUrl(path, options) {
  const url = URL.createObjectURL(await (await api(path, options)).blob());
  blobUrls.push(url);
  return url;
}

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = !message;
}

const fmt = (value, digits = 4) =>
  value === null || value === undefined ? "—" : Number(value).toPrecision(digits);
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "—");
const short = (id) => (id ? id.slice(0, 10) : "—");
const STATUS_MARK = { queued: "○", running: "…", succeeded: "✓", failed: "✗", cancelled: "⊘" };
const statusLabel = (status) =>
  h("span", { class: "status", "data-status": status }, `${STATUS_MARK[status] || "?"} ${status}`);

function table(columns, rows, empty) {
  if (!rows.length) return h("p", {}, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))),
  );
}

const num = (value) => h("td", { class: "num" }, value);

// ---------------------------------------------------------------- loss curve (SVG)
// Training loss solid, validation loss dashed, each with its own marker shape, so the
// two read apart in black and white.
function lossCurve(points) {
  const width = 640, height = 320, pad = { left: 64, right: 16, top: 16, bottom: 44 };
  const root = svg("svg", {
    class: "curve", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `loss per epoch, ${points.length} epochs`, "data-points": points.length,
  });
  const values = points.flatMap((p) => [p.train_loss, p.val_loss]).filter(Number.isFinite);
  if (!points.length || !values.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "waiting for the first epoch…"));
    return root;
  }
  let low = Math.min(...values), high = Math.max(...values);
  if (high === low) { high += 1; low -= 1; }
  const last = Math.max(points[points.length - 1].epoch, 2);
  const x = (epoch) => pad.left + ((epoch - 1) / (last - 1)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + ((high - v) / (high - low)) * (height - pad.top - pad.bottom);
  root.append(
    svg("line", { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, stroke: "#111" }),
    svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, stroke: "#111" }),
    svg("text", { x: pad.left - 6, y: pad.top + 10, "text-anchor": "end" }, fmt(high, 3)),
    svg("text", { x: pad.left - 6, y: height - pad.bottom, "text-anchor": "end" }, fmt(low, 3)),
    svg("text", { x: pad.left, y: height - 22 }, "epoch 1"),
    svg("text", { x: width - pad.right, y: height - 22, "text-anchor": "end" }, `epoch ${last}`),
    svg("text", { x: (width + pad.left) / 2, y: height - 6, "text-anchor": "middle" }, "— training   - - validation"),
  );
  for (const [key, dash, color] of [["train_loss", "", "#111"], ["val_loss", "6 4", "#555"]]) {
    const pts = points.filter((p) => Number.isFinite(p[key])).map((p) => `${x(p.epoch)},${y(p[key])}`);
    root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash, "data-series": key }));
  }
  return root;
}

// ---------------------------------------------------------------- server-sent events
// EventSource cannot send the API key, so the stream is read with fetch.
async function followEvents(jobId, onEvent, signal) {
  const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
    }
  }
}

// ---------------------------------------------------------------- pages
async function datasetsPage() {
  const datasets = await json("/v1/datasets");
  const rows = datasets.reverse().map((d) => [
    h("span", { class: "id" }, short(d.dataset_id)), d.name || "—", num(d.num_simulations),
    num(d.theta_dim), num(d.x_dim), (d.theta_names || []).join(", ") || "—", when(d.created_at),
  ]);
  return [
    h("h2", {}, "Datasets"),
    table(["id", "name", "simulations", "θ dim", "x dim", "parameter names", "uploaded"], rows, "No datasets yet: upload simulations with the client or POST /v1/datasets."),
  ];
}

async function jobsPage() {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const refresh = async () => {
    const jobs = await json("/v1/jobs?limit=50");
    const rows = jobs.map((j) => [
      h("a", { href: `#/jobs/${j.job_id}`, class: "id" }, short(j.job_id)), j.name || "—", j.family || "—",
      statusLabel(j.status),
      num(j.progress.max_epochs ? `${j.progress.epoch} / ${j.progress.max_epochs}` : j.progress.epoch),
      num(fmt(j.progress.val_loss)),
      j.model_id ? h("a", { href: `#/models/${j.model_id}`, class: "id" }, short(j.model_id)) : "—",
      when(j.created_at),
    ]);
    body.replaceChildren(table(["job", "name", "family", "status", "epoch", "validation loss", "model", "created"], rows, "No jobs yet."));
  };
  await refresh();
  const timer = setInterval(() => refresh().catch((e) => showNotice(e.message)), 3000);
  cleanup.push(() => clearInterval(timer));
  return [h("h2", {}, "Jobs"), h("p", { class: "hint" }, "Refreshes every 3 s; open a job to follow its loss curve live."), body];
}

async function jobPage(jobId) {
  const job = await json(`/v1/jobs/${encodeURIComponent(jobId)}`);
  const points = [];
  const status = h("p", {}, "Status: ", statusLabel(job.status));
  const stage = h("p", { id: "diagnostics-progress" });
  const curveBox = h("div", { id: "curve" }, lossCurve(points));
  const modelLink = h("p", { id: "model-link" });
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "job"), h("dd", { class: "id" }, job.job_id),
    h("dt", {}, "family"), h("dd", {}, job.family || "—"),
    h("dt", {}, "dataset"), h("dd", { class: "id" }, job.dataset_id || "—"),
    h("dt", {}, "hyperparameters"), h("dd", {}, h("code", {}, JSON.stringify(job.hyperparameters, null, 1))),
  );
  const controller = new AbortController();
  cleanup.push(() => controller.abort());
  const finish = (final) => {
    status.replaceChildren("Status: ", statusLabel(final.status));
    if (final.model_id) {
      modelLink.replaceChildren("Model: ", h("a", { href: `#/models/${final.model_id}`, class: "id" }, final.model_id));
    }
    if (final.error) modelLink.replaceChildren(`Error: ${final.error}`);
  };
  followEvents(jobId, (kind, data) => {
    if (kind === "progress") {
      points.push({ epoch: Number(data.epoch), train_loss: Number(data.train_loss), val_loss: Number(data.val_loss) });
      curveBox.replaceChildren(lossCurve(points));
      status.replaceChildren("Status: ", statusLabel("running"), ` — epoch ${data.epoch} of ${data.max_epochs}`);
    } else if (kind === "diagnostics") {
      stage.textContent = `Diagnostics: ${data.stage} ${data.done} / ${data.total}`;
    } else if (kind === "status") {
      finish(data);
    }
  }, controller.signal).catch((e) => {
    if (e.name !== "AbortError") showNotice(`live updates stopped: ${e.message}`);
  });
  if (job.status === "succeeded" || job.status === "failed") finish(job);
  return [h("h2", {}, `Job ${job.name || short(job.job_id)}`), status, stage, curveBox, modelLink, facts];
}

async function modelsPage() {
  const models = await json("/v1/models");
  const rows = models.reverse().map((m) => [
    h("a", { href: `#/models/${m.model_id}`, class: "id" }, short(m.model_id)), m.name || "—",
    (m.aliases || []).join(", ") || "—", m.family, num(`${m.theta_dim} / ${m.x_dim}`),
    m.diagnostics && m.diagnostics.verdict ? m.diagnostics.verdict : "no diagnostics", when(m.created_at),
  ]);
  return [h("h2", {}, "Models"), table(["model", "name", "aliases", "family", "θ / x dim", "calibration", "created"], rows, "No models yet.")];
}

function diagnosticsSection(model) {
  const d = model.diagnostics;
  if (!d) return h("p", {}, "No diagnostics: the worker ran with SBISERVE_DIAGNOSTICS_PAIRS=0, or the model is older than them.");
  if (d.error) return h("p", {}, `The diagnostics failed: ${d.error}`);
  const names = d.parameter_names || model.theta_names || [];
  const rows = names.map((name, i) => [
    name, num(fmt(d.sbc_p_values[i], 2)), num(`${Math.round(d.coverage_50[i] * 100)}%`),
    num(`${Math.round(d.coverage_90[i] * 100)}%`), num(fmt(d.mean_rank[i], 2)),
  ]);
  return h("section", { id: "diagnostics" },
    h("h3", {}, "Calibration"),
    h("p", { class: "verdict", "data-calibrated": String(!d.findings.length) }, d.findings.length ? "⚠ " : "✓ ", d.verdict),
    h("p", { class: "hint" }, `On ${d.num_pairs} held-out simulations with ${d.num_draws} draws each. Ideal: SBC p-value not tiny, 50% and 90% intervals holding 50% and 90% of true values, mean rank 0.50.`),
    table(["parameter", "SBC p-value", "50% interval coverage", "90% interval coverage", "mean rank"], rows, ""),
    h("dl", { class: "facts" },
      h("dt", {}, "TARP area to diagonal"), h("dd", {}, fmt(d.tarp_area, 3)),
      h("dt", {}, "TARP area to curve (sbi)"), h("dd", {}, `${fmt(d.tarp_atc, 3)} (below 0: over-confident, above: under-confident)`),
      h("dt", {}, "held-out energy score"), h("dd", {}, `${fmt(d.energy_score)} (lower is better)`),
      h("dt", {}, "held-out NLL"), h("dd", {}, d.nll === null ? "— (no normalized density)" : fmt(d.nll)),
    ),
  );
}

function plotFigure(model, name, caption) {
  const img = h("img", { alt: `${caption} of model ${model.model_id}`, "data-plot": name, width: 800, height: 500 });
  imageUrl(`/v1/models/${model.model_id}/plots/${name}.png`)
    .then((url) => { img.src = url; })
    .catch((e) => img.replaceWith(h("p", {}, `${caption}: ${e.message}`)));
  return h("figure", {}, img, h("figcaption", {}, caption));
}

async function modelPage(ref) {
  const model = await json(`/v1/models/${encodeURIComponent(ref)}`);
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "model"), h("dd", { class: "id" }, model.model_id),
    h("dt", {}, "family"), h("dd", {}, `${model.family} (log_prob: ${model.log_prob_kind})`),
    h("dt", {}, "parameters"), h("dd", {}, (model.theta_names || []).join(", ") || `${model.theta_dim}`),
    h("dt", {}, "observation features"), h("dd", {}, (model.x_names || []).join(", ") || `${model.x_dim}`),
    h("dt", {}, "aliases"), h("dd", {}, (model.aliases || []).join(", ") || "—"),
    h("dt", {}, "training"), h("dd", {}, `${model.metrics.epochs} epochs, best ${model.metrics.best_epoch}, ${fmt(model.metrics.wall_time_s, 3)} s`),
    h("dt", {}, "dataset"), h("dd", { class: "id" }, model.dataset_id),
  );
  const plots = [plotFigure(model, "training", "Training curve")];
  if (model.diagnostics && !model.diagnostics.error) {
    plots.push(plotFigure(model, "sbc", "SBC rank histograms"), plotFigure(model, "coverage", "Expected coverage (TARP)"));
  }
  return [
    h("h2", {}, `Model ${model.name || short(model.model_id)}`), facts,
    h("p", {}, h("a", { href: `#/posterior/${model.model_id}` }, "Draw a posterior pair plot for an observation →")),
    diagnosticsSection(model), h("h3", {}, "Plots"), h("div", { class: "grid" }, plots),
  ];
}

function numbers(text, field) {
  const values = text.split(/[\s,;]+/).filter(Boolean).map(Number);
  if (values.some((v) => !Number.isFinite(v))) throw new ApiError(`${field}: write numbers separated by commas`);
  return values;
}

async function posteriorPage(ref) {
  const models = await json("/v1/models");
  const select = h("select", { id: "plot-model", name: "model" },
    models.reverse().map((m) => h("option", { value: m.model_id, selected: m.model_id === ref }, `${m.name || short(m.model_id)} — ${m.family}, x dim ${m.x_dim}`)));
  const xInput = h("input", { id: "plot-x", name: "x", required: true, placeholder: "e.g. 0.1, -0.2" });
  const thetaInput = h("input", { id: "plot-theta", name: "theta", placeholder: "optional: a θ to mark" });
  const samples = h("input", { id: "plot-samples", name: "num_samples", type: "number", min: 100, value: 5000 });
  const seed = h("input", { id: "plot-seed", name: "seed", type: "number", min: 0, placeholder: "random" });
  const result = h("div", { id: "posterior-result" });
  const form = h("form", { class: "stack", id: "posterior-form" },
    h("label", { for: "plot-model" }, "Model"), select,
    h("label", { for: "plot-x" }, "Observation x (comma-separated, x_dim values)"), xInput,
    h("label", { for: "plot-theta" }, "True θ to mark (optional)"), thetaInput,
    h("label", { for: "plot-samples" }, "Draws"), samples,
    h("label", { for: "plot-seed" }, "Seed"), seed,
    h("button", { type: "submit" }, "Draw the pair plot"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren(h("p", {}, "Drawing…"));
    try {
      const body = { model: select.value, x: numbers(xInput.value, "x"), num_samples: Number(samples.value) };
      if (thetaInput.value.trim()) body.theta = numbers(thetaInput.value, "theta");
      if (seed.value !== "") body.seed = Number(seed.value);
      const url = await imageUrl("/v1/posterior/plot", {
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
      });
      result.replaceChildren(h("img", { id: "posterior-plot", src: url, alt: `posterior pair plot for x = ${xInput.value}` }));
    } catch (e) {
      result.replaceChildren(h("p", { role: "alert" }, `Could not draw it: ${e.message}`));
    }
  });
  if (!models.length) return [h("h2", {}, "Posterior plot"), h("p", {}, "No models yet.")];
  return [h("h2", {}, "Posterior pair plot"), form, result];
}

// ---------------------------------------------------------------- routing
const ROUTES = [
  [/^#\/datasets$/, datasetsPage, "datasets"],
  [/^#\/jobs\/([\w-]+)$/, jobPage, "jobs"],
  [/^#\/models\/([\w.:-]+)$/, modelPage, "models"],
  [/^#\/models$/, modelsPage, "models"],
  [/^#\/posterior(?:\/([\w.:-]+))?$/, posteriorPage, "posterior"],
  [/^.*$/, jobsPage, "jobs"],
];

let generation = 0; // a slower, older render must not overwrite a newer page

async function render() {
  const mine = ++generation;
  cleanup.forEach((stop) => stop());
  cleanup = [];
  blobUrls.forEach((url) => URL.revokeObjectURL(url));
  blobUrls = [];
  const [pattern, page, section] = ROUTES.find(([p]) => p.test(location.hash));
  const match = location.hash.match(pattern);
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.section === section);
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
  }
  showNotice("");
  try {
    const content = await page(match[1]);
    if (mine === generation) view.replaceChildren(...content);
  } catch (e) {
    if (mine !== generation) return;
    view.replaceChildren(h("p", {}, "Nothing to show."));
    showNotice(e.message);
  }
}

async function checkReady() {
  const label = document.getElementById("ready");
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    label.textContent = response.ok ? `ready: ${body.workers ?? "?"} worker(s) live` : `not ready: ${body.error?.message || response.status}`;
  } catch (_) {
    label.textContent = "service unreachable";
  }
}

document.getElementById("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  render();
});
window.addEventListener("hashchange", render);
render();
checkReady();
setInterval(checkReady, 10000);
