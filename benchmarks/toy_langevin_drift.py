"""Why ALD lags the reverse SDE on the same network: its Langevin chains drift along thin shapes.

    python benchmarks/toy_langevin_drift.py                # circle, seeds 0 1 2 (minutes on one core)

The circle's density is rotationally symmetric, so a Langevin chain driven by the exact score keeps its
angles uniform, whatever its step size: any unevenness along the ring is the learned score's. For each
seed it trains toy_ncsn.py's default network (`python toy_ncsn.py --dist circle --seed S`) and reports,
for 5000 samples of ALD, the reverse SDE and the ODE at their defaults and for 5000 real points: the
ring's radius (mean and spread), its unevenness along the ring (the spread of the counts in 8 equal
angular sectors over their mean; chance alone gives about 0.04 at this size) and the energy distance
to 10,000 real points over the floor, also for ALD's samples moved to fresh uniform angles, and the same
for ALD at the paper's ten levels of T = 100 steps (ε = 5e-5). Then, at two of those ten noise levels,
it starts 5000 chains from exact samples of p_σ (real points plus σz) and runs Langevin dynamics with the
learned score and that step α_i = ε σ_i²/σ_L² for 100 steps (what ALD did at each level), 1000 and
10,000: where the chains go when they settle.
"""
import argparse
import math
import pathlib
import statistics
import sys
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import toy_ncsn as toy  # noqa: E402


OLD, OLD_EPS = ["--sampler", "ald", "--L", "10", "--T", "100", "--eps", "5e-5"], 5e-5  # the paper's L and T


def ring_stats(x, ref=None):
    """Mean radius, radial spread, unevenness along the ring (std / mean of the counts in 8 sectors) and,
    given real points `ref`, the energy distance to them over the noise floor."""
    r = x.norm(dim=1)
    counts = torch.histc(torch.atan2(x[:, 1], x[:, 0]), 8, -math.pi, math.pi)
    ratio = math.nan if ref is None else toy.energy_distance(x.double(), ref) / toy.energy_floor(ref, len(x))
    return r.mean().item(), r.std().item(), (counts.std() / counts.mean()).item(), ratio


def show(name, stats, table):
    """Print one row of ring_stats and keep it in table[name]."""
    ratio = "" if math.isnan(stats[3]) else f" | {stats[3]:.2f}x the floor"
    print(f"  {name:44s} radius {stats[0]:.4f} ± {stats[1]:.4f} | unevenness {stats[2]:.3f}{ratio}", flush=True)
    table.setdefault(name, []).append(stats)


def main():
    """Train per seed, measure the three samplers' rings, then run the fixed-σ chains."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--n", type=int, default=5000, help="samples and chains (default: 5000)")
    args = p.parse_args()
    torch.set_num_threads(1)
    steps = [100, 1000, 10_000]
    table = {}  # row name -> ring_stats per seed
    torch.manual_seed(12345)
    ref = toy.circle(10_000).double()  # the reference of toy_quality.py and toy_samplers.py
    for seed in args.seeds:
        print(f"seed {seed}")
        with tempfile.TemporaryDirectory() as tmp:
            toy.main(["--dist", "circle", "--seed", str(seed), "--out", tmp])
            ckpt = torch.load(f"{tmp}/model.pt")
        model = toy.ScoreNet()
        model.load_state_dict(ckpt["model"])
        torch.manual_seed(seed)
        data = toy.DISTS["circle"](toy.N_DATA)  # the training set, which sets the samplers' start
        sigma_1, sigma_L, eps = ckpt["sigmas"][0].item(), ckpt["args"]["sigma_L"], OLD_EPS
        show("real points", ring_stats(toy.circle(args.n), ref), table)
        for name, flags in [("ald at its default", ["--sampler", "ald"]), ("ald at L = 10, T = 100, ε = 5e-5", OLD),
                            ("sde at its default", ["--sampler", "sde"]), ("ode at its default", ["--sampler", "ode"])]:
            torch.manual_seed(seed)
            x = toy.sample(toy.parse_args(["--dist", "circle", *flags, "--n-samples", str(args.n)]), model, sigma_1,
                           data)[0]
            show(name, ring_stats(x, ref), table)
            if name.startswith("ald"):  # the same radii at fresh uniform angles: what is left is the gap across
                theta = 2 * math.pi * torch.rand(len(x))
                spun = x.norm(dim=1, keepdim=True) * torch.stack([theta.cos(), theta.sin()], 1)
                show(f"{name}, angles drawn afresh", ring_stats(spun, ref), table)
        for level in [6, 8]:  # σ ≈ 0.08 and 0.02 at the default σ_1, of the paper's ten levels
            sigma = toy.get_sigmas(sigma_1, sigma_L, 10)[level].item()
            x = toy.circle(args.n) + sigma * torch.randn(args.n, 2)
            print(f"  level {level + 1} of ALD: σ = {sigma:.3g}, α = {eps * sigma**2 / sigma_L**2:.2g}")
            show(f"level {level + 1}: exact p_σ (real points + σz)", ring_stats(x), table)
            done = 0
            for T in steps:
                x, done = toy.langevin(model, x, sigma, eps * sigma**2 / sigma_L**2, T - done), T
                show(f"level {level + 1}: then {T} steps, learned score", ring_stats(x), table)
    print(f"\nmedian (worst) over seeds {args.seeds}: radial spread | unevenness along the ring | energy / floor")
    for name, rows in table.items():
        spread, uneven, ratio = ([r[i] for r in rows] for i in (1, 2, 3))
        ratio = "" if math.isnan(ratio[0]) else f" | {statistics.median(ratio):.2f}x ({max(ratio):.2f}x)"
        print(f"  {name:44s} {statistics.median(spread):.4f} | {statistics.median(uneven):.3f} ({max(uneven):.3f})"
              + ratio)


if __name__ == "__main__":
    main()
