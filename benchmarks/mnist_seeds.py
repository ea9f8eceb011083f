"""Sample quality of mnist_ncsn.py over seeds, scored by the pinned classifier: median and worst.

    python benchmarks/mnist_seeds.py --data-dir data/mnist                # the preset, seeds 0 1 2
    python benchmarks/mnist_seeds.py --data-dir data/mnist --out out/seeds_e20 -- --epochs 20
    python benchmarks/mnist_seeds.py --data-dir data/mnist --keep-epochs     # for benchmarks/mnist_guidance.py

Each seed runs `python mnist_ncsn.py --seed S --n-samples 1000 --out OUT/seed_S --data-dir DIR`
(plus any flags after `--`) as a user would start it, its progress shown as it goes. Its
samples.npy is then scored by mnist_quality.py's classifier (benchmarks/mnist_classifier.pt):
the share labelled with confidence above 0.9, the shares of the predicted classes and the
Fréchet distance of the penultimate features to the 10,000 test images, next to the floor: the
same figures for as many real training images. Each seed's folder is kept, so its checkpoint.pt
serves `mnist_inpaint.py` and `mnist_ncsn.py --sample-only` later.
"""
import argparse
import contextlib
import io
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import mnist_ncsn  # noqa: E402
import mnist_quality as q  # noqa: E402

# Rates of the U-Net on 2x2 patches at width 32, batch 32, on a 2-core machine (B) with nothing else running,
# by precision and CPU threads: training images/s and sampling image-evaluations/s (batches of 100). Other
# widths scale as (32 / width)^1.3.
TRAIN_RATE = {"bf16": {1: 720, 2: 1100}, "fp32": {1: 525, 2: 800}}
SAMPLE_RATE = {"bf16": {1: 3700, 2: 5600}, "fp32": {1: 1800, 2: 2600}}


def scoring_set(classifier, data_dir, n, prog):
    """The pinned classifier, the test images and the first n training images (the floor); a one-line error else."""
    try:
        return (q.load_classifier(classifier, "cpu", data_dir), mnist_ncsn.load_mnist(data_dir, "test")[0],
                mnist_ncsn.load_mnist(data_dir, "train")[0][:n])
    except mnist_ncsn.UserError as e:
        sys.exit(f"{prog}: error: {e}")


def gap_scorer(net, test):
    """score(images) -> (confident share, largest gap between a class's share and the test images', Fréchet
    distance to the test images), by the pinned classifier `net`."""
    test_features = q.predict(net, test, "cpu", features=True)
    test_hist = q.quality(q.predict(net, test, "cpu"))[1]

    def score(images):
        """The three measures of one set of images."""
        conf, hist = q.quality(q.predict(net, images, "cpu"))
        fd = q.frechet_distance(q.predict(net, images, "cpu", features=True), test_features)
        return conf, (hist - test_hist).abs().max().item(), fd
    return score


def estimate(args, n_seeds):
    """Rough minutes per seed (training, sampling) for these mnist_ncsn.py flags on the CPU."""
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        return f"{args.n_samples:,} samples per seed, on CUDA (no time estimate for it here)"
    threads = min(torch.get_num_threads(), 2)
    scale = (32 / args.width) ** 1.3
    training = not args.sample_only
    images = args.epochs * min(args.train_size, 60000) if args.epochs else None
    train = training * (images / (TRAIN_RATE[args.precision][threads] * scale) if images else args.minutes * 60)
    nfe = args.L * args.T if args.sampler == "ald" else args.N * {"ode": 2, "sde": 1 + args.T}.get(args.sampler, 1)
    nfe = round(nfe * (1 + 0.5 * (args.guidance != 1)))  # guided at σ <= 1: about half the σ's ask the snapshot too
    sample = args.n_samples * nfe / (SAMPLE_RATE[args.precision][threads] * scale)
    length = f"{args.epochs} epochs" if args.epochs else f"{args.minutes:g} min"
    return (f"width {args.width}, {length} of {min(args.train_size, 60000):,} images in "
            f"{args.precision}, {args.n_samples:,} samples by {args.sampler} ({nfe} evaluations each): "
            f"roughly {train / 60:.0f} min of training and {sample / 60:.0f} min of sampling per seed on "
            f"{threads} CPU thread(s), {n_seeds * (train + sample) / 60:.0f} min for {n_seeds} seed(s)")


def run_seed(cmd, keep=None):
    """Run one mnist_ncsn.py, echo its lines as they come; return (rc, wall s, its lines). With keep (its
    checkpoint.pt), copy the EMA after each epoch, as the line "epoch N" says it is written, to epochs/eNNN.pt."""
    t0, lines = time.time(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as p:
        for line in p.stdout:
            print("  | " + line, end="", flush=True)
            lines.append(line.strip())
            if keep and (m := re.match(r"epoch +(\d+)", line)):
                ckpt = torch.load(keep, map_location="cpu", weights_only=True)
                (keep.parent / "epochs").mkdir(exist_ok=True)
                torch.save({k: ckpt[k] for k in ("ema", "epoch", "seconds", "args")},
                           keep.parent / "epochs" / f"e{int(m[1]):03d}.pt")
    return p.returncode, time.time() - t0, lines


def timing(lines):
    """Training s, images/s of the first steps, and sampling s, as mnist_ncsn.py printed them."""
    def found(pattern):
        return [float(m[1].replace(",", "")) for m in map(re.compile(pattern).match, lines) if m]
    train, rates, sample = (found(r"training took ([\d.]+) s"), found(r"training at ([\d,]+) img/s"),
                            found(r"sampled .* in ([\d.]+) s"))
    nan = float("nan")
    return (train[-1] if train else nan, statistics.mean(rates) if rates else nan,
            sample[-1] if sample else nan)


def main(argv=None):
    """Run the seeds, score each, print the table with median and worst."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="flags after -- go to mnist_ncsn.py unchanged")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--n-samples", type=int, default=1000, help="samples per seed (default: 1000)")
    p.add_argument("--out", default="out/mnist_seeds",
                   help="one folder per seed goes in here, OUT/seed_S (default: out/mnist_seeds)")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--keep-epochs", action="store_true", help="keep the EMA after every epoch in "
                   "OUT/seed_S/epochs/ (for benchmarks/mnist_guidance.py's snapshots of other ages)")
    p.add_argument("--classifier", default=str(q.CLASSIFIER),
                   help="the classifier's weights (default: benchmarks/mnist_classifier.pt)")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    if args.n_samples < 2:
        p.error("--n-samples must be at least 2 (a Fréchet distance needs a covariance)")
    # mnist_ncsn.py's own parser checks the extra flags now, not after the first seed has trained.
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            child = mnist_ncsn.parse_args(["--n-samples", str(args.n_samples), *extra])
    except SystemExit as e:
        if not e.code:  # -- --help: mnist_ncsn.py's help, printed
            raise
        p.exit(2, f"mnist_seeds.py: error: flag for mnist_ncsn.py: "
                  f"{err.getvalue().strip().splitlines()[-1].split('error: ', 1)[-1]}\n")
    mnist_ncsn.fill_defaults(child, None, "cuda" if torch.cuda.is_available() and child.device != "cpu" else "cpu")
    net, real_test, real_train = scoring_set(args.classifier, args.data_dir, args.n_samples, "mnist_seeds.py")
    if len(real_train) < args.n_samples:
        sys.exit(f"mnist_seeds.py: error: {args.data_dir} holds {len(real_train):,} training "
                 f"images, fewer than --n-samples {args.n_samples:,}: no floor at that size")
    test_features = q.predict(net, real_test, "cpu", features=True)
    test_hist = q.quality(q.predict(net, real_test, "cpu"))[1]

    def score(images):
        """confident share, class shares, total variation to the test shares, Fréchet distance."""
        conf, hist = q.quality(q.predict(net, images, "cpu"))
        fd = q.frechet_distance(q.predict(net, images, "cpu", features=True), test_features)
        return conf, hist, 0.5 * (hist - test_hist).abs().sum().item(), fd

    print(f"mnist_ncsn.py {' '.join(extra)} | seeds {args.seeds} | " + estimate(child, len(args.seeds)),
          flush=True)
    rows = []
    for seed in args.seeds:
        out = Path(args.out) / f"seed_{seed}"
        cmd = [sys.executable, str(ROOT / "mnist_ncsn.py"), "--seed", str(seed), "--n-samples",
               str(args.n_samples), "--out", str(out), "--data-dir", args.data_dir, *extra]
        print(f"seed {seed}: python mnist_ncsn.py {' '.join(cmd[2:])}", flush=True)
        rc, wall, lines = run_seed(cmd, out / "checkpoint.pt" if args.keep_epochs else None)
        if rc:
            sys.exit(f"mnist_seeds.py: error: seed {seed} failed ({lines[-1] if lines else rc})")
        rows.append((f"seed {seed}", *score(np.load(out / "samples.npy")), *timing(lines), wall))
        print(f"seed {seed}: confident {rows[-1][1]:.3f} | Fréchet {rows[-1][4]:.2f} | "
              f"{wall:.0f} s in all", flush=True)

    floor = score(real_train)
    head = " ".join(f"{c:>5}" for c in range(10))
    print(f"\n{args.n_samples:,} samples per seed; Fréchet distance to the {len(real_test):,} test "
          f"images; TV: total variation between the class shares and the test images'")
    print(f"{'':22} confident>0.9 | {head} |    TV | Fréchet | train s | img/s | sample s | wall s")
    for name, conf, hist, tv, fd, train_s, rate, sample_s, wall in rows:
        print(f"{name:22} {conf:13.3f} | " + " ".join(f"{h:5.3f}" for h in hist.tolist())
              + f" | {tv:5.3f} | {fd:7.2f} | {train_s:7.0f} | {rate:5.0f} | {sample_s:8.0f} | {wall:6.0f}")
    hists = torch.stack([r[2] for r in rows])
    worst_hist = hists.gather(0, (hists - test_hist).abs().argmax(0, keepdim=True))[0]
    for name, pick, hist in [("median", statistics.median, torch.from_numpy(np.median(hists.numpy(), 0))),
                             ("worst", None, worst_hist)]:
        conf = pick([r[1] for r in rows]) if pick else min(r[1] for r in rows)
        tv = pick([r[3] for r in rows]) if pick else max(r[3] for r in rows)
        fd = pick([r[4] for r in rows]) if pick else max(r[4] for r in rows)
        print(f"{name:22} {conf:13.3f} | " + " ".join(f"{h:5.3f}" for h in hist.tolist())
              + f" | {tv:5.3f} | {fd:7.2f}")
    conf, hist, tv, fd = floor
    print(f"{f'real train ({len(real_train):,})':22} {conf:13.3f} | "
          + " ".join(f"{h:5.3f}" for h in hist.tolist()) + f" | {tv:5.3f} | {fd:7.2f}   (the floor)")
    print(f"{f'real test ({len(real_test):,})':22} {q.quality(q.predict(net, real_test, 'cpu'))[0]:13.3f} | "
          + " ".join(f"{h:5.3f}" for h in test_hist.tolist()))
    print("worst: the lowest confident share, the largest TV and Fréchet distance, and per class "
          "the share furthest from the test images'; median per class (columns need not sum to 1)")
    print(f"outputs kept in {args.out}/seed_*/ (checkpoint.pt, samples.npy, samples.png)")


if __name__ == "__main__":
    main()
