#!/usr/bin/env python3
"""The course's training loop in eager PyTorch on the CPU, for timing against minitorch.

Same model as minitorch's `train` (Linear(2,H) -> ReLU -> Linear(H,H) -> ReLU ->
Linear(H,1) -> sigmoid, weights uniform in [-0.5, 0.5), biases 0.1), same data recipe
(uniform points in the unit square, labelled as minitorch's datasets), same loss
(-log(p + 1e-6) with p = out*y + (out-1)*(y-1), mean over the batch), plain SGD, a fresh
shuffle every epoch. Prints one line: `torch_epoch ms=<median ms per epoch, first epoch
excluded> loss=<last epoch's summed batch loss> threads=<torch threads>`.

    python3 scripts/torch_epoch.py --hidden 1000 --batch 10 --lr 0.05 --epochs 30
"""

import argparse
import time

import torch


def label(kind, x1, x2):
    if kind == "simple":
        return x1 < 0.5
    if kind == "diag":
        return x1 + x2 < 0.5
    if kind == "split":
        return x1 < 0.2 or x1 > 0.8
    if kind == "xor":
        return (x1 < 0.5 and x2 > 0.5) or (x1 > 0.5 and x2 < 0.5)
    if kind == "circle":
        return (x1 - 0.5) ** 2 + (x2 - 0.5) ** 2 > 0.1
    raise SystemExit(f"torch_epoch: unknown dataset {kind!r} (simple, diag, split, xor, circle)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--points", type=int, default=50)
    p.add_argument("--dataset", default="split")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(a.points, 2, generator=g)
    y = torch.tensor([1.0 if label(a.dataset, float(r[0]), float(r[1])) else 0.0 for r in x])

    def linear(i, o):
        w = (torch.rand(i, o, generator=g) - 0.5).requires_grad_(True)
        b = torch.full((o,), 0.1).requires_grad_(True)
        return w, b

    params = [*linear(2, a.hidden), *linear(a.hidden, a.hidden), *linear(a.hidden, 1)]
    w1, b1, w2, b2, w3, b3 = params

    times, loss_sum = [], 0.0
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(a.points, generator=g)
        total = torch.zeros(())
        for s in range(0, a.points, a.batch):
            idx = order[s : s + a.batch]
            xb, yb = x[idx], y[idx]
            n = len(idx)
            h = (xb @ w1 + b1).relu()
            h = (h @ w2 + b2).relu()
            out = (h @ w3 + b3).sigmoid().view(n)
            prob = out * yb + (out - 1.0) * (yb - 1.0)
            loss = -(prob + 1e-6).log()
            (loss / n).sum().backward()
            with torch.no_grad():
                total += loss.sum()
                for q in params:
                    q -= a.lr * q.grad
                    q.grad = None
        loss_sum = float(total)
        times.append(time.perf_counter() - t0)
    rest = sorted(times[1:] or times)
    print(f"torch_epoch ms={rest[len(rest) // 2] * 1e3:.4f} loss={loss_sum:.4f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
