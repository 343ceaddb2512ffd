#!/usr/bin/env python3
"""Interleave minitorch's CPU backend and eager PyTorch on the `mnist` example's networks.

For each configuration and thread count, runs `target/release/examples/mnist` (build it
first: `cargo build --release --example mnist`) and `scripts/torch_mnist.py` one after the
other, `--rounds` times, on the same IDX files with the same settings (no shuffle, dropout
0, so both see the same batches), and prints a markdown table of the median time per epoch
(median over rounds, range in brackets), the ratio minitorch / PyTorch, and both final
validation accuracies. Augmentation is off (`--augment 0`) on both sides: the same batches,
and the network's time, not the host's image shifting. Interleaving keeps both engines under the same machine load.

    python3 scripts/mnist_vs_torch.py --rounds 3          # needs torch (a venv is fine:
                                                          # run this script with its python)
"""

import argparse
import os
import re
import sys

from bench_common import cpu_model, run_and_match

CONFIGS = [
    # (label, model, batch, optimizer, lr, train images)
    ("course, batch 16, 5,000 digits", "course", 16, "sgd", 0.05, 5000),
    ("cnn, batch 64, 5,000 digits", "cnn", 64, "adam", 0.001, 5000),
]

DONE_RE = re.compile(r"Done: val accuracy ([\d.]+)% .*median time per epoch ([\d.]+) (ms|s)")


def run(cmd, env):
    m = run_and_match("mnist_vs_torch", cmd, env, DONE_RE)
    ms = float(m.group(2)) * (1000.0 if m.group(3) == "s" else 1.0)
    return ms, float(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--data", default="data/digits")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--bin", default="target/release/examples/mnist")
    a = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    threads = [int(t) for t in a.threads.split(",")]
    rows = {}
    for r in range(a.rounds):
        for label, model, batch, opt, lr, n in CONFIGS:
            for t in threads:
                env = dict(os.environ, RAYON_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
                common = ["--data", a.data, "--model", model, "--batch", str(batch),
                          "--optimizer", opt, "--lr", str(lr), "--train", str(n), "--val", "1000",
                          "--epochs", str(a.epochs), "--dropout", "0", "--no-shuffle",
                          "--augment", "0"]
                ours = run([a.bin, "--backend", "cpu", *common], env)
                theirs = run([sys.executable, os.path.join(here, "torch_mnist.py"), *common,
                              "--threads", str(t)], env)
                rows.setdefault((label, t), ([], []))
                rows[(label, t)][0].append(ours)
                rows[(label, t)][1].append(theirs)
                print(f"round {r + 1}: {label}, {t} thread(s): minitorch {ours[0]:.0f} ms, "
                      f"torch {theirs[0]:.0f} ms", file=sys.stderr)
    med = lambda v: sorted(v)[len(v) // 2]
    import torch  # only for its version in the header

    print(f"CPU: {cpu_model()}; PyTorch {torch.__version__} (eager); data {a.data}; median ms "
          f"per epoch over {a.rounds} interleaved rounds (range in brackets)\n")
    print("| network | threads | minitorch | eager PyTorch (CPU) | ratio | val accuracy (ours / torch) |")
    print("|---|---|---|---|---|---|")
    for (label, t), (ours, theirs) in rows.items():
        o = [x[0] for x in ours]
        th = [x[0] for x in theirs]
        print(f"| {label} | {t} | {med(o):.0f} ms ({min(o):.0f}-{max(o):.0f}) | {med(th):.0f} ms "
              f"({min(th):.0f}-{max(th):.0f}) | {med(o) / med(th):.2f}x | "
              f"{ours[-1][1]:.1f}% / {theirs[-1][1]:.1f}% |")


if __name__ == "__main__":
    main()
