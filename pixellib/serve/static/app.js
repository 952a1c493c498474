// The pixellib web page: plain JS, talks only to this server (same origin).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "pixellib-api-key";
let photo = null;          // the chosen File
let urls = [];             // object URLs of the result on show, revoked when it is replaced
let current = 0;           // the newest run: answers to older ones are dropped
const UNREACHABLE = "cannot reach the server (is pixellib serve still running?)";

function headers() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return `${resp.status} ${body.error}: ${detail}`;
  } catch (e) {
    return `${resp.status} ${resp.statusText}`;
  }
}

// A 401, said to the person at the page (the server's text speaks to API clients).
function keyProblem() {
  return $("api-key").value.trim()
    ? "the server refused this API key: check it in the API key field"
    : "this server needs an API key: enter it in the API key field";
}

async function loadInfo() {
  let resp;
  try {
    resp = await fetch("/v1/info", { headers: headers() });
  } catch (e) {  // the server is down: say so, and look again
    $("model-info").textContent = UNREACHABLE;
    setTimeout(loadInfo, 5000);
    return;
  }
  if (!resp.ok) {
    $("model-info").textContent = resp.status === 401 ? keyProblem() : await errorText(resp);
    return;
  }
  const info = await resp.json();
  $("model-info").textContent = info.ready
    ? `${info.architecture} · ${info.device} · ${info.speed} · threshold ${info.confidence}`
    : "the model is loading…";
  const select = $("effect");
  const known = new Set([...select.options].map((o) => o.value));
  for (const name of info.effects || []) {
    if (!known.has(name)) select.add(new Option(name, name));
  }
  if (!info.ready) setTimeout(loadInfo, 2000);
}

function options(file) {
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  const classes = $("classes").value.trim();
  if (classes) form.append("classes", classes);
  return form;
}

function effectValue() {
  const name = $("effect").value;
  if (name === "color-bg") return "color-bg=" + $("color").value;
  return name;
}

// COCO compressed RLE (column-major runs) -> Uint8Array of 0/1, row-major H x W.
function decodeRle(rle) {
  const [h, w] = rle.size;
  const s = rle.counts;
  const runs = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true, c = 0;
    while (more) {
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  const mask = new Uint8Array(h * w);
  let i = 0, v = 0;
  for (const run of runs) {
    for (let j = 0; j < run; j++, i++) {
      if (v) mask[(i % h) * w + Math.floor(i / h)] = 1;
    }
    v ^= 1;
  }
  return mask;
}

// A transparent PNG of one object: its pixels inside its box, alpha from its mask.
async function cutout(bitmap, json, obj) {
  const { width: w, height: h } = json.image;
  const mask = decodeRle(obj.mask);
  const [x0, y0] = [Math.floor(obj.box[0]), Math.floor(obj.box[1])];
  const [x1, y1] = [Math.ceil(obj.box[2]), Math.ceil(obj.box[3])];
  const cw = Math.max(1, x1 - x0), ch = Math.max(1, y1 - y0);
  const canvas = document.createElement("canvas");
  canvas.width = cw; canvas.height = ch;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, -x0, -y0);
  const data = ctx.getImageData(0, 0, cw, ch);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      const gx = x + x0, gy = y + y0;
      const inside = gx < w && gy < h && mask[gy * w + gx];
      if (!inside) data.data[(y * cw + x) * 4 + 3] = 0;
    }
  }
  ctx.putImageData(data, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

function link(blob, name, text, into) {
  const a = document.createElement("a");
  const url = URL.createObjectURL(blob);
  into.push(url);
  a.href = url; a.download = name; a.textContent = text;
  return a;
}

class Stale extends Error {}

// A busy server (503 with Retry-After) is asked again after the time it gives (at most
// MAX_WAIT s each time, counted down on the page), up to MAX_RETRIES times; choosing
// another photo meanwhile drops the wait.
const MAX_RETRIES = 5;
const MAX_WAIT = 120;

async function post(path, makeForm, token) {
  for (let attempt = 0; ; attempt++) {
    let resp;
    try {
      resp = await fetch(path, { method: "POST", headers: headers(), body: makeForm() });
    } catch (e) {
      throw new Error(UNREACHABLE);
    }
    if (token !== current) throw new Stale();
    const wait = Number(resp.headers.get("Retry-After"));
    if (resp.status === 503 && attempt < MAX_RETRIES && wait > 0) {
      for (let left = Math.min(Math.ceil(wait), MAX_WAIT); left > 0; left--) {
        setStatus(`the server is busy; trying again in ${left} s…`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        if (token !== current) throw new Stale();
      }
      setStatus("segmenting…");
      continue;
    }
    if (resp.status === 401) throw new Error(keyProblem());
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp;
  }
}

// One run for the photo chosen now. A photo chosen (or a click) meanwhile starts a newer run;
// whatever answers this one then gets is dropped, so the newest choice always wins.
async function run() {
  if (!photo) return;
  const token = ++current;
  const file = photo;
  sessionStorage.setItem(KEY_STORE, $("api-key").value);
  const effect = effectValue();
  const background = $("background").files[0];
  if (effect === "replace-bg" && !background) {
    setStatus("replace-bg: choose a background photo first", true);
    return;
  }
  const boxes = $("boxes").checked ? "true" : "false";
  $("run").disabled = true;
  setStatus("segmenting…");
  try {
    // One inference: the rendered image and the detections' JSON in one multipart answer.
    const resp = await post("/v1/render", () => {
      const form = options(file);
      if (effect) form.append("effect", effect);
      if (effect === "replace-bg") form.append("background", background);
      form.append("boxes", boxes);
      form.append("format", "png");
      form.append("detections", "true");
      return form;
    }, token);
    const parts = await resp.formData();
    if (token !== current) throw new Stale();
    const json = JSON.parse(parts.get("detections"));
    const image = parts.get("image");
    const note = await show(file, json, image, effect, token);
    setStatus(`${json.count} object(s)${note}`);
  } catch (e) {
    if (e instanceof Stale) return;  // a newer run owns the page now
    setStatus(String(e.message || e), true);
  } finally {
    if (token === current) $("run").disabled = false;
  }
}

// Put a run's result on the page (the previous result's links are revoked only now, so that
// after a failed run the result still shown keeps working). Returns a note for the status.
async function show(file, json, image, effect, token) {
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(file);
  } catch (e) {  // e.g. TIFF: the server reads it, this browser cannot draw it
    bitmap = null;
  }
  const made = [];
  const items = [];
  for (const [i, obj] of json.objects.entries()) {
    const li = document.createElement("li");
    li.className = "object";
    li.dataset.classId = obj.class_id;
    const b = obj.box.map((v) => Math.round(v)).join(", ");
    li.append(`${obj.class_name} ${(obj.score * 100).toFixed(1)}% · box [${b}] · ${obj.area} px`);
    if (bitmap) {
      const name = `object_${i + 1}_${obj.class_name}.png`;
      li.append(link(await cutout(bitmap, json, obj), name,
                     `cut-out ${i + 1} (${obj.class_name})`, made));
    }
    items.push(li);
  }
  if (token !== current) {  // a newer run started while the cut-outs were made
    made.forEach((u) => URL.revokeObjectURL(u));
    throw new Stale();
  }
  const jsonBlob = new Blob([JSON.stringify(json, null, 1)], { type: "application/json" });
  const jsonUrl = URL.createObjectURL(jsonBlob);
  const imageUrl = URL.createObjectURL(image);
  urls.forEach((u) => URL.revokeObjectURL(u));
  urls = [jsonUrl, imageUrl, ...made];
  $("download-json").href = jsonUrl;
  $("download-image").href = imageUrl;
  $("rendered").src = imageUrl;
  $("rendered").alt = effect ? `result of ${effect}` : "annotated result";
  $("objects").replaceChildren(...items);
  $("result").hidden = false;
  return bitmap || !json.objects.length ? ""
    : " (this browser cannot show this photo's format, so no cut-outs: use JPEG, PNG or WebP)";
}

// The first image among the files given (a drop may bring several, or none that is one).
function choose(files) {
  const list = [...(files || [])];
  if (!list.length) return;
  const file = list.find((f) => f.type.startsWith("image/")) || list[0];
  photo = file;
  $("run").disabled = false;
  run().then(() => {
    if (list.length > 1 && photo === file && !$("status").classList.contains("error")) {
      setStatus($("status").textContent + ` · only ${file.name} was used`);
    }
  });
}

window.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value);
    loadInfo();
  });
  $("file").addEventListener("change", () => choose($("file").files));
  $("run").addEventListener("click", run);
  $("effect").addEventListener("change", () => {
    $("color-row").hidden = $("effect").value !== "color-bg";
    $("background-row").hidden = $("effect").value !== "replace-bg";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files);
  });
  loadInfo();
});
