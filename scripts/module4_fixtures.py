#!/usr/bin/env python3
"""Regenerate tests/fixtures/module4.txt: PyTorch reference values and gradients for
conv1d, conv2d, avg/max pooling, softmax, log_softmax, cross_entropy and a few Adam /
AdamW steps, read by tests/torch_fixtures.rs (the Rust tests need no PyTorch).

Usage: /work/torchenv/bin/python scripts/module4_fixtures.py [OUT]

Format: one tensor per line, `name|shape|values` (shape as comma-separated dims, values
space-separated with 9 significant digits, which round-trips f32). Each op case stores its
inputs, an upstream gradient `g`, the output and the input gradients of sum(out * g).
"""
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
lines = []


def put(name, t):
    t = t.detach().contiguous().float()
    shape = ",".join(str(d) for d in t.shape)
    vals = " ".join("%.9g" % v for v in t.flatten().tolist())
    lines.append(f"{name}|{shape}|{vals}")


def ints(name, vals):
    put(name, torch.tensor(vals, dtype=torch.float32))


def rand(*shape, scale=1.0):
    return (torch.rand(*shape) * 2 - 1) * scale


def run(name, f, inputs, extra=None):
    """Store inputs, g, out = f(*inputs) and the gradients of sum(out * g)."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    out = f(*leaves)
    g = rand(*out.shape)
    (out * g).sum().backward()
    for i, x in enumerate(inputs):
        put(f"{name}.in{i}", x)
    put(f"{name}.g", g)
    put(f"{name}.out", out)
    for i, x in enumerate(leaves):
        put(f"{name}.grad{i}", x.grad)
    if extra:
        for k, v in extra.items():
            ints(f"{name}.{k}", v)


# conv1d: padding (before, after) applied with F.pad so asymmetric cases are PyTorch's too.
for k, (xs, ws, bias, stride, pad) in enumerate([
    ((2, 3, 10), (4, 3, 3), True, 2, (1, 1)),
    ((1, 2, 7), (3, 2, 4), False, 1, (0, 3)),  # the course's padding
]):
    ins = [rand(*xs), rand(*ws)] + ([rand(ws[0])] if bias else [])
    f = lambda x, w, b=None, s=stride, p=pad: F.conv1d(F.pad(x, p), w, b, stride=s)
    run(f"conv1d.{k}", f, ins, {"stride": [stride], "pad": list(pad)})

for k, (xs, ws, bias, stride, pad) in enumerate([
    ((2, 3, 9, 8), (5, 3, 3, 3), True, (1, 1), ((1, 1), (1, 1))),
    ((2, 2, 7, 6), (3, 2, 2, 3), True, (2, 1), ((0, 1), (2, 0))),
    ((1, 1, 5, 5), (2, 1, 5, 5), False, (1, 1), ((0, 0), (0, 0))),
    ((3, 4, 8, 7), (2, 4, 3, 2), True, (2, 3), ((2, 2), (1, 1))),
]):
    ins = [rand(*xs), rand(*ws)] + ([rand(ws[0])] if bias else [])
    # F.pad takes (left, right, top, bottom).
    fp = (pad[1][0], pad[1][1], pad[0][0], pad[0][1])
    f = lambda x, w, b=None, s=stride, p=fp: F.conv2d(F.pad(x, p), w, b, stride=s)
    run(f"conv2d.{k}", f, ins, {"stride": list(stride), "pad": [pad[0][0], pad[0][1], pad[1][0], pad[1][1]]})

run("avgpool2d.0", lambda x: F.avg_pool2d(x, (2, 3)), [rand(2, 3, 4, 6)], {"kernel": [2, 3]})
run("maxpool2d.0", lambda x: F.max_pool2d(x, (2, 2)), [rand(2, 3, 4, 6)], {"kernel": [2, 2]})
# Ties: small integers, so windows hold equal maxima (PyTorch: gradient to the first).
run("maxpool2d.1", lambda x: F.max_pool2d(x, (2, 2)),
    [torch.randint(0, 3, (2, 2, 4, 4)).float()], {"kernel": [2, 2]})

for k, (shape, dim, scale) in enumerate([((3, 5), 1, 1.0), ((4, 3, 2), 0, 10.0), ((2, 3, 4, 4), 2, 3.0)]):
    x = rand(*shape, scale=scale)
    run(f"softmax.{k}", lambda x, d=dim: F.softmax(x, d), [x], {"dim": [dim]})
    run(f"log_softmax.{k}", lambda x, d=dim: F.log_softmax(x, d), [x], {"dim": [dim]})

labels = torch.tensor([0, 4, 2, 2, 1, 3])
for red in ["mean", "sum"]:
    run(f"cross_entropy.{red}", lambda x, r=red: F.cross_entropy(x, labels, reduction=r).reshape(1),
        [rand(6, 5, scale=3.0)], {"labels": labels.tolist()})

# Optimisers: 3 steps from a stored start with stored gradients.
for name, make in [
    ("adam", lambda p: torch.optim.Adam([p], lr=1e-2)),
    ("adam_wd", lambda p: torch.optim.Adam([p], lr=1e-2, weight_decay=0.1)),
    ("adamw", lambda p: torch.optim.AdamW([p], lr=1e-2)),
    ("adamw_betas", lambda p: torch.optim.AdamW([p], lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
]:
    p0 = rand(3, 4)
    p = p0.clone().requires_grad_(True)
    opt = make(p)
    put(f"{name}.p0", p0)
    for s in range(3):
        g = rand(3, 4)
        put(f"{name}.g{s}", g)
        p.grad = g.clone()
        opt.step()
        put(f"{name}.p{s + 1}", p)

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/module4.txt"
with open(out, "w") as fh:
    fh.write(f"# PyTorch {torch.__version__}: regenerate with scripts/module4_fixtures.py\n")
    fh.write("\n".join(lines) + "\n")
print(f"wrote {len(lines)} tensors to {out}")
