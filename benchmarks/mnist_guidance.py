"""Autoguidance by the run's own snapshot: sample quality against w, the snapshot's age and the σ interval.

    python benchmarks/mnist_guidance.py --runs out/mnist_seeds --data-dir data/mnist \\
        --settings ode ode:w=2,age=0.2 sde:w=1.5,below=1,age=0.1
    python benchmarks/mnist_guidance.py --runs out/mnist_seeds --data-dir data/mnist --figure docs/mnist_guidance.png

Each run folder (seed_S/, from `benchmarks/mnist_seeds.py --keep-epochs`) holds checkpoint.pt and
epochs/eNNN.pt, the checkpoint as it was after each epoch. A setting is SAMPLER[:KEY=VALUE,...] with the keys
w (1: unguided), below (guide at σ <= this), age (the snapshot: the EMA after the first epoch that ends at or
past this share of the run, the rule mnist_ncsn.py's train() follows), N, T, precision, sigma_1 (the samplers'
largest σ, and the prior's) and rho (of Karras's σ's); what is left out is mnist_ncsn.py's default. Every setting samples --n-samples images from each run's final EMA, seeded with the
run's seed as `mnist_ncsn.py --sample-only` is, in this process; the pinned classifier
(benchmarks/mnist_quality.py) scores them: the confident share, the largest gap between a class's share and
the test images', the Fréchet distance to the test images. Rows: median and worst over the runs, network
evaluations per image, seconds per 1,000 images. Results are cached in OUT/results.json: a setting is sampled
once per run. --figure draws the first run's same ten starts at several w, one row each.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import mnist_ncsn as m  # noqa: E402
import mnist_quality as q  # noqa: E402
from mnist_seeds import gap_scorer, scoring_set  # noqa: E402

KEYS = {"w": ("guidance", float), "below": ("guide_below", float), "age": ("age", float), "N": ("N", int),
        "T": ("T", int), "precision": ("precision", str), "sigma_1": ("sigma_1", float), "rho": ("rho", float)}


def parse_setting(spec):
    """'sde:w=1.5,age=0.2' -> ('sde', {'guidance': 1.5, 'age': 0.2})."""
    sampler, _, rest = spec.partition(":")
    if sampler not in m.SAMPLER_N and sampler != "ald":
        raise ValueError(f"unknown sampler {sampler!r}")
    out = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r} in {spec!r} (keys: {', '.join(KEYS)})")
        out[KEYS[key][0]] = KEYS[key][1](value)
    return sampler, out


def snapshot_at(run, age, ckpt):
    """The EMA after the first epoch whose end is at or past `age` of the run (by the clock for --minutes)."""
    budget = ckpt["args"]["minutes"] and ckpt["args"]["minutes"] * 60
    for path in sorted((run / "epochs").glob("e*.pt")):
        c = torch.load(path, map_location="cpu", weights_only=True)
        share = c["seconds"] / budget if budget else c["epoch"] / ckpt["args"]["epochs"]
        if share >= age:
            return dict(ema=c["ema"], epoch=c["epoch"], share=share)
    raise SystemExit(f"mnist_guidance.py: error: {run}/epochs has no epoch at {age} of the run")


def load_run(run, data_dir):
    """The run's final EMA, its checkpoint, its training images and its seed."""
    ckpt = m.load_checkpoint(run / "checkpoint.pt")
    ema = m.UNet(ckpt["args"]["width"]).requires_grad_(False)
    m.load_checkpoint(run / "checkpoint.pt", m.UNet(ckpt["args"]["width"]), ema)
    data = m.load_mnist(data_dir, "train")[0][:ckpt["args"]["train_size"]]
    return ema, ckpt, data, ckpt["args"]["seed"]


def sample(run, ema, ckpt, data, seed, sampler, setting, n):
    """n samples of one setting, as mnist_ncsn.py --sample-only draws them; (images, evaluations, seconds)."""
    args = m.parse_args(["--sample-only", "--sampler", sampler, "--n-samples", str(n)])
    for key, value in setting.items():
        setattr(args, key, value)
    m.fill_defaults(args, ckpt, "cpu")
    args.guide_below = setting.get("guide_below", args.guide_below)  # no such flag: the script's is GUIDANCE's
    snapshot = snapshot_at(run, setting.get("age", m.GUIDE_AT), ckpt) if args.guidance != 1 else None
    prior = m.gaussian_prior(data, args.sigma_1)  # every sampler starts here, as in mnist_ncsn.py's run()
    karras = m.karras_sigmas
    m.karras_sigmas = lambda a, b, n: karras(a, b, n, setting.get("rho", 7.0))  # EDM's ρ unless the setting's
    torch.manual_seed(seed)
    t0 = time.time()
    try:
        x, _, _, nfe = m.sample(args, ema, snapshot, prior, "cpu")
    finally:
        m.karras_sigmas = karras
    return x[:, 0], nfe, time.time() - t0, snapshot and snapshot["epoch"]


def figure(run, data_dir, path, sampler, ws):
    """The same ten starts and noise of the first run at several w (its default σ interval and age), one row each."""
    ema, ckpt, data, seed = load_run(run, data_dir)
    rows = [sample(run, ema, ckpt, data, seed, sampler, {"guidance": w}, 10)[0] for w in ws]
    below, age = m.GUIDANCE[sampler][1], m.GUIDE_AT
    m.fig_grid(torch.cat(rows), 10, path, f"{sampler}, guided by the snapshot at {age:g} of the run, σ <= {below:g}: "
               f"rows w = {', '.join(f'{w:g}' for w in ws)} (1: unguided)", size=0.5)
    print(f"wrote {path}")


def main():
    """Sample every setting on every run (cached), print median and worst per setting."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=["out/mnist_seeds"], help="folders of seed_S/ runs, or the runs "
                   "themselves (default: out/mnist_seeds)")
    p.add_argument("--settings", nargs="+", default=["sde", "ode"], help="SAMPLER[:KEY=VALUE,...] (default: sde ode)")
    p.add_argument("--n-samples", type=int, default=1000, help="samples per run and setting (default: 1000)")
    p.add_argument("--data-dir", default="data/mnist", help="MNIST .gz files (default: data/mnist)")
    p.add_argument("--out", default="out/mnist_guidance", help="results.json goes here (default: out/mnist_guidance)")
    p.add_argument("--figure", help="draw the first run at several w into this PNG instead")
    p.add_argument("--figure-sampler", default=m.SAMPLER, help=f"the figure's sampler (default: {m.SAMPLER})")
    args = p.parse_args()
    runs = [r for path in map(Path, args.runs) for r in ([path] if (path / "checkpoint.pt").exists()
                                                         else sorted(path.glob("seed_*")))]
    if not runs:
        p.error(f"no run folder with checkpoint.pt in {args.runs}")
    if args.figure:
        return figure(runs[0], args.data_dir, args.figure, args.figure_sampler, (1, 1.5, 2, 3))
    try:
        settings = [(spec, *parse_setting(spec)) for spec in args.settings]
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    net, test, train = scoring_set(q.CLASSIFIER, args.data_dir, args.n_samples, "mnist_guidance.py")
    score = gap_scorer(net, test)

    cache_path = Path(args.out) / "results.json"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for run in runs:
        loaded = None
        for spec, sampler, setting in settings:
            key = f"{run.resolve()}|{spec}|{args.n_samples}"
            if key in cache:
                continue
            loaded = loaded or load_run(run, args.data_dir)
            x, nfe, seconds, epoch = sample(run, *loaded, sampler, setting, args.n_samples)
            conf, gap, fd = score(x)
            cache[key] = dict(confident=conf, gap=gap, frechet=fd, nfe=nfe, seconds=seconds, epoch=epoch)
            cache_path.write_text(json.dumps(cache, indent=1))
            print(f"{run.name} {spec}: confident {conf:.3f} | gap {gap:.3f} | Fréchet {fd:.2f} | {nfe} evaluations | "
                  f"{seconds:.0f} s | snapshot epoch {epoch}", flush=True)
    conf, gap, fd = score(train)  # the floor: real training images, as many
    print(f"\n{args.n_samples:,} samples per run, runs: {', '.join(str(r) for r in runs)}\n"
          f"{'setting':42} | confident: median worst | class gap: median worst | Fréchet: median worst | "
          f"evaluations | s/1,000")
    for spec, _, _ in settings:
        rows = [cache[f"{run.resolve()}|{spec}|{args.n_samples}"] for run in runs]
        pick = {k: [r[k] for r in rows] for k in rows[0]}
        print(f"{spec:42} | {statistics.median(pick['confident']):6.3f} {min(pick['confident']):6.3f} | "
              f"{statistics.median(pick['gap']):5.3f} {max(pick['gap']):5.3f} | "
              f"{statistics.median(pick['frechet']):6.2f} {max(pick['frechet']):6.2f} | {rows[0]['nfe']:4d} | "
              f"{1000 * statistics.median(pick['seconds']) / args.n_samples:5.0f}")
    print(f"{'real training images':42} | {conf:6.3f}        | {gap:5.3f}       | "
          f"{fd:6.2f}")


if __name__ == "__main__":
    main()
