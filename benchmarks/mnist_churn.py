"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2: Heun steps with "churn") on mnist_ncsn.py's models.

    python benchmarks/mnist_churn.py --runs out/mnist_seeds --data-dir data/mnist --N 100 --churn 0 30 80

It is not one of mnist_ncsn.py's samplers: this script measures whether it should be. For each checkpoint
OUT/seed_S/checkpoint.pt and each S_churn it draws --n-samples images exactly as `mnist_ncsn.py --sample-only
--sampler ode --N N --seed S` does (the same prior, σ's, batches and precision), with the ODE's Heun step
replaced by Algorithm 2's, and scores them with the pinned classifier as benchmarks/mnist_samplers.py does.
S_churn = 0 is the ODE itself (Algorithm 1), which checks the plumbing against mnist_samplers.py.
"""
import argparse
import functools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import mnist_ncsn as m  # noqa: E402
import mnist_quality as q  # noqa: E402
from mnist_seeds import scoring_set  # noqa: E402

S_TMIN, S_TMAX, S_NOISE = 0.05, 50.0, 1.003  # EDM's ImageNet settings (Table 5); churn only inside [S_tmin, S_tmax]


@torch.no_grad()
def edm_stochastic(score, x, sigmas, churn=0.0, denoise=True):
    """Karras et al. 2022, Algorithm 2: raise σ_i to σ̂ = σ_i (1 + γ) by adding noise of variance σ̂² - σ_i²,
    γ = min(S_churn/N, √2 - 1) inside [S_tmin, S_tmax], then one Heun step of dx/dσ = -σ s_θ from σ̂ to σ_{i+1}."""
    trace, levels = [x], sigmas.tolist()
    gamma = min(churn / len(levels), math.sqrt(2) - 1)
    for sigma, sigma_next in zip(levels, levels[1:]):
        hat = sigma * (1 + gamma) if S_TMIN <= sigma <= S_TMAX else sigma
        x = x + math.sqrt(hat**2 - sigma**2) * S_NOISE * torch.randn_like(x)
        slope = -hat * score(x, m.sigma_like(x, hat))
        x_next = x + (sigma_next - hat) * slope
        slope_next = -sigma_next * score(x_next, m.sigma_like(x, sigma_next))
        x = x + (sigma_next - hat) * (slope + slope_next) / 2
        trace.append(x)
    return (m.tweedie(score, x, levels[-1]) if denoise else x), trace


def main():
    """Sample every run at every S_churn, print one row per S_churn."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="out/mnist_seeds", help="folder of seed_S/checkpoint.pt (default: out/mnist_seeds)")
    p.add_argument("--churn", type=float, nargs="+", default=[0, 30, 80], help="S_churn values (default: 0 30 80)")
    p.add_argument("--N", type=int, default=100, help="σ's (Karras, ρ = 7): 2N - 1 evaluations (default: 100)")
    p.add_argument("--n-samples", type=int, default=1000, help="samples per run (default: 1000)")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    args = p.parse_args()
    runs = sorted(Path(args.runs).glob("seed_*/checkpoint.pt"), key=lambda c: int(c.parent.name[5:]))
    if not runs:
        sys.exit(f"mnist_churn.py: error: no seed_*/checkpoint.pt in {args.runs}")
    net, test, train = scoring_set(q.CLASSIFIER, args.data_dir, args.n_samples, "mnist_churn.py")
    test_features, test_hist = q.predict(net, test, "cpu", features=True), q.quality(q.predict(net, test, "cpu"))[1]
    rows = {}
    for churn in args.churn:
        m.probability_flow_ode = functools.partial(edm_stochastic, churn=churn)  # what --sampler ode calls
        for ckpt in runs:
            seed = ckpt.parent.name[5:]
            run_args = m.parse_args(["--sample-only", "--ckpt", str(ckpt), "--sampler", "ode", "--N", str(args.N),
                                     "--seed", seed, "--n-samples", str(args.n_samples), "--data-dir", args.data_dir])
            saved = m.load_checkpoint(ckpt)
            m.fill_defaults(run_args, saved, "cpu")
            _, ema, _, _, data = m.build(run_args, saved, ckpt, "cpu")
            prior = m.gaussian_prior(data, run_args.sigma_1)
            torch.manual_seed(run_args.seed)
            t0 = time.time()
            x, _, _, nfe = m.sample(run_args, ema, prior, "cpu")
            seconds = time.time() - t0
            conf, hist = q.quality(q.predict(net, x[:, 0], "cpu"))
            fd = q.frechet_distance(q.predict(net, x[:, 0], "cpu", features=True), test_features)
            rows.setdefault(churn, []).append((conf, (hist - test_hist).abs().max().item(), fd, nfe, seconds))
            print(f"S_churn {churn:g}, seed {seed}: confident {conf:.3f} | Fréchet {fd:.1f} | {seconds:.0f} s",
                  flush=True)
    print(f"\nEDM's Algorithm 2, {args.N} Karras σ's, S_tmin {S_TMIN}, S_tmax {S_TMAX}, S_noise {S_NOISE}; "
          f"{args.n_samples:,} samples per run; median (worst) over {len(runs)} runs")
    for churn, r in rows.items():
        conf, gap, fd = ([x[i] for x in r] for i in range(3))
        print(f"S_churn {churn:4g}: {r[0][3]} evaluations, {statistics.median(x[4] for x in r) * 1000 / args.n_samples:.0f}"
              f" s / 1000 | confident {statistics.median(conf):.3f} ({min(conf):.3f}) | class gap "
              f"{statistics.median(gap):.3f} ({max(gap):.3f}) | Fréchet {statistics.median(fd):.1f} ({max(fd):.1f})")
    conf, hist = q.quality(q.predict(net, train, "cpu"))
    print(f"real training images ({len(train):,}): confident {conf:.3f}, Fréchet "
          f"{q.frechet_distance(q.predict(net, train, 'cpu', features=True), test_features):.1f} (the floor)")
    np.save(Path(args.runs) / "churn_rows.npy", np.array([[c, *x] for c, r in rows.items() for x in r]))


if __name__ == "__main__":
    main()
