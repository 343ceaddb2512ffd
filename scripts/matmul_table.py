#!/usr/bin/env python3
"""Turn the `matmul_shapes` criterion results into the ratio table of issue 13.

Run `cargo bench --bench ops -- matmul_shapes` first; this reads
target/criterion/matmul_shapes/{minitorch,gemm_crate_2_threads}/<shape>/new/estimates.json
and prints, per shape, both median times and minitorch's throughput as a fraction of the
gemm crate's (>= 1 means minitorch is at least as fast).
"""

import glob
import json
import os
import sys


def medians(root, func):
    out = {}
    for path in glob.glob(os.path.join(root, func, "*", "new", "estimates.json")):
        shape = path.split(os.sep)[-3]
        with open(path) as f:
            out[shape] = json.load(f)["median"]["point_estimate"]
    return out


def fmt(ns):
    return f"{ns / 1e3:.1f} us" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion/matmul_shapes"
    ours, ref = medians(root, "minitorch"), medians(root, "gemm_crate_2_threads")
    if not ours:
        sys.exit(f"matmul_table: no results under {root}; run cargo bench --bench ops -- matmul_shapes")
    print("| shape (A @ B, T = stored transposed) | minitorch | gemm crate (2 threads) | throughput vs gemm |")
    print("|---|---|---|---|")
    worst = None
    for shape in sorted(ours, key=lambda s: (len(s), s)):
        if shape not in ref:
            continue
        r = ref[shape] / ours[shape]
        worst = r if worst is None else min(worst, r)
        print(f"| {shape} | {fmt(ours[shape])} | {fmt(ref[shape])} | {r:.2f}x |")
    print(f"\nworst shape: {worst:.2f}x the gemm crate's throughput")


if __name__ == "__main__":
    main()
