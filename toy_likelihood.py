"""The exact log-likelihood of a model trained by toy_ncsn.py, by the probability-flow ODE.

Song et al. 2021 (arXiv:2011.13456, Appendix D.2): along dx/dσ = -σ s_θ(x, σ) the log-density changes by
σ ∇·s_θ, so integrating from the data up to σ_1 gives log p_θ(x); in 2D the divergence is exact.

    python toy_ncsn.py --dist heart && python toy_likelihood.py --dist heart   # KL(p || p_θ) in nats, density.png

It reads out/toy_<dist>/model.pt, redraws that run's training set from its seed (for the samplers' prior, the
ODE's end) and prints the negative log-likelihood of 10,000 real points and, where p has a closed form,
KL(p || p_θ); density.png shows the learned log-density next to the data's.
"""
import argparse
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import torch

import toy_ncsn as toy

LIKELIHOOD_N = 200  # σ's of the ODE (measured: docs/results.md)
HEART_M = torch.tensor([[1.0, 0.5], [0.5, 1.0]])  # toy_ncsn.heart's y = z M


# Three of toy_ncsn.py's distributions have a closed-form density: the likelihood's KL(p || p_θ) needs it.
def heart_log_prob(x):
    """log p(x) of `heart`: x -> y = (x1, sign(x1) x2) is one-to-one with |det| = 1, y ~ N(0, MᵀM)."""
    y = torch.stack([x[:, 0], x[:, 0].sign() * x[:, 1]], 1)
    return torch.distributions.MultivariateNormal(torch.zeros(2), HEART_M.T @ HEART_M).log_prob(y)


def split_normal_log_prob(x):
    """log p(x) of `split_normal`: N(x1 - sign(x1)) N(x2) for |x1| > 1, zero density in the gap."""
    z = x - torch.stack([x[:, 0].sign(), torch.zeros(len(x))], 1)
    logp = -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
    return torch.where(x[:, 0].abs() > 1, logp, torch.full_like(logp, -math.inf))


def mixture_log_prob(x, sigma=0.0):
    """log p_σ(x) of `mixture` blurred by N(0, σ²I) (σ a number or one per point): variances 1 + σ²."""
    var = 1 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1) ** 2
    mus, logw = torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), torch.tensor([0.2, 0.8]).log()
    sq = ((x[:, None, :] - mus) ** 2).sum(-1)  # (n, 2 components)
    return torch.logsumexp(logw - sq / (2 * var) - torch.log(2 * math.pi * var), dim=1)


LOG_PROBS = {"heart": heart_log_prob, "split_normal": split_normal_log_prob, "mixture": mixture_log_prob}


def score_and_divergence(score, x, sigma):
    """s_θ(x, σ) and its divergence ∇·s_θ = ∂s₁/∂x₁ + ∂s₂/∂x₂, exact: one backward pass per coordinate."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x, toy.sigma_like(x, sigma))
        div = sum(torch.autograd.grad(s[:, i].sum(), x, retain_graph=i == 0)[0][:, i] for i in range(2))
    return s.detach(), div.detach()


def log_likelihood(score, x, sigmas, prior):
    """log p_θ(x) at σ_L in nats by the probability-flow ODE (Song et al. 2021, App. D.2): along it d log p_σ/dσ
    = σ ∇·s_θ, so log p_θ(x) = log π(x(σ_1)) - ∫_{σ_L}^{σ_1} σ ∇·s_θ(x(σ), σ) dσ, by Heun's method from the data up."""
    def slopes(x, sigma):
        """dx/dσ and d log p/dσ at (x, σ)."""
        s, div = score_and_divergence(score, x, sigma)
        return -sigma * s, sigma * div

    levels, gain = sigmas.flip(0).tolist(), torch.zeros(len(x), device=x.device)  # σ_L up to σ_1
    for sigma, sigma_next in zip(levels, levels[1:]):
        h, (dx, dlog) = sigma_next - sigma, slopes(x, sigma)
        dx_next, dlog_next = slopes(x + h * dx, sigma_next)
        x, gain = x + h * (dx + dx_next) / 2, gain + h * (dlog + dlog_next) / 2
    return prior.log_prob(x) - gain


def fig_density(path, dist, log_p, data, lim):
    """The learned log-density on a grid next to the closed-form one, else the log of a histogram of the data."""
    n = math.isqrt(len(log_p))
    if dist in LOG_PROBS:
        truth, title = LOG_PROBS[dist](toy.grid(lim, n)).reshape(n, n), "closed-form log p"
    else:  # histogramdd counts on [x1 bin, x2 bin]; the images are [x2, x1]
        hist = torch.histogramdd(data, bins=n, range=[-lim, lim, -lim, lim], density=True).hist
        truth, title = hist.T.log(), f"log histogram of {len(data):,} training points"
    images = [log_p.reshape(n, n), truth]
    vmax = max(img[img.isfinite()].max().item() for img in images)
    fig, axes = toy.plt.subplots(1, 2, figsize=(9.5, 4.6), layout="constrained")  # room for the colour bar
    for ax, img, name in zip(axes, images, ["learned log p_θ (probability-flow ODE)", title]):
        im = ax.imshow(img.clamp_min(vmax - 10).numpy(), extent=(-lim, lim, -lim, lim), origin="lower",
                       cmap="viridis", vmin=vmax - 10, vmax=vmax)
        toy.frame(ax, lim, name)
    fig.colorbar(im, ax=axes, label="log density (nats), clipped 10 below the peak", shrink=0.9)
    fig.suptitle(f"{dist}: the model's density, exact by the probability-flow ODE, next to the data's")
    fig.savefig(path, dpi=80)
    toy.plt.close(fig)


def load_model(path, dist, device):
    """toy_ncsn.py's saved dict (model, sigmas, args); a one-line UserError for a file that is not one."""
    try:
        ckpt, what = torch.load(path, map_location=device, weights_only=True), None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        ckpt, what = None, "missing" if not os.path.exists(path) else e.strerror
    except Exception:  # torch's message runs to lines, asking for a bug report: say what the file is instead
        head, ckpt = Path(path).read_bytes()[:4], None  # torch.save writes a zip: PK\3\4 first, its index last
        what = "empty" if not head else "truncated" if head == b"PK\x03\x04" and not zipfile.is_zipfile(path) else None
    if isinstance(ckpt, dict) and {"model", "ema"} <= ckpt.keys():  # mnist_ncsn.py's checkpoint
        what = "an mnist_ncsn.py checkpoint, not a toy_ncsn.py model"
    if what or not isinstance(ckpt, dict) or not {"model", "sigmas", "args"} <= ckpt.keys():
        raise toy.UserError(f"{path}: {what or 'not a toy_ncsn.py model'}; run `python toy_ncsn.py --dist {dist}`")
    return ckpt


def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--dist", default="heart", choices=list(toy.DISTS), help="the distribution toy_ncsn.py ran (default: heart)")
    add("--model", help="toy_ncsn.py's model.pt (default: out/toy_<dist>/model.pt)")
    add("--N", type=toy.positive(int), default=LIKELIHOOD_N, help=f"σ's of the ODE (default: {LIKELIHOOD_N})")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present (default: auto)")
    add("--out", help="output directory for density.png (default: the model's)")
    args = p.parse_args(argv)
    args.model = args.model or f"out/toy_{args.dist}/model.pt"
    if args.N < 2:
        p.error(f"--N must be at least 2, got {args.N}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def run(args):
    """Load the model, rebuild its run's data and prior, measure, print and draw density.png."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device, out = torch.device("cuda" if cuda else "cpu"), args.out or os.path.dirname(args.model) or "."
    if not cuda:
        torch.set_num_threads(1)
    ckpt = load_model(args.model, args.dist, device)
    run_args = ckpt["args"]
    if run_args["dist"] != args.dist:
        raise toy.UserError(f"{args.model} was trained on {run_args['dist']}, not --dist {args.dist}")
    torch.manual_seed(run_args["seed"])  # toy_ncsn.py's first draw after seeding: its training set
    data = toy.DISTS[args.dist](toy.N_DATA).to(device)
    try:
        model = toy.ScoreNet(len(ckpt["model"]["net.0.bias"])).to(device).requires_grad_(False)  # its width
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as e:  # e.g. saved by another version of ScoreNet
        raise toy.UserError(f"{args.model}: does not fit this ScoreNet ({' '.join(str(e).split())[:200]})") from None
    if not torch.allclose(model.mean, data.mean(0)):  # the network stores its training set's mean
        raise toy.UserError(f"the training set of {args.model} cannot be redrawn from seed {run_args['seed']}")
    sigma_1, sigma_L = run_args["sigma_1"], run_args["sigma_L"]
    torch.manual_seed(12345)  # the real points toy_ncsn.py measures its samples against
    ref = toy.DISTS[args.dist](toy.N_REF)
    t0, prior, sigmas = time.time(), toy.gaussian_prior(data, sigma_1), toy.get_sigmas(sigma_1, sigma_L, args.N).to(device)
    nll = -log_likelihood(model, ref.to(device), sigmas, prior).cpu()
    print(f"negative log-likelihood of {toy.N_REF:,} real points: {nll.mean():.4f} nats per point "
          f"({args.N} σ's of the probability-flow ODE, {time.time() - t0:.1f} s)")
    if args.dist in LOG_PROBS:
        log_p = LOG_PROBS[args.dist](ref)
        gap = nll + log_p  # log p - log p_θ, point by point: its mean estimates the KL, its spread the error
        print(f"entropy of p (mean -log p): {-log_p.mean():.4f} nats | KL(p || p_θ) = {gap.mean():.4f} "
              f"± {gap.std() / math.sqrt(len(gap)):.4f} nats (± one standard error)")
    lim = 1.15 * data.abs().quantile(0.999).item()
    log_p_grid = log_likelihood(model, toy.grid(lim, 64).to(device), sigmas, prior).cpu()
    os.makedirs(out, exist_ok=True)
    fig_density(os.path.join(out, "density.png"), args.dist, log_p_grid, data.cpu(), lim)
    print(f"wrote {os.path.join(out, 'density.png')}")


def main(argv=None):
    """Parse the flags, run; a UserError ends in one line."""
    try:
        run(parse_args(argv))
    except (toy.UserError, OSError) as e:
        sys.exit(f"toy_likelihood.py: error: {e}")


if __name__ == "__main__":
    main()
