#!/usr/bin/env python3
"""End-to-end test of the built site (run by `scripts/web.sh test`): the playground and the
digits page.

Serves SITE_DIR on 127.0.0.1, drives headless Chromium through chromedriver (the WebDriver
protocol, standard library only), opens each page with URL parameters, waits for `#status`
to end with its done line (playground: `done: epoch N | loss L | correct C/N | backend B
(adapter)`; digits: `done: epoch N | loss L | val accuracy V% | backend B (adapter)`),
checks it, and saves a screenshot of each page's first run (the digits page's beside the
playground's, as digits.png). Chromium's flags come from web/webdriver.json (the browser tests use
the same file). Exits non-zero on any failure: a missing browser or WebGPU adapter fails.

usage: web_e2e.py SITE_DIR SCREENSHOT.png
"""

import base64
import functools
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
TIMEOUT_S = float(os.environ.get("WEB_E2E_TIMEOUT", "600"))
STATUS_RE = re.compile(
    r"done: epoch (\d+) \| loss ([-\d.e+naNIfity]+) \| correct (\d+)/(\d+) \| backend (\w+) \((.*)\)$"
)

DIGITS_RE = re.compile(
    r"done: epoch (\d+) \| loss ([-\d.e+naNIfity]+) \| val accuracy ([\d.]+)% \| backend (\w+) \((.*)\)$"
)

EPOCHS = 100
# (page, URL query, expected backend, minimum: correct of 50 on the playground, validation
# accuracy % on the digits page); each page's first run is its screenshot. 100 epochs keep
# CI short on a software adapter (the >= 45/50 training claim is web/tests/browser.rs's, at
# 300 epochs); the course loop has 46/50 there on xor. The digits page trains the course
# CNN on the checked-in sample (or data/digits): on the CPU in wasm 4 epochs of 500 digits
# at batch 8, lr 0.1 (76.5% natively); on WebGPU one epoch of 64 digits, because
# SwiftShader (Chromium's software adapter in CI) took 136 s per epoch of 500 digits: it
# checks the page trains and evaluates on WebGPU end to end, not an accuracy.
RUNS = [
    ("index.html", f"dataset=xor&backend=webgpu&hidden=100&lr=0.05&epochs={EPOCHS}&autostart=1", "webgpu", 40),
    ("index.html", f"dataset=xor&backend=cpu&hidden=100&lr=0.05&epochs={EPOCHS}&autostart=1", "cpu", 40),
    ("digits.html", "backend=webgpu&epochs=1&train=64&batch=16&lr=0.1&autostart=1", "webgpu", 0.0),
    ("digits.html", "backend=cpu&epochs=4&train=500&batch=8&lr=0.1&autostart=1", "cpu", 50.0),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}").get("value")


def serve(site):
    handler = functools.partial(QuietHandler, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def wait_for_driver(base):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if request("GET", base + "/status", timeout=2).get("ready"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"FAIL: chromedriver at {base} did not start")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    site, shot = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(site, "index.html")):
        raise SystemExit(f"FAIL: {site}/index.html missing; run scripts/web.sh build {site}")
    if not os.access(CHROMEDRIVER, os.X_OK):
        raise SystemExit(f"FAIL: no chromedriver at {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    with open(os.path.join(ROOT, "web", "webdriver.json")) as f:
        caps = json.load(f)
    chrome = caps["goog:chromeOptions"]
    profile = tempfile.mkdtemp(prefix="minitorch-e2e-")
    chrome["args"] = chrome["args"] + [
        "--headless", "--no-sandbox", "--disable-dev-shm-usage",
        "--window-size=1150,800", f"--user-data-dir={profile}",
    ]
    server = serve(site)
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    failures = []
    try:
        wait_for_driver(base)
        session = request("POST", base + "/session",
                          {"capabilities": {"alwaysMatch": caps}})["sessionId"]
        s = f"{base}/session/{session}"
        try:
            shot_taken = set()
            for page, query, backend, minimum in RUNS:
                url = f"http://127.0.0.1:{server.server_port}/{page}?{query}"
                t0 = time.time()
                request("POST", s + "/url", {"url": url})
                status = ""
                while time.time() - t0 < TIMEOUT_S:
                    status = request("POST", s + "/execute/sync", {
                        "script": "return document.getElementById('status').textContent",
                        "args": []}) or ""
                    if status.startswith(("done:", "stopped:", "error")):
                        break
                    time.sleep(0.5)
                median = request("POST", s + "/execute/sync", {
                    "script": "return document.getElementById('epoch-time').dataset.medianMs || ''",
                    "args": []})
                fallback = request("POST", s + "/execute/sync", {
                    "script": "return document.getElementById('fallback').textContent",
                    "args": []})
                print(f"{page}?{query}\n  #status: {status}\n  median ms/epoch: {median}"
                      f"  (wall {time.time() - t0:.1f} s){'  fallback: ' + fallback if fallback else ''}")
                if page not in shot_taken:
                    shot_taken.add(page)
                    path = shot if page == "index.html" else os.path.join(
                        os.path.dirname(os.path.abspath(shot)), page.replace(".html", ".png"))
                    png = base64.b64decode(request("GET", s + "/screenshot"))
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(png)
                    print(f"  screenshot: {path}")
                if page == "index.html":
                    m = STATUS_RE.search(status)
                    if not m:
                        failures.append(f"{query}: #status does not end with a done line: {status!r}")
                        continue
                    epoch, _loss, correct, total, got_backend, _adapter = m.groups()
                    if int(epoch) != EPOCHS or int(total) != 50 or int(correct) < minimum:
                        failures.append(f"{query}: epoch {epoch}, {correct}/{total} correct; "
                                        f"want epoch {EPOCHS} and >= {minimum}/50")
                else:
                    m = DIGITS_RE.search(status)
                    if not m:
                        failures.append(f"{page}?{query}: #status does not end with a done line: {status!r}")
                        continue
                    epoch, loss, acc, got_backend, _adapter = m.groups()
                    want_epochs = int(re.search(r"epochs=(\d+)", query).group(1))
                    if int(epoch) != want_epochs or float(acc) < minimum or loss in ("NaN", "Infinity"):
                        failures.append(f"{page}?{query}: epoch {epoch}, loss {loss}, val accuracy "
                                        f"{acc}%; want epoch {want_epochs}, a finite loss and >= {minimum}%")
                if got_backend != backend:
                    failures.append(f"{page}?{query}: ran on {got_backend}, not {backend} ({fallback})")
        finally:
            request("DELETE", s)
    finally:
        driver.terminate()
        driver.wait()
        server.shutdown()
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("e2e: ok")


if __name__ == "__main__":
    main()
