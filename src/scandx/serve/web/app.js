// scandx web page: sign in with an API key, pick a model, upload, show the answer
// (result.js draws it). Plain JavaScript, nothing fetched from outside this service;
// text from the service is only ever set with textContent, never innerHTML.
"use strict";

(() => {
  const KEY_STORE = "scandx.apiKey";
  const MAX_MESSAGE = 600;
  const SIMILAR_K = 8;
  const STATUS_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    413: "Upload too large",
    415: "Unsupported file type",
    422: "The file could not be used",
    503: "The service is busy or not ready",
  };

  const $ = (id) => document.getElementById(id);
  let models = [];
  const view = window.scandxResult; // result.js: how an answer is shown
  const { el, short } = view;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function clip(text) {
    const s = String(text);
    return s.length > MAX_MESSAGE ? s.slice(0, MAX_MESSAGE) + "…" : s;
  }

  // --- talking to the service ----------------------------------------------------------

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch (e) {
      return "";
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch (e) {
      // storage disabled: the key lives only as long as this page
    }
  }

  function detailOf(body) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI's validation errors: [{loc: [...], msg: "...", ...}]
      return detail
        .map((d) => (d && typeof d.msg === "string" ? d.msg : ""))
        .filter(Boolean)
        .join("; ");
    }
    return "";
  }

  function errorMessage(response, body) {
    const status = response.status;
    const title = STATUS_TITLES[status] || `Error ${status}`;
    let detail = detailOf(body);
    if (!detail) {
      detail = status >= 500
        ? "the service could not answer; its operator can find the reason in its log"
        : response.statusText || "no reason given";
    }
    let message = `${title} (${status}): ${clip(detail)}`;
    const retry = response.headers.get("Retry-After");
    if (retry && /^\d+$/.test(retry) && !/retry/i.test(detail)) {
      message += ` Try again in ${retry} s.`;
    }
    return message;
  }

  async function api(path, options = {}, key = storedKey()) {
    const headers = new Headers({ Accept: "application/json" });
    if (key) headers.set("Authorization", `Bearer ${key}`);
    let response;
    try {
      response = await fetch(path, {
        ...options,
        headers,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
      });
    } catch (e) {
      throw new ApiError(0, "The service could not be reached: check that scandx serve is running and the network.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, errorMessage(response, body));
    if (body === null || typeof body !== "object") {
      throw new ApiError(response.status, "The service's answer could not be read (not JSON).");
    }
    return body;
  }

  // --- signing in --------------------------------------------------------------------

  async function enter(key) {
    const body = await api("/v1/models", {}, key);
    models = Array.isArray(body.models) ? body.models.filter((m) => m && typeof m.name === "string") : [];
    storeKey(key);
    fillModels();
    $("session-text").textContent = key
      ? "Signed in with an API key."
      : "No API keys are set up: this service is open to this computer only.";
    $("sign-out").hidden = !key;
    show("session", true);
    show("signin", false);
    show("workspace", true);
    showError("");
    setStatus(models.length ? "" : "The service has no models loaded.");
    $("model").focus();
  }

  function signOut() {
    storeKey("");
    models = [];
    clearResult();
    show("workspace", false);
    show("session", false);
    show("signin", true);
    $("api-key").value = "";
    setStatus("Signed out.");
    $("api-key").focus();
  }

  function needSignIn(message) {
    storeKey("");
    show("workspace", false);
    show("session", false);
    show("signin", true);
    showError(message);
    $("api-key").focus();
  }

  async function onSignIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      showError("Enter your API key.");
      $("api-key").focus();
      return;
    }
    $("sign-in").disabled = true;
    setStatus("Signing in…");
    try {
      await enter(key);
      $("api-key").value = "";
    } catch (e) {
      setStatus("");
      showError(e.message);
      $("api-key").focus();
    } finally {
      $("sign-in").disabled = false;
    }
  }

  // --- models ------------------------------------------------------------------------

  function selectedModel() {
    return models.find((m) => m.name === $("model").value) || null;
  }

  function fillModels() {
    const select = $("model");
    select.replaceChildren(
      ...models.map((m) => el("option", { value: m.name, text: `${m.name} (${m.task})` })),
    );
    describeModel();
  }

  function describeModel() {
    const m = selectedModel();
    const info = $("model-info");
    if (!m) {
      info.textContent = "";
      return;
    }
    const what = m.task === "segmentation"
      ? `Segmentation of ${Object.values(m.labels || {}).filter((l) => l !== "background").join(", ") || "regions"} (${m.dims}D)`
      : `${m.task} classifier: ${(m.classes || []).join(", ")}`;
    info.textContent = `${what}. Version ${m.version}, weights ${short(m.weights_sha256)}.`;
    show("heatmap-field", m.task !== "segmentation");
  }

  // --- predicting --------------------------------------------------------------------

  async function onPredict(event) {
    event.preventDefault();
    const model = selectedModel();
    const file = $("file").files[0];
    if (!model) {
      showError("Choose a model.");
      $("model").focus();
      return;
    }
    if (!file) {
      showError("Choose a file to upload.");
      $("file").focus();
      return;
    }
    const query = model.task === "segmentation"
      ? "?preview=true"
      : $("heatmap").checked ? "?heatmap=true" : "";
    const form = new FormData();
    form.append("file", file, file.name);
    showError("");
    clearResult();
    $("predict").disabled = true;
    setStatus(`Predicting with ${model.name}…`);
    try {
      const body = await api(`/v1/models/${encodeURIComponent(model.name)}/predict${query}`, {
        method: "POST",
        body: form,
      });
      view.render(body, model);
      show("result", true);
      setStatus("Result ready.");
      $("result").focus();
      if (model.similar_cases > 0 && model.task !== "segmentation") await showSimilar(model, file);
    } catch (e) {
      setStatus("");
      if (e.status === 401) needSignIn(e.message);
      else showError(e.message);
    } finally {
      $("predict").disabled = false;
    }
  }

  async function showSimilar(model, file) {
    const form = new FormData();
    form.append("file", file, file.name);
    setStatus("Result ready. Finding similar cases…");
    try {
      const k = Math.min(SIMILAR_K, model.similar_cases);
      const body = await api(`/v1/models/${encodeURIComponent(model.name)}/similar?k=${k}`, {
        method: "POST",
        body: form,
      });
      view.similarCases(body);
      setStatus("Result and similar cases ready.");
    } catch (e) {
      view.similarFailed(`Similar cases not shown: ${e.message}`);
      setStatus("Result ready.");
    }
  }

  function clearResult() {
    view.clear();
    show("result", false);
  }

  // --- start -------------------------------------------------------------------------

  async function start() {
    $("signin-form").addEventListener("submit", onSignIn);
    $("predict-form").addEventListener("submit", onPredict);
    $("model").addEventListener("change", () => {
      describeModel();
      clearResult();
    });
    $("sign-out").addEventListener("click", signOut);
    setStatus("Connecting…");
    const key = storedKey();
    try {
      await enter(key); // without a key, this works only when no keys are set up
    } catch (e) {
      setStatus("");
      show("signin", true);
      if (key || (e.status !== 401 && e.status !== 403)) showError(e.message);
      if (key) storeKey("");
      $("api-key").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
