"""Noise Conditional Score Network on 2D toy data, in one file.

Song & Ermon (2019), "Generative Modeling by Estimating Gradients of the Data Distribution",
arXiv:1907.05600. A small MLP s_θ(x, σ) learns the score ∇x log p_σ(x) of the data blurred by
Gaussian noise of every σ in a geometric schedule (denoising score matching, eq. 5-6); annealed
Langevin dynamics (Algorithm 1) then walks uniform noise down the σ's to the data.

    python toy_ncsn.py --dist heart          # train, sample, plot into out/toy_heart/
    python toy_ncsn.py --dist mixture --gif  # the paper's 1:4 mixture, with an animation

Read top to bottom: data, model, loss, sampler, figures, main().
"""
import argparse
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

# ----------------------------------------------------------------------------- data
# Each distribution is one function: n -> (n, 2) float tensor. Three have a closed-form density.

HEART_M = torch.tensor([[1.0, 0.5], [0.5, 1.0]])


def heart(n):
    """z ~ N(0, I), y = z M, x = (y1, sign(y1) y2): a filled heart."""
    y = torch.randn(n, 2) @ HEART_M
    return torch.stack([y[:, 0], y[:, 0].sign() * y[:, 1]], 1)


def heart_log_prob(x):
    """log p(x) of `heart`: x -> y = (x1, sign(x1) x2) is one-to-one with |det| = 1, y ~ N(0, MᵀM)."""
    y = torch.stack([x[:, 0], x[:, 0].sign() * x[:, 1]], 1)
    cov = HEART_M.T @ HEART_M
    return torch.distributions.MultivariateNormal(torch.zeros(2), cov).log_prob(y)


def split_normal(n):
    """x = z + (sign(z1), 0): a standard normal cut along x1 = 0, each half pushed 1 unit away."""
    z = torch.randn(n, 2)
    return z + torch.stack([z[:, 0].sign(), torch.zeros(n)], 1)


def split_normal_log_prob(x):
    """log p(x) of `split_normal`: N(x1 - sign(x1)) N(x2) for |x1| > 1, zero density in the gap."""
    z = x - torch.stack([x[:, 0].sign(), torch.zeros(len(x))], 1)
    logp = -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
    return torch.where(x[:, 0].abs() > 1, logp, torch.full_like(logp, -math.inf))


def mixture(n):
    """The paper's 1/5 N((-5,-5), I) + 4/5 N((5,5), I)."""
    sign = torch.where(torch.rand(n) < 0.8, 1.0, -1.0)
    return 5 * sign[:, None] + torch.randn(n, 2)


def mixture_log_prob(x, sigma=0.0):
    """log p_σ(x) of `mixture` blurred by N(0, σ²I): each component's variance becomes 1 + σ².

    σ is a number or one value per point; the score of p_σ follows by autograd.
    """
    var = 1 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1) ** 2
    mus, logw = torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), torch.tensor([0.2, 0.8]).log()
    sq = ((x[:, None, :] - mus) ** 2).sum(-1)  # (n, 2 components)
    return torch.logsumexp(logw - sq / (2 * var) - torch.log(2 * math.pi * var), dim=1)


def circle(n):
    """A thin ring of radius 2."""
    theta = 2 * math.pi * torch.rand(n)
    r = 2 + 0.05 * torch.randn(n)
    return torch.stack([r * theta.cos(), r * theta.sin()], 1)


def moons(n):
    """Two interleaved half circles."""
    t = math.pi * torch.rand(n)
    upper = torch.rand(n) < 0.5
    x = torch.where(upper, t.cos(), 1 - t.cos())
    y = torch.where(upper, t.sin(), 0.5 - t.sin())
    return 1.5 * torch.stack([x - 0.5, y - 0.25], 1) + 0.05 * torch.randn(n, 2)


def spirals(n):
    """Two interleaved spiral arms."""
    t = 3 * math.pi * torch.rand(n).sqrt()
    arm = torch.where(torch.rand(n) < 0.5, 1.0, -1.0)
    xy = torch.stack([t * t.cos(), t * t.sin()], 1) * arm[:, None] / 3
    return xy + 0.05 * torch.randn(n, 2)


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
LOG_PROBS = {"heart": heart_log_prob, "split_normal": split_normal_log_prob, "mixture": mixture_log_prob}


# ----------------------------------------------------------------------------- model

class ScoreNet(nn.Module):
    """s_θ(x, σ): an MLP on (x, log σ) with softplus activations, as in the paper's toy experiments."""

    def __init__(self, hidden=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
                                 nn.Linear(hidden, hidden), nn.Softplus(), nn.Linear(hidden, 2))

    def forward(self, x, sigma):
        """s_θ(x, σ) for points x (n, 2) and one σ per point, σ (n,)."""
        # The true score of p_σ has size ~1/σ, from 0.1 to 100 across the schedule. The network
        # predicts σ·s instead, which is O(1) at every σ, and we divide by σ (NCSNv2, technique 3).
        h = torch.cat([x, sigma.log()[:, None]], 1)
        return self.net(h) / sigma[:, None]


def get_sigmas(sigma_1, sigma_L, L):
    """The paper's noise levels: a geometric sequence σ_1 > ... > σ_L."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


# ----------------------------------------------------------------------------- loss

def dsm_loss(score, x, sigmas):
    """Eq. (5)-(6), λ(σ) = σ²: mean of ½ σ² ‖s(x̃, σ) + (x̃ - x)/σ²‖², one random σ per example."""
    sigma = sigmas[torch.randint(len(sigmas), (len(x),), device=x.device)]
    z = torch.randn_like(x)
    x_tilde = x + sigma[:, None] * z
    # σ² ‖s + (x̃ - x)/σ²‖² = ‖σ s + z‖²: the same quantity, without dividing by a tiny σ².
    return 0.5 * ((sigma[:, None] * score(x_tilde, sigma) + z) ** 2).sum(1).mean()


def train(model, data, sigmas, steps, batch_size=512, lr=2e-3, log_every=500):
    """Adam on dsm_loss over random batches of `data`; prints progress; returns the loss history."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, t0 = [], time.time()
    for step in range(1, steps + 1):
        # The DSM loss is very noisy (its minimum is far from zero); a learning rate decaying
        # linearly to zero averages that noise out. Measured on heart: 2x the noise floor in
        # energy distance, against 4x-12x (depending on the seed) at a constant rate.
        opt.param_groups[0]["lr"] = lr * (1 - (step - 1) / steps)
        batch = data[torch.randint(len(data), (batch_size,), device=data.device)]
        loss = dsm_loss(model, batch, sigmas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if step % log_every == 0 or step == steps:
            recent = torch.stack(losses[-log_every:]).mean().item()  # the only host sync
            if not math.isfinite(recent):
                sys.exit(f"toy_ncsn.py: error: the loss became {recent} at step {step}; try a smaller --lr")
            rate = step / (time.time() - t0)
            print(f"step {step:6d}/{steps} | loss {recent:.4f} | {rate:5.0f} steps/s | "
                  f"{(steps - step) / rate:5.1f} s left", flush=True)
    return torch.stack(losses).cpu()


# ----------------------------------------------------------------------------- sampler

@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps=5e-5, T=100, denoise=True, return_traj=False):
    """Annealed Langevin dynamics, Algorithm 1, with α_i = ε σ_i²/σ_L² and T steps per level.

    Each step is the paper's x <- x + (α/2) s(x, σ_i) + √α z. The official code writes
    x <- x + step_lr s + √(2 step_lr) z, so its `step_lr` is α/2 here. With `denoise`, a last
    step x + σ_L² s(x, σ_L) (Tweedie's formula) removes the noise of the last level.
    """
    traj = [x] if return_traj else None  # kept on the device: no copy, no GPU sync per step
    for sigma in sigmas.tolist():
        alpha = eps * sigma**2 / sigmas[-1].item() ** 2
        sigma_b = torch.full((len(x),), sigma, device=x.device)
        for _ in range(T):
            x = x + 0.5 * alpha * score(x, sigma_b) + math.sqrt(alpha) * torch.randn_like(x)
            if return_traj:
                traj.append(x)
    if denoise:
        sigma_L = sigmas[-1].item()
        x = x + sigma_L**2 * score(x, torch.full((len(x),), sigma_L, device=x.device))
        if return_traj:
            traj.append(x)
    return (x, torch.stack(traj).cpu()) if return_traj else x


# ----------------------------------------------------------------------------- measures and figures

def energy_distance(a, b):
    """Energy distance 2E‖a-b‖ - E‖a-a'‖ - E‖b-b'‖ (V-statistic: two finite real sets give a small floor)."""
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


def smoothed_data(x, data, sigma):
    """log p_σ(x) and its score for the data smoothed by N(0, σ²I): the exact target of DSM at σ."""
    logits = -torch.cdist(x, data) ** 2 / (2 * sigma**2)
    log_p = torch.logsumexp(logits, 1) - math.log(len(data) * 2 * math.pi * sigma**2)
    score = (torch.softmax(logits, 1) @ data - x) / sigma**2  # Σ_j w_j (x_j - x)/σ², w = softmax
    return log_p, score


def grid(lim, n):
    """An n x n grid of points over [-lim, lim]², as an (n², 2) tensor."""
    g = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


def net_score(model, x, sigma):
    """Evaluate the network at one σ on CPU points, on the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(x.to(device), torch.full((len(x),), sigma, device=device)).cpu()


def plot_score_field(ax, model, sigma, data, lim):
    """Arrows of s_θ(x, σ) over the data, all of one length: the score grows with the distance to the
    data, and true-length arrows far away would hide the ones near the data."""
    pts = grid(lim, 21)
    s = net_score(model, pts, sigma)
    pts, s = pts.numpy(), (s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()
    ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.3, label="data")
    ax.quiver(pts[:, 0], pts[:, 1], s[:, 0], s[:, 1], color="k", angles="xy", width=0.004,
              label="direction of s_θ(x, σ)")
    ax.set(title=f"σ = {sigma:.3g}", xlabel="x₁", ylabel="x₂", xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")


def make_figures(out, dist, model, sigmas, data, samples, traj, T, sigma_plot, gif):
    """Write the score field, samples, trajectories, score-vs-σ row, score error map (and ALD gif)."""
    lim = 1.15 * data.abs().quantile(0.999).item()
    data, samples, traj = data[:2000].numpy(), samples.cpu().numpy(), traj.numpy()

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=80)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    plot_score_field(ax, model, sigma_plot, data, lim)
    ax.set_title(f"{dist}: learned score s_θ(x, σ={sigma_plot:.3g})")
    ax.legend(loc="upper right")
    save(fig, "score_field.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    if dist in LOG_PROBS:  # closed-form density as the background
        pts = grid(lim, 200)
        p = LOG_PROBS[dist](pts).exp().reshape(200, 200).numpy()
        ax.imshow(p, extent=(-lim, lim, -lim, lim), origin="lower", cmap="Greys", alpha=0.5)
    ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.5, label="real")
    ax.scatter(samples[:, 0], samples[:, 1], s=1, c="tab:red", alpha=0.5, label="generated (ALD)")
    ax.set(title=f"{dist}: samples", xlabel="x₁", ylabel="x₂", xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.legend(loc="upper right", markerscale=8)
    save(fig, "samples.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.3, label="data")
    level_ends = traj[[0] + [T * (i + 1) for i in range(len(sigmas))] + [len(traj) - 1]]
    for i in range(8):
        ax.plot(level_ends[:, i, 0], level_ends[:, i, 1], ".-", lw=1, ms=5, alpha=0.8)
        ax.plot(*level_ends[-1, i], "r*", ms=10, label="end" if i == 0 else None)
    ax.plot(level_ends[0, :8, 0], level_ends[0, :8, 1], "ko", ms=5, label="start")
    # The first levels roam far outside the data (σ_1 is the data's diameter): show the data's box.
    ax.set(title=f"{dist}: 8 ALD trajectories, one dot per noise level", xlabel="x₁", ylabel="x₂",
           xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.legend(loc="upper right")
    save(fig, "trajectories.png")

    levels = sorted(set(torch.linspace(0, len(sigmas) - 1, 5).round().long().tolist()[1:]))  # up to 4, σ_L last
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 4.6), squeeze=False)
    for ax, sigma in zip(axes[0], sigmas[levels].tolist()):
        plot_score_field(ax, model, sigma, data, lim)
    fig.suptitle(f"{dist}: the learned score at decreasing σ: large σ smooths p into one blob")
    save(fig, "score_sigmas.png")

    pts = grid(lim, 64)
    log_p, s_ref = smoothed_data(pts, torch.from_numpy(data), sigma_plot)
    err = (sigma_plot * (net_score(model, pts, sigma_plot) - s_ref).norm(dim=1)).reshape(64, 64).numpy()
    fig, ax = plt.subplots(figsize=(5.6, 5))
    im = ax.imshow(err, extent=(-lim, lim, -lim, lim), origin="lower", cmap="magma",
                   norm=matplotlib.colors.LogNorm(vmin=1e-2, vmax=max(err.max(), 1e-1)))
    ax.contour(pts[:, 0].reshape(64, 64).numpy(), pts[:, 1].reshape(64, 64).numpy(), log_p.reshape(64, 64).numpy(),
               levels=[-6, -4, -2], colors="cyan", linewidths=0.8)
    fig.colorbar(im, ax=ax, label="σ‖s_θ - s_ref‖")
    ax.set(title=f"score error at σ={sigma_plot:.3g} (contours: log p_σ = -6, -4, -2)\n"
                 "accurate only where the data are", xlabel="x₁", ylabel="x₂")
    save(fig, "score_error.png")

    if gif:
        from matplotlib.animation import FuncAnimation, PillowWriter
        frames = list(range(0, len(traj), max(1, len(traj) // 80))) + [len(traj) - 1]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.2)
        dots = ax.scatter(traj[0, :, 0], traj[0, :, 1], s=2, c="tab:red")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="x₁", ylabel="x₂")

        def update(k):
            dots.set_offsets(traj[frames[k]])
            level = min(max(frames[k] - 1, 0) // T, len(sigmas) - 1)
            ax.set_title(f"{dist}: ALD step {frames[k]}, σ = {sigmas[level].item():.3g}")

        FuncAnimation(fig, update, frames=len(frames)).save(os.path.join(out, "ald.gif"), writer=PillowWriter(fps=12))
        plt.close(fig)


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    """Command-line flags; bad values end in a one-line error."""
    p = argparse.ArgumentParser(description="Train a 2D NCSN with denoising score matching and sample it with "
                                "annealed Langevin dynamics (Song & Ermon 2019).")
    p.add_argument("--dist", default="heart", choices=list(DISTS), help="toy distribution (default: heart)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=512, help="examples per training step (default: 512)")
    p.add_argument("--lr", type=float, default=2e-3,
                   help="Adam learning rate at the start, decaying linearly to 0 (default: 2e-3)")
    p.add_argument("--hidden", type=int, default=128, help="hidden units per MLP layer (default: 128)")
    p.add_argument("--n-data", type=int, default=100_000, help="size of the training set (default: 100000)")
    p.add_argument("--L", type=int, default=10, help="number of noise levels (default: 10)")
    p.add_argument("--sigma-1", type=float, default=None,
                   help="largest σ (default: the largest pairwise distance in the data, NCSNv2 technique 1)")
    p.add_argument("--sigma-L", type=float, default=0.01, help="smallest σ (default: 0.01)")
    p.add_argument("--eps", type=float, default=5e-5, help="ALD step size ε, α_i = ε σ_i²/σ_L² (default: 5e-5)")
    p.add_argument("--T", type=int, default=100, help="Langevin steps per noise level (default: 100)")
    p.add_argument("--no-denoise", action="store_true", help="skip the final denoising step x + σ_L² s(x, σ_L)")
    p.add_argument("--n-samples", type=int, default=2000, help="samples to generate (default: 2000)")
    p.add_argument("--plot-sigma", type=float, default=0.2,
                   help="σ of the score-field and score-error figures; the nearest trained σ is used (default: 0.2)")
    p.add_argument("--gif", action="store_true", help="also write ald.gif, an animation of the sampler")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed on CPU, same samples (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present")
    p.add_argument("--out", default=None, help="output directory (default: out/toy_<dist>/)")
    args = p.parse_args(argv)
    for name in ["steps", "batch_size", "hidden", "n_data", "L", "T", "n_samples"]:
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["lr", "sigma_L", "eps", "plot_sigma"] + (["sigma_1"] if args.sigma_1 is not None else []):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.sigma_1 is not None and args.sigma_1 <= args.sigma_L:
        p.error(f"--sigma-1 ({args.sigma_1}) must be larger than --sigma-L ({args.sigma_L})")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def main(argv=None):
    """Train, sample, measure, plot."""
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # a 128-unit MLP is fastest on one thread, and immune to a busy core
    torch.manual_seed(args.seed)
    out = args.out or os.path.join("out", f"toy_{args.dist}")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        sys.exit(f"toy_ncsn.py: error: cannot create output directory {out}: {e.strerror}")
    t_start = time.time()

    data = DISTS[args.dist](args.n_data).to(device)
    sigma_1 = args.sigma_1 or torch.cdist(data[:2000], data[:2000]).max().item()
    if sigma_1 <= args.sigma_L:
        sys.exit(f"toy_ncsn.py: error: σ_1 = {sigma_1:.3g} from the data is not above --sigma-L {args.sigma_L}")
    sigmas = get_sigmas(sigma_1, args.sigma_L, args.L).to(device)
    model = ScoreNet(args.hidden).to(device)
    print(f"{args.dist}: {args.n_data} points, {args.L} σ's from {sigma_1:.3g} to {args.sigma_L:.3g}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, on {device}")

    train(model, data, sigmas, args.steps, args.batch_size, args.lr, log_every=max(1, args.steps // 10))
    torch.save({"model": model.state_dict(), "sigmas": sigmas.cpu(), "args": vars(args)}, os.path.join(out, "model.pt"))

    t0 = time.time()
    lim = data.abs().max().item()
    x0 = (2 * torch.rand(args.n_samples, 2, device=device) - 1) * lim  # uniform noise, as in the paper
    samples, traj = anneal_langevin(model, x0, sigmas, args.eps, args.T, not args.no_denoise, return_traj=True)
    print(f"sampled {args.n_samples} points with {args.L} x {args.T} Langevin steps in {time.time() - t0:.1f} s")
    np.save(os.path.join(out, "samples.npy"), samples.cpu().numpy().astype(np.float32))

    real = DISTS[args.dist](args.n_samples)
    ed = energy_distance(samples.cpu(), real)
    floor = np.mean([energy_distance(DISTS[args.dist](args.n_samples), real) for _ in range(5)])
    print(f"energy distance to fresh real samples: {ed:.4f} (two real sets: {floor:.4f}, ratio {ed / floor:.1f}x)")
    if args.dist == "mixture":
        share = (samples.sum(1) > 0).float().mean().item()
        print(f"share of samples in the (5,5) mode: {share:.3f} (true 0.800)")

    sigma_plot = sigmas[(sigmas.log() - math.log(args.plot_sigma)).abs().argmin()].item()
    make_figures(out, args.dist, model, sigmas.cpu(), data.cpu(), samples, traj, args.T, sigma_plot, args.gif)
    print(f"wrote figures, samples.npy and model.pt to {out}/ ({time.time() - t_start:.1f} s in all)")


if __name__ == "__main__":
    main()
