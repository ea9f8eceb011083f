"""Train the pinned classifier of benchmarks/mnist_quality.py: how benchmarks/mnist_classifier.pt
was made.

The classifier is fixed, as the Fréchet distance's feature network is, so that its scores mean
the same on every machine: mnist_quality.py only loads it. (Two trainings of one recipe, seeded
alike, came out 97.3% and 97.5% accurate and scored one model 0.642 and 0.708 confident.)

    python benchmarks/train_mnist_classifier.py --data-dir data/mnist   # writes mnist_classifier.pt

Network: mnist_quality.make_classifier, three 3x3 conv layers (16, 32, 64 channels) each with
ReLU and 2x2 max pooling, a 128-unit penultimate layer (the Fréchet distance's features), 10
logits; 98,442 parameters, 0.39 MB in float32.

The committed file: seed 0, 40 epochs of Adam (lr 1e-3, cosine decay to 0, batch 128) on the
10,000-image MNIST training subset (train-images-idx3-ubyte.gz MD5 43739199073b2be19af6acb7a7b1f1ac),
each image shifted by its own random -2..2 pixels along each axis every epoch (zeros fill in);
test accuracy 0.9880 on the full 10,000-image test set (0.9956 on its training images), trained
in 3.7 min on one CPU thread:

    OMP_NUM_THREADS=1 python benchmarks/train_mnist_classifier.py --data-dir /path/to/that/subset
"""
import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from mnist_ncsn import UserError, load_mnist  # noqa: E402
from mnist_quality import CLASSIFIER, make_classifier, predict  # noqa: E402


def shift(x, max_shift):
    """Move each image (N, 1, s, s) by its own random offset of up to max_shift pixels along
    each axis; the pixels moved in are zeros."""
    n, s = len(x), x.shape[-1]
    padded = F.pad(x, [max_shift] * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1))
    rows, cols = torch.arange(s) + dy, torch.arange(s) + dx  # (n, s) each
    return padded[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def train(net, x, y, epochs, batch_size, lr, max_shift):
    """Adam on the cross-entropy of shifted images, the learning rate decayed to 0 by a cosine."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        net.train()
        total, right = 0.0, 0
        for idx in torch.randperm(len(x)).split(batch_size):
            logits = net(shift(x[idx], max_shift))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            right += (logits.argmax(1) == y[idx]).sum().item()
        left = (time.time() - t0) / epoch * (epochs - epoch)
        print(f"epoch {epoch:>3}/{epochs} | loss {total / len(x):.4f} | train accuracy "
              f"(shifted) {right / len(x):.4f} | {left:.0f} s left", flush=True)
    return net.eval()


def main(argv=None):
    """Train, measure on the test set, write the weights with their test accuracy."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--data-dir", default="data/mnist",
                   help="folder with the MNIST .gz files (default: data/mnist)")
    p.add_argument("--out", default=str(CLASSIFIER),
                   help="where to write the weights (default: benchmarks/mnist_classifier.pt)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate (default: 1e-3)")
    p.add_argument("--max-shift", type=int, default=2,
                   help="largest random shift in pixels along each axis (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = p.parse_args(argv)
    for name in ["epochs", "batch_size"]:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.lr < math.inf or not 0 <= args.max_shift < 14:
        p.error("--lr must be a positive number and --max-shift in 0..13")
    try:
        x, y = load_mnist(args.data_dir, "train")
        x_test, y_test = load_mnist(args.data_dir, "test")
        md5 = hashlib.md5((Path(args.data_dir) / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    except UserError as e:
        sys.exit(f"train_mnist_classifier.py: error: {e}")
    torch.manual_seed(args.seed)
    net = make_classifier()
    print(f"classifier: {sum(q.numel() for q in net.parameters()):,} parameters | "
          f"{len(x):,} training images ({md5}) | {args.epochs} epochs", flush=True)
    t0 = time.time()
    train(net, x, y, args.epochs, args.batch_size, args.lr, args.max_shift)
    minutes = (time.time() - t0) / 60
    acc = (predict(net, x_test, "cpu").argmax(1) == y_test).float().mean().item()
    print(f"trained in {minutes:.1f} min | test accuracy {acc:.4f} on {len(x_test):,} images")
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"net": net.state_dict(), "test_acc": acc, "train_images_md5": md5,
                    "n_train": len(x), "settings": {k: v for k, v in vars(args).items()
                                                     if k not in ("data_dir", "out")}}, args.out)
    except OSError as e:
        sys.exit(f"train_mnist_classifier.py: error: cannot write {args.out} ({e.strerror or e})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
