"""The paper's Section 3 in two experiments: why the data must be perturbed, and why annealing matters.

3.1 The manifold hypothesis (--manifold). Score matching, eq. (1): E[tr(∇ₓ s_θ(x)) + ½ ‖s_θ(x)‖²] (Hyvärinen
2005, exact trace), on points exactly on a ring of radius 2 has no minimum: the loss falls without end, the
ring an ever steeper attractor. On the points moved by noise σz it settles at -½ E‖∇ₓ log p_σ‖² ≈ -1/(2σ²).

3.2 Low-density regions (the default run). p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I), sampled from points uniform on
[-8,8]² (the paper's Figure 3) by plain Langevin, x <- x + (ε/2) ∇ₓ log p(x) + √ε z (ε = 0.1, T = 1000: the official
toy values), and by annealed Langevin dynamics, Algorithm 1 (10 σ's from 20 to σ_L = 0.1, 100 steps each,
α_i = ε σ_i²/σ_L², ε = 0.005), with the exact scores of p_σ and with a σ-conditioned MLP trained by denoising score
matching: only ALD gets the (5,5) mode's share 0.8. σ_L = 0.1, not the official 1: every level here is the exact
p ∗ N(0, σ² I), so the last must be nearly the data; ε = 0.005 keeps α_1/(1 + σ_1²) ≈ ε/σ_L² = 0.5, below the
unstable 4. Run: python langevin_compare.py [--exact-only | --manifold]. Paper: Song & Ermon, "Generative Modeling
by Estimating Gradients of the Data Distribution", NeurIPS 2019.
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
from matplotlib.animation import PillowWriter  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

WEIGHT, DISTANCE = 0.8, 5.0  # the paper's target: (1-w) N((-d,-d), I) + w N((d,d), I)
N_DATA = 100_000  # DSM's training set, drawn once from the mixture
BATCH, LR, EMA_DECAY = 256, 1e-2, 0.999  # DSM: a large rate, decayed linearly to 0, and an EMA of the weights
LONG_STEPS, MANIFOLD_STEPS = 100_000, 1000  # plain Langevin's steps in the share figure; eq. (1)'s per σ (3.1)


class UserError(Exception):
    """A problem the user can fix; main() prints it as one line."""


# ----------------------------------------------------------------------------- data
def ring(n, sigma=0.0, radius=2.0):
    """n points uniform on a circle, moved by isotropic noise σz: at σ = 0 exactly on the curve."""
    theta, z = 2 * math.pi * torch.rand(n), torch.randn(n, 2)  # z drawn at every σ: one seed, the same z for each σ
    return radius * torch.stack([theta.cos(), theta.sin()], 1) + sigma * z


class Mixture:
    """Gaussian mixture Σ_k w_k N(μ_k, var I): samples, log-density and exact (perturbed) score."""

    def __init__(self, means, weights, var=1.0):
        self.means, self.weights, self.var = means, weights, var
        # Constants of the score's logits, computed once: plain Langevin calls the score 1e5 times.
        self.log_w, self.half_sq = weights.log()[:, None], 0.5 * (means**2).sum(1, keepdim=True)

    def sample(self, n):
        """n i.i.d. samples."""
        k = torch.multinomial(self.weights, n, replacement=True)
        return self.means[k] + math.sqrt(self.var) * torch.randn(n, self.means.shape[1], device=self.means.device)

    def log_prob(self, x, sigma=0.0):
        """log p_σ(x) = log Σ_k w_k N(x; μ_k, (var + σ²) I), by logsumexp: finite far from the modes."""
        v, sq = self.var + sigma**2, ((x[:, None, :] - self.means) ** 2).sum(-1)
        return torch.logsumexp(self.log_w.T - sq / (2 * v) - 0.5 * x.shape[1] * math.log(2 * math.pi * v), dim=1)

    def score(self, x, sigma):
        """Exact score ∇ₓ log p_σ of p_σ = p ∗ N(0, σ² I): Σ_k r_k(x) (μ_k - x) / (var + σ²)."""
        v = self.var + sigma * sigma  # every component's variance after perturbation, one per example
        # Responsibilities r_k = softmax of the log-joint; the shared -‖x‖²/2v term cancels, so the logits are linear
        # in x, finite even at |x| = 50. Components along dim 0, (K, n): a softmax over a short last dim is slower.
        logits = (self.means @ x.T - self.half_sq) / v + self.log_w
        return ((self.means.T @ torch.softmax(logits, dim=0)).T - x) / v[:, None]


def mode_share(x):
    """Share of samples on the (d,d) side of x+y=0, with its binomial standard error."""
    p = (x.sum(1) > 0).float().mean().item()
    return p, math.sqrt(p * (1 - p) / x.shape[0])


# ----------------------------------------------------------------------------- model
class ScoreNet(nn.Module):
    """Small MLP s_θ(x, σ) for 2-D data, conditioned on log σ; SiLU, as in toy_ncsn.py."""

    def __init__(self, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x, sigma):
        """Score estimate at noise levels σ (shape (n,), one per example)."""
        # x / √(1 + σ²) keeps the inputs O(1) from σ = 0.1 to 20 (noisy points reach |x| ≈ 60);
        # output / σ as in NCSNv2: the true score scales like 1/σ, so the net only outputs O(1) numbers.
        h = torch.cat([x / (1 + sigma**2).sqrt()[:, None], sigma.log()[:, None]], dim=1)
        return self.net(h) / sigma[:, None]


def get_sigmas(sigma_1, sigma_L, L):
    """The paper's noise levels: a geometric sequence σ_1 > ... > σ_L (Section 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


# ----------------------------------------------------------------------------- loss
def score_matching_loss(score, x):
    """Eq. (1) (Hyvärinen 2005): mean of tr(∇ₓ s_θ(x)) + ½ ‖s_θ(x)‖², with the exact trace (d backward passes)."""
    x = x.detach().requires_grad_(True)
    s = score(x)
    # Each point's output depends on that point only, so the gradient of Σ_n s_i(x_n) is row i of every
    # point's Jacobian; create_graph keeps the trace a function of θ, so the loss trains.
    trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (s**2).sum(1)).mean()


def dsm_loss(score, x, sigmas):
    """Eq. (5)-(6) with λ(σ) = σ²: mean of ½ ‖σ s_θ(x + σz, σ) + z‖², σ log-uniform in [σ_L, σ_1] per example
    (the continuous form of eq. (6)'s average over the σ_i, as in toy_ncsn.py); tensor ops only: no host sync."""
    lo, hi = sigmas[-1].log(), sigmas[0].log()
    sigma, z = (lo + (hi - lo) * torch.rand(len(x), device=x.device, dtype=x.dtype)).exp(), torch.randn_like(x)
    # σ² ‖s + (x̃ - x)/σ²‖² = ‖σ s + z‖²: the same quantity, without dividing by a tiny σ².
    return 0.5 * ((sigma[:, None] * score(x + sigma[:, None] * z, sigma) + z) ** 2).sum(1).mean()


def train(model, ema, opt, data, args):
    """Adam on dsm_loss over random batches of `data`, lr decayed linearly to 0, EMA of the weights; returns losses."""
    sigmas = get_sigmas(args.sigma_1, args.sigma_L, args.L).to(data.device)
    lr, every, losses, t0 = opt.param_groups[0]["lr"], max(1, args.steps // 10), [], time.time()
    for step in range(1, args.steps + 1):
        opt.param_groups[0]["lr"] = lr * (1 - (step - 1) / args.steps)
        loss = dsm_loss(model, data[torch.randint(len(data), (BATCH,), device=data.device)], sigmas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(EMA_DECAY, step / (step + 10))  # short runs must not average in the random start
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1 - decay)
        losses.append(loss.detach())
        if step % every == 0 or step == args.steps:
            recent = torch.stack(losses[-every:]).mean().item()  # the only host sync
            if not math.isfinite(recent):
                raise UserError(f"DSM loss is {recent} at step {step}")
            print(f"step {step}/{args.steps} | loss {recent:.4f} | {time.time() - t0:.1f} s", flush=True)
    return torch.stack(losses).cpu()


def train_score_matching(sigma, steps, batch=256, lr=3e-3, device="cpu"):
    """Fit s_θ(x), a 2-64-64-2 SiLU MLP (smooth, so that its Jacobian trains), by eq. (1) on fresh ring(batch, σ)."""
    net = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)  # one kernel for all tensors
    # A constant rate: with σ = 0 the loss has no minimum, and a decaying rate would only hide that.
    losses, t0 = [], time.time()
    for _ in range(steps):
        loss = score_matching_loss(net, ring(batch, sigma).to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    losses = torch.stack(losses).cpu()
    if not torch.isfinite(losses).all():
        raise UserError(f"eq. (1) loss at σ = {sigma:g} became {losses[-1].item()}")
    print(f"σ = {sigma:<5g} {steps} steps of eq. (1) in {time.time() - t0:.1f} s", flush=True)
    return net.eval(), losses


# ----------------------------------------------------------------------------- sampler
def sigma_like(x, sigma):
    """σ once per point of x: the form the network takes."""
    return torch.full((len(x),), sigma, device=x.device, dtype=x.dtype)


def tweedie(score, x, sigma):
    """E[x_0 | x] = x + σ² s_θ(x, σ), Tweedie's formula: the noise-free last step of ALD."""
    return x + sigma**2 * score(x, sigma_like(x, sigma))


@torch.no_grad()
def langevin(score, x, sigma, alpha, T):
    """Langevin dynamics at one noise level: T steps x <- x + (α/2) s_θ(x, σ) + √α z."""
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_like(x, sigma)) + math.sqrt(alpha) * torch.randn_like(x)
    return x


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T Langevin steps at each σ_i with α_i = ε σ_i²/σ_L².

    The official code writes x <- x + step_lr s + √(2 step_lr) z: its `step_lr` is α/2 here.
    Returns (x, trace): trace[0] the start, trace[i] x after level i; `denoise` adds the Tweedie step at σ_L.
    """
    trace, sigma_L = [x], sigmas[-1].item()
    for sigma in sigmas.tolist():
        x = langevin(score, x, sigma, eps * sigma**2 / sigma_L**2, T)
        trace.append(x)
    return (tweedie(score, x, sigma_L) if denoise else x), trace


def share_curve(score, x, sigma, eps, max_steps, keep, points=25):
    """Plain Langevin in one run: the (d,d) share at 0 and log-spaced step counts, and the samples at step `keep`."""
    steps = sorted({0, keep, *torch.logspace(0, math.log10(max_steps), points).round().long().tolist()})
    shares, kept = [], None
    for done, c in zip([0, *steps], steps):
        x = langevin(score, x, sigma, eps, c - done)
        shares.append(mode_share(x)[0])
        kept = x if c == keep else kept
    return steps, shares, kept


# ----------------------------------------------------------------------------- figures
def save(fig, path):
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_field(ax, net, title, radius):
    """Near a piece of the ring: the size of s_θ on a fine grid, its direction on a coarse one; returns the image."""
    lo, hi, n, m = (radius - 0.8, radius + 0.8), (-0.8, 0.8), 200, 13
    g = torch.cartesian_prod(torch.linspace(*hi, n), torch.linspace(*lo, n)).flip(1)  # (x, y), x fastest, as imshow
    q, arc = torch.cartesian_prod(torch.linspace(*lo, m), torch.linspace(*hi, m)), torch.linspace(-0.45, 0.45, 100)
    with torch.no_grad():
        size, s = net(g).norm(dim=1).reshape(n, n), nn.functional.normalize(net(q), dim=1)  # arrows: directions only
    im = ax.imshow(size.log10().numpy(), extent=(*lo, *hi), origin="lower", cmap="magma", vmin=0, vmax=3.5)
    ax.quiver(*q.T.numpy(), *s.T.numpy(), color="w", angles="xy", width=0.005)
    ax.plot(radius * arc.cos(), radius * arc.sin(), color="tab:cyan", ls=":", lw=1, label="the ring (data)")
    ax.set(xlim=lo, ylim=hi, xlabel="x", ylabel="y", aspect="equal",
           title=title + "\n(arrows: direction of s_θ; colour: log₁₀ ‖s_θ‖)")
    ax.legend(fontsize=8, loc="upper left")
    return im


def fig_manifold(runs, shown, path, radius=2.0):
    """Section 3.1: eq. (1) against steps with each optimum; the learned score near the ring at σ = 0 and `shown`."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.6))
    nets = {sigma: net.cpu() for sigma, net, _ in runs}
    color = {sigma: plt.cm.viridis(0.3 + 0.6 * (i - 1) / max(1, len(nets) - 2)) if i else "k"  # σ = 0 in black
             for i, sigma in enumerate(nets)}
    ax = axes[0, 0]
    for sigma, _, losses in runs:
        ax.plot(range(1, len(losses) + 1), -losses, color=color[sigma], lw=1, label=f"σ = {sigma:g}")
        if sigma > 0:
            ax.axhline(1 / (2 * sigma**2), color=color[sigma], ls="--", lw=1)
    ax.plot([], [], "k--", lw=1, label="−optimum = 1/(2σ²)")
    ax.set(yscale="log", xlabel="training step", ylabel="−loss (log axis)",
           title="Eq. (1) on a ring of radius 2: at σ = 0 it falls without end;\n"
                 "with noise σ it settles at its minimum −1/(2σ²)")
    ax.legend(fontsize=8, loc="lower right")
    ax, r, theta = axes[0, 1], torch.linspace(radius - 0.3, radius + 0.3, 121), 2 * math.pi * torch.arange(360) / 360
    u = torch.stack([theta.cos(), theta.sin()], 1)  # s_θ(ρu)·u: the radial score at 360 angles on the circle ρ
    for sigma in [0.0, shown]:
        with torch.no_grad():
            radial = torch.stack([(nets[sigma](rho * u) * u).sum(1) for rho in r.tolist()])
        ax.plot(r, radial.mean(1), color=color[sigma], label=f"learned, σ = {sigma:g}: mean over angles, 10-90%")
        ax.fill_between(r, *radial.quantile(torch.tensor([0.1, 0.9]), dim=1), color=color[sigma], alpha=0.2, lw=0)
    ax.plot(r, -(r - radius) / shown**2, color=color[shown], ls="--", lw=1,
            label=f"−(r−{radius:g})/σ², the perturbed ring's score")
    ax.axvline(radius, color="0.6", lw=0.8)
    ax.set(xlabel="distance r from the centre", ylabel="radial score s_θ(x)·x/r",
           title="Across the ring: at σ = 0 a cliff, the ring a steep attractor;\n"
                 "with noise, the slope −1/σ² of the perturbed data")
    ax.legend(fontsize=8, loc="upper right")
    for ax, sigma, title in [(axes[1, 0], 0.0, "σ = 0: a thin sink on the ring, anything off it"),
                             (axes[1, 1], shown, f"σ = {shown:g}: s_θ points at the ring, growing with the distance")]:
        fig.colorbar(plot_field(ax, nets[sigma], title, radius), ax=ax, shrink=0.8, label="log₁₀ ‖s_θ(x)‖")
    save(fig, path)


def plot_density(ax, mix, lim, sigma=0.0, n=200):
    """log p_σ on [-lim, lim]² as filled contours, clipped 12 nats below its peak (log scale: both modes show)."""
    xx, yy = torch.meshgrid(*[torch.linspace(-lim, lim, n, device=mix.means.device)] * 2, indexing="xy")
    logp = mix.log_prob(torch.stack([xx.ravel(), yy.ravel()], 1), sigma).reshape(n, n)
    ax.contourf(xx.cpu(), yy.cpu(), logp.clamp_min(logp.max() - 12).cpu(), levels=12, cmap="Blues")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="x", ylabel="y", aspect="equal")


def fig_samples(rows, mix, lim, path):
    """Figure 3 of the paper: iid / Langevin / ALD samples over the density, one row per score source."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.6 * len(rows)), squeeze=False)
    for r, (source, samples) in enumerate(rows):
        for c, (name, x) in enumerate(samples.items()):
            ax, (p, se), d = axes[r, c], mode_share(x), mix.means[-1, 0].item()
            plot_density(ax, mix, lim)
            ax.scatter(*x.cpu().T, s=2, c="tab:red", alpha=0.6)
            ax.set_title(f"{source}: {name}\n({d:g},{d:g}) share {p:.2f}±{se:.2f}")
    save(fig, path)


def fig_share(curves, weight, path):
    """(d,d)-mode share against the number of Langevin steps (0, then a log axis), with the true weight."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (steps, shares), style in curves:
        ax.plot(steps, shares, style, label=label, ms=4)
    ax.axhline(weight, color="k", ls="--", lw=1, label=f"true weight {weight:g}")
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)  # step 0, the start, then a log axis
    ax.set(xlim=(0, None), ylim=(0, 1), xlabel="Langevin steps (all levels together for ALD; 0 = the start)",
           ylabel="share of samples with x+y > 0",
           title="Plain Langevin barely moves mass between modes; ALD gets it in L*T steps")
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)


def fig_scores(mix, sigmas, lim, path):
    """Perturbed densities p_σ and their exact score fields at four of the σ's."""
    picks = sorted({0, len(sigmas) // 3, 2 * len(sigmas) // 3, len(sigmas) - 1})
    fig, axes = plt.subplots(1, len(picks), figsize=(3.4 * len(picks), 3.6))
    g = torch.linspace(-lim, lim, 15, device=mix.means.device)
    pts = torch.cartesian_prod(g, g)
    for ax, i in zip(axes, picks):
        sigma = sigmas[i].item()
        plot_density(ax, mix, lim, sigma)
        s = nn.functional.normalize(mix.score(pts, sigma_like(pts, sigma)), dim=1).cpu()  # directions only
        ax.quiver(*pts.cpu().T, *s.T, color="tab:red")
        ax.set_title(rf"$p_\sigma$ and its score, $\sigma$={sigma:.2g}")
    save(fig, path)


def fig_gif(trace, sigmas, mix, lim, path):
    """Animate ALD over the data density: trace[0] the start, then the samples after each level."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    plot_density(ax, mix, lim)
    dots, writer = ax.scatter(*trace[0].cpu().T, s=2, c="tab:red"), PillowWriter(fps=2)
    with writer.saving(fig, path, dpi=80):
        for i, x in enumerate(trace):
            dots.set_offsets(x.cpu().numpy())
            where = "start" if i == 0 else f"after level {i}/{len(sigmas)}"
            ax.set_title(rf"ALD, exact scores: {where}, $\sigma$={sigmas[max(i - 1, 0)]:.2g}")
            writer.grab_frame()
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def manifold(a, device):
    """Section 3.1: eq. (1) on the ring at σ = 0 and at each σ; prints the loss at a few steps, writes the figure."""
    runs, steps = [], MANIFOLD_STEPS
    for sigma in [0.0, *a.manifold_sigmas]:
        torch.manual_seed(a.seed)  # the same network at start, the same points and the same z at every σ
        runs.append((sigma, *train_score_matching(sigma, steps, device=device)))
    window = max(1, steps // 20)
    ends = sorted({e for e in [steps // 10, steps // 4, steps // 2, steps] if e >= window})
    print("mean eq. (1) loss over steps " + "".join(f"{f'{e - window + 1}-{e}':>11s}" for e in ends)
          + "   optimum -1/(2σ²)")
    for sigma, _, losses in runs:
        optimum = f"{-1 / (2 * sigma**2):.1f}" if sigma > 0 else "none (-∞)"
        print(f"{f'σ = {sigma:g}':29s}" + "".join(f"{losses[e - window:e].mean().item():11.1f}" for e in ends)
              + f"   {optimum}")
    shown = min(a.manifold_sigmas, key=lambda s: abs(math.log(s / 0.05)))  # its minimum is reached in a short run
    fig_manifold(runs, shown, os.path.join(a.out, "langevin_manifold.png"))
    print(f"figure written to {a.out}/langevin_manifold.png")


def low_density(a, device):
    """Section 3.2: iid, plain Langevin and ALD with exact and learned scores; prints shares, writes figures."""
    mix = Mixture(torch.tensor([[-DISTANCE] * 2, [DISTANCE] * 2], device=device),
                  torch.tensor([1 - WEIGHT, WEIGHT], device=device))  # the paper's toy target
    sigmas = get_sigmas(a.sigma_1, a.sigma_L, a.L).to(device)
    lim = 1.6 * DISTANCE  # the start box, [-8, 8]² at d = 5
    x0 = (2 * torch.rand(a.n_samples, 2, device=device) - 1) * lim
    sources = [("exact", mix.score, 0.0, max(LONG_STEPS, a.plain_T))]  # name, score, plain Langevin's σ and steps
    if not a.exact_only:
        model = ScoreNet().to(device)
        ema = copy.deepcopy(model).requires_grad_(False)
        train(model, ema, torch.optim.Adam(model.parameters(), lr=LR), mix.sample(N_DATA), a)
        sources.append(("learned", ema.eval(), a.sigma_L, a.plain_T))
    rows, curves, traces = [], [], {}
    for name, score, sigma_plain, long in sources:
        steps, shares, x_plain = share_curve(score, x0, sigma_plain, a.plain_eps, long, keep=a.plain_T)
        samples = {"iid": mix.sample(a.n_samples), "Langevin": x_plain}
        samples["ALD"], traces[name] = anneal_langevin(score, x0, sigmas, a.eps, a.T, denoise=not a.no_denoise)
        rows.append((name, samples))
        print(f"{name + ':':9s}" + " | ".join(f"{k} {mode_share(v)[0]:.2f}±{mode_share(v)[1]:.2f}"
                                              for k, v in samples.items()), flush=True)
        curves.append((f"Langevin, {name} score", (steps, shares), "o-" if name == "exact" else "s-"))
        ald = ([a.T * i for i in range(a.L + 1)], [mode_share(x)[0] for x in traces[name]])  # trace[0]: the start
        curves.append((f"ALD, {name} score", ald, "^-" if name == "exact" else "v-"))
    fig_samples(rows, mix, lim, os.path.join(a.out, "langevin_samples.png"))
    fig_share(curves, WEIGHT, os.path.join(a.out, "langevin_share.png"))
    fig_scores(mix, sigmas, lim, os.path.join(a.out, "langevin_scores.png"))
    if a.gif:
        fig_gif(traces["exact"], sigmas.tolist(), mix, lim, os.path.join(a.out, "ald.gif"))
    print(f"figures written to {a.out}/")


def positive(kind):
    """An argparse type: a finite number of `kind` (int or float) above 0."""
    def parse(text):
        if not 0 < (value := kind(text)) < math.inf:  # a ValueError becomes argparse's "invalid int value"
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # adds "(default: ...)"
    add = p.add_argument
    add("--manifold", action="store_true", help="run Section 3.1 only: eq. (1) on a ring; writes langevin_manifold.png")
    add("--seed", type=int, default=0, help="random seed; same seed on CPU, same outputs")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present")
    add("--out", default="out/langevin_compare", help="figure directory")
    add("--manifold-sigmas", type=positive(float), nargs="+", default=[0.01, 0.05, 0.2], metavar="SIGMA",
        help="with --manifold: the noise levels σ > 0 beside σ = 0")
    add("--n-samples", type=positive(int), default=1280, help="number of samples per method")
    add("--eps", type=positive(float), default=0.005, help="ALD's ε; α_i = ε σ_i²/σ_L²")
    add("--T", type=positive(int), default=100, help="ALD's Langevin steps per noise level")
    add("--plain-eps", type=positive(float), default=0.1, help="plain Langevin's step size ε")
    add("--plain-T", type=positive(int), default=1000, help="plain Langevin's steps")
    add("--L", type=positive(int), default=10, help="number of noise levels, at least 2")
    add("--sigma-1", type=positive(float), default=20.0, help="largest noise level σ_1")
    add("--sigma-L", type=positive(float), default=0.1, help="smallest noise level σ_L")
    add("--no-denoise", action="store_true", help="skip ALD's last step x + σ_L² s_θ(x, σ_L)")
    add("--steps", type=positive(int), default=2000, help="DSM training steps for the network")
    add("--exact-only", action="store_true", help="skip training; exact scores only")
    add("--gif", action="store_true", help="also write ald.gif (exact scores, level by level)")
    a = p.parse_args(argv)
    # A Langevin step α on a Gaussian of variance v diverges for α >= 4v and is badly biased near it: keep α < 2v,
    # on the unit-variance modes for plain Langevin, at the largest level (variance 1 + σ_1²) for ALD.
    eps_max = 2 * a.sigma_L**2 * (1 + a.sigma_1**2) / a.sigma_1**2
    if a.L < 2 or not a.sigma_1 > a.sigma_L or a.plain_eps >= 2 or a.eps >= eps_max:
        p.error(f"need --L >= 2, --sigma-1 > --sigma-L, --plain-eps < 2 and --eps < {eps_max:.3g} (a stable chain)")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device found")
    return a


def main(argv=None):
    """Section 3.1 with --manifold; else 3.2: sample with exact and learned scores, print shares, write figures."""
    a = parse_args(argv)
    device = "cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu"
    torch.set_num_threads(1)  # tiny tensors: no per-op thread hand-off, no busy neighbour core
    torch.manual_seed(a.seed)
    try:
        os.makedirs(a.out, exist_ok=True)
        (manifold if a.manifold else low_density)(a, device)
    except (UserError, OSError) as e:  # e.g. --out under a file: one line, no traceback
        sys.exit(f"langevin_compare.py: error: {e}")


if __name__ == "__main__":
    main()
