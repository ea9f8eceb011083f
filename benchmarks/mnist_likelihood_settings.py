"""Bits per dimension of trained U-Nets on test digits, median and worst over seeds, per ODE setting.

    python benchmarks/mnist_likelihood_settings.py --data-dir data/mnist              # out/mnist_seeds/seed_*/
    python benchmarks/mnist_likelihood_settings.py --data-dir data/mnist --settings N=50 N=100 N=200

For each checkpoint RUNS/seed_S/checkpoint.pt (written by benchmarks/mnist_seeds.py) and each setting,
given as FLAG=VALUE,FLAG=VALUE (flags of mnist_likelihood.py, e.g. N=200,n-likelihood=300; an empty
string for the defaults), it runs `python mnist_likelihood.py --ckpt CKPT --seed S [--FLAG VALUE ...]`
as a user would, and collects the line it prints, bits/dim = X ± SE over N test digits, with its time.
benchmarks/mnist_bits_baseline.py gives the per-pixel histograms' figure to compare with.
"""
import argparse
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]
from mnist_seeds import run_seed  # noqa: E402

LINE = re.compile(r"bits/dim = ([\d.]+) ± ([\d.]+) over (\d+) test digits .* ([\d.]+) s\)")


def main():
    """Every setting on every run; one row per setting."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="out/mnist_seeds", help="folder of seed_S/checkpoint.pt (default: out/mnist_seeds)")
    p.add_argument("--settings", nargs="+", default=[""], help="FLAG=VALUE,... per setting (default: the defaults)")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--out", default="out/mnist_likelihood", help="outputs go to OUT/SETTING/seed_S")
    args = p.parse_args()
    runs = sorted(Path(args.runs).glob("seed_*/checkpoint.pt"), key=lambda c: int(c.parent.name[5:]))
    if not runs:
        sys.exit(f"mnist_likelihood_settings.py: error: no seed_*/checkpoint.pt in {args.runs}")
    rows = {}
    for setting in args.settings:
        flags = [a for kv in setting.split(",") if kv for a in (f"--{kv.split('=')[0]}", kv.split("=")[1])]
        for ckpt in runs:
            out = Path(args.out) / (setting.replace(",", "_").replace("=", "") or "defaults") / ckpt.parent.name
            cmd = [sys.executable, str(ROOT / "mnist_likelihood.py"), "--ckpt", str(ckpt), "--seed",
                   ckpt.parent.name[5:], "--data-dir", args.data_dir, "--out", str(out), *flags]
            print(f"{setting or 'defaults'}, {ckpt.parent.name}: python mnist_likelihood.py {' '.join(cmd[2:])}", flush=True)
            rc, _, lines = run_seed(cmd)
            found = [m for m in map(LINE.search, lines) if m]
            if rc or not found:
                sys.exit(f"mnist_likelihood_settings.py: error: {ckpt} failed ({lines[-1] if lines else rc})")
            rows.setdefault(setting or "defaults", []).append([float(g) for g in found[0].groups()])
    print(f"\nbits/dim on test digits, runs {[c.parent.name for c in runs]} of {args.runs}")
    print(f"{'setting':24s} {'median':>7s} {'worst':>7s} {'largest SE':>10s} {'digits':>6s} {'s, median':>9s}  per run")
    for setting, r in rows.items():
        bits = [x[0] for x in r]
        print(f"{setting:24s} {statistics.median(bits):7.3f} {max(bits):7.3f} {max(x[1] for x in r):10.3f} "
              f"{int(r[0][2]):6d} {statistics.median(x[3] for x in r):9.0f}  " + " ".join(f"{b:.3f}" for b in bits))


if __name__ == "__main__":
    main()
