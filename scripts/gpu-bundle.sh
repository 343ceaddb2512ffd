#!/usr/bin/env bash
# Build everything a GPU machine without a Rust toolchain needs to check minitorch, into one
# folder (at most 64 MiB) with a run.sh:
#   - the release test binaries (cargo test --release --all-features --no-run),
#   - the examples (cargo build --release --all-features --examples), if any,
#   - the cuda_matmul benchmark,
#   - cuda/ (the kernel sources, for the NVRTC compile test).
# Symbols are stripped and the binaries gzipped (run.sh unpacks them). Usage:
#
#   scripts/gpu-bundle.sh [OUT_DIR]        # default target/gpu-bundle
#   # copy OUT_DIR to the GPU machine, then there:
#   ./run.sh [RESULTS_DIR]                 # default ./results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/target/gpu-bundle}"
LIMIT_BYTES=$((64 * 1024 * 1024))
cd "$ROOT"

log() { echo "gpu-bundle: $*" >&2; }

# Executables of the given cargo command, as "kind name path" lines, from its JSON messages.
executables() {
    cargo "$@" --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    kind = t["kind"][0]
    if kind in ("custom-build", "proc-macro"):
        continue
    # Test harness binaries are marked by the profile; "cargo test" also builds examples.
    if m.get("profile", {}).get("test"):
        kind = "unit" if kind == "lib" else "test"
    print(kind, t["name"], m["executable"])
'
}

rm -rf "$OUT"
mkdir -p "$OUT/tests" "$OUT/examples" "$OUT/benches"

log "building release test binaries (all features)"
tests="$(executables test --release --all-features --no-run)"
log "building the cuda_matmul benchmark"
benches="$(executables bench --all-features --no-run --bench cuda_matmul)"
examples=""
if compgen -G "examples/*.rs" >/dev/null || compgen -G "examples/*/main.rs" >/dev/null; then
    log "building the examples"
    examples="$(executables build --release --all-features --examples)"
else
    log "no examples/ yet: none bundled"
fi

# The newest glibc symbol version any bundled binary needs (run.sh checks the host's).
glibc_need="2.17"
note_glibc() { # path
    local v
    v="$( { (objdump -T "$1" 2>/dev/null || strings "$1") | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -V | tail -n 1; } || true)"
    if [[ -n "$v" ]]; then glibc_need="$(printf '%s\n%s\n' "$glibc_need" "$v" | sort -V | tail -n 1)"; fi
}
copy() { # dir name path
    local dest="$OUT/$1/$2"
    cp "$3" "$dest"
    note_glibc "$dest"
    if command -v strip >/dev/null; then strip --strip-all "$dest" 2>/dev/null || log "could not strip $dest"; fi
    # Compressed (about 3x) so that everything fits in 64 MiB; run.sh unpacks them.
    gzip -9 -n "$dest"
}
while read -r kind name path; do
    case "${kind:-}" in
        unit) copy tests "unit-$name" "$path" ;; # the library's own #[cfg(test)] tests
        test) copy tests "$name" "$path" ;;
    esac
done <<<"$tests"
while read -r kind name path; do
    [[ -z "${kind:-}" ]] && continue
    copy benches "$name" "$path"
done <<<"$benches"
while read -r kind name path; do
    [[ -z "${kind:-}" || "$kind" != "example" ]] && continue
    copy examples "$name" "$path"
done <<<"$examples"
cp -r cuda "$OUT/cuda"
echo "$glibc_need" >"$OUT/GLIBC_REQUIRED"
log "the binaries need glibc >= $glibc_need"
git -C "$ROOT" rev-parse HEAD >"$OUT/COMMIT" 2>/dev/null || echo unknown >"$OUT/COMMIT"
git -C "$ROOT" status --short >>"$OUT/COMMIT" 2>/dev/null || true

cat >"$OUT/run.sh" <<'RUN'
#!/usr/bin/env bash
# Run minitorch's GPU checks on this machine (no Rust toolchain needed):
#   1. the conformance matrix with cpu and cuda required (and wgpu when a Vulkan driver is
#      present), and every other test binary;
#   2. the train example on cuda for the six datasets (if bundled);
# It finds libcuda on LD_LIBRARY_PATH and the usual places (Colab: /usr/lib64-nvidia), picks
# the NVRTC of the driver's CUDA major version, checks the glibc the binaries need, unpacks
# them next to itself (not in a /tmp that may be noexec) and requires wgpu only when Vulkan
# lists a device.
#   3. the cuda_matmul benchmark (ours vs cuBLAS).
# All output goes to one results folder: ./run.sh [RESULTS_DIR] (default ./results).
# Exit status: the number of failed steps (0 = all passed).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RESULTS="${1:-./results}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"
failed=0

say() { echo "$*" | tee -a "$SUMMARY"; }

# The binaries need this glibc or newer (recorded when the bundle was built).
need="$(cat "$HERE/GLIBC_REQUIRED" 2>/dev/null || echo 2.17)"
have="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')"
[[ -z "$have" ]] && have="$(ldd --version 2>/dev/null | head -n 1 | grep -oE '[0-9]+\.[0-9]+$')"
if [[ -n "$have" && "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]]; then
    say "FAIL glibc: the binaries need glibc >= $need but this machine has $have; build the bundle on an older distribution (or in a container of this one)"
    exit 1
fi
say "glibc: need >= $need, have ${have:-unknown}"

# Unpack the gzipped binaries next to this script (a /tmp mounted noexec, as on hardened
# hosts, could not run them), or into the results folder if this one is read-only.
BIN="$HERE/.bin"
if ! mkdir -p "$BIN" 2>/dev/null || ! [[ -w "$BIN" ]]; then
    BIN="$RESULTS/.bin"
    mkdir -p "$BIN"
fi
trap 'rm -rf "$BIN"' EXIT
for f in "$HERE"/tests/*.gz "$HERE"/examples/*.gz "$HERE"/benches/*.gz; do
    [[ -e "$f" ]] || continue
    sub="$BIN/$(basename "$(dirname "$f")")"
    mkdir -p "$sub"
    gunzip -c "$f" >"$sub/$(basename "$f" .gz)" && chmod +x "$sub/$(basename "$f" .gz)"
done
mkdir -p "$BIN/tests" "$BIN/examples" "$BIN/benches"

# --- Find libcuda, libnvrtc and libcublas -------------------------------------------
# Directories that may hold them: the dynamic loader's own, CUDA toolkits (newest first),
# the NVIDIA container runtime's, WSL's, and pip's nvidia-* packages.
candidate_dirs() {
    # The loader's own path first (Colab keeps its driver in /usr/lib64-nvidia there).
    local d
    local -a ld_dirs=()
    IFS=: read -r -a ld_dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in "${ld_dirs[@]}"; do [[ -n "$d" ]] && echo "$d"; done
    ls -d /usr/lib64-nvidia 2>/dev/null
    [[ -n "${CUDA_HOME:-}" ]] && echo "$CUDA_HOME/lib64" && echo "$CUDA_HOME/lib"
    [[ -n "${CUDA_PATH:-}" ]] && echo "$CUDA_PATH/lib64"
    ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib 2>/dev/null
    ls -d /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/*/lib 2>/dev/null | sort -rV
    ls -d /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib 2>/dev/null
    ls -d /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /opt/conda/lib 2>/dev/null
    for py in python3 python; do
        command -v "$py" >/dev/null || continue
        "$py" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = []
try: roots += site.getsitepackages()
except Exception: pass
try: roots.append(site.getusersitepackages())
except Exception: pass
roots += [p for p in sys.path if p.endswith("-packages")]
seen = set()
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")), reverse=True):
        if d not in seen:
            seen.add(d); print(d)
PY
    done
    ls -d /usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3/dist-packages/nvidia/*/lib 2>/dev/null
}
# The first directory holding one of the given file names (loader cache first).
find_lib() {
    local n d
    for n in "$@"; do
        d="$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1 == n { print $NF; exit }')"
        if [[ -n "$d" ]]; then dirname "$d"; return 0; fi
    done
    while read -r d; do
        [[ -d "$d" ]] || continue
        for n in "$@"; do
            if [[ -e "$d/$n" ]]; then echo "$d"; return 0; fi
        done
    done < <(candidate_dirs)
    return 1
}

libdirs=()
cuda_dir="$(find_lib libcuda.so.1 libcuda.so)" && libdirs+=("$cuda_dir")
# NVRTC and cuBLAS of the driver's CUDA major version: code from a newer NVRTC does not
# load (see scripts/install-nvrtc.sh), so the library is picked by the driver.
driver_major="$(nvidia-smi 2>/dev/null | grep -oE 'CUDA Version: *[0-9]+' | grep -oE '[0-9]+$' | head -n 1)"
driver_major="${driver_major:-13}"
nvrtc_dir="$(find_lib "libnvrtc.so.$driver_major")" && libdirs+=("$nvrtc_dir")
if [[ -n "${nvrtc_dir:-}" ]]; then
    export MINITORCH_NVRTC="$nvrtc_dir/libnvrtc.so.$driver_major"
    export "MINITORCH_NVRTC$driver_major=$MINITORCH_NVRTC"
fi
cublas_dir="$(find_lib "libcublas.so.$driver_major" libcublas.so)" && libdirs+=("$cublas_dir")
if ((driver_major <= 12)); then nvrtc_pkg="nvidia-cuda-nvrtc-cu$driver_major"; else nvrtc_pkg="nvidia-cuda-nvrtc>=$driver_major,<$((driver_major + 1))"; fi
extra="$(printf '%s:' "${libdirs[@]}" | awk -v RS=: '!seen[$0]++ && length($0)' | paste -sd: -)"
export LD_LIBRARY_PATH="${extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# wgpu is required only when Vulkan answers: the loader, a driver manifest, and (where
# vulkaninfo is installed) a device it can list.
required="cpu,cuda"
vulkan=""
if compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null || compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
    if ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
        icds="$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')"
        if ! command -v vulkaninfo >/dev/null; then
            required="cpu,cuda,wgpu"
            vulkan="yes, not probed: no vulkaninfo ($icds)"
        elif timeout 60 vulkaninfo --summary 2>/dev/null | grep -q 'deviceName'; then
            required="cpu,cuda,wgpu"
            vulkan="yes: $(timeout 60 vulkaninfo --summary 2>/dev/null | grep 'deviceName' | sed 's/.*= *//' | paste -sd, -)"
        else
            vulkan="manifests present but vulkaninfo lists no device ($icds): wgpu not required"
        fi
    fi
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    echo "bundle: $(head -n 1 "$HERE/COMMIT" 2>/dev/null)"
    echo "libcuda: ${cuda_dir:-NOT FOUND}"
    echo "driver CUDA major: $driver_major"
    echo "libnvrtc: ${MINITORCH_NVRTC:-NOT FOUND (libnvrtc.so.$driver_major)}"
    echo "libcublas: ${cublas_dir:-NOT FOUND (the benchmark times our kernel only)}"
    echo "vulkan driver: ${vulkan:-none (wgpu not required)}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "MINITORCH_REQUIRE_BACKENDS=$required"
    echo
    if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1; else echo "nvidia-smi: not found"; fi
} >"$RESULTS/environment.txt"
say "environment: $(grep -E '^(libcuda|libnvrtc|libcublas|vulkan driver)' "$RESULTS/environment.txt" | tr '\n' ';')"
[[ -z "${cuda_dir:-}" ]] && say "cuda: MISSING: no libcuda (NVIDIA driver) found; the cuda steps will fail"
[[ -z "${nvrtc_dir:-}" ]] && say "cuda: MISSING: no libnvrtc.so.$driver_major for this CUDA $driver_major driver (install it: python3 -m pip install '$nvrtc_pkg', then rerun; or a CUDA $driver_major toolkit)"

# step NAME LOGFILE TIMEOUT_S COMMAND...: run, log, record pass/fail.
step() {
    local name="$1" logf="$2" limit="$3"
    shift 3
    local start end rc
    start=$(date +%s)
    if command -v timeout >/dev/null; then
        timeout "$limit" "$@" >"$logf" 2>&1
    else
        "$@" >"$logf" 2>&1
    fi
    rc=$?
    end=$(date +%s)
    if [[ $rc -eq 0 ]]; then
        say "PASS $name ($((end - start)) s) -> ${logf#"$RESULTS"/}"
    else
        say "FAIL $name (exit $rc, $((end - start)) s) -> ${logf#"$RESULTS"/}"
        failed=$((failed + 1))
    fi
    grep -h "SKIPPED" "$logf" 2>/dev/null | sort -u | head -n 5 | sed 's/^/    /' | tee -a "$SUMMARY"
}

# --- 1. Tests -------------------------------------------------------------------------
mkdir -p "$RESULTS/tests"
export MINITORCH_REQUIRE_BACKENDS="$required"
# The compile test needs the NVRTC of this driver; the other major version is optional.
export MINITORCH_REQUIRE_NVRTC="$driver_major"
export MINITORCH_CUDA_DIR="$HERE/cuda"
if [[ -x "$BIN/tests/conformance" ]]; then
    step "conformance (required: $required)" "$RESULTS/tests/conformance.log" 900 "$BIN/tests/conformance" --nocapture
else
    say "FAIL conformance: no tests/conformance binary in the bundle"
    failed=$((failed + 1))
fi
for t in "$BIN"/tests/*; do
    [[ -x "$t" ]] || continue
    name="$(basename "$t")"
    [[ "$name" == "conformance" ]] && continue
    # tests/examples.rs builds the examples with cargo in the source tree, which a bundle
    # does not have (the examples themselves run below).
    if [[ "$name" == "examples" ]]; then
        say "skip test examples (it runs cargo in the source tree)"
        continue
    fi
    step "test $name" "$RESULTS/tests/$name.log" 900 "$t" --nocapture
done

# --- 2. Training on cuda --------------------------------------------------------------
if [[ -x "$BIN/examples/train" ]]; then
    mkdir -p "$RESULTS/train"
    for ds in simple diag split xor circle spiral; do
        step "train --backend cuda --dataset $ds" "$RESULTS/train/$ds.log" 900 \
            "$BIN/examples/train" --backend cuda --dataset "$ds" --plot "$RESULTS/train/$ds.svg"
    done
else
    say "train example not in the bundle: skipped"
fi

# --- 3. Benchmark ---------------------------------------------------------------------
if [[ -x "$BIN/benches/cuda_matmul" ]]; then
    step "bench cuda_matmul" "$RESULTS/bench-cuda_matmul.log" 900 "$BIN/benches/cuda_matmul"
    sed 's/^/    /' "$RESULTS/bench-cuda_matmul.log" | tee -a "$SUMMARY" >/dev/null
else
    say "FAIL bench: no benches/cuda_matmul binary in the bundle"
    failed=$((failed + 1))
fi

say "failed steps: $failed (results in $RESULTS)"
exit "$failed"
RUN
chmod +x "$OUT/run.sh"

size=$(du -sb "$OUT" | cut -f1)
log "bundle: $OUT, $((size / 1024 / 1024)) MiB"
ls -la "$OUT"/tests "$OUT"/benches "$OUT"/examples >&2
if ((size > LIMIT_BYTES)); then
    log "error: the bundle is $size bytes, over the 64 MiB limit"
    exit 1
fi
echo "$OUT"
