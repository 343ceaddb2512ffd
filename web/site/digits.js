// minitorch digits: the course's CNN trained in the page on real MNIST digits.
// Options from the form or the URL (?backend=webgpu&epochs=2&train=2000&batch=16&lr=0.05
// &autostart=1). Training runs a few batches per await, so the page stays live; each
// epoch ends with one readback of its loss and accuracy, then a validation pass.
// When training ends, #status ends with
// "done: epoch N | loss L | val accuracy V% | backend B (adapter)" for automation.
import init, { initWebgpu, Digits } from "./pkg/minitorch_web.js";
import { $, applyUrlParams, median, setRunning, setUpWebgpu, status } from "./common.js";

const SIDE = 28;
const SEED = 42;
const BATCHES_PER_AWAIT = 8; // batches recorded between repaints
const SAMPLES = 12; // validation digits shown with their predictions
const FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

let webgpu = null; // { ok: true, adapter } or { ok: false, reason }
let session = null; // the trained Digits, kept for drawing
let stopRequested = false;
let data = null; // the four files' bytes

async function loadData() {
  const bytes = await Promise.all(
    FILES.map(async (f) => {
      const r = await fetch(`./data/${f}.gz`);
      if (!r.ok) throw new Error(`./data/${f}.gz: HTTP ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    }),
  );
  return { trainImages: bytes[0], trainLabels: bytes[1], valImages: bytes[2], valLabels: bytes[3] };
}

function options() {
  const int = (id, d) => Math.max(1, parseInt($(id).value, 10) || d);
  return {
    epochs: int("epochs", 3),
    train: int("train", 2000),
    batch: int("batch", 16),
    lr: parseFloat($("lr").value) || 0.05,
    backend: $("backend").value,
  };
}

// Loss (red, left scale) and validation accuracy (blue, 0-100%) per epoch.
function drawCurves(losses, accs) {
  const c = $("curves");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#888";
  g.strokeRect(0.5, 0.5, c.width - 1, c.height - 1);
  const n = Math.max(losses.length, 2);
  const x = (i) => (i / (n - 1)) * (c.width - 20) + 10;
  const line = (ys, max, color) => {
    g.beginPath();
    ys.forEach((v, i) => {
      const y = c.height - 10 - (v / max) * (c.height - 30);
      i === 0 ? g.moveTo(x(i), y) : g.lineTo(x(i), y);
      g.fillStyle = color;
      g.fillRect(x(i) - 2, y - 2, 4, 4);
    });
    g.strokeStyle = color;
    g.stroke();
  };
  const maxLoss = Math.max(...losses.filter(Number.isFinite), 1e-9);
  line(losses, maxLoss, "#c92a2a");
  line(accs, 100, "#1c7ed6");
  g.fillStyle = "#555";
  g.fillText(`loss (max ${maxLoss.toFixed(1)})`, 8, 12);
  g.fillText("val accuracy (0-100%)", c.width - 130, 12);
}

function drawDigit(canvas, pixels) {
  const g = canvas.getContext("2d");
  const img = g.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) {
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = pixels[i];
    img.data[4 * i + 3] = 255;
  }
  g.putImageData(img, 0, 0);
}

async function showSamples() {
  const n = Math.min(SAMPLES, session.valCount);
  const images = new Uint8Array(n * SIDE * SIDE);
  for (let i = 0; i < n; i++) images.set(session.valImage(i), i * SIDE * SIDE);
  const probs = await session.predict(images);
  const box = $("samples");
  box.textContent = "";
  for (let i = 0; i < n; i++) {
    const p = probs.subarray(i * 10, i * 10 + 10);
    const guess = p.indexOf(Math.max(...p));
    const label = session.valLabel(i);
    const fig = document.createElement("figure");
    if (guess !== label) fig.className = "wrong";
    const cv = document.createElement("canvas");
    cv.width = cv.height = SIDE;
    cv.style.width = cv.style.height = "56px";
    drawDigit(cv, images.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE));
    const cap = document.createElement("figcaption");
    cap.textContent = `${guess} (is ${label})`;
    fig.append(cv, cap);
    box.append(fig);
  }
}

async function train() {
  const opt = options();
  let backend = opt.backend;
  $("fallback").textContent = "";
  if (backend === "webgpu" && !webgpu.ok) {
    backend = "cpu";
    $("fallback").textContent = `WebGPU is not available, training on the CPU: ${webgpu.reason}`;
  }
  if (session) session.free();
  session = null;
  try {
    session = new Digits(data.trainImages, data.trainLabels, data.valImages, data.valLabels,
      opt.train, opt.batch, opt.lr, backend === "webgpu" ? "wgpu" : "cpu", SEED);
  } catch (e) {
    status(`error: ${e?.message ?? e}`);
    return;
  }
  const adapter = backend === "webgpu" ? webgpu.adapter : session.backend;
  $("backend-name").textContent = `${backend} (${adapter})`;
  $("data-name").textContent = `${session.trainCount} training, ${session.valCount} validation digits`;
  stopRequested = false;
  setRunning(true);
  const losses = [];
  const accs = [];
  const times = [];
  let epoch = 0;
  let loss = NaN;
  let valAcc = NaN;
  try {
    for (epoch = 1; epoch <= opt.epochs && !stopRequested; epoch++) {
      status(`training epoch ${epoch} on ${backend}…`);
      const t0 = performance.now();
      let left = 1;
      while (left > 0 && !stopRequested) {
        left = await session.trainBatches(BATCHES_PER_AWAIT);
        const total = session.batchesPerEpoch;
        $("progress").textContent = `${total - left} / ${total} batches`;
        await new Promise((r) => setTimeout(r, 0));
      }
      if (stopRequested) break;
      const [l, correct, seen] = await session.epochStats();
      times.push(performance.now() - t0);
      const [vc, vn] = await session.validate();
      loss = l;
      valAcc = (100 * vc) / vn;
      losses.push(loss);
      accs.push(valAcc);
      drawCurves(losses, accs);
      $("epoch").textContent = `${epoch} / ${opt.epochs}`;
      $("lossval").textContent = loss.toFixed(4);
      $("trainacc").textContent = `${((100 * correct) / seen).toFixed(2)}%`;
      $("valacc").textContent = `${valAcc.toFixed(2)}% (${vc}/${vn})`;
      const ms = median(times);
      $("epoch-time").textContent = `${ms.toFixed(0)} ms (median)`;
      $("epoch-time").dataset.medianMs = ms.toFixed(3);
      await showSamples();
    }
    const word = stopRequested ? "stopped" : "done";
    epoch = Math.min(epoch - 1, opt.epochs);
    status(`${word}: epoch ${epoch} | loss ${loss.toFixed(4)} | val accuracy ${valAcc.toFixed(2)}% | backend ${backend} (${adapter})`);
    $("predicted").textContent = "draw a digit";
  } catch (e) {
    status(`error at epoch ${epoch}: ${e?.message ?? e}`);
  } finally {
    setRunning(false);
  }
}

// The drawing pad: white strokes on black, then MNIST's preprocessing: the ink's bounding
// box scaled to fit 20x20, placed in 28x28 with its centre of mass at the centre.
function setUpPad() {
  const pad = $("pad");
  const g = pad.getContext("2d");
  const clear = () => {
    g.fillStyle = "#000";
    g.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  let drawing = false;
  let last = null;
  const pos = (ev) => {
    const r = pad.getBoundingClientRect();
    return [(ev.clientX - r.left) * (pad.width / r.width), (ev.clientY - r.top) * (pad.height / r.height)];
  };
  pad.addEventListener("pointerdown", (ev) => {
    drawing = true;
    last = pos(ev);
    pad.setPointerCapture(ev.pointerId);
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = pos(ev);
    g.strokeStyle = "#fff";
    g.lineWidth = 20;
    g.lineCap = "round";
    g.beginPath();
    g.moveTo(...last);
    g.lineTo(...p);
    g.stroke();
    last = p;
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    predictPad();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointerleave", end);
  $("clear").addEventListener("click", () => {
    clear();
    $("bars").textContent = "";
    $("predicted").textContent = session ? "draw a digit" : "draw a digit after training";
  });
}

function padPixels() {
  const pad = $("pad");
  const src = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  let [x0, y0, x1, y1] = [pad.width, pad.height, -1, -1];
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (src[4 * (y * pad.width + x)] > 32) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const s = 20 / Math.max(w, h);
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  const sg = small.getContext("2d");
  sg.fillStyle = "#000";
  sg.fillRect(0, 0, SIDE, SIDE);
  sg.imageSmoothingQuality = "high";
  sg.drawImage(pad, x0, y0, w, h, (SIDE - w * s) / 2, (SIDE - h * s) / 2, w * s, h * s);
  let px = sg.getImageData(0, 0, SIDE, SIDE).data;
  // Shift so the centre of mass is at the centre.
  let [m, mx, my] = [0, 0, 0];
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = px[4 * i];
    m += v; mx += v * (i % SIDE); my += v * Math.floor(i / SIDE);
  }
  const dx = Math.round(SIDE / 2 - 0.5 - mx / m);
  const dy = Math.round(SIDE / 2 - 0.5 - my / m);
  const out = new Uint8Array(SIDE * SIDE);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const sx = x - dx;
      const sy = y - dy;
      if (sx >= 0 && sx < SIDE && sy >= 0 && sy < SIDE) out[y * SIDE + x] = px[4 * (sy * SIDE + sx)];
    }
  }
  return out;
}

async function predictPad() {
  if (!session || $("start").disabled) return; // not trained, or training now
  const pixels = padPixels();
  if (!pixels) return;
  let probs;
  try {
    probs = await session.predict(pixels);
  } catch (e) {
    $("predicted").textContent = `error: ${e?.message ?? e}`;
    return;
  }
  const best = probs.indexOf(Math.max(...probs));
  $("predicted").textContent = `predicted: ${best}`;
  const bars = $("bars");
  bars.textContent = "";
  probs.forEach((p, d) => {
    const row = document.createElement("div");
    if (d === best) row.className = "top";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(150 * p)}px`;
    row.append(`${d} `, bar, ` ${(100 * p).toFixed(1)}%`);
    bars.append(row);
  });
}

async function main() {
  await init();
  const params = new URLSearchParams(location.search);
  applyUrlParams(params, ["epochs", "train", "batch", "lr", "backend"]);
  setUpPad();
  status("loading the digits…");
  data = await loadData();
  webgpu = await setUpWebgpu(initWebgpu);
  if (webgpu.ok) {
    $("backend-name").textContent = `webgpu available (${webgpu.adapter})`;
  } else {
    $("fallback").textContent = `WebGPU is not available (${webgpu.reason}); the CPU backend will be used.`;
  }
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    train();
  });
  $("stop").addEventListener("click", () => {
    stopRequested = true;
  });
  if (!$("status").textContent.startsWith("unknown")) status("ready");
  if (params.get("autostart") === "1") train();
}

main().catch((e) => status(`error: ${e?.message ?? e}`));
