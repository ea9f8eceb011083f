"""Sample quality for mnist_ncsn.py: how many samples a small MNIST classifier recognises.

Trains a small CNN on the MNIST training files once (cached outside git in .cache/), then reports,
for a samples.npy (N x 28 x 28 in [0, 1]), the share of images it labels with confidence above 0.9
and the histogram of predicted classes, next to the same figures for the real test images.

    python benchmarks/mnist_quality.py out/mnist/samples.npy --data-dir data/mnist
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_ncsn import UserError, load_mnist  # noqa: E402


def make_classifier():
    """Two conv layers and two linear layers: about 99% test accuracy after a few epochs."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


@torch.no_grad()
def predict(net, images, device):
    """Softmax class probabilities (N, 10) for images (N, 28, 28) or (N, 1, 28, 28)."""
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return torch.cat([F.softmax(net(b.to(device)), 1).cpu() for b in x.split(1000)])


def get_classifier(data_dir, cache, device, epochs=8, seed=0):
    """The cached classifier, or train one on the training files and cache it."""
    net = make_classifier().to(device)
    if cache.exists():
        state = torch.load(cache, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        print(f"classifier from {cache} (test accuracy {state['test_acc']:.4f})")
        return net.eval()
    torch.manual_seed(seed)
    x, y = (t.to(device) for t in load_mnist(data_dir, "train"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), device=device)
        for idx in perm.split(128):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt, yt = load_mnist(data_dir, "test")
    acc = (predict(net, xt, device).argmax(1) == yt).float().mean().item()
    print(f"trained classifier on {len(x):,} images in {time.time() - t0:.0f} s, "
          f"test accuracy {acc:.4f}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"net": net.state_dict(), "test_acc": acc}, cache)
    return net


def quality(probs, threshold=0.9):
    """Share of images with max probability above threshold, and the predicted-class shares."""
    confident = (probs.max(1).values > threshold).float().mean().item()
    hist = torch.bincount(probs.argmax(1), minlength=10).float() / len(probs)
    return confident, hist


def main():
    """Print the confident share and class histogram of samples next to real test images."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("samples", help="samples.npy written by mnist_ncsn.py")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files [data/mnist]")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "mnist_classifier.pt"),
                   help="where the trained classifier is kept [.cache/mnist_classifier.pt]")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto = CUDA when present [auto]")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    try:
        samples = np.load(args.samples)
    except (OSError, ValueError) as e:
        sys.exit(f"mnist_quality.py: error: cannot read {args.samples} ({e})")
    if samples.ndim != 3 or samples.shape[1:] != (28, 28):
        sys.exit(f"mnist_quality.py: error: {args.samples} has shape {samples.shape}, "
                 f"expected N x 28 x 28")
    try:
        net = get_classifier(Path(args.data_dir), Path(args.cache), device)
        real = load_mnist(args.data_dir, "test")[0]
    except UserError as e:
        sys.exit(f"mnist_quality.py: error: {e}")
    rows = [(f"samples ({len(samples):,})", *quality(predict(net, samples, device))),
            (f"real test ({len(real):,})", *quality(predict(net, real, device)))]
    print(f"{'':18} confident>0.9 | " + " ".join(f"{c:>5}" for c in range(10)))
    for name, conf, hist in rows:
        print(f"{name:18} {conf:13.3f} | " + " ".join(f"{h:5.3f}" for h in hist.tolist()))


if __name__ == "__main__":
    main()
