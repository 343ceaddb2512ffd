#!/usr/bin/env bash
# minitorch in the browser (web/):
#   scripts/web.sh build DIR     write the site (the playground index.html + app.js, the digits page
#                                digits.html + digits.js with data/, pkg/ with the wasm) to DIR
#   scripts/web.sh serve [PORT]  build it into <target dir>/web-site and serve it on 127.0.0.1:PORT (8000)
#   scripts/web.sh test          the browser tests: wasm-bindgen-test in headless Chromium
#                                (web/tests/browser.rs), then the built site end to end
#                                (scripts/web_e2e.py; screenshots to docs/img/playground.png and
#                                docs/img/digits.png)
#   scripts/web.sh lock-version  the wasm-bindgen version in Cargo.lock (the CLI must match)
#   scripts/web.sh target-dir    cargo's target directory (CARGO_TARGET_DIR or the config's)
# Needs the wasm32-unknown-unknown target, wasm-bindgen-cli at Cargo.lock's wasm-bindgen
# version, python3, and for `test` chromium and chromium-driver. Missing ones are errors
# that say how to install them (.ci/run installs them all).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-unknown-unknown

# Cargo's target directory as cargo itself reports it: CARGO_TARGET_DIR, .cargo/config.toml's
# build.target-dir, or the workspace's target/.
target_dir() {
    cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' ||
        die "cargo metadata failed: cannot find cargo's target directory"
}

die() {
    echo "web.sh: $*" >&2
    exit 1
}

# The wasm-bindgen version Cargo.lock resolves: the CLI must match it exactly.
lock_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

check_tools() {
    [[ -d "$(rustc --print sysroot)/lib/rustlib/$TARGET" ]] ||
        die "the $TARGET target is not installed: rustup target add $TARGET"
    local want have
    want=$(lock_version)
    command -v wasm-bindgen >/dev/null ||
        die "wasm-bindgen not found: cargo install wasm-bindgen-cli --version $want"
    have=$(wasm-bindgen --version | awk '{ print $2 }')
    [[ "$have" == "$want" ]] ||
        die "wasm-bindgen $have installed, Cargo.lock has $want: cargo install wasm-bindgen-cli --version $want --force"
    command -v python3 >/dev/null || die "python3 not found (it serves the site and drives the e2e test)"
}

build() {
    local dir=${1:?usage: scripts/web.sh build DIR}
    check_tools
    cargo build --release -p minitorch-web --target "$TARGET"
    mkdir -p "$dir"
    wasm-bindgen --target web --no-typescript --out-dir "$dir/pkg" \
        "$(target_dir)/$TARGET/release/minitorch_web.wasm"
    cp web/site/index.html web/site/app.js web/site/common.js web/site/digits.html web/site/digits.js "$dir/"
    # The digits page's data: all 10,000 digits when scripts/get-data.sh has run, else the
    # checked-in sample (IDX, gzip-compressed; the page decodes them in wasm).
    local digits=samples/digits
    [[ -f data/digits/train-images-idx3-ubyte.gz ]] && digits=data/digits
    mkdir -p "$dir/data"
    cp "$digits"/*-ubyte.gz "$dir/data/"
    echo "site written to $dir (digits from $digits)"
}

serve() {
    local port=${1:-8000}
    local site
    site="$(target_dir)/web-site"
    build "$site"
    echo "serving http://127.0.0.1:$port/ (try http://127.0.0.1:$port/?dataset=xor&backend=webgpu&hidden=100&lr=0.05&epochs=300&autostart=1)"
    exec python3 -m http.server --bind 127.0.0.1 --directory "$site" "$port"
}

run_tests() {
    check_tools
    export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
    [[ -x "$CHROMEDRIVER" ]] || die "no chromedriver at $CHROMEDRIVER: apt-get install chromium chromium-driver"
    [[ -x /usr/bin/chromium ]] || die "no /usr/bin/chromium: apt-get install chromium chromium-driver"
    echo "== the crate builds for $TARGET without the wgpu feature too (CPU only)"
    cargo check --release -p minitorch --lib --target "$TARGET"
    echo "== browser tests (wasm-bindgen-test, headless $(/usr/bin/chromium --version 2>/dev/null))"
    (
        cd web
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/webdriver.json" \
            WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900} \
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
            cargo test --release --target "$TARGET"
    )
    echo "== the built site, end to end"
    local site
    site="$(target_dir)/web-site"
    build "$site"
    python3 scripts/web_e2e.py "$site" docs/img/playground.png
}

case "${1:-}" in
build) build "${2:-}" ;;
serve) serve "${2:-}" ;;
test) run_tests ;;
lock-version) lock_version ;;
target-dir) target_dir ;;
*) die "usage: scripts/web.sh build DIR | serve [PORT] | test | lock-version | target-dir" ;;
esac
