"""One trained network, three samplers: sample quality against the number of network evaluations.

    python benchmarks/toy_samplers.py                      # heart and mixture, seeds 0 1 2, figure in out/
    python benchmarks/toy_samplers.py --out docs/toy_samplers.png

For each distribution and seed it trains toy_ncsn.py's default model once (`python toy_ncsn.py --dist D
--seed S`), then samples it with annealed Langevin dynamics (T steps on each of 10 levels), the reverse
SDE (N steps), the reverse SDE with one Langevin corrector step after each predictor step, and the
probability-flow ODE (Heun, N σ's), at several budgets,
through toy_ncsn.sample as the script does. Quality is the energy distance to 10,000 fresh
real points over the noise floor (1x = as close as real data), plus the (5,5) share for the mixture.
It prints the median and worst over the seeds and draws the medians with samples of each sampler.
"""
import argparse
import pathlib
import statistics
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import toy_ncsn as toy  # noqa: E402

# name -> (label, flags of toy_ncsn.py that set the budget, budgets)
SWEEP = {"ald": ("ALD (Algorithm 1), T per level", ["--sampler", "ald", "--T"], [1, 3, 10, 30, 100]),
         "sde": ("reverse SDE, N steps", ["--sampler", "sde", "--N"], [10, 30, 100, 300, 1000]),
         "pc": ("reverse SDE + 1 corrector step", ["--sampler", "sde", "--T", "1", "--N"], [10, 30, 100, 300]),
         "ode": ("probability-flow ODE (Heun), N σ's", ["--sampler", "ode", "--N"], [3, 6, 11, 26, 50, 151])}


def main():
    """Train per seed, sweep every sampler, print the table, draw the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dists", nargs="+", default=["heart", "mixture"], choices=list(toy.DISTS),
                   help="distributions (default: heart mixture)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--out", default="out/toy_samplers.png", help="figure path (default: out/toy_samplers.png)")
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {}  # (dist, sampler, budget) -> list of (ratio, share, nfe, samples)
    for dist in args.dists:
        torch.manual_seed(12345)
        ref = toy.DISTS[dist](10_000).double()
        floor = toy.energy_floor(ref, 2000)
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                toy.main(["--dist", dist, "--seed", str(seed), "--out", tmp])
                ckpt = torch.load(f"{tmp}/model.pt")
            model = toy.ScoreNet(ckpt["args"]["hidden"])
            model.load_state_dict(ckpt["model"])
            torch.manual_seed(seed)
            data = toy.DISTS[dist](100_000)  # the training set, which sets the samplers' start
            for name, (_, flags, budgets) in SWEEP.items():
                for budget in budgets:
                    torch.manual_seed(seed)
                    settings = toy.parse_args(["--dist", dist, *flags, str(budget)])
                    x, _, _, nfe = toy.sample(settings, model, ckpt["sigmas"][0].item(), data)
                    ratio = toy.energy_distance(x.double(), ref) / floor
                    share = (x.sum(1) > 0).float().mean().item()
                    results.setdefault((dist, name, budget), []).append((ratio, share, nfe, x))

    print(f"{'dist':8s} {'sampler':4s} {'budget':>6s} {'evals':>6s} {'ratio median':>12s} {'worst':>7s}  (5,5) share")
    for (dist, name, budget), rows in results.items():
        ratios, shares = [r[0] for r in rows], [r[1] for r in rows]
        share = f"{statistics.median(shares):.3f} ({min(shares):.3f}-{max(shares):.3f})" if dist == "mixture" else ""
        print(f"{dist:8s} {name:4s} {budget:6d} {rows[0][2]:6d} {statistics.median(ratios):11.2f}x "
              f"{max(ratios):6.2f}x  {share}", flush=True)

    shown = {"ald": 100, "sde": 1000, "ode": 50}  # the script's defaults
    fig, axes = plt.subplots(len(args.dists), 4, figsize=(14, 3.6 * len(args.dists)), squeeze=False)
    for row, dist in zip(axes, args.dists):
        for name, (label, _, budgets) in SWEEP.items():
            rows = [results[dist, name, b] for b in budgets]
            row[0].plot([r[0][2] for r in rows], [statistics.median(x[0] for x in r) for r in rows], "o-", label=label)
        row[0].axhline(1, color="k", ls="--", lw=1, label="floor: two sets of real points")
        row[0].set(xscale="log", yscale="log", xlabel="network evaluations per sample",
                   ylabel="energy distance / floor (median of seeds)", title=f"{dist}: quality against cost")
        row[0].legend(fontsize=7)
        data = toy.DISTS[dist](2000)
        lim = 1.15 * data.abs().quantile(0.999).item()
        for ax, (name, budget) in zip(row[1:], shown.items()):
            ratio, share, nfe, x = results[dist, name, budget][0]
            ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.4)
            ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:red", alpha=0.4)
            extra = f"\n(5,5) share {share:.2f}" if dist == "mixture" else ""
            toy.frame(ax, lim, f"{name}, {nfe} evaluations: {ratio:.2f}x{extra}")
    fig.suptitle("The same network sampled three ways (red: samples of seed "
                 f"{args.seeds[0]}, blue: data)")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    toy.save(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
