"""Bits per dimension of MNIST test digits under a mnist_ncsn.py model, by the probability-flow ODE.

Song et al. 2021 (arXiv:2011.13456), Appendix D.2: along the probability-flow ODE dx/dσ = -σ s_θ(x, σ),
d log p_σ(x(σ))/dσ = σ ∇·s_θ, so integrating from a test digit at σ_L up to σ_1 gives its exact
log-likelihood under the model, given the divergence. In 784 dimensions the divergence is Hutchinson's
estimate (Skilling 1989; Hutchinson 1990), one Rademacher probe a digit, as in FFJORD (Grathwohl et
al. 2019). The companion of mnist_ncsn.py: the model, the data and the prior come from there.

    python mnist_likelihood.py --ckpt out/mnist/checkpoint.pt   # 1,000 test digits: bits/dim, likelihood.png

Outputs in --out (default out/mnist/): likelihood.npz (bits per digit, labels) and likelihood.png.
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


def score_and_divergence(score, x, sigma, probes):
    """s_θ(x, σ) and Hutchinson's estimate of its divergence ∇·s_θ = E_v[vᵀ (∂s_θ/∂x) v] for v of mean 0 and
    covariance I: one vector-Jacobian product per probe of `probes` (k, *x.shape)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x, m.sigma_like(x, sigma))
        div = sum((torch.autograd.grad(s, x, v, retain_graph=True)[0] * v).flatten(1).sum(1) for v in probes)
    return s.detach(), div.detach() / len(probes)


def log_likelihood(score, x, sigmas, prior, probes=1):
    """log p_θ(x) at σ_L, in nats, by the probability-flow ODE (Song et al. 2021, Appendix D.2).

    log p_θ(x) = log π(x(σ_1)) - ∫ from σ_L to σ_1 of σ ∇·s_θ(x(σ), σ) dσ: Heun's method from the data up.
    The divergence is Hutchinson's estimate with `probes` Rademacher vectors per image, drawn once for the
    whole path (FFJORD): the exact trace would take 784 backward passes a step.
    """
    v = torch.randint(0, 2, (probes, *x.shape), device=x.device).to(x.dtype) * 2 - 1

    def slopes(x, sigma):
        s, div = score_and_divergence(score, x, sigma, v)
        return -sigma * s, sigma * div

    levels, gain = sigmas.flip(0).tolist(), torch.zeros(len(x), device=x.device)  # σ_L up to σ_1
    for sigma, sigma_next in zip(levels, levels[1:]):
        h, (dx, dlog) = sigma_next - sigma, slopes(x, sigma)
        dx_next, dlog_next = slopes(x + h * dx, sigma_next)
        x, gain = x + h * (dx + dx_next) / 2, gain + h * (dlog + dlog_next) / 2
    return prior.log_prob(x) - gain


def bits_per_dim(args, net, prior, device, out):
    """Bits per dimension of the first --n-likelihood test digits, dequantised as (k + u)/256, u ~ U(0, 1):
    -log p_θ(x)/(784 ln 2) + 8. Writes likelihood.npz (bits per digit) and likelihood.png."""
    images, labels = m.load_mnist(args.data_dir, "test", download=True, mirror=args.mirror)
    if args.n_likelihood > len(images):
        raise m.UserError(f"--n-likelihood {args.n_likelihood}, but {args.data_dir} holds only "
                          f"{len(images)} test images")
    k = (images[:args.n_likelihood] * 255).round()
    x = ((k + torch.rand_like(k)) / 256).to(device)
    sigmas = m.get_sigmas(m.SIGMA_1, m.SIGMA_L, args.N).to(device)
    score, t0 = m.with_progress(net, 2 * (args.N - 1) * math.ceil(len(x) / m.SAMPLE_BATCH)), time.time()
    log_p = torch.cat([log_likelihood(score, batch, sigmas, prior) for batch in x.split(m.SAMPLE_BATCH)]).cpu()
    bits = -log_p / (784 * math.log(2)) + 8
    print(f"bits/dim = {bits.mean():.3f} ± {bits.std() / math.sqrt(len(bits)):.3f} over {len(bits)} test "
          f"digits (probability-flow ODE, {args.N} σ's, one probe a digit, {time.time() - t0:.0f} s)")
    np.savez(out / "likelihood.npz", bits=bits.numpy(), labels=labels[:len(bits)].numpy())
    picks = torch.cat([bits.argsort()[:8], bits.argsort()[-8:]])
    m.fig_grid(images[picks, 0], 16, out / "likelihood.png", f"The test digits of highest (left) and "
               f"lowest (right) likelihood of {len(bits)}: bits/dim under the model",
               [f"{b:.2f}" for b in bits[picks].tolist()], "bits per dimension (lower: more likely)", size=0.6)
    print(f"wrote {out}/likelihood.png, likelihood.npz")


def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--ckpt", default="out/mnist/checkpoint.pt", help="mnist_ncsn.py's checkpoint (default: out/mnist/checkpoint.pt)")
    add("--data-dir", default="data/mnist", help="folder with the four MNIST .gz files, downloaded there when "
        "missing (default: data/mnist)")
    add("--mirror", help="download from this URL prefix, not the public mirrors (no MD5 check)")
    add("--n-likelihood", type=m.positive(int), default=1000, help="test digits (default: 1000)")
    add("--N", type=m.positive(int), default=LIKELIHOOD_N, help=f"σ's of the ODE, geometric (default: {LIKELIHOOD_N})")
    add("--seed", type=int, default=0, help="random seed of the dequantisation and the probes (default: 0)")
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto = CUDA when present (default: auto)")
    add("--out", default="out/mnist", help="output folder (default: out/mnist)")
    args = p.parse_args(argv)
    if args.N < 2:
        p.error("--N must be at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def run(args):
    """Load the checkpoint's EMA model and the prior of its training images, then measure, in float32."""
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise m.UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    saved = m.load_checkpoint(args.ckpt)["args"]
    model, ema = m.UNet(saved["width"]), m.UNet(saved["width"])
    ckpt = m.load_checkpoint(args.ckpt, model, ema)  # bf16 moves bits/dim by 0.025 (measured): float32 here
    data = m.load_mnist(args.data_dir, "train", download=True, mirror=args.mirror)[0][:saved["train_size"]]
    print(f"loaded {args.ckpt} (UNet(width={saved['width']}), epoch {ckpt['epoch']}) | {device}, fp32", flush=True)
    torch.manual_seed(args.seed)
    bits_per_dim(args, ema.to(device), m.gaussian_prior(data.to(device), m.SIGMA_1), device, out)


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    try:
        run(parse_args(argv))
    except m.UserError as e:
        sys.exit(f"mnist_likelihood.py: error: {e}")


if __name__ == "__main__":
    main()
