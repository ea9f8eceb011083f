"""Sample quality for mnist_ncsn.py, measured with a small, pinned MNIST classifier.

The classifier's weights are committed (benchmarks/mnist_classifier.pt, 98.8% test accuracy,
made by benchmarks/train_mnist_classifier.py) and only loaded here, never trained: as the
Fréchet distance's feature network is fixed, so its numbers mean the same on every machine.
A classifier trained anew on each machine would not: two trainings of one recipe, seeded alike
(97.3% and 97.5% accurate), scored one model 0.642 and 0.708 confident. It reports

- for samples (samples.npy, N x 28 x 28 in [0, 1]): the share of images it labels with confidence
  above 0.9, the histogram of predicted classes, and the Fréchet distance between the classifier's
  penultimate features of the samples and of the test set (an "FID on MNIST features"), next to
  the same figures for N real training images: the floor, since the distance grows as N shrinks;
- for inpainting (inpaint.npz): the share of completions labelled as the original digit, next to
  the same share for the occluded input alone (zeros in the hidden part) and for the original,
  and how often the completions of one input disagree.

    python benchmarks/mnist_quality.py out/mnist/samples.npy --data-dir data/mnist
    python benchmarks/mnist_quality.py out/mnist/inpaint.npz --data-dir data/mnist

benchmarks/mnist_seeds.py runs mnist_ncsn.py over several seeds and scores each this way.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_ncsn import UserError, load_mnist  # noqa: E402


CLASSIFIER = Path(__file__).resolve().parent / "mnist_classifier.pt"  # committed: the pinned one


def make_classifier():
    """Three conv layers with pooling, then the 128 penultimate features (those the Fréchet
    distance compares) and 10 logits: 98,442 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 14 x 14
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 7 x 7
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 3 x 3
        nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.ReLU(), nn.Linear(128, 10))


@torch.no_grad()
def predict(net, images, device, features=False):
    """Softmax class probabilities (N, 10) for images (N, 28, 28) or (N, 1, 28, 28); with
    features, the 128 penultimate activations (N, 128) instead."""
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)
    head = net[:-1] if features else net
    return torch.cat([(head(b.to(device)) if features else F.softmax(net(b.to(device)), 1)).cpu()
                      for b in x.split(1000)])


def load_classifier(path, device, data_dir="data/mnist"):
    """The pinned classifier from path, never retrained here: a missing or unreadable file is a
    UserError that names the command rebuilding it."""
    path = Path(path)
    rebuild = ("rebuild it with: python benchmarks/train_mnist_classifier.py --data-dir "
               f"{data_dir}" + ("" if path.resolve() == CLASSIFIER else f" --out {path}"))
    if not path.is_file():
        raise UserError(f"no classifier at {path}; {rebuild}")
    net = make_classifier()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        test_acc = float(state["test_acc"])
    except Exception as e:  # truncated, not a torch file, another architecture, no "net" key
        why = " ".join(f"{type(e).__name__}: {e}".split())[:120]
        raise UserError(f"{path}: not a readable classifier ({why}); {rebuild}") from None
    print(f"classifier {path.name} (test accuracy {test_acc:.4f})")
    return net.to(device).eval()


def quality(probs, threshold=0.9):
    """Share of images with max probability above threshold, and the predicted-class shares."""
    confident = (probs.max(1).values > threshold).float().mean().item()
    hist = torch.bincount(probs.argmax(1), minlength=10).float() / len(probs)
    return confident, hist


def frechet_distance(a, b):
    """Fréchet distance between Gaussians fitted to feature sets a (N, d) and b (M, d), as in FID:
    ‖μ_a − μ_b‖² + tr(C_a + C_b − 2 (C_a^½ C_b C_a^½)^½).

    The matrix square roots come from eigendecompositions of symmetric positive semi-definite
    matrices (no scipy): C_a^½ C_b C_a^½ is symmetric, so tr of its root is Σ √λ.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    c_a, c_b = torch.cov(a.T), torch.cov(b.T)
    lam, vec = torch.linalg.eigh(c_a)
    root_a = vec @ torch.diag(lam.clamp(min=0).sqrt()) @ vec.T
    middle = root_a @ c_b @ root_a
    tr_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).square().sum() + c_a.trace() + c_b.trace() - 2 * tr_root).item()


def report_samples(net, samples, data_dir, device):
    """Confident share, class histogram and Fréchet distance of samples, next to real images."""
    real_test = load_mnist(data_dir, "test")[0]
    real_train = load_mnist(data_dir, "train")[0][:len(samples)]
    test_features = predict(net, real_test, device, features=True)
    rows = [(f"samples ({len(samples):,})", samples),
            (f"real train ({len(real_train):,})", real_train)]
    print(f"{'':20} confident>0.9 | " + " ".join(f"{c:>5}" for c in range(10))
          + f" | Fréchet distance to the {len(real_test):,} test images")
    for name, images in rows + [(f"real test ({len(real_test):,})", real_test)]:
        conf, hist = quality(predict(net, images, device))
        fd = (f"{frechet_distance(predict(net, images, device, features=True), test_features):.2f}"
              if images is not real_test else "")
        print(f"{name:20} {conf:13.3f} | " + " ".join(f"{h:5.3f}" for h in hist.tolist())
              + f" | {fd}")
    if len(real_train) < len(samples):
        print(f"(only {len(real_train):,} training images: the floor is at a smaller N)")


def report_inpaint(net, f, device):
    """How often the classifier finds the original digit in completions, inputs and originals,
    and how often the completions of one input disagree."""
    originals, labels, mask, completions = f["originals"], f["labels"], f["mask"], f["completions"]
    n, k = completions.shape[:2]
    labels = torch.as_tensor(labels)
    pred = predict(net, completions.reshape(n * k, 28, 28), device).argmax(1).reshape(n, k)
    occluded = predict(net, originals * mask, device).argmax(1)
    original = predict(net, originals, device).argmax(1)
    distinct = torch.tensor([len(set(row)) for row in pred.tolist()])
    print(f"{n} digits, {k} completions each, {int((~mask).sum())} of 784 pixels hidden")
    right = (pred == labels[:, None]).float().mean()
    print(f"labelled as the original digit: completions {right:.3f}"
          f" | occluded input (zeros) {(occluded == labels).float().mean():.3f}"
          f" | original {(original == labels).float().mean():.3f}")
    print(f"completions of one input with more than one label: {(distinct > 1).float().mean():.3f} "
          f"of the inputs (mean {distinct.float().mean():.2f} labels per input)")


def main(argv=None):
    """Read samples.npy or inpaint.npz and print its measures; errors are one line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="samples.npy or inpaint.npz written by mnist_ncsn.py")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--classifier", default=str(CLASSIFIER),
                   help="the classifier's weights (default: benchmarks/mnist_classifier.pt, the "
                   "pinned one that the measurements in the docs use)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto = CUDA when present (default: auto)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    try:
        f = np.load(args.file)
        if args.file.endswith(".npz"):
            missing = {"originals", "labels", "mask", "completions"} - set(f.files)
            if missing:
                raise ValueError(f"no {', '.join(sorted(missing))}: not an inpaint.npz")
        elif f.ndim != 3 or f.shape[1:] != (28, 28):
            raise ValueError(f"shape {f.shape}, expected N x 28 x 28")
    except (OSError, ValueError) as e:
        sys.exit(f"mnist_quality.py: error: cannot read {args.file} ({e})")
    try:
        net = load_classifier(args.classifier, device, args.data_dir)
        if args.file.endswith(".npz"):
            report_inpaint(net, f, device)
        else:
            report_samples(net, f, args.data_dir, device)
    except UserError as e:
        sys.exit(f"mnist_quality.py: error: {e}")


if __name__ == "__main__":
    main()
