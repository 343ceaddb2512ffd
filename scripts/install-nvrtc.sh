#!/usr/bin/env bash
# Install NVRTC (the CUDA runtime compiler, CUDA 13) from PyPI, with no GPU, driver or CUDA
# toolkit needed, and print the directory holding libnvrtc.so* on stdout (progress goes to
# stderr), so CI can run:
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
#   MINITORCH_REQUIRE_NVRTC=1 cargo test --features cuda --test cuda_kernels
#
# cudarc (feature cuda-13000) loads "libnvrtc.so", "libnvrtc.so.13", ... by name; the wheel
# ships nvidia/cu13/lib/libnvrtc.so.13. If a wheel ships only other names, links with the
# expected names are made in target/nvrtc-lib and that directory is printed instead.
# Environment: PYTHON (default python3), NVRTC_SPEC (default "nvidia-cuda-nvrtc>=13,<14"),
# NVRTC_PIP_ARGS (extra pip arguments, e.g. --user or --target DIR).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
SPEC="${NVRTC_SPEC:-nvidia-cuda-nvrtc>=13,<14}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "install-nvrtc: $*" >&2; }

find_lib_dir() {
    # Site-packages of this Python (plus any --target dir) searched for nvidia/*/lib.
    "$PYTHON" - "$@" <<'PY'
import glob, os, site, sys, sysconfig
roots = list(sys.argv[1:])
for getter in (lambda: site.getsitepackages(), lambda: [site.getusersitepackages()]):
    try:
        roots += getter()
    except Exception:
        pass
roots += [sysconfig.get_paths().get("purelib", ""), sysconfig.get_paths().get("platlib", "")]
seen = set()
for root in roots:
    if not root or root in seen:
        continue
    seen.add(root)
    hits = sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so*")))
    hits = [h for h in hits if "builtins" not in os.path.basename(h)]
    if hits:
        # Prefer the newest CUDA major (cu13 over cu12).
        hits.sort(key=lambda p: p.split(os.sep)[-3], reverse=True)
        print(os.path.dirname(hits[0]))
        break
PY
}

target_args=()
target_dir=""
if [[ -n "${NVRTC_PIP_ARGS:-}" ]]; then
    # shellcheck disable=SC2206
    target_args=(${NVRTC_PIP_ARGS})
    for ((i = 0; i < ${#target_args[@]}; i++)); do
        if [[ "${target_args[$i]}" == "--target" ]]; then target_dir="${target_args[$((i + 1))]:-}"; fi
    done
fi

dir="$(find_lib_dir ${target_dir:+"$target_dir"} || true)"
if [[ -z "$dir" ]]; then
    log "installing $SPEC with $PYTHON -m pip"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "${target_args[@]}" "$SPEC" >&2
    dir="$(find_lib_dir ${target_dir:+"$target_dir"} || true)"
else
    log "already installed in $dir"
fi
if [[ -z "$dir" ]]; then
    log "error: pip finished but no nvidia/*/lib/libnvrtc.so* was found in $PYTHON's site-packages"
    exit 1
fi

# The names cudarc tries (cuda-13000): libnvrtc.so, libnvrtc.so.13, .so.12, ... .so.1.
has_name=""
for n in libnvrtc.so libnvrtc.so.13 libnvrtc.so.12 libnvrtc.so.11 libnvrtc.so.10 libnvrtc.so.9 libnvrtc.so.1; do
    [[ -e "$dir/$n" ]] && has_name="$n"
done
if [[ -z "$has_name" ]]; then
    real="$(ls "$dir"/libnvrtc.so.* | grep -v builtins | sort | tail -n 1)"
    links="$ROOT/target/nvrtc-lib"
    mkdir -p "$links"
    ln -sf "$real" "$links/libnvrtc.so"
    major="$(basename "$real" | sed -E 's/^libnvrtc\.so\.([0-9]+).*/\1/')"
    [[ "$major" =~ ^[0-9]+$ ]] && ln -sf "$real" "$links/libnvrtc.so.$major"
    # libnvrtc finds its builtins library next to itself ($ORIGIN): link those too.
    for b in "$dir"/libnvrtc-builtins.so*; do [[ -e "$b" ]] && ln -sf "$b" "$links/"; done
    log "linked $real into $links under the names cudarc loads"
    dir="$links"
fi
log "libnvrtc: $(ls "$dir"/libnvrtc.so* | tr '\n' ' ')"
echo "$dir"
