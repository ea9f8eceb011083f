"""One trained U-Net, several samplers: sample quality and time of each, median and worst over seeds.

    python benchmarks/mnist_samplers.py --data-dir data/mnist                 # the default set, out/mnist_seeds/seed_*/
    python benchmarks/mnist_samplers.py --data-dir data/mnist --runs out/seeds_e20 --samplers ald ddpm:N=1000

For each checkpoint OUT/seed_S/checkpoint.pt written by benchmarks/mnist_seeds.py it runs
`python mnist_ncsn.py --sample-only --ckpt CKPT --seed S --n-samples N --sampler NAME [--FLAG VALUE ...]`
for every sampler given as NAME or NAME:FLAG=VALUE,FLAG=VALUE (for example ald:L=60,T=5 or ode:N=50), as a
user would start it, and scores the samples with the pinned classifier (benchmarks/mnist_quality.py):
the confident share, the largest gap between a class's share and the test images', and the Fréchet
distance to the test images, next to the floor (as many real training images). It also reports each
sampler's network evaluations per image and its sampling time per 1,000 images, as mnist_ncsn.py prints them.
"""
import argparse
import re
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import mnist_quality as q  # noqa: E402
from mnist_seeds import gap_scorer, run_seed, scoring_set  # noqa: E402

SAMPLERS = ["ald", "sde", "ode", "ddpm", "ddim"]  # each at mnist_ncsn.py's defaults


def flags(spec):
    """'ald:L=60,T=5' -> ['--sampler', 'ald', '--L', '60', '--T', '5']."""
    name, _, rest = spec.partition(":")
    pairs = [kv.split("=") for kv in rest.split(",") if kv]
    return ["--sampler", name] + [a for k, v in pairs for a in (f"--{k.replace('_', '-')}", v)]


def main():
    """Sample every run with every sampler, print one row per sampler."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="out/mnist_seeds", help="folder of seed_S/checkpoint.pt (default: out/mnist_seeds)")
    p.add_argument("--samplers", nargs="+", default=SAMPLERS, help="NAME or NAME:FLAG=VALUE,... (default: all five)")
    p.add_argument("--n-samples", type=int, default=1000, help="samples per run and sampler (default: 1000)")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--out", default="out/mnist_samplers", help="samples go to OUT/SAMPLER/seed_S (default: out/mnist_samplers)")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]  # flags for every mnist_ncsn.py run, e.g. --precision fp32
    runs = sorted(Path(args.runs).glob("seed_*/checkpoint.pt"), key=lambda c: int(c.parent.name[5:]))
    if not runs:
        sys.exit(f"mnist_samplers.py: error: no seed_*/checkpoint.pt in {args.runs}; make them with "
                 "benchmarks/mnist_seeds.py")
    net, test, train = scoring_set(q.CLASSIFIER, args.data_dir, args.n_samples, "mnist_samplers.py")
    score = gap_scorer(net, test)

    rows = {}  # spec -> [(conf, gap, fd, evaluations, seconds per 1000)]
    for spec in args.samplers:
        for ckpt in runs:
            seed = ckpt.parent.name[5:]
            out = Path(args.out) / spec.replace(":", "_").replace(",", "_").replace("=", "") / ckpt.parent.name
            cmd = [sys.executable, str(ROOT / "mnist_ncsn.py"), "--sample-only", "--ckpt", str(ckpt), "--seed", seed,
                   "--n-samples", str(args.n_samples), "--data-dir", args.data_dir, "--out", str(out),
                   *flags(spec), *extra]
            print(f"{spec}, seed {seed}: python mnist_ncsn.py {' '.join(cmd[2:])}", flush=True)
            rc, _, lines = run_seed(cmd)
            if rc:
                sys.exit(f"mnist_samplers.py: error: {spec} on {ckpt} failed ({lines[-1] if lines else rc})")
            done = next(m for m in map(re.compile(r"sampled .*: (\d+) network evaluations each, in ([\d.]+) s").match,
                                       lines) if m)
            rows.setdefault(spec, []).append(
                (*score(np.load(out / "samples.npy")), int(done[1]), 1000 * float(done[2]) / args.n_samples))
            print(f"  confident {rows[spec][-1][0]:.3f} | class gap {rows[spec][-1][1]:.3f} | "
                  f"Fréchet {rows[spec][-1][2]:.1f}", flush=True)
    print(f"\n{args.n_samples:,} samples per run, runs {[c.parent.name for c in runs]} of {args.runs}; "
          "median (worst) over the runs")
    print(f"{'sampler':28s} {'evals':>5s} {'s / 1000':>8s} {'confident > 0.9':>16s} {'largest class gap':>18s} "
          f"{'Fréchet':>14s}")
    for spec, r in rows.items():
        conf, gap, fd = ([x[i] for x in r] for i in range(3))
        print(f"{spec:28s} {r[0][3]:5d} {statistics.median(x[4] for x in r):8.0f} "
              f"{statistics.median(conf):8.3f} ({min(conf):.3f}) {statistics.median(gap):10.3f} ({max(gap):.3f}) "
              f"{statistics.median(fd):7.1f} ({max(fd):.1f})")
    conf, gap, fd = score(train)
    print(f"{f'real training images ({len(train):,})':28s} {'':5s} {'':8s} {conf:8.3f} {'':7s} {gap:10.3f} {'':7s} "
          f"{fd:7.1f}   (the floor)")


if __name__ == "__main__":
    main()
