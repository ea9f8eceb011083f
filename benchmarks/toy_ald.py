"""Annealed Langevin dynamics at equal cost: which (L, T, ε, start) puts Algorithm 1 on the noise floor.

    python benchmarks/toy_ald.py                         # every candidate, all 8 distributions, seeds 0 1 2
    python benchmarks/toy_ald.py --dists circle mixture --candidates 10x100:5e-5 100x10:t4

For each distribution and seed it trains toy_ncsn.py's default network once (`python toy_ncsn.py --dist D
--seed S`; kept in --cache, so a second call samples only), then samples 2000 points by `anneal_langevin`
with each candidate, --draws times with fresh noise: L noise levels of T steps (L·T + 1 network
evaluations with the Tweedie step), ε given or derived by NCSNv2's Technique 4 (`technique4_eps`,
"t4"), started from uniform noise over the data's box ("u", the paper's) or from `gaussian_prior`, the
N(mean, σ_1² + var) that covers σ_1 ("g").
Quality is the energy distance to 10,000 real points over the noise floor (toy_quality.py's measure),
median and worst over the seeds and draws, next to 20 fresh real sets of 2000 points (median, 90th
percentile); for the mixture also the (5,5) share (true 0.800), and for the circle the unevenness
along the ring (toy_langevin_drift.py's: the spread of the counts in 8 angular sectors over their mean).
"""
import argparse
import math
import pathlib
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import toy_ncsn as toy  # noqa: E402
from toy_langevin_drift import ring_stats  # noqa: E402
from toy_samplers import reference, trained  # noqa: E402

# The paper's settings (L = 10, T = 100, a uniform start), NCSNv2's Technique 4 at several T, and fixed ε.
CANDIDATES = ["10x100:5e-5:u", "10x100:t4:g", "50x20:t4:g", "200x5:t4:g", "1000x1:t4:g", "200x5:5e-5:g",
              "200x5:3e-5:g", "200x5:2e-5:g", "1000x1:2e-5:g"]


def parse_candidate(text):
    """'LxT:eps:start' -> (L, T, eps or None for Technique 4, start 'u' or 'g')."""
    levels, eps, start = (text.split(":") + ["u"])[:3]
    L, T = map(int, levels.split("x"))
    return L, T, None if eps == "t4" else float(eps), start


def main():
    """Train (or load) per seed, sample every candidate, print one table per measure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dists", nargs="+", default=list(toy.DISTS), choices=list(toy.DISTS), help="(default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--candidates", nargs="+", default=CANDIDATES,
                   help="LxT:eps:start, eps a number or t4 (Technique 4), start u (uniform) or g (Gaussian)")
    p.add_argument("--draws", type=int, default=3, help="sampling runs per network, each its own noise (default: 3)")
    p.add_argument("--cache", default=".cache/toy_nets", help="trained networks (default: .cache/toy_nets)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cands = {c: parse_candidate(c) for c in args.candidates}
    rows = {}  # (candidate, dist) -> [(ratio, share, unevenness, seconds)]
    spread = {}
    for dist in args.dists:
        ref, floor, spread[dist] = reference(dist)
        for seed in args.seeds:
            model, sigma_1, _ = trained(dist, seed, args.cache)
            torch.manual_seed(seed)
            data = toy.DISTS[dist](toy.N_DATA)  # the training set: the box and the Gaussian start
            lim = data.abs().max().item()
            for name, (L, T, eps, start) in cands.items():
                sigmas = toy.get_sigmas(sigma_1, 0.01, L)
                gamma = (sigma_1 / 0.01) ** (1 / (L - 1))
                eps = toy.technique4_eps(T, gamma, 0.01) if eps is None else eps
                for draw in range(args.draws):  # ALD's own noise moves the ratio as much as the network does
                    torch.manual_seed(1000 * seed + draw)
                    x0 = ((2 * torch.rand(2000, 2) - 1) * lim if start == "u"
                          else toy.gaussian_prior(data, sigma_1).sample((2000,)))
                    t0 = time.perf_counter()
                    x, _ = toy.anneal_langevin(model, x0, sigmas, eps, T)
                    seconds = time.perf_counter() - t0
                    ratio = toy.energy_distance(x.double(), ref) / floor if torch.isfinite(x).all() else math.inf
                    rows.setdefault((name, dist), []).append(
                        (ratio, (x.sum(1) > 0).float().mean().item(), ring_stats(x)[2], seconds, eps))
            print(f"{dist} seed {seed}: " + ", ".join(
                f"{n} " + " ".join(f"{r[0]:.2f}x" for r in rows[n, dist][-args.draws:]) for n in cands), flush=True)

    def med_worst(values):
        return f"{statistics.median(values):.2f}x ({max(values):.2f}x)"

    print(f"\nALD candidates: energy distance / floor, median (worst) over seeds {args.seeds} x {args.draws} draws")
    print(f"{'candidate':14s} {'evals':>5s} " + " ".join(f"{d:>15s}" for d in args.dists) + "  mixture share  circle uneven")
    for name, (L, T, _, _) in cands.items():
        share = (f"{statistics.median(r[1] for r in rows[name, 'mixture']):.3f} "
                 f"({max((r[1] for r in rows[name, 'mixture']), key=lambda s: abs(s - 0.8)):.3f})"
                 if "mixture" in args.dists else "")
        uneven = (f"{statistics.median(r[2] for r in rows[name, 'circle']):.3f} "
                  f"({max(r[2] for r in rows[name, 'circle']):.3f})" if "circle" in args.dists else "")
        print(f"{name:14s} {L * T + 1:5d} " + " ".join(f"{med_worst([r[0] for r in rows[name, d]]):>15s}"
                                                     for d in args.dists) + f"  {share:13s}  {uneven}")
    print(f"{'real sets':14s} {'':5s} " + " ".join(f"{f'{spread[d][0]:.2f}x ({spread[d][1]:.2f}x)':>15s}"
                                                  for d in args.dists) + "  (median, 90th percentile)")
    print("ε used (first distribution, first seed): " + ", ".join(
        f"{n} {rows[n, args.dists[0]][0][4]:.3g}" for n in cands))
    print("sampling s, median: " + ", ".join(
        f"{n} {statistics.median(r[3] for d in args.dists for r in rows[n, d]):.2f}" for n in cands))


if __name__ == "__main__":
    main()
