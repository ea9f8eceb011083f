"""The bits per dimension a student can check by hand: independent 8-bit histograms, one per pixel.

    python benchmarks/mnist_bits_baseline.py --data-dir data/mnist

Each of the 784 pixels gets the histogram of its 256 values over the training images (add-one smoothed);
the test digits' bits per dimension under that model is the mean of -log2 p(k) over their pixels. In the
units of mnist_likelihood.py (uniform dequantisation (k + u)/256, density 256 p(k) on each bin) it
is the same number. It also prints what that model gives when each pixel is blurred by N(0, σ²) as the
score network's density at σ_L is: what blurring alone costs at σ = σ_L.
"""
import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_ncsn import UserError, load_mnist  # noqa: E402


def main():
    """Histograms from the training images, bits per dimension of the test images."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--n-test", type=int, default=1000, help="first N test digits, as mnist_likelihood.py (default: 1000)")
    p.add_argument("--sigmas", nargs="*", type=float, default=[0.01, 0.001], help="blurs to show (default: 0.01 0.001)")
    args = p.parse_args()
    try:
        train = (load_mnist(args.data_dir, "train")[0] * 255).round().long().flatten(1)
        test = (load_mnist(args.data_dir, "test")[0][:args.n_test] * 255).round().long().flatten(1)
    except UserError as e:
        sys.exit(f"mnist_bits_baseline.py: error: {e}")
    counts = torch.zeros(784, 256).scatter_add_(1, train.T.contiguous(), torch.ones(784, len(train)))
    p_k = (counts + 1) / (counts.sum(1, keepdim=True) + 256)  # (784 pixels, 256 values)
    bits = -torch.log2(p_k.gather(1, test.T.contiguous())).mean(0)  # per test digit
    print(f"per-pixel histograms of {len(train):,} training images: {bits.mean():.3f} ± "
          f"{bits.std() / math.sqrt(len(bits)):.3f} bits/dim over {len(bits):,} test digits")
    torch.manual_seed(0)
    x = (test + torch.rand(test.shape)) / 256  # dequantised, as mnist_likelihood.py reads them
    edges, normal = torch.arange(257) / 256, torch.distributions.Normal(0.0, 1.0)
    for sigma in args.sigmas:  # bin k's density 256 on its width, blurred by N(0, σ²), weighted by p(k)
        dens = torch.cat([256 * (p_k * -torch.diff(normal.cdf((chunk[..., None] - edges) / sigma))).sum(-1)
                          for chunk in x.split(20)])
        blurred = (-torch.log2(dens) + 8).mean(1)
        print(f"  the same histograms blurred by N(0, {sigma:g}²): {blurred.mean():.3f} bits/dim")


if __name__ == "__main__":
    main()
