#!/usr/bin/env bash
# Install NVRTC (the CUDA runtime compiler) of one CUDA major version from PyPI, with no
# GPU, driver or CUDA toolkit needed, and print the directory holding libnvrtc.so.<major>
# on stdout (progress goes to stderr):
#
#   scripts/install-nvrtc.sh [MAJOR]
#
# MAJOR defaults to the driver's CUDA major version when nvidia-smi is there, else 13.
# The NVRTC must not be newer than the driver: code from NVRTC 13 does not load on a CUDA
# 12 driver (Colab's T4 runtime, most clusters), so a CUDA 12 driver needs NVRTC 12.
#   12 -> nvidia-cuda-nvrtc-cu12   (nvidia/cuda_nvrtc/lib/libnvrtc.so.12; sm_50 .. sm_90)
#   13 -> nvidia-cuda-nvrtc>=13,<14 (nvidia/cu13/lib/libnvrtc.so.13; sm_75 .. sm_120)
# Both can be installed side by side. Use it with
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh 12):${LD_LIBRARY_PATH:-}"
#   # or name the library itself:
#   export MINITORCH_NVRTC="$(scripts/install-nvrtc.sh 12)/libnvrtc.so.12"
#
# Environment: PYTHON (default python3), NVRTC_SPEC (overrides the pip requirement),
# NVRTC_PIP_ARGS (extra pip arguments, e.g. --user or --target DIR).
set -euo pipefail

PYTHON="${PYTHON:-python3}"

log() { echo "install-nvrtc: $*" >&2; }

driver_major() {
    command -v nvidia-smi >/dev/null 2>&1 || return 1
    nvidia-smi 2>/dev/null | grep -oE 'CUDA Version: *[0-9]+' | grep -oE '[0-9]+$' | head -n 1
}

MAJOR="${1:-}"
if [[ -z "$MAJOR" ]]; then
    if MAJOR="$(driver_major)" && [[ -n "$MAJOR" ]]; then
        log "the NVIDIA driver supports CUDA $MAJOR: installing NVRTC $MAJOR"
    else
        MAJOR=13
        log "no nvidia-smi: installing NVRTC $MAJOR (pass 12 for a CUDA 12 driver)"
    fi
fi
if ! [[ "$MAJOR" =~ ^[0-9]+$ ]]; then
    log "error: the argument is a CUDA major version such as 12 or 13, not '$MAJOR'"
    exit 2
fi
if ((MAJOR <= 12)); then
    SPEC="${NVRTC_SPEC:-nvidia-cuda-nvrtc-cu${MAJOR}}"
else
    SPEC="${NVRTC_SPEC:-nvidia-cuda-nvrtc>=${MAJOR},<$((MAJOR + 1))}"
fi

find_lib_dir() {
    # Site-packages of this Python (plus any --target dir) searched for
    # nvidia/*/lib/libnvrtc.so.<major>.
    "$PYTHON" - "$MAJOR" "$@" <<'PY'
import glob, os, site, sys, sysconfig
major = sys.argv[1]
roots = list(sys.argv[2:])
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
    hits = sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so." + major)))
    if hits:
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
    log "NVRTC $MAJOR already installed in $dir"
fi
if [[ -z "$dir" ]]; then
    log "error: pip finished but no nvidia/*/lib/libnvrtc.so.$MAJOR was found in $PYTHON's site-packages"
    exit 1
fi
log "libnvrtc: $dir/libnvrtc.so.$MAJOR"
echo "$dir"
