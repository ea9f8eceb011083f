"""Run toy_ncsn.py at its defaults on every distribution; print wall time and sample quality.

    python benchmarks/toy_quality.py [--dists heart mixture] [extra toy_ncsn.py flags...]

Quality is the script's own printout: energy distance between generated and fresh real samples as a
multiple of the distance between two real sets (1x = as good as real data), and the (5,5)-mode
share for the mixture.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALL = ["heart", "split_normal", "mixture", "circle", "moons", "spirals", "checkerboard", "8gaussians"]

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--dists", nargs="+", default=ALL, choices=ALL, help="distributions to run (default: all)")
args, extra = p.parse_known_args()
print(f"{'dist':14s} {'wall s':>7s} {'train steps/s':>14s} {'sample s':>9s} {'energy dist':>12s} {'floor':>8s} "
      f"{'ratio':>6s}  (5,5) share")
with tempfile.TemporaryDirectory() as tmp:
    for dist in args.dists:
        t0 = time.time()
        r = subprocess.run([sys.executable, str(ROOT / "toy_ncsn.py"), "--dist", dist, "--out", f"{tmp}/{dist}", *extra],
                           capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode:
            print(f"{dist:14s} failed: {r.stderr.strip().splitlines()[-1]}")
            continue
        rate = re.findall(r"\|\s+(\d+) steps/s", r.stdout)[-1]
        sample_s = re.search(r"Langevin steps in ([\d.]+) s", r.stdout).group(1)
        ed, floor, ratio = re.search(r"samples: ([\d.]+) \(two real sets: ([\d.]+), ratio ([\d.]+)x", r.stdout).groups()
        share = re.search(r"\(5,5\) mode: ([\d.]+)", r.stdout)
        print(f"{dist:14s} {wall:7.1f} {rate:>14s} {sample_s:>9s} {ed:>12s} {floor:>8s} {ratio:>5s}x  "
              f"{share.group(1) if share else ''}", flush=True)
