"""Noise Conditional Score Network on 2D toy data, in one file (Song & Ermon 2019, arXiv:1907.05600).

A small MLP s_θ(x, σ) learns the score ∇ₓ log p_σ(x) of the data blurred by Gaussian noise of every σ
from σ_L to σ_1 (denoising score matching, eq. 5-6). Five samplers of the same network then walk noise
down to the data (Song et al. 2021, arXiv:2011.13456): annealed Langevin dynamics (Algorithm 1, the
default), the reverse-time VE SDE, the probability-flow ODE (deterministic, far fewer network
evaluations), DDPM's ancestral sampler and DDIM, both written in NCSN's variables. The same ODE gives
the model's exact log-likelihood in nats: toy_likelihood.py.

    python toy_ncsn.py --dist heart                  # train, sample, plot into out/toy_heart/
    python toy_ncsn.py --dist mixture --sampler ode  # the paper's 1:4 mixture, sampled by the ODE
    python toy_ncsn.py --dist moons --gif            # with an animation of the sampler

Read top to bottom: data, model, loss, sampler, figures, main().
"""
import argparse
import copy
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

N_DATA, BATCH, HIDDEN, EMA_DECAY = 100_000, 512, 128, 0.999  # training set, batch, MLP width, weights' average
N_REF, ERROR_SIGMA = 10_000, 0.2  # real points the samples are measured against; σ of the score-error figure


class UserError(Exception):
    """A bad input or a run gone wrong: main() reports it in one line."""


# ----------------------------------------------------------------------------- data
# Each distribution is one function: n -> (n, 2) float tensor.

def heart(n):
    """z ~ N(0, I), y = z M with M = [[1, ½], [½, 1]], x = (y1, sign(y1) y2): a filled heart."""
    y = torch.randn(n, 2) @ torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    return torch.stack([y[:, 0], y[:, 0].sign() * y[:, 1]], 1)


def split_normal(n):
    """x = z + (sign(z1), 0): a standard normal cut along x1 = 0, each half pushed 1 unit away."""
    z = torch.randn(n, 2)
    return z + torch.stack([z[:, 0].sign(), torch.zeros(n)], 1)


def mixture(n):
    """The paper's 1/5 N((-5,-5), I) + 4/5 N((5,5), I)."""
    sign = torch.where(torch.rand(n) < 0.8, 1.0, -1.0)
    return 5 * sign[:, None] + torch.randn(n, 2)


def circle(n):
    """A thin ring of radius 2."""
    theta, r = 2 * math.pi * torch.rand(n), 2 + 0.05 * torch.randn(n)
    return torch.stack([r * theta.cos(), r * theta.sin()], 1)


def moons(n):
    """Two interleaved half circles."""
    t, upper = math.pi * torch.rand(n), torch.rand(n) < 0.5
    x, y = torch.where(upper, t.cos(), 1 - t.cos()), torch.where(upper, t.sin(), 0.5 - t.sin())
    return 1.5 * torch.stack([x - 0.5, y - 0.25], 1) + 0.05 * torch.randn(n, 2)


def spirals(n):
    """Two interleaved spiral arms."""
    t, arm = 3 * math.pi * torch.rand(n).sqrt(), torch.where(torch.rand(n) < 0.5, 1.0, -1.0)
    return torch.stack([t * t.cos(), t * t.sin()], 1) * arm[:, None] / 3 + 0.05 * torch.randn(n, 2)


def checkerboard(n):
    """Uniform on the dark squares of a 4x4 checkerboard on [-2, 2]²."""
    x1 = 4 * torch.rand(n) - 2
    x2 = torch.rand(n) + 2 * torch.randint(0, 2, (n,)) - 2 + (x1.floor() % 2)
    return torch.stack([x1, x2], 1)


def eight_gaussians(n):
    """Eight small Gaussians on a circle of radius 2."""
    theta = 2 * math.pi * torch.randint(0, 8, (n,)) / 8
    return 2 * torch.stack([theta.cos(), theta.sin()], 1) + 0.1 * torch.randn(n, 2)


DISTS = {"heart": heart, "split_normal": split_normal, "mixture": mixture, "circle": circle,
         "moons": moons, "spirals": spirals, "checkerboard": checkerboard, "8gaussians": eight_gaussians}


# ----------------------------------------------------------------------------- model
class ScoreNet(nn.Module):
    """s_θ(x, σ): an MLP on (x, log σ) with SiLU activations, its output divided by σ."""

    def __init__(self, hidden=HIDDEN, mean=(0.0, 0.0), std=1.0):
        super().__init__()
        # SiLU, not the paper's softplus, and inputs standardised then multiplied by 8: both give the first
        # layer sharp features from the start, which thin shapes need (measured: docs/results.md).
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(8.0 / std))
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x, sigma):
        """s_θ(x, σ) for points x (n, 2) and one σ per point, σ (n,)."""
        # The true score of p_σ has size ~1/σ, from 0.1 to 100 across the schedule. The network
        # predicts σ·s instead, which is O(1) at every σ, and we divide by σ (NCSNv2, technique 3).
        h = torch.cat([(x - self.mean) * self.scale, sigma.log()[:, None]], 1)
        return self.net(h) / sigma[:, None]


def get_sigmas(sigma_1, sigma_L, L):
    """The paper's noise levels: a geometric sequence σ_1 > ... > σ_L (Section 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


# ----------------------------------------------------------------------------- loss
def dsm_loss(score, x, sigmas):
    """Eq. (5)-(6) with λ(σ) = σ²: mean of ½ ‖σ s_θ(x + σz, σ) + z‖², one σ per example, log-uniform between
    sigmas[-1] and sigmas[0]: eq. (6)'s average made continuous, so the SDE and ODE samplers find every σ learned."""
    lo, hi = sigmas[-1].double().log(), sigmas[0].double().log()  # tensors, not .item(): no host sync
    sigma = (lo.to(x) + (hi - lo).to(x) * torch.rand(len(x), device=x.device, dtype=x.dtype)).exp()
    z = torch.randn_like(x)
    # σ² ‖s + (x̃ - x)/σ²‖² = ‖σ s + z‖²: the same quantity, without dividing by a tiny σ².
    return 0.5 * ((sigma[:, None] * score(x + sigma[:, None] * z, sigma) + z) ** 2).sum(1).mean()


def train(model, ema, opt, data, args):
    """Adam on dsm_loss over random batches of `data`, the EMA `ema` updated each step; returns the losses."""
    sigmas, log_every = get_sigmas(args.sigma_1, args.sigma_L, args.L).to(data.device), max(1, args.steps // 10)
    losses, t0 = [], time.time()
    # The DSM gradient is mostly noise at small σ. Two averages tame it: a learning rate decaying
    # linearly to 0, and sampling with an exponential moving average of the weights (NCSNv2, technique 5).
    for step in range(1, args.steps + 1):
        opt.param_groups[0]["lr"] = args.lr * (1 - (step - 1) / args.steps)
        loss = dsm_loss(model, data[torch.randint(len(data), (BATCH,), device=data.device)], sigmas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(EMA_DECAY, step / (step + 10))  # short runs must not average in the random start
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        losses.append(loss.detach())
        if step % log_every == 0 or step == args.steps:
            recent = torch.stack(losses[-log_every:]).mean().item()  # the only host sync
            if not math.isfinite(recent):
                raise UserError(f"the loss became {recent} at step {step}; try a smaller --lr")
            rate = step / (time.time() - t0)
            print(f"step {step}/{args.steps} | loss {recent:.4f} | {rate:.0f} steps/s | "
                  f"{(args.steps - step) / rate:.0f} s left", flush=True)
    return torch.stack(losses).cpu()


# ----------------------------------------------------------------------------- sampler
def sigma_like(x, sigma):
    """σ once per point of x: the form the network takes."""
    return torch.full((len(x),), sigma, device=x.device, dtype=x.dtype)


def tweedie(score, x, sigma):
    """E[x_0 | x] = x + σ² s_θ(x, σ), Tweedie's formula: the noise-free last step of every sampler."""
    return x + sigma**2 * score(x, sigma_like(x, sigma))


def gaussian_prior(data, sigma_1):
    """π = N(mean, σ_1² + var) per coordinate, the samplers' start (N(0, σ_1²I) skews the mixture: docs/results.md)."""
    std = (sigma_1**2 + data.var(0)).sqrt()
    return torch.distributions.Independent(torch.distributions.Normal(data.mean(0), std), 1)


@torch.no_grad()
def langevin(score, x, sigma, alpha, T):
    """Langevin dynamics at one noise level: T steps x <- x + (α/2) s_θ(x, σ) + √α z."""
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_like(x, sigma)) + math.sqrt(alpha) * torch.randn_like(x)
    return x


def langevin_variance_ratio(eps, T, gamma, sigma_L):
    """s_T²/σ_i², NCSNv2 eq. (4), data at one point: from γ²σ_i² (γ = σ_{i-1}/σ_i) each step scales the variance
    by (1 - c/2)², c = ε/σ_L², and adds α_i, towards the hot σ_i²/(1 - c/4)."""
    c = eps / sigma_L**2
    return (1 - c / 2) ** (2 * T) * (gamma**2 - 1 / (1 - c / 4)) + 1 / (1 - c / 4)


def technique4_eps(T, gamma, sigma_L):
    """NCSNv2's Technique 4: the smallest ε that brings langevin_variance_ratio closest to 1 after T steps."""
    eps = sigma_L**2 * torch.logspace(-6, math.log10(2), 20_000, dtype=torch.float64)  # c = ε/σ_L² < 2
    gap = langevin_variance_ratio(eps, T, gamma, sigma_L) - 1
    first = gap[: gap.argmin() + 1].abs().argmin()  # on the falling branch: the first root, else the minimum
    return eps[first].item()


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T Langevin steps at each σ_i with α_i = ε σ_i²/σ_L².

    The official code writes x <- x + step_lr s + √(2 step_lr) z: its `step_lr` is α/2 here.
    Returns (x, trace): trace[0] the start, trace[i] x after level i; `denoise` adds Tweedie's step at σ_L.
    """
    trace, sigma_L = [x], sigmas[-1].item()
    for sigma in sigmas.tolist():
        x = langevin(score, x, sigma, eps * sigma**2 / sigma_L**2, T)
        trace.append(x)
    return (tweedie(score, x, sigma_L) if denoise else x), trace


@torch.no_grad()
def reverse_sde(score, x, sigmas, eps=2e-5, T=0, denoise=True):
    """Reverse-time VE SDE (Song et al. 2021), then T Langevin corrector steps (α_i as in ALD) if T > 0."""
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        var = sigma**2 - sigma_next**2  # the noise the forward process added between the two levels
        x = x + var * score(x, sigma_like(x, sigma)) + math.sqrt(var) * torch.randn_like(x)
        x = langevin(score, x, sigma_next, eps * sigma_next**2 / levels[-1] ** 2, T)
        trace.append(x)
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


@torch.no_grad()
def probability_flow_ode(score, x, sigmas, heun=True, denoise=True):
    """Probability-flow ODE dx/dσ = -σ s_θ(x, σ) (Song et al. 2021), deterministic: Heun's method (Karras
    et al. 2022, Algorithm 1: the mean of the slopes at both ends of a step) or Euler's."""
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        slope = -sigma * score(x, sigma_like(x, sigma))
        x_next = x + (sigma_next - sigma) * slope  # Euler
        if heun:
            slope_next = -sigma_next * score(x_next, sigma_like(x, sigma_next))
            x_next = x + (sigma_next - sigma) * (slope + slope_next) / 2
        x = x_next
        trace.append(x)
    # Tweedie's step is also one Euler step of this ODE from σ_L down to 0.
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


@torch.no_grad()
def ddpm(score, x, sigmas, denoise=True):
    """DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2) on the VE network, in DDPM's own variables.

    ᾱ_i = 1/(1 + σ_i²) and x_t = √ᾱ_i x map the VE point to the VP one; ε_θ(x_t) = -σ_i s_θ(x_t/√ᾱ_i, σ_i).
    Step: x_{t-1} = (x_t - β_t/√(1 - ᾱ_t) ε_θ)/√α_t + √β̃_t z, α_t = ᾱ_t/ᾱ_{t-1} = 1 - β_t,
    β̃_t = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t). The trace holds VE points, as reverse_sde's.
    """
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        abar, abar_prev = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)  # ᾱ_t, ᾱ_{t-1}: t counts down
        beta = 1 - abar / abar_prev
        x_t = math.sqrt(abar) * x
        eps = -sigma * score(x_t / math.sqrt(abar), sigma_like(x, sigma))
        var = beta * (1 - abar_prev) / (1 - abar)
        x_t = (x_t - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta) + math.sqrt(var) * torch.randn_like(x)
        x = x_t / math.sqrt(abar_prev)
        trace.append(x)
    # Tweedie's step is DDPM's last one, t = 1 -> 0 (ᾱ_0 = 1: no noise is added).
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


@torch.no_grad()
def ddim(score, x, sigmas, denoise=True):
    """DDIM with η = 0 (Song, Meng & Ermon 2021, eq. 12) on the VE network, in DDPM's variables.

    x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1 - ᾱ_{t-1}) ε_θ(x_t), with x̂_0 = (x_t - √(1 - ᾱ_t) ε_θ)/√ᾱ_t: in VE
    coordinates x <- x + σ_i (σ_i - σ_{i+1}) s_θ, Euler's step of the probability-flow ODE.
    """
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        abar, abar_prev = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        x_t = math.sqrt(abar) * x
        eps = -sigma * score(x_t / math.sqrt(abar), sigma_like(x, sigma))
        x0_hat = (x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)  # = x + σ² s_θ: Tweedie's formula
        x = (math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev) * eps) / math.sqrt(abar_prev)
        trace.append(x)
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


# ----------------------------------------------------------------------------- figures
def mean_distance(a, b, chunk=1000):
    """Mean of ‖a_i - b_j‖ over all pairs, a few rows at a time (10,000² distances at once would not fit)."""
    return sum(torch.cdist(a_part, b).sum().item() for a_part in a.split(chunk)) / (len(a) * len(b))


def energy_distance(a, b):
    """Energy distance 2E‖a-b‖ - E‖a-a'‖ - E‖b-b'‖ between two point sets (V-statistic)."""
    return 2 * mean_distance(a, b) - mean_distance(a, a) - mean_distance(b, b)


def energy_floor(ref, n):
    """E[energy_distance] of n and m = len(ref) points of one distribution, 2δ - (1 - 1/n)δ - (1 - 1/m)δ with
    δ = E‖X - X'‖ from `ref`'s distinct pairs: a ratio of 1x is as close as real data."""
    return mean_distance(ref, ref) * len(ref) / (len(ref) - 1) * (1 / n + 1 / len(ref))


def smoothed_data(x, data, sigma):
    """log p_σ(x) and its score for the data smoothed by N(0, σ²I): the exact target of DSM at σ."""
    logits = -torch.cdist(x, data) ** 2 / (2 * sigma**2)
    log_p = torch.logsumexp(logits, 1) - math.log(len(data) * 2 * math.pi * sigma**2)
    return log_p, (torch.softmax(logits, 1) @ data - x) / sigma**2  # Σ_j w_j (x_j - x)/σ², w = softmax


def grid(lim, n):
    """An n x n grid of points over [-lim, lim]², as an (n², 2) tensor."""
    g = torch.linspace(-lim, lim, n)
    return torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)


def save(fig, path):
    """Lay out, write and free a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def frame(ax, lim, title, data=None, x=None):
    """Square axes over the data's box, labelled; real points in blue and samples in red, if given."""
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.3)
    if x is not None:
        ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:red", alpha=0.5)
    ax.set(title=title, xlabel="x₁", ylabel="x₂", xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")


def plot_score_field(ax, model, sigma, data, lim):
    """Arrows of s_θ(x, σ) over the data, all of one length: the long ones far away would hide the rest."""
    pts = grid(lim, 21)
    with torch.no_grad():
        s = model(pts, sigma_like(pts, sigma))
    pts, s = pts.numpy(), (s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()
    ax.quiver(pts[:, 0], pts[:, 1], s[:, 0], s[:, 1], color="k", angles="xy", width=0.004)
    frame(ax, lim, f"σ = {sigma:.3g}", data)


def fig_samples(path, dist, data, samples, lim, sampler):
    """Generated (red) over real points (blue)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    frame(ax, lim, f"{dist}: {sampler} samples (red) over real points (blue)", data, samples)
    save(fig, path)


def fig_levels(path, dist, trace, levels, data, lim, sampler):
    """The sample cloud at five points of the trace, the start first: it settles onto the data as σ shrinks."""
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    for ax, i in zip(axes, torch.linspace(0, len(trace) - 1, 5).round().long().tolist()):
        frame(ax, lim, f"σ = {levels[i]:.3g}", data, trace[i].cpu().numpy())
    fig.suptitle(f"{dist}: {sampler} samples (red) at decreasing σ, over the data (blue); "
                 "the first levels spread far outside this box")
    save(fig, path)


def fig_score_sigmas(path, dist, model, sigmas, data, lim):
    """The learned score at four σ's, σ_L last."""
    levels = sorted(set(torch.linspace(0, len(sigmas) - 1, 5).round().long().tolist()[1:]))
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 4.6), squeeze=False)
    for ax, sigma in zip(axes[0], sigmas[levels].tolist()):
        plot_score_field(ax, model, sigma, data, lim)
    fig.suptitle(f"{dist}: the learned score at decreasing σ: large σ smooths p into one blob")
    save(fig, path)


def fig_score_error(path, model, data, sigma, lim):
    """σ‖s_θ - s_ref‖ against the exact score of the blurred training points, with contours of log p_σ."""
    pts = grid(lim, 64)
    log_p, s_ref = smoothed_data(pts, torch.as_tensor(data), sigma)
    with torch.no_grad():
        err = (sigma * (model(pts, sigma_like(pts, sigma)) - s_ref).norm(dim=1)).reshape(64, 64).numpy()
    fig, ax = plt.subplots(figsize=(5.6, 5))
    im = ax.imshow(err, extent=(-lim, lim, -lim, lim), origin="lower", cmap="magma",
                   norm=matplotlib.colors.LogNorm(vmin=1e-2, vmax=max(err.max(), 1e-1)))
    ax.contour(*pts.T.reshape(2, 64, 64).numpy(), log_p.reshape(64, 64).numpy(), levels=[-6, -4, -2],
               colors="cyan", linewidths=0.8)
    fig.colorbar(im, ax=ax, label="σ‖s_θ - s_ref‖")
    frame(ax, lim, f"score error at σ={sigma:.3g} (contours: log p_σ = -6, -4, -2)\naccurate only where the data are")
    save(fig, path)


def fig_gif(path, dist, trace, levels, data, lim, sampler):
    """An animation of the sampler, one frame per trace entry (at most 60), the start first."""
    from matplotlib.animation import FuncAnimation, PillowWriter
    picks = sorted(set(torch.linspace(0, len(trace) - 1, min(len(trace), 60)).round().long().tolist()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.2)
    dots = ax.scatter(*trace[0].cpu().numpy().T, s=2, c="tab:red")
    FuncAnimation(fig, lambda k: (dots.set_offsets(trace[picks[k]].cpu().numpy()),
                                  frame(ax, lim, f"{dist}: {sampler}, σ = {levels[picks[k]]:.3g}")),
                  frames=len(picks)).save(path, writer=PillowWriter(fps=4))
    plt.close(fig)


# ----------------------------------------------------------------------------- main
# ALD: many levels of few steps (NCSNv2) at the paper's cost, L·T = 1000; one ε for all eight shapes, between
# what filled and thin ones want (measured: docs/results.md; Technique 4 gives ~1.2e-5 here).
ALD_L, ALD_T, EPS = 200, 5, 2e-5
SAMPLER_N = {"sde": 1000, "ode": 50, "ddpm": 1000, "ddim": 100}  # default σ's for --N (measured: docs/results.md)


def positive(kind):
    """An argparse type: a finite number of `kind` (int or float) above 0."""
    def parse(text):
        """The number in `text`, or argparse's one-line error."""
        value = kind(text)  # a ValueError becomes argparse's "invalid int value"
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description="Train a 2D NCSN by denoising score matching, then sample it by annealed "
                                "Langevin dynamics, the reverse SDE, the probability-flow ODE, DDPM or DDIM.")
    arg, pos_int, pos_float = p.add_argument, positive(int), positive(float)
    arg("--dist", default="heart", choices=list(DISTS), help="toy distribution (default: heart)")
    arg("--steps", type=pos_int, default=4000, help="training steps (default: 4000)")
    arg("--lr", type=pos_float, default=2e-3, help="Adam learning rate, decaying linearly to 0 (default: 2e-3)")
    arg("--sigma-1", type=pos_float, help="largest σ (default: the data's diameter, NCSNv2 technique 1)")
    arg("--sigma-L", type=pos_float, default=0.01, help="smallest σ (default: 0.01)")
    arg("--sampler", default="ald", choices=["ald", "sde", "ode", "ddpm", "ddim"], help="annealed Langevin "
        "(Algorithm 1), reverse VE SDE, probability-flow ODE, DDPM's ancestral sampler or DDIM (default: ald)")
    arg("--L", type=pos_int, default=ALD_L, help=f"ald: number of noise levels (default: {ALD_L})")
    arg("--T", type=int, help=f"ald: Langevin steps per level; sde: corrector steps (default: {ALD_T}; sde: 0)")
    arg("--eps", type=pos_float, default=EPS, help=f"Langevin step size ε, α_i = ε σ_i²/σ_L² (default: {EPS:g})")
    arg("--N", type=pos_int, help="sde/ode/ddpm/ddim: number of σ's (default: "
        + ", ".join(f"{n} for {s}" for s, n in SAMPLER_N.items()) + ")")
    arg("--no-denoise", action="store_true", help="skip the final Tweedie step x + σ_L² s_θ(x, σ_L)")
    arg("--n-samples", type=pos_int, default=2000, help="samples to generate (default: 2000)")
    arg("--gif", action="store_true", help="also write sampler.gif, an animation of the sampler")
    arg("--seed", type=int, default=0, help="random seed; same seed on CPU, same samples (default: 0)")
    arg("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present (default: auto)")
    arg("--out", help="output directory (default: out/toy_<dist>/)")
    args = p.parse_args(argv)
    args.T = (ALD_T if args.sampler == "ald" else 0) if args.T is None else args.T
    args.N = args.N or SAMPLER_N.get(args.sampler, 0)
    if args.T < (args.sampler == "ald"):
        p.error(f"--T must be at least {int(args.sampler == 'ald')} for --sampler {args.sampler}, got {args.T}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def sample(args, model, sigma_1, data):
    """Run the chosen sampler from `gaussian_prior`: (samples, trace, the σ of each trace entry, evaluations)."""
    x0, ald = gaussian_prior(data, sigma_1).sample((args.n_samples,)), args.sampler == "ald"
    sigmas, denoise = get_sigmas(sigma_1, args.sigma_L, args.L if ald else args.N), not args.no_denoise
    sampler = {"ald": anneal_langevin, "sde": reverse_sde, "ode": probability_flow_ode, "ddpm": ddpm, "ddim": ddim}
    langevin_args = (args.eps, args.T) if args.sampler in ["ald", "sde"] else ()  # ε and T: Langevin's only
    x, trace = sampler[args.sampler](model, x0, sigmas, *langevin_args, denoise=denoise)
    if ald:  # ALD's trace starts at σ_1, then one entry per level
        return x, trace, sigmas[:1].tolist() + sigmas.tolist(), args.L * args.T + denoise
    per_step = {"sde": 1 + args.T, "ode": 2}.get(args.sampler, 1)  # Heun's ODE step: two evaluations
    return x, trace, sigmas.tolist(), (args.N - 1) * per_step + denoise


def report(args, model, data, sigma_1, samples, trace, levels, out):
    """The energy distance to real points against its floor, every figure."""
    with torch.random.fork_rng():  # one fixed set of real points, as in benchmarks/toy_quality.py
        torch.manual_seed(12345)
        ref = DISTS[args.dist](N_REF)
    ed, floor = energy_distance(samples, ref), energy_floor(ref, len(samples))  # float64 agrees to 4 digits
    print(f"energy distance to {N_REF:,} real points: {ed:.5f}, {ed / floor:.2f}x the floor of real data ({floor:.5f})")
    if args.dist == "mixture":
        print(f"share of samples in the (5,5) mode: {(samples.sum(1) > 0).float().mean().item():.3f} (true 0.800)")
    lim, path = 1.15 * data.abs().quantile(0.999).item(), lambda name: os.path.join(out, name)
    data, model = data[:2000].cpu().numpy(), model.cpu()
    fig_samples(path("samples.png"), args.dist, data, samples.numpy(), lim, args.sampler)
    fig_levels(path("levels.png"), args.dist, trace, levels, data, lim, args.sampler)
    fig_score_sigmas(path("score_sigmas.png"), args.dist, model, get_sigmas(sigma_1, args.sigma_L, args.L), data, lim)
    fig_score_error(path("score_error.png"), model, data, ERROR_SIGMA, lim)
    if args.gif:
        fig_gif(path("sampler.gif"), args.dist, trace, levels, data, lim, args.sampler)


def run(args):
    """Train, sample, measure, plot; a problem raises UserError."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device, out, t_start = torch.device("cuda" if cuda else "cpu"), args.out or f"out/toy_{args.dist}", time.time()
    if not cuda:
        torch.set_num_threads(1)  # a 128-unit MLP is fastest on one thread, and immune to a busy core
    torch.manual_seed(args.seed)
    data = DISTS[args.dist](N_DATA).to(device)
    sigma_1 = args.sigma_1 = args.sigma_1 or torch.cdist(data[:2000], data[:2000]).max().item()
    if sigma_1 <= args.sigma_L:  # --sigma-1, or the data's diameter
        raise UserError(f"σ_1 = {sigma_1:.3g} must be larger than --sigma-L ({args.sigma_L})")
    os.makedirs(out, exist_ok=True)  # only now: a run refused leaves no folder behind
    model = ScoreNet(HIDDEN, data.mean(0), data.std().item()).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)  # one kernel for all tensors: ~10% faster
    print(f"{args.dist}: {N_DATA} points, σ from {sigma_1:.3g} down to {args.sigma_L:.3g}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, on {device}")
    train(model, ema, opt, data, args)
    torch.save({"model": ema.state_dict(), "sigmas": get_sigmas(sigma_1, args.sigma_L, args.L), "args": vars(args)},
               os.path.join(out, "model.pt"))
    t0 = time.time()
    samples, trace, levels, nfe = sample(args, ema, sigma_1, data)
    if not torch.isfinite(samples).all():
        raise UserError(f"the {args.sampler} samples became infinite or NaN; the Langevin step is too large for "
                        f"this data: try a smaller --eps than {args.eps:g}")
    print(f"sampled {args.n_samples} points with {args.sampler}: {nfe} network evaluations in {time.time() - t0:.1f} s")
    np.save(os.path.join(out, "samples.npy"), samples.cpu().numpy().astype(np.float32))
    report(args, ema, data, sigma_1, samples.cpu(), trace, levels, out)
    print(f"wrote figures, samples.npy and model.pt to {out}/ ({time.time() - t_start:.1f} s in all)")


def main(argv=None):
    """Parse the flags, run; a UserError ends in one line."""
    try:
        run(parse_args(argv))
    except (UserError, OSError) as e:  # OSError: an output folder or file that cannot be written
        sys.exit(f"toy_ncsn.py: error: {e}")


if __name__ == "__main__":
    main()
