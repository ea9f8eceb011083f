"""Bits per dimension of test digits under a model trained by mnist_ncsn.py, by the probability-flow ODE.

Song et al. 2021 (arXiv:2011.13456, Appendix D.2): along dx/dσ = -σ s_θ(x, σ) the log-density changes by
σ ∇·s_θ, so integrating from the data up to σ_1 gives log p_θ(x); the divergence is Hutchinson's estimate.

    python mnist_likelihood.py --ckpt out/mnist/checkpoint.pt     # 1,000 test digits, 100 σ's

Outputs in --out (default out/mnist/): likelihood.npz (bits per digit, labels) and likelihood.png (the test
digits of highest and lowest likelihood). It runs in float32: bf16 moves bits/dim by 0.025 (measured:
docs/results.md). It reads the EMA alone, never autoguidance: guided scores at different σ are no longer those of
one density blurred by each σ, so the ODE's change of log-density would no longer be a likelihood.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import mnist_ncsn as m

LIKELIHOOD_N = 100  # σ's of the ODE (measured: docs/results.md)
PROBES = 1  # Hutchinson probes per digit (measured: docs/results.md)


def score_and_divergence(score, x, sigma, probes):
    """s_θ(x, σ) and Hutchinson's estimate of its divergence ∇·s_θ = E_v[vᵀ (∂s_θ/∂x) v] for v of mean 0 and
    covariance I (Skilling 1989; Hutchinson 1990): one vector-Jacobian product per probe of `probes` (k, *x.shape)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x, m.sigma_like(x, sigma))
        div = sum((torch.autograd.grad(s, x, v, retain_graph=True)[0] * v).flatten(1).sum(1) for v in probes)
    return s.detach(), div.detach() / len(probes)


def log_likelihood(score, x, sigmas, prior, probes=1):
    """log p_θ(x) at σ_L, in nats, by the probability-flow ODE (Song et al. 2021, Appendix D.2).

    Along dx/dσ = -σ s_θ(x, σ), d log p_σ(x(σ))/dσ = σ ∇·s_θ, so
    log p_θ(x) = log π(x(σ_1)) - ∫ from σ_L to σ_1 of σ ∇·s_θ(x(σ), σ) dσ: Heun's method from the data up.
    The divergence is Hutchinson's estimate with `probes` Rademacher vectors per image, drawn once for the
    whole path (FFJORD, Grathwohl et al. 2019): the exact trace would take 784 backward passes a step.
    """
    v = torch.randint(0, 2, (probes, *x.shape), device=x.device).to(x.dtype) * 2 - 1

    def slopes(x, sigma):
        """dx/dσ and d log p/dσ at (x, σ)."""
        s, div = score_and_divergence(score, x, sigma, v)
        return -sigma * s, sigma * div

    levels, gain = sigmas.flip(0).tolist(), torch.zeros(len(x), device=x.device)  # σ_L up to σ_1
    for sigma, sigma_next in zip(levels, levels[1:]):
        h, (dx, dlog) = sigma_next - sigma, slopes(x, sigma)
        dx_next, dlog_next = slopes(x + h * dx, sigma_next)
        x, gain = x + h * (dx + dx_next) / 2, gain + h * (dlog + dlog_next) / 2
    return prior.log_prob(x) - gain


def blur_floor(sigma_L):
    """The fewest bits/dim a density blurred by N(0, σ_L²I), as p_σ_L is, can give: whatever was blurred, it is at
    most (2πσ_L²)^(-1/2) high per pixel, so -log₂ p(x)/784 + 8 ≥ 8 - ½ log₂(1/(2πσ_L²)) (2.68 at σ_L = 0.01)."""
    return 8 - math.log2(1 / (2 * math.pi * sigma_L**2)) / 2


def bits_per_dim(args, net, prior, device):
    """Bits per dimension of the first --n-likelihood test digits, dequantised as (k + u)/256, u ~ U(0, 1):
    -log p_θ(x)/(784 ln 2) + 8; returns (bits per digit, the test images, their labels)."""
    images, labels = m.load_mnist(args.data_dir, "test", download=True, mirror=args.mirror)
    if args.n_likelihood > len(images):
        raise m.UserError(f"--n-likelihood {args.n_likelihood}, but {args.data_dir} holds only "
                          f"{len(images)} test images")
    k = (images[:args.n_likelihood] * 255).round()
    x = ((k + torch.rand_like(k)) / 256).to(device)
    sigmas = m.get_sigmas(m.SIGMA_1, m.SIGMA_L, args.N).to(device)
    score = m.with_progress(net, 2 * (args.N - 1) * math.ceil(len(x) / m.SAMPLE_BATCH))
    log_p = torch.cat([log_likelihood(score, b, sigmas, prior, PROBES) for b in x.split(m.SAMPLE_BATCH)]).cpu()
    return -log_p / (784 * math.log(2)) + 8, images, labels


def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--ckpt", default="out/mnist/checkpoint.pt", help="mnist_ncsn.py's checkpoint (default: %(default)s)")
    add("--data-dir", default="data/mnist", help="the MNIST .gz files, fetched if missing (default: data/mnist)")
    add("--mirror", help="download from this URL prefix, not the public mirrors (no MD5 check)")
    add("--n-likelihood", type=m.positive(int), default=1000, help="test digits (default: 1000)")
    add("--N", type=m.positive(int, 2), default=LIKELIHOOD_N, help=f"σ's of the ODE (default: {LIKELIHOOD_N})")
    add("--seed", type=int, default=0, help="random seed (default: 0)")
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present (default: auto)")
    add("--out", default="out/mnist", help="output folder (default: out/mnist)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def run(args):
    """Load the checkpoint's EMA model and its prior, measure, print and write likelihood.npz, likelihood.png."""
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = m.load_checkpoint(args.ckpt)
    width, train_size = ckpt["args"]["width"], ckpt["args"]["train_size"]
    net = m.UNet(width).to(device).requires_grad_(False)
    m.load_checkpoint(args.ckpt, m.UNet(width).to(device), net)
    data = m.load_mnist(args.data_dir, "train", download=True, mirror=args.mirror)[0][:train_size].to(device)
    prior = m.gaussian_prior(data, m.SIGMA_1)  # the samplers' start: the ODE's end
    print(f"loaded {args.ckpt} (UNet(width={width}), epoch {ckpt['epoch']}) | {device}, fp32", flush=True)
    torch.manual_seed(args.seed)
    t0 = time.time()
    bits, images, labels = bits_per_dim(args, net, prior, device)
    print(f"bits/dim = {bits.mean():.3f} ± {bits.std() / math.sqrt(len(bits)):.3f} over {len(bits)} test "
          f"digits (probability-flow ODE, {args.N} σ's, {PROBES} probe(s) a digit, {time.time() - t0:.0f} s); "
          f"a density blurred by N(0, σ_L²) scores at least {blur_floor(m.SIGMA_L):.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "likelihood.npz", bits=bits.numpy(), labels=labels[:len(bits)].numpy())
    picks = torch.cat([bits.argsort()[:8], bits.argsort()[-8:]])
    m.fig_grid(images[picks, 0], 16, out / "likelihood.png", f"The test digits of highest (left) and lowest "
               f"(right) likelihood of {len(bits)}: bits/dim under the model",
               [f"{b:.2f}" for b in bits[picks].tolist()], "bits per dimension (lower: more likely)", size=0.6)
    print(f"wrote {out}/likelihood.png, likelihood.npz")


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    try:
        run(parse_args(argv))
    except m.UserError as e:
        sys.exit(f"mnist_likelihood.py: error: {e}")


if __name__ == "__main__":
    main()
