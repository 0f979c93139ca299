// FusionServe demo page: sends the user's image and/or description to POST /classify and
// draws the answer (class bars, modality contributions, timing) or the service's error.
// Served by the service itself (app/rest/demo.py); nothing is fetched from anywhere else.
"use strict";

const TOP_K = 5; // classes shown as bars (and explained)
const KEY_STORAGE = "fusionserve.apiKey"; // sessionStorage only: gone when the tab closes

const state = {
  models: [], // GET /v1/models's list, when the service has that route
  infoExplain: null, // from GET /info otherwise: whether explain=true works; null if unknown
  previewUrl: null,
};

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

function points(delta) {
  return `${delta < 0 ? "-" : "+"}${Math.abs(delta * 100).toFixed(1)} pp`;
}

function millis(ms) {
  return `${ms.toFixed(1)} ms`;
}

// --- API key -----------------------------------------------------------------------------

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function showKeyPanel(message) {
  $("key-panel").hidden = false;
  if (message) $("status").textContent = message;
}

function saveKey() {
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("api-key").value = "";
  $("api-key").placeholder = "a key is set for this tab";
  $("status").textContent = "API key set for this tab.";
  hideError();
  loadModels();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").value = "";
  $("api-key").placeholder = "";
  $("status").textContent = "API key forgotten.";
}

async function api(path, init = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...init, headers, cache: "no-store" });
  if (response.status === 401) showKeyPanel("This service needs an API key.");
  return response;
}

async function json(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// --- Models --------------------------------------------------------------------------------

async function loadModels() {
  state.models = [];
  state.infoExplain = null;
  showModels([]);
  let response;
  try {
    response = await api("/v1/models");
  } catch {
    return;
  }
  if (response.ok) {
    const body = await json(response);
    showModels(body && Array.isArray(body.models) ? body.models : []);
  } else if (response.status === 404) {
    await loadInfo(); // a service with one bundle and no model registry
  }
}

function showModels(models) {
  state.models = models;
  const select = $("model");
  select.replaceChildren(
    ...models.map((model) => {
      const text = `${model.name} ${model.version}${model.ready ? "" : " (not ready)"}`;
      return new Option(text, model.name, Boolean(model.default), Boolean(model.default));
    }),
  );
  $("model-row").hidden = models.length < 2;
  describeModel();
}

async function loadInfo() {
  let response;
  try {
    response = await api("/info");
  } catch {
    return;
  }
  const info = response.ok ? await json(response) : null;
  const head = info && info.fusion_head;
  if (head) state.infoExplain = Boolean(head.accepts_image_only && head.accepts_text_only);
  if (info && info.bundle) $("bundle").textContent = `${info.bundle.name} ${info.bundle.version}`;
}

// The /v1/models entry a request goes to: the selected one, else the default; null without
// a model list.
function currentModel() {
  if (state.models.length === 0) return null;
  if (!$("model-row").hidden) {
    const chosen = state.models.find((model) => model.name === $("model").value);
    if (chosen) return chosen;
  }
  return state.models.find((model) => model.default) || state.models[0];
}

function describeModel() {
  const model = currentModel();
  if (model) $("bundle").textContent = `${model.name} ${model.version}`;
}

// Whether explain=true can be asked: true, false, or null when the service did not say.
function explainSupported() {
  const model = currentModel();
  if (model) return typeof model.explain === "boolean" ? model.explain : null;
  return state.infoExplain;
}

// --- Classification ------------------------------------------------------------------------

async function post(fields) {
  const form = new FormData();
  if (fields.image) form.append("image", fields.image, fields.image.name);
  if (fields.text !== null) form.append("text", fields.text);
  form.append("top_k", String(TOP_K));
  if (fields.explain) form.append("explain", "true");
  if (fields.model) form.append("model", fields.model);
  const started = performance.now();
  const response = await api("/classify", { method: "POST", body: form });
  const body = await json(response);
  return { response, body, ms: performance.now() - started };
}

function errorCode(outcome) {
  const error = outcome.body && outcome.body.error;
  return error ? error.code : null;
}

async function classify(event) {
  event.preventDefault();
  hideError();
  const image = $("image").files[0] || null;
  const typed = $("text").value;
  const text = typed.trim() === "" ? null : typed;
  if (!image && text === null) {
    showError("Nothing to classify", "Choose an image, type a description, or both.");
    return;
  }
  const model = $("model-row").hidden ? null : $("model").value;
  // Explain only with both inputs, and only where the service did not say it cannot.
  const explain = image !== null && text !== null && explainSupported() !== false;
  setBusy(true);
  try {
    let outcome = await post({ image, text, model, explain });
    if (explain && explainSupported() === null && errorCode(outcome) === "explain_unsupported") {
      outcome = await post({ image, text, model, explain: false });
    }
    show(outcome);
  } catch (error) {
    $("result").hidden = true;
    showError("The service could not be reached", String((error && error.message) || error));
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  $("submit").disabled = busy;
  $("status").textContent = busy ? "Classifying…" : "";
}

function show(outcome) {
  const { response, body } = outcome;
  if (!response.ok || !body || !Array.isArray(body.predictions)) {
    $("result").hidden = true;
    const error = (body && body.error) || {};
    const title = `${response.status} ${error.code || response.statusText || "error"}`;
    const message = error.message || "The service answered with an unexpected body.";
    showError(title, message, error.request_id);
    if (response.status === 401) $("api-key").focus();
    return;
  }
  showResult(body, outcome.ms);
}

function showError(title, message, requestId) {
  $("error-title").textContent = title;
  $("error-message").textContent = message;
  $("error-request").textContent = requestId ? `Request id: ${requestId}` : "";
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function showResult(body, roundTripMs) {
  if (body.task === "multilabel") {
    // Any number of labels: those at or above their thresholds, most probable first.
    const labels = body.labels || [];
    $("label").textContent = labels.length ? labels.join(", ") : "No label";
    $("probability").textContent =
      labels.length === 1 ? "1 label over its threshold" : `${labels.length} labels over their thresholds`;
  } else {
    $("label").textContent = body.label;
    $("probability").textContent = percent(body.probability);
  }
  const missing = body.missing_modality;
  $("missing").hidden = !missing;
  $("missing").textContent = missing
    ? `Answered from the ${missing === "image" ? "text" : "image"} alone (no ${missing} sent).`
    : "";
  drawBars(body.predictions);
  drawContributions(body.explanation);
  const timing = body.timing;
  const bundle = body.bundle ? ` · ${body.bundle.name} ${body.bundle.version}` : "";
  $("timing").textContent =
    `Server ${millis(timing.total_ms)} (preprocess ${millis(timing.preprocess_ms)}, ` +
    `inference ${millis(timing.inference_ms)}) · round trip ${millis(roundTripMs)}${bundle}`;
  $("result").hidden = false;
}

function drawBars(predictions) {
  const sorted = [...predictions].sort((a, b) => b.probability - a.probability);
  const rows = sorted.map(({ label, probability, threshold }) => {
    const row = element("li", "bar");
    row.dataset.label = label;
    const name = element("span", "bar-label", label);
    name.title = label;
    const track = element("span", "bar-track");
    const fill = element("span", "bar-fill");
    fill.style.width = `${probability * 100}%`; // CSSOM: allowed by the page's style-src
    track.append(fill);
    if (typeof threshold === "number") {
      // A multilabel answer: each label's own decision threshold, marked on its track.
      const mark = element("span", "bar-threshold");
      mark.style.left = `${threshold * 100}%`;
      mark.title = `threshold ${percent(threshold)}`;
      track.append(mark);
      row.classList.toggle("predicted", probability >= threshold);
    }
    row.append(name, track, element("span", "bar-value", percent(probability)));
    return row;
  });
  $("bars").replaceChildren(...rows);
}

function signedCell(delta) {
  return element("td", delta < 0 ? "down" : "up", points(delta));
}

function drawContributions(explanation) {
  const rows = explanation
    ? explanation.top.map((item) => {
        const row = element("tr");
        row.dataset.label = item.label;
        row.append(
          element("td", "", item.label),
          element("td", "", percent(item.probability)),
          element("td", "", percent(item.without_image)),
          element("td", "", percent(item.without_text)),
          signedCell(item.image_contribution),
          signedCell(item.text_contribution),
        );
        return row;
      })
    : [];
  $("contribution-rows").replaceChildren(...rows);
  $("contributions").hidden = !explanation;
}

// --- Image preview -------------------------------------------------------------------------

function preview() {
  const image = $("preview");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  image.hidden = true;
  const file = $("image").files[0];
  if (!file) {
    image.removeAttribute("src");
    return;
  }
  state.previewUrl = URL.createObjectURL(file);
  image.src = state.previewUrl;
}

document.addEventListener("DOMContentLoaded", () => {
  $("classify-form").addEventListener("submit", classify);
  $("image").addEventListener("change", preview);
  $("preview").addEventListener("load", () => {
    const image = $("preview");
    image.classList.toggle("small", image.naturalWidth < 100 && image.naturalHeight < 100);
    image.hidden = false;
  });
  $("preview").addEventListener("error", () => {
    $("preview").hidden = true; // not an image the browser can show; the service will say
  });
  $("model").addEventListener("change", describeModel);
  $("save-key").addEventListener("click", saveKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("api-key").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      saveKey();
    }
  });
  if (storedKey()) {
    $("key-panel").hidden = false;
    $("api-key").placeholder = "a key is set for this tab";
  }
  // data-state="ready" once the model list (or /info) has been asked for.
  loadModels().finally(() => {
    document.body.dataset.state = "ready";
  });
});
