#!/usr/bin/env python3
"""Interleave minitorch's CPU backend and eager PyTorch on the course's training loop.

For each configuration, runs `target/release/examples/epoch_time` (build it first with
`cargo build --release --example epoch_time`) and `scripts/torch_epoch.py` one after the
other, `--rounds` times, both on 2 threads, and prints a markdown table of the median
time per epoch (the median over rounds of each run's median, with the range over rounds)
and the ratio minitorch / PyTorch. Interleaving keeps both engines under the same machine
load, so the ratio means something even on a shared machine.

    python3 scripts/cpu_vs_torch.py --rounds 3
"""

import argparse
import os
import sys

from bench_common import cpu_model, run_and_match

CONFIGS = [
    # (label, hidden, batch, lr, epochs)
    ("100, 10 (course size)", 100, 10, 0.05, 100),
    ("1000, 50 (full batch, lr 0.001, converging)", 1000, 50, 0.001, 20),
    ("1000, 10 (lr 0.05, saturates)", 1000, 10, 0.05, 20),
    ("1000, 10 (lr 0.001, converging)", 1000, 10, 0.001, 20),
]


def run(cmd, env):
    m = run_and_match("cpu_vs_torch", cmd, env, r"ms=([0-9.]+) loss=([-0-9.naninf]+)")
    return float(m.group(1)), m.group(2)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dataset", default="split")
    p.add_argument("--bin", default="target/release/examples/epoch_time")
    a = p.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    here = os.path.dirname(os.path.abspath(__file__))
    ours = {c[0]: [] for c in CONFIGS}
    theirs = {c[0]: [] for c in CONFIGS}
    losses = {}
    for r in range(a.rounds):
        for label, hidden, batch, lr, epochs in CONFIGS:
            args = ["--hidden", str(hidden), "--batch", str(batch), "--lr", str(lr),
                    "--epochs", str(epochs), "--dataset", a.dataset]
            t_ours, l_ours = run([a.bin, *args], env)
            t_torch, l_torch = run([sys.executable, os.path.join(here, "torch_epoch.py"), *args,
                                    "--threads", str(a.threads)], env)
            ours[label].append(t_ours)
            theirs[label].append(t_torch)
            losses[label] = (l_ours, l_torch)
            print(f"round {r + 1}: {label}: minitorch {t_ours:.3f} ms, torch {t_torch:.3f} ms",
                  file=sys.stderr)
    med = lambda v: sorted(v)[len(v) // 2]
    rng = lambda v: f"{min(v):.3g}-{max(v):.3g}"
    import torch  # only for its version in the header

    print(f"CPU: {cpu_model()}, {a.threads} threads; PyTorch {torch.__version__} (eager); "
          f"dataset {a.dataset}, 50 points; median ms per epoch over {a.rounds} interleaved rounds "
          f"(range in brackets)\n")
    print("| hidden, batch | minitorch | eager PyTorch (CPU) | ratio | last loss (ours / torch) |")
    print("|---|---|---|---|---|")
    for label, *_ in CONFIGS:
        o, t = med(ours[label]), med(theirs[label])
        print(f"| {label} | {o:.3g} ms ({rng(ours[label])}) | {t:.3g} ms ({rng(theirs[label])}) "
              f"| {o / t:.2f}x | {losses[label][0]} / {losses[label][1]} |")


if __name__ == "__main__":
    main()
