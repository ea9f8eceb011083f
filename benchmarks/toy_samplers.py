"""One trained network, five samplers: every sampler on every distribution, and quality against cost.

    python benchmarks/toy_samplers.py                        # all 8 distributions, seeds 0 1 2, figures in out/
    python benchmarks/toy_samplers.py --out docs             # the figures the docs show
    python benchmarks/toy_samplers.py --dists heart --sweep heart

For each distribution and seed it trains toy_ncsn.py's default model once (`python toy_ncsn.py --dist D
--seed S`; kept in --cache, so a second call samples only), then samples it with each of the five
samplers at its default (annealed Langevin, the reverse SDE, the probability-flow ODE, DDPM, DDIM),
through toy_ncsn.sample as the script does. ALD starts from the random state the default run's sampling
started from, so its column is what `python toy_ncsn.py --dist D --seed S` prints (and toy_quality.py
measures); the other samplers start from `torch.manual_seed(S)`.
Quality is the energy distance to 10,000 fresh real points over the noise floor (1x = as close as real
data), next to the same ratio for 20 fresh sets of 2000 real points (median and 90th percentile: what
chance alone gives). On the --sweep distributions it also samples at several budgets per sampler.
It prints the median and worst over the seeds, network evaluations and sampling time, and draws
toy_samplers.png (samples of every sampler on every distribution) and toy_samplers_cost.png
(quality against network evaluations).
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import toy_ncsn as toy  # noqa: E402

# name -> (label, flags of toy_ncsn.py, flag that sets the budget, budgets swept); the default budget is toy_ncsn's
SAMPLERS = {"ald": ("ALD (Algorithm 1), L levels of T = 5", ["--sampler", "ald"], "--L", [6, 20, 60, 200, 600]),
            "sde": ("reverse SDE, N steps", ["--sampler", "sde"], "--N", [10, 30, 100, 300, 1000]),
            "ode": ("probability-flow ODE (Heun), N σ's", ["--sampler", "ode"], "--N", [6, 11, 26, 50, 151]),
            "ddpm": ("DDPM, N σ's", ["--sampler", "ddpm"], "--N", [10, 30, 100, 300, 1000]),
            "ddim": ("DDIM (Euler on the ODE), N σ's", ["--sampler", "ddim"], "--N", [10, 25, 50, 100, 200, 400])}
DEFAULT = {"ald": toy.ALD_L, **toy.SAMPLER_N}


def trained(dist, seed, cache):
    """toy_ncsn.py's default network for (dist, seed), its σ_1 and the random state its sampling started from
    (torch.set_rng_state(rng) before toy.sample gives that run's own samples); trained once and cached."""
    path = pathlib.Path(cache) / f"{dist}_{seed}_rng.pt"
    if not path.exists():
        start, sample = {}, toy.sample

        def sample_from_here(*args):
            """toy.sample, keeping the random state it starts from."""
            start["rng"] = torch.get_rng_state()
            return sample(*args)

        toy.sample = sample_from_here
        try:
            with tempfile.TemporaryDirectory() as tmp:
                toy.main(["--dist", dist, "--seed", str(seed), "--out", tmp])
                ckpt = torch.load(pathlib.Path(tmp, "model.pt"))
        finally:
            toy.sample = sample
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**ckpt, **start}, path)
    ckpt = torch.load(path)
    model = toy.ScoreNet()
    model.load_state_dict(ckpt["model"])
    return model, ckpt["args"]["sigma_1"], ckpt["rng"]


def reference(dist):
    """toy_quality.py's fixed 10,000 real points (seed 12345), the noise floor at 2000 samples, real_spread."""
    torch.manual_seed(12345)
    ref = toy.DISTS[dist](10_000).double()
    floor = toy.energy_floor(ref, 2000)
    return ref, floor, real_spread(dist, ref, floor)


def real_spread(dist, ref, floor, sets=20):
    """Ratio of `sets` fresh real sets of 2000 points: median and 90th percentile."""
    real = sorted(toy.energy_distance(toy.DISTS[dist](2000).double(), ref) / floor for _ in range(sets))
    return statistics.median(real), real[int(0.9 * (sets - 1))]


def main():
    """Train per seed, run every sampler, print the tables, draw the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dists", nargs="+", default=list(toy.DISTS), choices=list(toy.DISTS),
                   help="distributions (default: all)")
    p.add_argument("--sweep", nargs="*", default=["heart", "mixture"], choices=list(toy.DISTS),
                   help="distributions also sampled at several budgets (default: heart mixture)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--out", default="out", help="folder for the two figures (default: out)")
    p.add_argument("--cache", default=".cache/toy_nets", help="trained networks, shared with toy_ald.py "
                   "(default: .cache/toy_nets)")
    args = p.parse_args()
    torch.set_num_threads(1)
    results, spread = {}, {}  # (dist, sampler, budget) -> [(ratio, share, nfe, seconds, samples)]
    for dist in args.dists:
        ref, floor, spread[dist] = reference(dist)
        for seed in args.seeds:
            model, sigma_1, rng = trained(dist, seed, args.cache)
            torch.manual_seed(seed)
            data = toy.DISTS[dist](toy.N_DATA)  # the training set, which sets the samplers' start
            for name, (_, flags, knob, budgets) in SAMPLERS.items():
                for budget in sorted({DEFAULT[name], *(budgets if dist in args.sweep else [])}):
                    if name == "ald":  # from where the default run's sampling started: that run's own samples
                        torch.set_rng_state(rng)
                    else:  # the others from the seed, as measured in docs/results.md
                        torch.manual_seed(seed)
                    t0 = time.perf_counter()
                    x, _, _, nfe = toy.sample(toy.parse_args(["--dist", dist, *flags, knob, str(budget)]),
                                              model, sigma_1, data)
                    seconds = time.perf_counter() - t0
                    ratio = toy.energy_distance(x.double(), ref) / floor
                    share = (x.sum(1) > 0).float().mean().item()
                    results.setdefault((dist, name, budget), []).append((ratio, share, nfe, seconds, x))

    def cell(dist, name, budget):
        rows = results[dist, name, budget]
        return statistics.median(r[0] for r in rows), max(r[0] for r in rows), rows[0][2], \
            statistics.median(r[3] for r in rows), statistics.median(r[1] for r in rows)

    print(f"\nEvery sampler at its default: energy distance / floor, median (worst) over seeds {args.seeds}")
    print(f"{'dist':13s}" + "".join(f"{f'{n} ({cell(args.dists[0], n, DEFAULT[n])[2]} evals)':>20s}" for n in SAMPLERS)
          + f"{'real sets: median':>19s} {'p90':>5s}")
    for dist in args.dists:
        row = "".join(f"{'{:.2f}x ({:.2f}x)'.format(*cell(dist, n, DEFAULT[n])[:2]):>20s}" for n in SAMPLERS)
        print(f"{dist:13s}{row}{spread[dist][0]:18.2f}x {spread[dist][1]:4.2f}x")
    print("sampling time for 2000 points, median: " + ", ".join(
        f"{n} {statistics.median(cell(d, n, DEFAULT[n])[3] for d in args.dists):.2f} s" for n in SAMPLERS))
    if "mixture" in args.dists:
        print("mixture (5,5) share, median: " + ", ".join(
            f"{n} {cell('mixture', n, DEFAULT[n])[4]:.3f}" for n in SAMPLERS) + " (true 0.800)")
    print(f"\nQuality against cost (--sweep): median (worst) over seeds {args.seeds}")
    for dist in args.sweep:
        if dist not in args.dists:
            continue
        for name, (_, _, knob, budgets) in SAMPLERS.items():
            print(f"{dist:13s} {name:5s} " + "  ".join(
                "{} {}: {:.2f}x ({:.2f}x)".format(knob, b, *cell(dist, name, b)[:2]) + f", {cell(dist, name, b)[2]} evals"
                for b in sorted({DEFAULT[name], *budgets})))

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(SAMPLERS), len(args.dists), figsize=(1.65 * len(args.dists), 1.8 * len(SAMPLERS)),
                             squeeze=False, layout="constrained")
    for col, dist in zip(axes.T, args.dists):
        data = toy.DISTS[dist](800)
        lim = 1.15 * data.abs().quantile(0.999).item()
        for ax, name in zip(col, SAMPLERS):
            median, _, nfe, _, _ = cell(dist, name, DEFAULT[name])
            x = results[dist, name, DEFAULT[name]][0][4][:800]
            ax.scatter(data[:, 0], data[:, 1], s=1, c="tab:blue", alpha=0.4, linewidths=0)
            ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:red", alpha=0.6, linewidths=0)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
            ax.set_title(f"{dist}: {median:.2f}x" if name == "ald" else f"{median:.2f}x", fontsize=8)
            if dist == args.dists[0]:
                ax.set_ylabel(f"{name}\n{nfe} evals", fontsize=8)
    fig.suptitle(f"The same network sampled five ways: samples of seed {args.seeds[0]} (red) over data (blue); "
                 f"median energy distance / floor over {len(args.seeds)} seeds", fontsize=9)
    fig.savefig(out / "toy_samplers.png", dpi=72)  # 1-pixel dots: half the bytes of dpi 80, as legible
    plt.close(fig)

    sweep = [d for d in args.sweep if d in args.dists]
    if sweep:
        fig, axes = plt.subplots(1, len(sweep), figsize=(6 * len(sweep), 4.2), squeeze=False)
        for ax, dist in zip(axes[0], sweep):
            for name, (label, _, _, budgets) in SAMPLERS.items():
                cells = [cell(dist, name, b) for b in sorted({DEFAULT[name], *budgets})]
                ax.plot([c[2] for c in cells], [c[0] for c in cells], "o-", label=label)
            ax.axhline(1, color="k", ls="--", lw=1, label="floor: two sets of real points")
            ax.axhline(spread[dist][1], color="gray", ls=":", lw=1, label="90th percentile of real sets")
            ax.set(xscale="log", yscale="log", xlabel="network evaluations per sample",
                   ylabel="energy distance / floor (median of seeds)", title=f"{dist}: quality against cost")
            ax.legend(fontsize=7)
        toy.save(fig, out / "toy_samplers_cost.png")
    print(f"wrote {out}/toy_samplers.png" + (f", {out}/toy_samplers_cost.png" if sweep else ""))


if __name__ == "__main__":
    main()
