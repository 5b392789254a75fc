// zoo's web page: the models this server serves, called through its public REST API
// (TF Serving's status, metadata and :predict) and nothing else. Whatever the server
// or a model says (labels, generated text, errors) is written with textContent, never
// as HTML; the Content-Security-Policy the server sends forbids inline script anyway.
"use strict";

const $ = (id) => document.getElementById(id);
const VIEWS = ["images-input", "classifier", "autoencoder", "text", "gan", "unsupported"];
const MAX_CANVAS_SIDE = 1024; // larger photos are shown (and their overlays drawn) scaled down

const state = {
  models: [],        // [{name, labels: {label: version}}] from /ui/models.json
  maxBodyBytes: 32 * 1024 * 1024,
  name: null,        // the model picked
  target: "",        // "" (latest) | "/versions/N" | "/labels/L"
  kind: null,        // classifier | autoencoder | text | gan | null
  signatures: {},    // signature name -> {inputs: {key: shape}, outputs: {key: shape}}
  generation: 0,     // bumped on every model or version change: late answers are dropped
  cards: [],         // the classifier's cards, redrawn when the opacity changes
};

// ------------------------------------------------------------------ elements, errors
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

function showError(message) {
  const line = $("error");
  line.textContent = message;
  line.hidden = !message;
}

class ApiError extends Error {
  constructor(message, status, ms) {
    super(message);
    this.status = status;
    this.ms = ms;
  }
}

// ---------------------------------------------------------------------- the REST API
function modelPath(suffix = "") {
  return `/v1/models/${encodeURIComponent(state.name)}${state.target}${suffix}`;
}

async function api(method, path, body) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : {"Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(`The server did not answer (${error.message}).`, 0, performance.now() - started);
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = {error: text || response.statusText};
  }
  if (!response.ok) throw new ApiError(data.error || `HTTP ${response.status}`, response.status, ms);
  return {data, ms};
}

async function predict(signature, instances) {
  const {data, ms} = await api("POST", modelPath(":predict"), {signature_name: signature, instances});
  return {predictions: data.predictions, ms};
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

// ------------------------------------------------------------- models and versions
async function loadModels() {
  const {data} = await api("GET", "/ui/models.json");
  state.models = data.models;
  state.maxBodyBytes = data.max_body_bytes || state.maxBodyBytes;
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => el("option", {value: m.name}, m.name)));
  if (!state.models.length) {
    showError("This server serves no models yet: it picks up NAME/VERSION/ directories as they appear. Reload then.");
    return;
  }
  await pickModel(state.models[0].name);
}

async function pickModel(name) {
  state.name = name;
  state.target = "";
  const {data} = await api("GET", `/v1/models/${encodeURIComponent(name)}`);
  const available = data.model_version_status.filter((s) => s.state === "AVAILABLE").map((s) => s.version);
  const labels = (state.models.find((m) => m.name === name) || {}).labels || {};
  const options = [el("option", {value: ""}, `latest (${available[0] ?? "none"})`)];
  for (const version of available) options.push(el("option", {value: `/versions/${version}`}, `version ${version}`));
  for (const [label, version] of Object.entries(labels)) {
    options.push(el("option", {value: `/labels/${encodeURIComponent(label)}`}, `${label} (version ${version})`));
  }
  $("version").replaceChildren(...options);
  await loadSignatures();
}

async function loadSignatures() {
  const generation = ++state.generation;
  showError("");
  const {data} = await api("GET", modelPath("/metadata"));
  if (generation !== state.generation) return;
  const defs = ((data.metadata || {}).signature_def || {}).signature_def || {};
  const shapes = (tensors) => Object.fromEntries(Object.entries(tensors || {}).map(
    ([key, t]) => [key, ((t.tensor_shape || {}).dim || []).map((d) => Number(d.size))]));
  state.signatures = Object.fromEntries(Object.entries(defs).map(
    ([name, d]) => [name, {inputs: shapes(d.inputs), outputs: shapes(d.outputs)}]));
  state.kind = kindOf(state.signatures);
  $("endpoint").textContent = `${location.origin}${modelPath()}`;
  show(state.kind);
}

// What the page can show, from the signatures alone (zoo's exports name them so).
function kindOf(signatures) {
  const main = signatures.serving_default || {inputs: {}, outputs: {}};
  if (signatures.top_k && "image_bytes" in signatures.top_k.inputs) return "classifier";
  if ("prompt" in main.inputs && "text" in main.outputs) return "text";
  if ("images" in main.inputs && "reconstructions" in main.outputs) return "autoencoder";
  if ("latents" in main.inputs && "images" in main.outputs) return "gan";
  return null;
}

const KIND_NAMES = {classifier: "image classifier", autoencoder: "autoencoder", text: "text generator", gan: "GAN"};

function show(kind) {
  const visible = new Set(kind === "classifier" || kind === "autoencoder" ? ["images-input", kind] : [kind || "unsupported"]);
  for (const id of VIEWS) $(id).hidden = !visible.has(id);
  $("kind").textContent = kind ? KIND_NAMES[kind] : "";
  $("signatures").textContent = Object.keys(state.signatures).join(", ") || "none";
  $("top-k-field").hidden = !state.signatures.generate_top_k;
  document.body.dataset.kind = kind || "unsupported";
  document.body.dataset.ready = "true";
}

// -------------------------------------------------------------------- image input
function imageFiles(list) {
  return Array.from(list || []).filter((f) => f && f.size !== undefined);
}

async function takeImages(files) {
  for (const file of imageFiles(files)) {
    if (state.kind === "classifier") await classify(file);
    else if (state.kind === "autoencoder") await reconstruct(file);
  }
}

function wireImageInput() {
  const drop = $("drop");
  // A file dropped outside the zone must not replace the page.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    takeImages(e.dataTransfer && e.dataTransfer.files);
  });
  $("files").addEventListener("change", (e) => {
    const files = Array.from(e.target.files);
    e.target.value = "";
    takeImages(files);
  });
  document.addEventListener("paste", (e) => {
    if (!$("images-input").hidden && e.clipboardData) takeImages(e.clipboardData.files);
  });
}

async function decodeImage(file) {
  try {
    return await createImageBitmap(file, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  } catch {
    return null; // the server names what is wrong with the file; the page just has no picture
  }
}

function card(file, container) {
  const node = el("article", {class: "card", "data-state": "working"}, el("h2", {}, file.name || "pasted image"));
  const status = el("p", {class: "muted"}, "working…");
  node.append(status);
  container.prepend(node);
  return {node, status};
}

function fail(view, error) {
  view.node.dataset.state = "failed";
  view.node.classList.add("failed");
  view.status.replaceWith(el("p", {class: "error"}, error.message));
  showError(`${view.node.querySelector("h2").textContent}: ${error.message}`);
}

function tooLarge(file) {
  // base64 grows the bytes by 4/3; the JSON around them is small.
  return file.size * 4 / 3 + 1024 > state.maxBodyBytes
    ? new ApiError(`${file.size} bytes is more than this server takes in one request ` +
                   `(${state.maxBodyBytes} bytes as JSON; zoo serve --max-body-mb).`, 413, 0)
    : null;
}

// --------------------------------------------------------------------- classifier
async function classify(file) {
  const generation = state.generation;
  const view = card(file, $("classified"));
  try {
    const refused = tooLarge(file);
    if (refused) throw refused;
    const encoded = {b64: base64(await file.arrayBuffer())};
    const explains = Boolean(state.signatures.explain);
    const [top, explained, bitmap] = await Promise.all([
      predict("top_k", [encoded]),
      explains ? predict("explain", [encoded]) : Promise.resolve(null),
      decodeImage(file),
    ]);
    if (generation !== state.generation) return view.node.remove();
    const labels = el("ol", {class: "labels"});
    const row = top.predictions[0];
    row.classes.forEach((label, i) => {
      const score = row.scores[i];
      const bar = el("span");
      bar.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
      labels.append(el("li", {"data-class-id": String(row.class_ids[i])},
        el("span", {class: "label"}, String(label)),
        el("span", {class: "probability"}, score.toFixed(4)),
        el("span", {class: "bar"}, bar)));
    });
    const timings = [`top_k ${formatMs(top.ms)}`];
    const parts = [];
    if (explained && bitmap) {
      timings.push(`explain ${formatMs(explained.ms)}`);
      parts.push(overlayFigure(view, bitmap, explained.predictions[0], file.name));
    }
    const meta = el("p", {class: "meta"}, el("span", {class: "timing"}, timings.join(" · ")));
    if (view.download) meta.append(view.download);
    view.status.replaceWith(...parts, labels, meta);
    view.node.dataset.top1 = String(row.classes[0]);
    view.node.dataset.state = "done";
  } catch (error) {
    fail(view, error);
  }
}

// The overlay: the photo with the Grad-CAM heat map stretched over it (the model sees
// the whole photo resized without cropping), blended as zoo.plots.heat_overlay blends
// it, and the map's peak marked where zoo.explain puts it.
function overlayFigure(view, bitmap, explained, fileName) {
  const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = el("canvas", {width: String(width), height: String(height)});
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0, width, height);
  const photo = context.getImageData(0, 0, width, height);
  const heatmap = explained.heatmap;
  const heat = resizeBilinear(heatmap, width, height);
  const [inputHeight, inputWidth] = inputSize();
  const peak = peakOf(resizeBilinear(heatmap, inputWidth, inputHeight), inputWidth);
  // Pixel centres at the model's input size, scaled to the photo (as zoo.explain does).
  const peakX = Math.floor((peak.x + 0.5) * bitmap.width / inputWidth);
  const peakY = Math.floor((peak.y + 0.5) * bitmap.height / inputHeight);
  const marker = el("span", {class: "peak", title: `peak at x=${peakX} y=${peakY}`});
  marker.style.left = `${(100 * (peakX + 0.5)) / bitmap.width}%`;
  marker.style.top = `${(100 * (peakY + 0.5)) / bitmap.height}%`;
  Object.assign(view.node.dataset, {peakX: String(peakX), peakY: String(peakY)});
  const stem = (fileName || "image").replace(/\.[^.]*$/, "");
  view.download = el("a", {download: `${stem}.gradcam.png`, href: "#"}, "download overlay");
  const entry = {canvas, context, photo, heat, download: view.download, url: null};
  state.cards.push(entry);
  drawOverlay(entry);
  return el("div", {class: "figure"}, canvas, marker);
}

function inputSize() {
  const shape = (state.signatures.serving_default || {inputs: {}}).inputs.images || [];
  return shape.length === 4 && shape[1] > 0 && shape[2] > 0 ? [shape[1], shape[2]] : [224, 224];
}

function peakOf(values, width) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return {x: best % width, y: Math.floor(best / width)};
}

// Pillow's BILINEAR resize (the triangle filter on pixel centres, its support widened
// when shrinking, weights normalised at the edges), as zoo.explain and zoo.plots use it.
function resampleWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const rows = [];
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale;
    const low = Math.max(0, Math.trunc(centre - support + 0.5));
    const high = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const weights = [];
    let total = 0;
    for (let i = low; i < high; i++) {
      const w = Math.max(0, 1 - Math.abs((i - centre + 0.5) / filterScale));
      weights.push(w);
      total += w;
    }
    rows.push({low, weights: weights.map((w) => (total ? w / total : 0))});
  }
  return rows;
}

function resizeBilinear(map, width, height) {
  const inHeight = map.length;
  const inWidth = map[0].length;
  const across = resampleWeights(inWidth, width);
  const down = resampleWeights(inHeight, height);
  const wide = new Float32Array(inHeight * width);
  for (let y = 0; y < inHeight; y++) {
    for (let x = 0; x < width; x++) {
      const {low, weights} = across[x];
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += weights[k] * map[y][low + k];
      wide[y * width + x] = sum;
    }
  }
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const {low, weights} = down[y];
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += weights[k] * wide[(low + k) * width + x];
      out[y * width + x] = sum;
    }
  }
  return out;
}

// Matplotlib's "jet" as its 256-entry table: the colours zoo explain's overlays use.
const JET = (() => {
  const segments = [
    [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
    [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
    [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
  ];
  const at = (points, x) => {
    for (let i = 1; i < points.length; i++) {
      const [x0, y0] = points[i - 1];
      const [x1, y1] = points[i];
      if (x <= x1) return x1 === x0 ? y1 : y0 + ((x - x0) / (x1 - x0)) * (y1 - y0);
    }
    return points[points.length - 1][1];
  };
  const table = new Float32Array(256 * 3);
  for (let i = 0; i < 256; i++) for (let c = 0; c < 3; c++) table[i * 3 + c] = at(segments[c], i / 255) * 255;
  return table;
})();

function drawOverlay(entry) {
  const alpha = Number($("opacity").value);
  const {photo, heat, context, canvas} = entry;
  const out = context.createImageData(photo.width, photo.height);
  const src = photo.data;
  const dst = out.data;
  for (let p = 0; p < heat.length; p++) {
    const h = Math.min(1, Math.max(0, heat[p]));
    const index = Math.min(255, Math.floor(h * 256)) * 3;
    // Cold regions stay mostly photo, hot ones mostly colour (zoo.plots.heat_overlay).
    const weight = alpha * (0.35 + 0.65 * h);
    for (let c = 0; c < 3; c++) {
      const value = src[p * 4 + c] * (1 - weight) + JET[index + c] * weight;
      dst[p * 4 + c] = Math.floor(Math.min(255, Math.max(0, value)));
    }
    dst[p * 4 + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  canvas.toBlob((blob) => {
    if (!blob) return;
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.url = URL.createObjectURL(blob);
    entry.download.href = entry.url;
  }, "image/png");
}

// -------------------------------------------------------------------- autoencoder
async function reconstruct(file) {
  const generation = state.generation;
  const view = card(file, $("reconstructed"));
  try {
    const bitmap = await decodeImage(file);
    if (!bitmap) throw new ApiError(`${file.name || "the file"} is not an image this browser can read.`, 400, 0);
    const shape = state.signatures.serving_default.inputs.images;
    const [height, width, channels] = [shape[1], shape[2], shape[3]];
    const canvas = el("canvas", {width: String(width), height: String(height), class: "pixelated"});
    const context = canvas.getContext("2d", {willReadFrequently: true});
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, width, height);
    const rgba = context.getImageData(0, 0, width, height).data;
    const pixels = [];
    for (let y = 0; y < height; y++) {
      const line = [];
      for (let x = 0; x < width; x++) {
        const p = (y * width + x) * 4;
        const [r, g, b] = [rgba[p], rgba[p + 1], rgba[p + 2]];
        line.push(channels === 1 ? [Math.round(0.299 * r + 0.587 * g + 0.114 * b)] : [r, g, b]);
      }
      pixels.push(line);
    }
    const answer = await predict("serving_default", [pixels]);
    if (generation !== state.generation) return view.node.remove();
    const sent = drawPixels(pixels);
    const back = drawPixels(answer.predictions[0]);
    view.status.replaceWith(
      el("div", {class: "pair"}, el("figure", {}, sent, el("figcaption", {}, "input, as sent")),
        el("figure", {}, back, el("figcaption", {}, "reconstruction"))),
      el("p", {class: "meta"}, el("span", {class: "timing"}, `serving_default ${formatMs(answer.ms)}`)));
    view.node.dataset.state = "done";
  } catch (error) {
    fail(view, error);
  }
}

// An image as nested [row][column][channel] values 0..255 → a canvas.
function drawPixels(image, canvas = null, left = 0, top = 0) {
  const height = image.length;
  const width = image[0].length;
  const target = canvas || el("canvas", {width: String(width), height: String(height), class: "pixelated"});
  const context = target.getContext("2d");
  const data = context.createImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const value = image[y][x];
      const [r, g, b] = value.length === 1 ? [value[0], value[0], value[0]] : value;
      data.data.set([r, g, b, 255], (y * width + x) * 4);
    }
  }
  context.putImageData(data, left, top);
  return target;
}

// ------------------------------------------------------------------ text generation
async function generate(event) {
  event.preventDefault();
  const button = $("generate");
  button.disabled = true;
  const instance = {
    prompt: $("prompt").value,
    temperature: Number($("temperature").value),
    length: Math.trunc(Number($("length").value)),
    seed: Math.trunc(Number($("seed").value)),
  };
  let signature = "serving_default";
  const topK = Math.trunc(Number($("top-k").value));
  if (state.signatures.generate_top_k && topK > 0) {
    signature = "generate_top_k";
    instance.top_k = topK;
  }
  try {
    const answer = await predict(signature, [instance]);
    $("generated").textContent = answer.predictions[0];
    $("text-timing").textContent = `${signature} ${formatMs(answer.ms)}`;
    document.body.dataset.generated = "true";
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------ GAN
// Standard normal latents from the seed (mulberry32 and Box-Muller): the same seed
// draws the same samples on every visit.
function latents(seed, count, size) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return Array.from({length: count}, () => Array.from({length: size}, normal));
}

async function sample(event) {
  event.preventDefault();
  const button = $("sample");
  button.disabled = true;
  try {
    const size = state.signatures.serving_default.inputs.latents[1];
    const count = Math.max(1, Math.min(64, Math.trunc(Number($("gan-count").value)) || 16));
    const answer = await predict("serving_default", latents(Math.trunc(Number($("gan-seed").value)), count, size));
    const images = answer.predictions;
    const [height, width] = [images[0].length, images[0][0].length];
    const columns = Math.ceil(Math.sqrt(count));
    const rows = Math.ceil(count / columns);
    const gap = 2;
    const grid = $("gan-grid");
    grid.width = columns * (width + gap) - gap;
    grid.height = rows * (height + gap) - gap;
    grid.style.width = `${Math.min(640, grid.width * 4)}px`;
    const context = grid.getContext("2d");
    context.fillStyle = "#fff";
    context.fillRect(0, 0, grid.width, grid.height);
    images.forEach((image, i) => drawPixels(image, grid, (i % columns) * (width + gap), Math.floor(i / columns) * (height + gap)));
    $("gan-timing").textContent = `${count} samples, serving_default ${formatMs(answer.ms)}`;
    document.body.dataset.sampled = "true";
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------- start
function clearCards(container) {
  if (container === $("classified")) {
    for (const entry of state.cards) if (entry.url) URL.revokeObjectURL(entry.url);
    state.cards = [];
  }
  container.replaceChildren();
}

function start() {
  wireImageInput();
  $("model").addEventListener("change", (e) => pickModel(e.target.value).catch((error) => showError(error.message)));
  $("version").addEventListener("change", (e) => {
    state.target = e.target.value;
    loadSignatures().catch((error) => showError(error.message));
  });
  $("opacity").addEventListener("input", (e) => {
    $("opacity-value").textContent = Number(e.target.value).toFixed(2);
    for (const entry of state.cards) drawOverlay(entry);
  });
  $("clear-classified").addEventListener("click", () => clearCards($("classified")));
  $("clear-reconstructed").addEventListener("click", () => clearCards($("reconstructed")));
  $("text-form").addEventListener("submit", generate);
  $("gan-form").addEventListener("submit", sample);
  loadModels().catch((error) => {
    showError(error.message);
    document.body.dataset.ready = "true";
  });
}

start();
