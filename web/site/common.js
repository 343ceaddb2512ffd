// What the playground (app.js) and the digits page (digits.js) share: the page's #status
// line, WebGPU set-up, URL parameters, the start/stop buttons and a median.

export const $ = (id) => document.getElementById(id);

export function status(line) {
  $("status").textContent = line;
}

// Set up minitorch's WebGPU backend through `initWebgpu` (the wasm entry); resolves to
// { ok: true, adapter } or { ok: false, reason }.
export async function setUpWebgpu(initWebgpu) {
  if (!navigator.gpu) {
    return { ok: false, reason: "this browser has no WebGPU (navigator.gpu is missing)" };
  }
  try {
    const described = await initWebgpu();
    // Browsers hide the adapter's name from wgpu; ask WebGPU itself for what it tells.
    const info = (await navigator.gpu.requestAdapter())?.info;
    const parts = info ? [info.vendor, info.architecture, info.description] : [];
    if (info?.isFallbackAdapter) parts.push("software fallback adapter");
    const named = parts.filter(Boolean).join(" ");
    return { ok: true, adapter: named || described };
  } catch (e) {
    return { ok: false, reason: String(e?.message ?? e) };
  }
}

// Copy URL parameters `keys` into the form fields of the same ids (`backend=wgpu` means
// WebGPU); an unknown choice for a select is said on #status and ignored.
export function applyUrlParams(params, keys) {
  for (const key of keys) {
    const v = params.get(key);
    if (v === null) continue;
    const el = $(key);
    const value = key === "backend" && v.toLowerCase() === "wgpu" ? "webgpu" : v.toLowerCase();
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) {
      status(`unknown ${key} ${JSON.stringify(v)} in the URL; using ${el.value}`);
      continue;
    }
    el.value = el.tagName === "SELECT" ? value : v;
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : 0;
}

// The start button is off while training, the stop button on.
export function setRunning(on) {
  $("start").disabled = on;
  $("stop").disabled = !on;
}
