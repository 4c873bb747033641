// The page of `uniformerv2 serve`: pick or drop a video, play it, show the top-5 classes, a per-window timeline
// for long videos, and (when the server has explanations) the overlay. No libraries; the server's errors are
// shown as its one-line reason.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700"];
const LONG_S = 6;          // videos at least this long get a timeline
let model = null;
let current = null;        // the File being shown

function headers() {
  const key = $("key").value || sessionStorage.getItem("uniformerv2-key") || "";
  return key ? { Authorization: "Bearer " + key } : {};
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function reason(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function loadModel() {
  const r = await fetch("/v1/model", { headers: headers() });
  if (r.status === 401) {
    $("keyrow").hidden = false;
    $("model").textContent = "this server needs an API key";
    return;
  }
  if (!r.ok) { $("model").textContent = await reason(r); return; }
  model = await r.json();
  $("model").textContent = `${model.name || model.preset} · ${model.num_classes} classes · ` +
    `${model.frames} frames at ${model.input_size}px · views ${model.views} · ${model.device}`;
}

function duration(video) {
  return new Promise((resolve) => {
    if (video.readyState >= 1) { resolve(video.duration); return; }
    const done = () => resolve(video.duration);
    video.addEventListener("loadedmetadata", done, { once: true });
    video.addEventListener("error", () => resolve(NaN), { once: true });
    setTimeout(() => resolve(NaN), 3000);
  });
}

function windowFor(seconds) {
  const given = parseFloat($("window").value);
  if (given > 0) return given;
  if (!(seconds >= LONG_S)) return null;
  return Math.max(1, Math.round(seconds / 10));
}

async function classify(file) {
  current = file;
  showError("");
  $("answer").hidden = true;
  $("timeline-box").hidden = true;
  $("explain-box").hidden = true;
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  const win = windowFor(await duration(player));
  const params = new URLSearchParams({ top_k: "5" });
  if (win) params.set("window", String(win));
  const form = new FormData();
  form.append("video", file, file.name);
  $("status").textContent = "classifying…";
  $("answer").hidden = false;
  $("bars").innerHTML = "";
  $("top1").textContent = "";
  const t0 = performance.now();
  let r;
  try {
    r = await fetch("/v1/predict?" + params, { method: "POST", body: form, headers: headers() });
  } catch (e) {
    $("answer").hidden = true;
    showError("the server cannot be reached: " + e.message);
    return;
  }
  if (file !== current) return;
  if (!r.ok) {
    $("answer").hidden = true;
    if (r.status === 401) $("keyrow").hidden = false;
    showError(await reason(r));
    return;
  }
  const answer = await r.json();
  $("status").textContent = `${file.name} · ${((performance.now() - t0) / 1000).toFixed(2)} s`;
  drawBars(answer.top_k);
  if (answer.timeline && answer.timeline.length > 1) drawTimeline(answer);
  if (model && model.explain) explain(file);
}

function drawBars(topK) {
  $("top1").textContent = topK.length ? topK[0].label : "";
  const list = $("bars");
  list.innerHTML = "";
  for (const s of topK.slice(0, 5)) {
    const li = document.createElement("li");
    const name = document.createElement("div");
    name.className = "name";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = s.label;
    const prob = document.createElement("span");
    prob.textContent = (100 * s.prob).toFixed(1) + "%";
    name.append(label, prob);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = Math.max(0.5, 100 * s.prob / Math.max(topK[0].prob, 1e-9)) + "%";
    bar.append(fill);
    li.append(name, bar);
    list.append(li);
  }
}

function drawTimeline(answer) {
  const box = $("timeline-box"), canvas = $("timeline"), ctx = canvas.getContext("2d");
  box.hidden = false;
  const classes = answer.top_k.slice(0, 3).map((s) => s.label);
  const windows = answer.timeline;
  const end = windows[windows.length - 1].end;
  const W = canvas.width, H = canvas.height, left = 44, right = 12, top = 12, bottom = 28;
  const series = classes.map((c) => windows.map((w) => {
    const hit = w.top_k.find((s) => s.label === c);
    return hit ? hit.prob : 0;
  }));
  const peak = Math.max(1e-6, ...series.flat());
  const x = (t) => left + (W - left - right) * (t / end);
  const y = (p) => top + (H - top - bottom) * (1 - p / peak);
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#d0d7de";
  ctx.fillStyle = "#57606a";
  ctx.beginPath();
  ctx.moveTo(left, top); ctx.lineTo(left, H - bottom); ctx.lineTo(W - right, H - bottom);
  ctx.stroke();
  ctx.fillText((100 * peak).toFixed(0) + "%", 4, top + 8);
  ctx.fillText("0", 30, H - bottom);
  for (let i = 0; i <= 5; i++) {
    const t = end * i / 5;
    ctx.fillText(t.toFixed(1) + " s", x(t) - (i === 5 ? 36 : 12), H - 8);
  }
  series.forEach((values, k) => {
    ctx.strokeStyle = COLOURS[k];
    ctx.lineWidth = 2;
    ctx.beginPath();
    windows.forEach((w, i) => {
      const px = x((w.start + w.end) / 2), py = y(values[i]);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
  });
  const legend = $("legend");
  legend.innerHTML = "";
  classes.forEach((c, k) => {
    const span = document.createElement("span");
    const dot = document.createElement("i");
    dot.style.background = COLOURS[k];
    span.append(dot, document.createTextNode(c));
    legend.append(span);
  });
  canvas.onclick = (e) => {
    const rect = canvas.getBoundingClientRect();
    const t = ((e.clientX - rect.left) * W / rect.width - left) / (W - left - right) * end;
    if (t >= 0 && t <= end) $("player").currentTime = t;
  };
}

async function explain(file) {
  const form = new FormData();
  form.append("video", file, file.name);
  const r = await fetch("/v1/explain", { method: "POST", body: form, headers: headers() });
  if (file !== current || !r.ok) return;
  const body = await r.json();
  if (!body.overlay_png_base64) return;
  $("overlay").src = "data:image/png;base64," + body.overlay_png_base64;
  $("explain-box").hidden = false;
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files.length) classify(e.target.files[0]); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]); });
  $("key").addEventListener("change", () => {
    sessionStorage.setItem("uniformerv2-key", $("key").value);
    loadModel();
  });
  loadModel();
}

setUp();
