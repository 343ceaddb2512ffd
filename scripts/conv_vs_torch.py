#!/usr/bin/env python3
"""Interleave minitorch's CPU conv2d forward + backward with eager PyTorch (oneDNN).

Shapes (both with padding 1, bias and relu, 3x3 kernels, 28x28 inputs):
- course: batch 16, conv 1->4 then 4->8 (the course's MNIST layers);
- large: batch 64, one conv 32->64, with the input's gradient too.

For each shape and thread count, runs `target/release/examples/conv_time` (build it first:
`cargo build --release --example conv_time`) and the same computation in PyTorch (a
subprocess of this script) one after the other, `--rounds` times, and prints a markdown
table of median ms per iteration and the ratio minitorch / PyTorch.

    /work/torchenv/bin/python scripts/conv_vs_torch.py --rounds 3
"""

import argparse
import os
import sys

from bench_common import cpu_model, run_and_match

TORCH = r"""
import sys, time, torch
import torch.nn.functional as F
shape, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
if shape == "course":
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    layers = [(1, 4), (4, 8)]
else:
    x = (torch.rand(64, 32, 28, 28) * 2 - 1).requires_grad_(True)
    layers = [(32, 64)]
ps = [((torch.rand(co, ci, 3, 3) * 2 - 1).requires_grad_(True), (torch.rand(co) * 2 - 1).requires_grad_(True))
      for ci, co in layers]
times = []
for it in range(iters + 3):
    t0 = time.perf_counter()
    h = x
    for w, b in ps:
        h = F.relu(F.conv2d(h, w, b, padding=1))
    s = h.sum()
    s.backward()
    v = s.item()
    if it >= 3:
        times.append((time.perf_counter() - t0) * 1e3)
    for w, b in ps:
        w.grad = None
        b.grad = None
    x.grad = None
times.sort()
print(f"torch_conv ms={times[len(times) // 2]:.4f} sum={v}")
"""


def run(cmd, env):
    return float(run_and_match("conv_vs_torch", cmd, env, r"ms=([0-9.]+)").group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--bin", default="target/release/examples/conv_time")
    a = p.parse_args()
    configs = [(s, int(th)) for th in a.threads.split(",") for s in ("course", "large")]
    ours = {c: [] for c in configs}
    theirs = {c: [] for c in configs}
    for r in range(a.rounds):
        for shape, th in configs:
            env = dict(os.environ, RAYON_NUM_THREADS=str(th), OMP_NUM_THREADS=str(th))
            o = run([a.bin, "--shape", shape, "--iters", str(a.iters)], env)
            t = run([sys.executable, "-c", TORCH, shape, str(a.iters), str(th)], env)
            ours[(shape, th)].append(o)
            theirs[(shape, th)].append(t)
            print(f"round {r + 1}: {shape}, {th} threads: minitorch {o:.3f} ms, torch {t:.3f} ms",
                  file=sys.stderr)
    med = lambda v: sorted(v)[len(v) // 2]
    rng = lambda v: f"{min(v):.3g}-{max(v):.3g}"
    import torch

    print(f"CPU: {cpu_model()}; PyTorch {torch.__version__} (eager, oneDNN); median ms per "
          f"forward + backward over {a.rounds} interleaved rounds of {a.iters} iterations "
          f"(range in brackets)\n")
    print("| shape | threads | minitorch | eager PyTorch (CPU) | ratio |")
    print("|---|---|---|---|---|")
    for shape, th in configs:
        o, t = med(ours[(shape, th)]), med(theirs[(shape, th)])
        print(f"| {shape} | {th} | {o:.3g} ms ({rng(ours[(shape, th)])}) | "
              f"{t:.3g} ms ({rng(theirs[(shape, th)])}) | {o / t:.2f}x |")


if __name__ == "__main__":
    main()
