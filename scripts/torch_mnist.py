#!/usr/bin/env python3
"""The `mnist` example's networks in eager PyTorch, on the same IDX files: the reference
that docs/results.md compares minitorch's accuracy and time per epoch with.

    /path/to/venv/bin/python scripts/torch_mnist.py --data data/digits --model course \
        --epochs 1 --batch 16 --train 5000 --val 1000 --threads 1 --no-shuffle

Prints `Epoch N | loss L | train acc A% | val acc V% | time per epoch T ms` like the example
(L: the sum over the epoch's batches of each batch's mean loss) and a final `Done:` line.
Needs torch (CPU is enough; `safetensors` for --save/--load); reads IDX files gzip-compressed
or not. `--save`/`--load` use the state_dict's names, the same as the example's, so a model
trained on either side evaluates on the other (`--epochs 0 --load F`). `--augment` and
`--schedule` are the example's (random whole-pixel shifts of the training images, zero fill,
on by default for cnn on the digits; cosine decay of the learning rate per epoch): the same distribution
and rates, with PyTorch's own random draws.
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                raw = f.read()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
            if zero != 0 or dtype != 8:
                sys.exit(f"{p}: not an unsigned-byte IDX file")
            dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
            return dims, raw[4 + 4 * ndim :]
    sys.exit(f"{path}: not found (nor .gz)")


def load(data, prefix, n, torch):
    dims, pix = read_idx(os.path.join(data, f"{prefix}-images-idx3-ubyte"))
    _, lab = read_idx(os.path.join(data, f"{prefix}-labels-idx1-ubyte"))
    n = min(n, dims[0])
    x = torch.frombuffer(bytearray(pix[: n * dims[1] * dims[2]]), dtype=torch.uint8)
    x = x.float().div(255.0).reshape(n, 1, dims[1], dims[2])
    y = torch.frombuffer(bytearray(lab[:n]), dtype=torch.uint8).long()
    return x, y


def build(model, dropout, torch):
    nn = torch.nn

    class Course(nn.Module):
        # conv 1->4 3x3, relu, conv 4->8 3x3, relu, avgpool 4x4, linear 392->64, relu,
        # dropout, linear 64->10, log_softmax; padding 1 ("same").
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
            self.fc1 = nn.Linear(392, 64)
            self.fc2 = nn.Linear(64, 10)
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            x = nn.functional.avg_pool2d(x, 4).flatten(1)
            x = self.drop(torch.relu(self.fc1(x)))
            return torch.log_softmax(self.fc2(x), dim=1)

    class Cnn(nn.Module):
        # conv 1->32 3x3, relu, maxpool 2, conv 32->64 3x3, relu, maxpool 2,
        # linear 3136->128, relu, dropout, linear 128->10, log_softmax; padding 1.
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.fc1 = nn.Linear(3136, 128)
            self.fc2 = nn.Linear(128, 10)
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
            x = self.drop(torch.relu(self.fc1(x)))
            return torch.log_softmax(self.fc2(x), dim=1)

    return {"course": Course, "cnn": Cnn}[model]()


def shift(x, max_shift, gen, torch):
    """Each image moved by its own random whole-pixel offset (dy, dx), both uniform in
    [-max_shift, max_shift], zero fill: the example's --augment (same distribution, the
    draws come from PyTorch's generator)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    m = max_shift
    d = torch.randint(-m, m + 1, (n, 2), generator=gen)
    padded = torch.nn.functional.pad(x, (m, m, m, m))
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(d.tolist()):
        out[i] = padded[i, :, m - dy : m - dy + h, m - dx : m - dx + w]
    return out


def epoch_lr(lr, schedule, epoch, epochs):
    """The learning rate of epoch `epoch` (from 0) of `epochs`: constant, or cosine decay
    from lr towards 0 (PyTorch's CosineAnnealingLR with T_max = epochs, stepped per epoch)."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return lr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/digits")
    ap.add_argument("--model", choices=["course", "cnn"], default="course")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--train", type=int, default=9000)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--dropout", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--augment", type=int, default=None,
                    help="shift each training image by up to this many pixels (default, as the "
                    "example's: 1 for cnn on the digits (a --data directory named digits), else 0)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--no-shuffle", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    ap.add_argument("--save", help="save the state_dict to this safetensors file")
    ap.add_argument("--load", help="load a state_dict from this safetensors file first")
    ap.add_argument("--dump", help="write the validation images' log-probabilities to this text "
                    "file (one image per line), for tests/mnist.rs's fixture")
    a = ap.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xt, yt = load(a.data, "train", a.train, torch)
    xv, yv = load(a.data, "t10k", a.val, torch)
    net = build(a.model, a.dropout, torch)
    if a.load:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(a.load))
        print(f"loaded parameters from {a.load}")
    lr = a.lr if a.lr is not None else (0.05 if a.optimizer == "sgd" else 1e-3)
    opt = (torch.optim.SGD if a.optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    on_digits = os.path.basename(os.path.normpath(a.data)) == "digits"
    augment = a.augment if a.augment is not None else (1 if a.model == "cnn" and on_digits else 0)
    gen = torch.Generator().manual_seed(a.seed)
    print(f"pytorch {torch.__version__} on the CPU, {torch.get_num_threads()} threads | model {a.model}, "
          f"{len(yt)} train, {len(yv)} val, batch {a.batch}, lr {lr} ({a.schedule}), {a.optimizer}, "
          f"augment {augment}")
    times = []
    for epoch in range(1, a.epochs + 1):
        net.train()
        for g in opt.param_groups:
            g["lr"] = epoch_lr(lr, a.schedule, epoch - 1, a.epochs)
        order = torch.arange(len(yt)) if a.no_shuffle else torch.randperm(len(yt))
        t0 = time.perf_counter()
        total, correct = 0.0, 0
        for s in range(0, len(yt), a.batch):
            idx = order[s : s + a.batch]
            out = net(shift(xt[idx], augment, gen, torch))
            loss = torch.nn.functional.nll_loss(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            correct += (out.argmax(1) == yt[idx]).sum().item()
        dt = time.perf_counter() - t0
        times.append(dt)
        net.eval()
        with torch.no_grad():
            vc = (net(xv).argmax(1) == yv).sum().item()
        print(f"Epoch {epoch} | loss {total:.6f} | train acc {100 * correct / len(yt):.2f}% | "
              f"val acc {100 * vc / len(yv):.2f}% | time per epoch {dt * 1e3:.0f} ms", flush=True)
    times.sort()
    med = times[len(times) // 2] if times else 0.0
    net.eval()
    with torch.no_grad():
        vc = (net(xv).argmax(1) == yv).sum().item()
    if a.dump:
        with torch.no_grad(), open(a.dump, "w") as f:
            f.write(f"# log-probabilities of the first {len(yv)} images of {a.data}/t10k-*, "
                    f"written by scripts/torch_mnist.py (PyTorch {torch.__version__})\n")
            for row in net(xv).tolist():
                f.write(" ".join(repr(v) for v in row) + "\n")
        print(f"wrote {a.dump}")
    if a.save:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, a.save)
        print(f"saved parameters to {a.save}")
    print(f"Done: val accuracy {100 * vc / len(yv):.2f}% ({vc}/{len(yv)}) | median time per epoch {med * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
