"""The paper's Section 3 in two experiments: why the data must be perturbed, and why annealing matters.

3.1 The manifold hypothesis (--manifold). Score matching, eq. (1): E[tr(∇ₓ s_θ(x)) + ½ ‖s_θ(x)‖²]
(Hyvärinen 2005), with the trace exact (one backward pass per coordinate: two in 2D). A small MLP
s_θ(x) minimises it on points exactly on a ring of radius 2 (fresh points each step), and on the same
points moved by isotropic noise σz for a few σ's. On the ring the loss has no minimum: it falls
without end, the network making the ring an ever steeper attractor (off the curve the score is
undefined). With noise it settles at the perturbed data's optimum -½ E‖∇ₓ log p_σ‖² ≈ -1/(2σ²), the
later the smaller σ. The script prints the loss at a few steps and draws it, with the learned fields.

3.2 Low-density regions (the default run). The paper's toy target
p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I) is sampled three ways, all
starting from the same points drawn uniformly on [-8,8]² (the paper's Figure 3):
  iid       exact samples of p, for reference;
  Langevin  plain Langevin dynamics, x <- x + (ε/2) ∇ₓ log p(x) + √ε z, ε = 0.1, T = 1000
            (the official code's toy defaults; --plain-eps, --plain-T);
  ALD       annealed Langevin dynamics, Algorithm 1: 10 geometric σ's from 20 down to σ_L,
            100 steps per level, α_i = ε σ_i²/σ_L².
Each runs twice: with the exact (closed-form) scores, and with a small σ-conditioned MLP
trained here with denoising score matching. The script prints the share of samples in the (5,5)
mode (true value 0.8) and draws where the samples land, how that share evolves with the number of
Langevin steps (plain Langevin up to 1e5 steps), and the perturbed densities and score fields.

Choice of σ_L and ε. The official toy code treats level σ as a mixture with component std σ and
stops at σ_L = 1. Here every level is the exact perturbed mixture p ∗ N(0, σ² I) (component variance
1 + σ²), so the last level must be nearly the data: σ_L = 0.1 gives variance 1.01. Stability then
bounds ε: at large σ the step over the level's variance is α_1 / (1 + σ_1²) ≈ ε / σ_L², and
ε = 0.005 keeps that at 0.5, below the instability threshold of 4 and with a small discretisation
bias. The price: the levels with σ < 1 take small steps, but their densities differ little.

Run:  python langevin_compare.py              (3.2; --exact-only: exact scores, no training)
      python langevin_compare.py --manifold   (3.1 only)
      python langevin_compare.py --help
Paper: Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution",
NeurIPS 2019, arXiv:1907.05600.
"""
import argparse
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


class UserError(Exception):
    """A run gone wrong or settings that cannot work; main() prints it as one line and exits."""


# ----------------------------------------------------------------------------- data
def ring(n, sigma=0.0, radius=2.0):
    """n points uniform on a circle, moved by isotropic noise σz: at σ = 0 exactly on the curve."""
    theta = 2 * math.pi * torch.rand(n)
    # z is drawn at every σ, so one seed gives the same points and the same z for each σ.
    z = torch.randn(n, 2)
    return radius * torch.stack([theta.cos(), theta.sin()], 1) + sigma * z


class Mixture:
    """Gaussian mixture Σ_k w_k N(μ_k, var I): samples, log-density and exact (perturbed) score."""

    def __init__(self, means, weights, var=1.0):
        self.means, self.weights, self.var = means, weights, var
        # Constants of the score's logits, computed once: plain Langevin calls the score 1e5 times.
        self.log_w = weights.log()[:, None]
        self.half_sq = 0.5 * (means**2).sum(1, keepdim=True)

    def sample(self, n):
        """n i.i.d. samples."""
        k = torch.multinomial(self.weights, n, replacement=True)
        return self.means[k] + math.sqrt(self.var) * torch.randn(n, self.means.shape[1], device=self.means.device)

    def log_prob(self, x, sigma=0.0):
        """log p_σ(x) = log Σ_k w_k N(x; μ_k, (var + σ²) I), by logsumexp: finite far from the modes."""
        v = self.var + sigma**2
        sq = ((x[:, None, :] - self.means) ** 2).sum(-1)
        return torch.logsumexp(self.log_w.T - sq / (2 * v) - 0.5 * x.shape[1] * math.log(2 * math.pi * v), dim=1)

    def score(self, x, sigma):
        """Exact score ∇ₓ log p_σ of p_σ = p ∗ N(0, σ² I): Σ_k r_k(x) (μ_k - x) / (var + σ²)."""
        v = self.var + sigma * sigma  # every component's variance after perturbation, one per example
        # Responsibilities r_k = softmax of the log-joint; the shared -‖x‖²/2v term cancels, so the
        # logits are linear in x and stay finite even at |x| = 50. Components along dim 0, (K, n):
        # a softmax over a short last dim is several times slower on CPU.
        logits = (self.means @ x.T - self.half_sq) / v + self.log_w
        return ((self.means.T @ torch.softmax(logits, dim=0)).T - x) / v[:, None]


def toy_mixture(weight, dist, device="cpu"):
    """The paper's toy target: (1-w) N((-d,-d), I) + w N((d,d), I)."""
    means = torch.tensor([[-dist, -dist], [dist, dist]], device=device)
    return Mixture(means, torch.tensor([1 - weight, weight], device=device))


def mode_share(x):
    """Share of samples on the (d,d) side of x+y=0, with its binomial standard error."""
    p = (x.sum(1) > 0).float().mean().item()
    return p, math.sqrt(p * (1 - p) / x.shape[0])


# ----------------------------------------------------------------------------- model
def plain_score_net(hidden=64):
    """s_θ(x) without σ, for eq. (1): an MLP 2-64-64-2 with SiLU, smooth so that its Jacobian trains."""
    return nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, 2))


class ScoreNet(nn.Module):
    """Small MLP s_θ(x, σ) for 2-D data, conditioned on log σ."""

    def __init__(self, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
                                 nn.Linear(hidden, hidden), nn.Softplus(), nn.Linear(hidden, 2))

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
    """Eq. (5)-(6) with λ(σ) = σ²: mean of ½ ‖σ s_θ(x + σz, σ) + z‖², one random σ per example.

    σ is drawn log-uniformly between σ_L and σ_1, the continuous form of eq. (6)'s average over the
    geometric σ_i, as in toy_ncsn.py and mnist_ncsn.py.
    """
    log_1, log_L = sigmas[0].log(), sigmas[-1].log()  # tensors: no wait for the GPU, as .item() would
    sigma = torch.exp(log_L + (log_1 - log_L) * torch.rand(len(x), device=x.device, dtype=x.dtype))
    z = torch.randn_like(x)
    # σ² ‖s + (x̃ - x)/σ²‖² = ‖σ s + z‖²: the same quantity, without dividing by a tiny σ².
    return 0.5 * ((sigma[:, None] * score(x + sigma[:, None] * z, sigma) + z) ** 2).sum(1).mean()


def train(mix, sigmas, steps, batch=256, lr=1e-2):
    """Fit a ScoreNet to fresh mixture samples with dsm_loss (Adam, lr decayed linearly to 0); prints progress."""
    net = ScoreNet().to(mix.means.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    # A large rate decayed to 0 learns fast, then averages out the noisy DSM gradients: ALD's share came out
    # 0.76-0.83 over 5 seeds (with σ drawn from the 10 levels, a constant 1e-2 gave 0.66-0.71).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    t0 = time.time()
    for step in range(1, steps + 1):
        loss = dsm_loss(net, mix.sample(batch), sigmas)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0 or step == steps:
            value, rate = loss.item(), step / (time.time() - t0)
            if not math.isfinite(value):
                raise UserError(f"DSM loss is {value} at step {step}")
            print(f"step {step}/{steps} | loss {value:.4f} | {rate:.0f} steps/s | {(steps - step) / rate:.0f} s left")
    print(f"trained in {time.time() - t0:.1f} s")
    return net.eval()


def train_score_matching(sigma, steps, batch=256, lr=3e-3, device="cpu"):
    """Fit a plain_score_net by score_matching_loss on fresh ring(batch, σ) points (Adam); returns it, its losses."""
    net = plain_score_net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)  # one kernel for all tensors: ~6% faster here
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


@torch.no_grad()
def langevin(score, x, sigma, alpha, T):
    """Langevin dynamics at one noise level: T steps x <- x + (α/2) s_θ(x, σ) + √α z."""
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_like(x, sigma)) + math.sqrt(alpha) * torch.randn_like(x)
    return x


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T steps x <- x + (α_i/2) s_θ(x, σ_i) + √α_i z per level,
    α_i = ε σ_i²/σ_L². The official code's step_lr is α/2 (x <- x + step_lr s + √(2 step_lr) z).
    Returns (x, trace), trace[0] the start and trace[i] x after level i; `denoise` adds a last step
    x + σ_L² s_θ(x, σ_L) (Tweedie's formula) that is not in trace."""
    trace, sigma_L = [x], sigmas[-1].item()
    for sigma in sigmas.tolist():
        x = langevin(score, x, sigma, eps * sigma**2 / sigma_L**2, T)
        trace.append(x)
    return (x + sigma_L**2 * score(x, sigma_like(x, sigma_L)) if denoise else x), trace


def share_curve(score, x, sigma, eps, max_steps, keep, points=25):
    """Plain Langevin in one run: the (d,d) share at log-spaced step counts, and the samples at step `keep`."""
    grid = torch.logspace(0, math.log10(max_steps), points).round().long().tolist()
    steps, shares, done, kept = sorted({keep, *grid}), [], 0, None
    for c in steps:
        x, done = langevin(score, x, sigma, eps, c - done), c
        shares.append(mode_share(x)[0])
        if c == keep:
            kept = x
    return steps, shares, kept


# ----------------------------------------------------------------------------- figures
def radial_score(score, r, n_angles=360):
    """s(x)·x/‖x‖ on circles of radii r: its mean over the angles, and its 10% and 90% quantiles."""
    theta = 2 * math.pi * torch.arange(n_angles) / n_angles
    u = torch.stack([theta.cos(), theta.sin()], 1)
    with torch.no_grad():
        radial = torch.stack([(score(rho * u) * u).sum(1) for rho in r.tolist()])
    return radial.mean(1), radial.quantile(0.1, dim=1), radial.quantile(0.9, dim=1)


def fig_manifold(runs, shown, path, radius=2.0):
    """Section 3.1: eq. (1) against steps with each optimum; the learned score near the ring at σ = 0 and `shown`."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.6))
    nets = {sigma: net.cpu() for sigma, net, _ in runs}
    noisy = [sigma for sigma in nets if sigma > 0]
    color = {0.0: "k", **{sigma: plt.cm.viridis(0.3 + 0.6 * i / max(1, len(noisy) - 1))
                          for i, sigma in enumerate(noisy)}}
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

    ax, r = axes[0, 1], torch.linspace(radius - 0.3, radius + 0.3, 121)
    for sigma in [0.0, shown]:
        mean, low, high = radial_score(nets[sigma], r)
        ax.plot(r, mean, color=color[sigma], label=f"learned, σ = {sigma:g}: mean over angles, 10-90%")
        ax.fill_between(r, low, high, color=color[sigma], alpha=0.2, lw=0)
    ax.plot(r, -(r - radius) / shown**2, color=color[shown], ls="--", lw=1,
            label=f"−(r−{radius:g})/σ², the perturbed ring's score")
    ax.axvline(radius, color="0.6", lw=0.8)
    ax.set(xlabel="distance r from the centre", ylabel="radial score s_θ(x)·x/r",
           title="Across the ring: at σ = 0 a cliff, the ring a steep attractor;\n"
                 "with noise, the slope −1/σ² of the perturbed data")
    ax.legend(fontsize=8, loc="upper right")

    titles = {0.0: "σ = 0: a thin sink on the ring, anything off it",
              shown: f"σ = {shown:g}: s_θ points at the ring, growing with the distance"}
    for ax, sigma in zip(axes[1], [0.0, shown]):
        plot_ring_field(fig, ax, nets[sigma], titles[sigma], radius)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_ring_field(fig, ax, net, title, radius):
    """Near a piece of the ring: the size of s_θ on a fine grid (colour), its direction on a coarse one (arrows)."""
    lo, hi, n, m = (radius - 0.8, radius + 0.8), (-0.8, 0.8), 200, 13
    gx, gy = torch.meshgrid(torch.linspace(*lo, n), torch.linspace(*hi, n), indexing="xy")
    qx, qy = torch.meshgrid(torch.linspace(*lo, m), torch.linspace(*hi, m), indexing="xy")
    arc = torch.linspace(-0.45, 0.45, 100)
    with torch.no_grad():
        size = net(torch.stack([gx.ravel(), gy.ravel()], 1)).norm(dim=1).reshape(n, n)
        s = net(torch.stack([qx.ravel(), qy.ravel()], 1))
    s = s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)
    im = ax.imshow(size.log10().numpy(), extent=(*lo, *hi), origin="lower", cmap="magma", vmin=0, vmax=3.5)
    ax.quiver(qx.numpy(), qy.numpy(), s[:, 0].reshape(m, m).numpy(), s[:, 1].reshape(m, m).numpy(),
              color="w", angles="xy", width=0.005)
    ax.plot(radius * arc.cos(), radius * arc.sin(), color="tab:cyan", ls=":", lw=1, label="the ring (data)")
    ax.set(xlim=lo, ylim=hi, xlabel="x", ylabel="y", aspect="equal",
           title=title + "\n(arrows: direction of s_θ; colour: log₁₀ ‖s_θ‖)")
    ax.legend(fontsize=8, loc="upper left")
    fig.colorbar(im, ax=ax, shrink=0.8, label="log₁₀ ‖s_θ(x)‖")


def density_grid(mix, lim, sigma=0.0, n=200):
    """Grid coordinates and log p_σ on [-lim, lim]², clipped 12 nats below its peak, for backgrounds."""
    g = torch.linspace(-lim, lim, n, device=mix.means.device)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    logp = mix.log_prob(torch.stack([xx.ravel(), yy.ravel()], 1), sigma).reshape(n, n)
    return xx.cpu(), yy.cpu(), logp.clamp_min(logp.max() - 12).cpu()  # log scale: both modes show


def fig_samples(rows, mix, lim, path):
    """Figure 3 of the paper: iid / Langevin / ALD samples over the density, one row per score source."""
    xx, yy, dens = density_grid(mix, lim)
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.6 * len(rows)), squeeze=False)
    for r, (source, samples) in enumerate(rows):
        for c, (name, x) in enumerate(samples.items()):
            ax, (p, se), d = axes[r, c], mode_share(x), mix.means[-1, 0].item()
            ax.contourf(xx, yy, dens, levels=12, cmap="Blues")
            ax.scatter(*x.cpu().T, s=2, c="tab:red", alpha=0.6)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="x", ylabel="y", aspect="equal",
                   title=f"{source}: {name}\n({d:g},{d:g}) share {p:.2f}±{se:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fig_share(curves, weight, path):
    """(d,d)-mode share against the number of Langevin steps, log axis, with the true weight."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (steps, shares), style in curves:
        ax.plot(steps, shares, style, label=label, ms=4)
    ax.axhline(weight, color="k", ls="--", lw=1, label=f"true weight {weight:g}")
    ax.set(xscale="log", ylim=(0, 1), xlabel="Langevin steps (all levels together for ALD)",
           ylabel="share of samples with x+y > 0",
           title="Plain Langevin barely moves mass between modes; ALD gets it in L*T steps")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fig_scores(mix, sigmas, lim, path):
    """Perturbed densities p_σ and their exact score fields at four of the σ's."""
    picks = sorted({0, len(sigmas) // 3, 2 * len(sigmas) // 3, len(sigmas) - 1})
    fig, axes = plt.subplots(1, len(picks), figsize=(3.4 * len(picks), 3.6))
    for ax, i in zip(axes, picks):
        sigma = sigmas[i].item()
        xx, yy, dens = density_grid(mix, lim, sigma)
        ax.contourf(xx, yy, dens, levels=12, cmap="Blues")
        g = torch.linspace(-lim, lim, 15, device=mix.means.device)
        qx, qy = torch.meshgrid(g, g, indexing="xy")
        pts = torch.stack([qx.ravel(), qy.ravel()], 1)
        s = mix.score(pts, torch.full((len(pts),), sigma, device=pts.device))
        s = (s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)).cpu()  # directions only
        ax.quiver(qx.cpu(), qy.cpu(), s[:, 0].reshape(15, 15), s[:, 1].reshape(15, 15), color="tab:red")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="x", ylabel="y", aspect="equal",
               title=rf"$p_\sigma$ and its score, $\sigma$={sigma:.2g}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fig_gif(trace, sigmas, mix, lim, path):
    """Animate ALD level by level over the data density (PillowWriter)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    xx, yy, dens = density_grid(mix, lim)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.contourf(xx, yy, dens, levels=12, cmap="Blues")
    dots = ax.scatter(*trace[0].cpu().T, s=2, c="tab:red")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="x", ylabel="y", aspect="equal")

    def frame(i):
        """Move the dots to the samples after level i (i = 0: the start)."""
        dots.set_offsets(trace[i].cpu().numpy())
        ax.set_title(rf"ALD, exact scores: level {i}, $\sigma$={sigmas[max(i - 1, 0)]:.2g}" if i else "ALD: the start")

    FuncAnimation(fig, frame, frames=len(trace)).save(path, writer=PillowWriter(fps=2))
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def manifold(sigmas, steps, seed, out, device):
    """Section 3.1: eq. (1) on the ring at σ = 0 and at each σ; prints the loss at a few steps, writes the figure."""
    runs = []
    for sigma in [0.0, *sigmas]:
        torch.manual_seed(seed)  # the same network at start, the same points and the same z at every σ
        runs.append((sigma, *train_score_matching(sigma, steps, device=device)))
    window = max(1, steps // 20)
    ends = sorted({e for e in [steps // 10, steps // 4, steps // 2, steps] if e >= window})
    print("mean eq. (1) loss over steps " + "".join(f"{f'{e - window + 1}-{e}':>11s}" for e in ends)
          + "   optimum -1/(2σ²)")
    for sigma, _, losses in runs:
        optimum = f"{-1 / (2 * sigma**2):.1f}" if sigma > 0 else "none (-∞)"
        print(f"{f'σ = {sigma:g}':29s}" + "".join(f"{losses[e - window:e].mean().item():11.1f}" for e in ends)
              + f"   {optimum}")
    shown = min(sigmas, key=lambda s: abs(math.log(s / 0.05)))  # a σ whose minimum is reached in a short run
    fig_manifold(runs, shown, os.path.join(out, "langevin_manifold.png"))
    print(f"figure written to {out}/langevin_manifold.png")


WEIGHT, DISTANCE = 0.8, 5.0  # the paper's mixture: 1/5 N((-5,-5), I) + 4/5 N((5,5), I)
LONG_STEPS, MANIFOLD_STEPS = 100_000, 1000  # plain Langevin's steps in the share figure; Adam steps of eq. (1)


def positive(kind):
    """An argparse type: a finite number of `kind` (int or float) above 0."""
    def parse(text):
        value = kind(text)  # a ValueError becomes argparse's "invalid int value"
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--manifold", action="store_true",
        help="run Section 3.1 only: eq. (1) on a ring, on it and with noise; writes langevin_manifold.png")
    add("--manifold-sigmas", type=positive(float), nargs="+", default=[0.01, 0.05, 0.2], metavar="SIGMA",
        help="--manifold: the noise levels σ > 0 beside σ = 0 (default: 0.01 0.05 0.2)")
    add("--seed", type=int, default=0, help="random seed; same seed on CPU, same outputs (default: 0)")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present (default: auto)")
    add("--out", default="out/langevin_compare", help="figure directory (default: out/langevin_compare)")
    add("--n-samples", type=positive(int), default=1280, help="number of samples per method (default: 1280)")
    add("--plain-eps", type=positive(float), default=0.1, help="plain Langevin's step size ε (default: 0.1)")
    add("--plain-T", type=positive(int), default=1000, help="plain Langevin's steps (default: 1000)")
    add("--eps", type=positive(float), default=0.005, help="ALD's ε, α_i = ε σ_i²/σ_L² (default: 0.005)")
    add("--T", type=positive(int), default=100, help="ALD's steps per noise level (default: 100)")
    add("--L", type=positive(int), default=10, help="ALD's number of noise levels (default: 10)")
    add("--sigma-1", type=positive(float), default=20.0, help="largest noise level σ_1 (default: 20.0)")
    add("--sigma-L", type=positive(float), default=0.1, help="smallest noise level σ_L (default: 0.1)")
    add("--no-denoise", action="store_true", help="skip ALD's final Tweedie step x + σ_L² s_θ(x, σ_L)")
    add("--steps", type=positive(int), default=2000, help="DSM training steps of the network (default: 2000)")
    add("--exact-only", action="store_true", help="skip training; exact scores only")
    add("--gif", action="store_true", help="also write ald.gif (exact scores, level by level)")
    a = p.parse_args(argv)
    if a.L < 2 or not a.sigma_1 > a.sigma_L:
        p.error(f"ALD needs --L of at least 2 (got {a.L}) and --sigma-1 above --sigma-L (got {a.sigma_1}, {a.sigma_L})")
    # A Langevin step α on a Gaussian of variance v diverges for α >= 4v and is badly biased near it.
    if a.plain_eps >= 2:
        p.error(f"--plain-eps {a.plain_eps} is too large for a stable chain on unit-variance modes: use < 2")
    if a.eps * a.sigma_1**2 / a.sigma_L**2 >= 2 * (1 + a.sigma_1**2):
        p.error(f"--eps {a.eps} makes α_1 too large for a stable chain: "
                f"use < {2 * a.sigma_L**2 * (1 + a.sigma_1**2) / a.sigma_1**2:.3g}")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device found")
    return a


def main(argv=None):
    """Section 3.1 with --manifold; else 3.2: sample with exact and learned scores, print shares, write figures."""
    try:
        run(parse_args(argv))  # parse_args exits with its own one-line errors
    except UserError as e:
        sys.exit(f"langevin_compare.py: error: {e}")


def run(a):
    """Section 3.1 with --manifold; else 3.2; a UserError for a run gone wrong."""
    device = "cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu"
    torch.set_num_threads(1)  # tiny tensors: no per-op thread hand-off, no busy neighbour core (>10x faster here)
    torch.manual_seed(a.seed)
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {a.out}: {e.strerror}") from None
    if a.manifold:
        return manifold(a.manifold_sigmas, MANIFOLD_STEPS, a.seed, a.out, device)

    mix = toy_mixture(WEIGHT, DISTANCE, device)
    sigmas = get_sigmas(a.sigma_1, a.sigma_L, a.L).to(device)
    lim = 1.6 * DISTANCE  # the start box, [-8, 8]² at d = 5
    x0 = (2 * torch.rand(a.n_samples, 2, device=device) - 1) * lim
    sources = [("exact", mix.score, 0.0, max(LONG_STEPS, a.plain_T))]  # name, score, plain Langevin's σ and steps
    if not a.exact_only:
        sources.append(("learned", train(mix, sigmas, a.steps), a.sigma_L, a.plain_T))

    rows, curves, traces = [], [], {}
    for name, score, sigma_plain, long in sources:
        steps, shares, x_plain = share_curve(score, x0, sigma_plain, a.plain_eps, long, keep=a.plain_T)
        samples = {"iid": mix.sample(a.n_samples), "Langevin": x_plain}
        samples["ALD"], traces[name] = anneal_langevin(score, x0, sigmas, a.eps, a.T, denoise=not a.no_denoise)
        rows.append((name, samples))
        print(f"{name + ':':9s}" + " | ".join(f"{k} {mode_share(v)[0]:.2f}±{mode_share(v)[1]:.2f}"
                                              for k, v in samples.items()), flush=True)
        ald_steps = [a.T * (i + 1) for i in range(a.L)]  # the trace's start (step 0) is off the log axis
        curves.append((f"Langevin, {name} score", (steps, shares), "o-" if name == "exact" else "s-"))
        curves.append((f"ALD, {name} score", (ald_steps, [mode_share(x)[0] for x in traces[name][1:]]),
                       "^-" if name == "exact" else "v-"))

    fig_samples(rows, mix, lim, os.path.join(a.out, "langevin_samples.png"))
    fig_share(curves, WEIGHT, os.path.join(a.out, "langevin_share.png"))
    fig_scores(mix, sigmas, lim, os.path.join(a.out, "langevin_scores.png"))
    if a.gif:
        fig_gif(traces["exact"], sigmas.tolist(), mix, lim, os.path.join(a.out, "ald.gif"))
    print(f"figures written to {a.out}/")


if __name__ == "__main__":
    main()
