// The pixellib web page: plain JS, talks only to this server (same origin).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "pixellib-api-key";
let photo = null;          // the chosen File
let lastJson = null;       // the last /v1/segment answer
let urls = [];             // object URLs to revoke on the next run

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

async function loadInfo() {
  const resp = await fetch("/v1/info", { headers: headers() });
  if (!resp.ok) {
    $("model-info").textContent = resp.status === 401 ? "enter the API key" : await errorText(resp);
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

function options() {
  const form = new FormData();
  form.append("image", photo, photo.name || "photo");
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
async function cutout(bitmap, obj) {
  const { width: w, height: h } = lastJson.image;
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

function link(blob, name, text) {
  const a = document.createElement("a");
  const url = URL.createObjectURL(blob);
  urls.push(url);
  a.href = url; a.download = name; a.textContent = text;
  return a;
}

async function run() {
  if (!photo) return;
  sessionStorage.setItem(KEY_STORE, $("api-key").value);
  urls.forEach((u) => URL.revokeObjectURL(u));
  urls = [];
  $("run").disabled = true;
  setStatus("segmenting…");
  try {
    const seg = await fetch("/v1/segment", { method: "POST", headers: headers(), body: options() });
    if (!seg.ok) throw new Error(await errorText(seg));
    lastJson = await seg.json();
    setStatus("rendering…");
    const form = options();
    const effect = effectValue();
    if (effect) form.append("effect", effect);
    if (effect === "replace-bg" && $("background").files[0]) {
      form.append("background", $("background").files[0]);
    }
    form.append("boxes", $("boxes").checked ? "true" : "false");
    form.append("format", "png");
    const ren = await fetch("/v1/render", { method: "POST", headers: headers(), body: form });
    if (!ren.ok) throw new Error(await errorText(ren));
    const image = await ren.blob();
    await show(image);
    setStatus(`${lastJson.count} object(s)`);
  } catch (e) {
    setStatus(String(e.message || e), true);
  } finally {
    $("run").disabled = false;
  }
}

async function show(image) {
  const jsonBlob = new Blob([JSON.stringify(lastJson, null, 1)], { type: "application/json" });
  const jsonUrl = URL.createObjectURL(jsonBlob);
  const imageUrl = URL.createObjectURL(image);
  urls.push(jsonUrl, imageUrl);
  $("download-json").href = jsonUrl;
  $("download-image").href = imageUrl;
  $("rendered").src = imageUrl;
  const list = $("objects");
  list.replaceChildren();
  const bitmap = await createImageBitmap(photo);
  for (const [i, obj] of lastJson.objects.entries()) {
    const li = document.createElement("li");
    li.className = "object";
    li.dataset.classId = obj.class_id;
    const b = obj.box.map((v) => Math.round(v)).join(", ");
    li.append(`${obj.class_name} ${(obj.score * 100).toFixed(1)}% · box [${b}] · ${obj.area} px`);
    li.append(link(await cutout(bitmap, obj), `object_${i + 1}_${obj.class_name}.png`, "cut-out"));
    list.append(li);
  }
  $("result").hidden = false;
}

function choose(file) {
  if (!file) return;
  photo = file;
  $("run").disabled = false;
  run();
}

window.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value);
    loadInfo();
  });
  $("file").addEventListener("change", () => choose($("file").files[0]));
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
    choose(e.dataTransfer.files[0]);
  });
  loadInfo();
});
