"""Sample quality and wall time of toy_ncsn.py at its defaults, median and worst over seeds.

    python benchmarks/toy_quality.py                       # every distribution, seeds 0 1 2
    python benchmarks/toy_quality.py --figure docs/toy_all.png   # and the eight distributions in one figure
    python benchmarks/toy_quality.py --dists heart split_normal mixture --likelihood   # and KL(p || p_θ)
    python benchmarks/toy_quality.py --dists heart moons --seeds 0 1 2 3 4 -- --sampler ode

Each run is `python toy_ncsn.py --dist D --seed S` (plus any flags after `--`) as a user would start
it; its samples.npy is compared with 10,000 fresh real points by the energy distance, divided by the
noise floor: the expected distance between two real sets of the same sizes (1x = indistinguishable).
For the mixture, the share of samples in the (5,5) mode (true 0.800) is reported too, and with
--likelihood the KL(p || p_θ) in nats that `python toy_likelihood.py` prints for each run's model.

The ratio is noisy even for perfect samples, so each row also gives the ratio of 20 fresh real sets
of 2000 points, measured the same way: its median and 90th percentile are what chance alone gives.
"""
import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import toy_ncsn  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--dists", nargs="+", default=list(toy_ncsn.DISTS), choices=list(toy_ncsn.DISTS),
               help="distributions to run (default: all)")
p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per distribution (default: 0 1 2)")
p.add_argument("--n-ref", type=int, default=10_000, help="fresh real points to compare with (default: 10000)")
p.add_argument("--likelihood", action="store_true", help="also run toy_likelihood.py on each model: KL(p || p_θ)")
p.add_argument("--figure", help="also draw the first seed's samples of every distribution over real points here")
args, extra = p.parse_known_args()
extra = [a for a in extra if a != "--"]
torch.set_num_threads(1)

print(f"toy_ncsn.py {' '.join(extra)} | seeds {args.seeds} | reference: {args.n_ref} real points")
print(f"{'dist':13s} {'ratio median':>12s} {'worst':>6s} {'wall s median':>13s} {'max':>5s} "
      f"{'real: median':>12s} {'p90':>5s}  per seed")
shown = {}  # dist -> (samples of the first seed, its ratio, the median ratio)
with tempfile.TemporaryDirectory() as tmp:
    for dist in args.dists:
        torch.manual_seed(12345)  # the same reference set for every run of a distribution
        ref = toy_ncsn.DISTS[dist](args.n_ref).double()
        floor = toy_ncsn.energy_floor(ref, 2000)  # 2000: toy_ncsn.py's default --n-samples
        real = sorted(toy_ncsn.energy_distance(toy_ncsn.DISTS[dist](2000).double(), ref) / floor
                      for _ in range(20))
        real_p90 = real[17]  # the 90th percentile of 20 sorted values (linear interpolation: index 17.1)
        ratios, walls, shares, kls, first = [], [], [], [], None
        for seed in args.seeds:
            t0 = time.time()
            r = subprocess.run([sys.executable, str(ROOT / "toy_ncsn.py"), "--dist", dist, "--seed", str(seed),
                                "--out", f"{tmp}/{dist}", *extra], capture_output=True, text=True)
            walls.append(time.time() - t0)
            if r.returncode:
                print(f"{dist:13s} seed {seed} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
                break
            x = torch.from_numpy(np.load(f"{tmp}/{dist}/samples.npy")).double()
            first = x if first is None else first
            ratios.append(toy_ncsn.energy_distance(x, ref) / toy_ncsn.energy_floor(ref, len(x)))
            shares.append((x.sum(1) > 0).double().mean().item())
            if args.likelihood:
                r = subprocess.run([sys.executable, str(ROOT / "toy_likelihood.py"), "--dist", dist, "--model",
                                    f"{tmp}/{dist}/model.pt"], capture_output=True, text=True)
                if "KL(p || p_θ) = " in r.stdout:  # printed for the distributions with a closed form
                    kls.append(float(r.stdout.split("KL(p || p_θ) = ")[1].split()[0]))
        else:
            share = (f"  (5,5) share median {statistics.median(shares):.3f}, furthest from 0.8 "
                     f"{max(shares, key=lambda s: abs(s - 0.8)):.3f}") if dist == "mixture" else ""
            kl = (f"  KL median {statistics.median(kls):.4f}, worst {max(kls):.4f} nats ("
                  + " ".join(f"{k:.4f}" for k in kls) + ")") if kls else ""
            print(f"{dist:13s} {statistics.median(ratios):11.2f}x {max(ratios):5.2f}x {statistics.median(walls):13.1f} "
                  f"{max(walls):5.1f} {statistics.median(real):11.2f}x {real_p90:4.2f}x  "
                  + " ".join(f"{r:.2f}" for r in ratios) + share + kl, flush=True)
            shown[dist] = (first, ratios[0], statistics.median(ratios))

if args.figure and shown:
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (dist, (x, ratio, median)) in zip(axes.flat, shown.items()):
        data = toy_ncsn.DISTS[dist](2000)
        lim = 1.15 * data.abs().quantile(0.999).item()
        ax.scatter(data[:, 0], data[:, 1], s=3, c="tab:blue", alpha=0.35, linewidths=0, label="real")
        ax.scatter(x[:, 0], x[:, 1], s=3, c="tab:red", alpha=0.45, linewidths=0, label="generated")
        toy_ncsn.frame(ax, lim, f"{dist}: {ratio:.2f}x the floor")
        ax.set(xlabel="", ylabel="")
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(loc="lower left", markerscale=4, fontsize=8)
    fig.suptitle(f"{' '.join(['toy_ncsn.py', *extra])} (seed {args.seeds[0]}): generated points (red) over real ones "
                 "(blue), energy distance over the noise floor", fontsize=10)
    pathlib.Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    toy_ncsn.save(fig, args.figure)
    print(f"wrote {args.figure}")
