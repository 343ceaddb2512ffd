// The minitorch training playground: options from the form or the URL
// (?dataset=xor&backend=webgpu&hidden=100&lr=0.05&epochs=300&autostart=1), one awaited
// epoch at a time, the decision boundary, points and loss curve redrawn as it trains.
// When training ends, #status ends with
// "done: epoch E | loss L | correct C/N | backend B (adapter)" for automation.
import init, { initWebgpu, datasets, Session } from "./pkg/minitorch_web.js";
import { $, applyUrlParams, median, setRunning, setUpWebgpu, status } from "./common.js";

const POINTS = 50;
const SEED = 42;
const GRID = 40; // decision-boundary cells per side
const REDRAW_EVERY = 10; // epochs between boundary redraws (each costs a readback)

let webgpu = null; // { ok: true, adapter } or { ok: false, reason }
let stopRequested = false;

function options() {
  return {
    dataset: $("dataset").value,
    hidden: Math.max(1, parseInt($("hidden").value, 10) || 100),
    lr: parseFloat($("lr").value) || 0.05,
    epochs: Math.max(1, parseInt($("epochs").value, 10) || 300),
    backend: $("backend").value,
  };
}

// Blue for class 0, orange for class 1; the boundary shades by probability.
function drawBoundary(probs, pts, labels) {
  const c = $("boundary");
  const g = c.getContext("2d");
  const w = c.width;
  const h = c.height;
  const cell = w / GRID;
  if (probs) {
    for (let j = 0; j < GRID; j++) {
      for (let i = 0; i < GRID; i++) {
        // Light blue (class 0) to light orange (class 1).
        const p = probs[j * GRID + i];
        const r = Math.round(205 + 50 * p);
        const gr = Math.round(228 - 38 * p);
        const b = Math.round(255 - 140 * p);
        g.fillStyle = `rgb(${r},${gr},${b})`;
        // Row j is x2 = j / (GRID - 1), drawn with x2 upwards.
        g.fillRect(i * cell, h - (j + 1) * cell, cell + 1, cell + 1);
      }
    }
  } else {
    g.clearRect(0, 0, w, h);
  }
  for (let k = 0; k < labels.length; k++) {
    const x = pts[2 * k] * w;
    const y = h - pts[2 * k + 1] * h;
    g.beginPath();
    g.arc(x, y, 5, 0, 2 * Math.PI);
    g.fillStyle = labels[k] > 0.5 ? "#e8590c" : "#1c7ed6";
    g.fill();
    g.strokeStyle = "#000";
    g.stroke();
  }
}

function drawLoss(losses) {
  const c = $("loss");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (losses.length < 2) return;
  const max = Math.max(...losses.filter(Number.isFinite), 1e-9);
  g.strokeStyle = "#888";
  g.strokeRect(0.5, 0.5, c.width - 1, c.height - 1);
  g.beginPath();
  losses.forEach((l, i) => {
    const x = (i / (losses.length - 1)) * (c.width - 10) + 5;
    const y = c.height - 5 - (l / max) * (c.height - 20);
    i === 0 ? g.moveTo(x, y) : g.lineTo(x, y);
  });
  g.strokeStyle = "#c92a2a";
  g.stroke();
  g.fillStyle = "#555";
  g.fillText(`loss (max ${max.toFixed(2)})`, 8, 12);
}

async function train() {
  const opt = options();
  let backend = opt.backend;
  $("fallback").textContent = "";
  if (backend === "webgpu" && !webgpu.ok) {
    backend = "cpu";
    $("fallback").textContent = `WebGPU is not available, training on the CPU: ${webgpu.reason}`;
  }
  let session;
  try {
    session = new Session(opt.dataset, POINTS, opt.hidden, opt.lr, backend === "webgpu" ? "wgpu" : "cpu", SEED);
  } catch (e) {
    status(`error: ${e?.message ?? e}`);
    return;
  }
  const adapter = backend === "webgpu" ? webgpu.adapter : session.backend;
  $("backend-name").textContent = `${backend} (${adapter})`;
  const pts = session.points();
  const labels = session.labels();
  drawBoundary(null, pts, labels);
  stopRequested = false;
  setRunning(true);
  const losses = [];
  const times = [];
  let correct = 0;
  let epoch = 0;
  let loss = NaN;
  try {
    status(`training ${opt.dataset} on ${backend}…`);
    for (epoch = 1; epoch <= opt.epochs; epoch++) {
      const t0 = performance.now();
      loss = await session.epoch();
      times.push(performance.now() - t0);
      losses.push(loss);
      const last = epoch === opt.epochs || stopRequested;
      if (epoch % REDRAW_EVERY === 0 || epoch === 1 || last) {
        correct = await session.correct();
        drawBoundary(await session.grid(GRID), pts, labels);
        drawLoss(losses);
        const ms = median(times.length > 1 ? times.slice(1) : times);
        $("epoch").textContent = `${epoch} / ${opt.epochs}`;
        $("lossval").textContent = loss.toFixed(4);
        $("correct").textContent = `${correct} / ${labels.length}`;
        $("epoch-time").textContent = `${ms.toFixed(2)} ms (median)`;
        $("epoch-time").dataset.medianMs = ms.toFixed(3);
        // Let the page paint and the Stop button act.
        await new Promise((r) => setTimeout(r, 0));
      }
      if (stopRequested) break;
    }
    const word = stopRequested ? "stopped" : "done";
    epoch = Math.min(epoch, opt.epochs);
    status(`${word}: epoch ${epoch} | loss ${loss.toFixed(4)} | correct ${correct}/${labels.length} | backend ${backend} (${adapter})`);
  } catch (e) {
    status(`error at epoch ${epoch}: ${e?.message ?? e}`);
  } finally {
    session.free();
    setRunning(false);
  }
}

async function main() {
  await init();
  for (const name of datasets()) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    $("dataset").append(o);
  }
  $("dataset").value = "xor";
  const params = new URLSearchParams(location.search);
  applyUrlParams(params, ["dataset", "hidden", "lr", "epochs", "backend"]);
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
