#!/usr/bin/env bash
# Install NVRTC (the CUDA runtime compiler) of one CUDA major version from PyPI into a
# virtual environment this script creates, with no GPU, driver or CUDA toolkit needed, and
# print the directory holding libnvrtc.so.<major> on stdout (progress goes to stderr):
#
#   scripts/install-nvrtc.sh [MAJOR]
#
# MAJOR defaults to the driver's CUDA major version when nvidia-smi is there, else 13.
# The NVRTC must not be newer than the driver: code from NVRTC 13 does not load on a CUDA
# 12 driver (Colab's T4 runtime, most clusters), so a CUDA 12 driver needs NVRTC 12.
#   12 -> nvidia-cuda-nvrtc-cu12   (nvidia/cuda_nvrtc/lib/libnvrtc.so.12; sm_50 .. sm_90)
#   13 -> nvidia-cuda-nvrtc>=13,<14 (nvidia/cu13/lib/libnvrtc.so.13; sm_75 .. sm_120)
# Both can be installed side by side (same environment). Use it with
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh 12):${LD_LIBRARY_PATH:-}"
#   # or name the library itself:
#   export MINITORCH_NVRTC="$(scripts/install-nvrtc.sh 12)/libnvrtc.so.12"
#
# The packages go into a virtual environment, never the system Python: a fresh Debian's
# python3 has no pip and refuses installs (PEP 668, "externally managed"). Where
# `python3 -m venv` cannot work (Debian without python3-venv) and apt-get is there, the
# script installs python3-venv (as root, or through sudo).
#
# Environment: PYTHON (the interpreter that creates the environment; default python3),
# NVRTC_VENV (the environment; default ${XDG_CACHE_HOME:-~/.cache}/minitorch/nvrtc-venv),
# NVRTC_SPEC (overrides the pip requirement).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${NVRTC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/minitorch/nvrtc-venv}"

log() { echo "install-nvrtc: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

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

# apt-get as root, or through sudo; nothing else is tried.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || return 1
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

venv_ok() { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }

make_venv() {
    venv_ok && return 0
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_install python3 python3-venv || die "no $PYTHON: install Python 3 (Debian: apt-get install python3 python3-venv)"
    fi
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    log "creating the virtual environment $VENV with $PYTHON"
    if ! "$PYTHON" -m venv "$VENV" >&2 || ! venv_ok; then
        # Debian splits venv's pip bootstrap (ensurepip) into python3-venv (python3.X-venv).
        rm -rf "$VENV"
        local ver
        ver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install python3-venv "python${ver}-venv" || apt_install python3-venv ||
            die "$PYTHON -m venv failed and python3-venv could not be installed (Debian: apt-get install python3-venv)"
        "$PYTHON" -m venv "$VENV" >&2 || die "$PYTHON -m venv $VENV failed"
        venv_ok || die "the virtual environment $VENV has no pip"
    fi
}

find_lib_dir() {
    # The environment's site-packages searched for nvidia/*/lib/libnvrtc.so.<major>.
    "$VENV/bin/python" - "$MAJOR" <<'PY'
import glob, os, sys, sysconfig
major = sys.argv[1]
for root in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
    hits = sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so." + major)))
    if hits:
        print(os.path.dirname(hits[0]))
        break
PY
}

make_venv
dir="$(find_lib_dir || true)"
if [[ -z "$dir" ]]; then
    log "installing $SPEC into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2
    dir="$(find_lib_dir || true)"
else
    log "NVRTC $MAJOR already installed in $dir"
fi
[[ -n "$dir" ]] || die "pip finished but no nvidia/*/lib/libnvrtc.so.$MAJOR was found in $VENV"
log "libnvrtc: $dir/libnvrtc.so.$MAJOR"
echo "$dir"
