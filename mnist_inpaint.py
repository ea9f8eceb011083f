"""Inpainting, Algorithm 2 of NCSN (Song & Ermon 2019), with a model trained by mnist_ncsn.py: part of each test
digit is hidden and annealed Langevin dynamics fills it in, sampling p(hidden | known).

    python mnist_inpaint.py --region bottom --ckpt out/mnist/checkpoint.pt   # 10 test digits, 6 completions each

Outputs in --out (default out/mnist/): inpaint.npz (originals, completions in [0, 1], labels, mask True = known)
and inpaint.png (one row per digit: the occluded input, the completions, the original).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import mnist_ncsn as m

MASKS = ["right", "bottom", "left", "top", "center"]  # the region --region hides


def make_mask(region, size=28):
    """Known-pixel mask m of Algorithm 2, (1, 1, size, size) bool: False on the hidden region."""
    mask, h, q, all_ = torch.ones(1, 1, size, size, dtype=torch.bool), size // 2, size // 4, slice(None)
    mask[0, 0][{"right": (all_, slice(h, None)), "left": (all_, slice(None, h)), "bottom": (slice(h, None), all_),
                "top": (slice(None, h), all_), "center": (slice(q, size - q), slice(q, size - q))}[region]] = False
    return mask


@torch.no_grad()
def anneal_langevin_inpaint(score, x, y, mask, sigmas, eps, T, denoise=True):
    """Inpainting, Algorithm 2: the known pixels (mask True) are held at y + σ_i z (z drawn once per level), a
    sample of the data at level i, and reset after every Langevin step (line 9); the hidden ones take Algorithm 1's
    steps x <- x + (α_i/2) s_θ + √α_i z, α_i = ε σ_i²/σ_L², and so sample p_σ_i(hidden | known)."""
    trace, sigma_L = [x], sigmas[-1].item()
    for sigma in sigmas.tolist():
        y_sigma = y + sigma * torch.randn_like(y)  # the known pixels, as noisy as this level's data
        x = torch.where(mask, y_sigma, x)
        for _ in range(T):
            x = torch.where(mask, y_sigma, m.langevin(score, x, sigma, eps * sigma**2 / sigma_L**2, 1))
        trace.append(x)
    return torch.where(mask, y, m.tweedie(score, x, sigma_L) if denoise else x), trace


def fig_inpaint(originals, mask, completions, region, path):
    """One row per digit: occluded input (hidden part dark grey) | completions | original."""
    occluded = torch.where(mask[0], originals, torch.tensor(0.3))  # gaps between tiles are 0.5
    rows = torch.cat([occluded[:, None], completions, originals[:, None]], 1)  # (n, k + 2, 28, 28)
    k = rows.shape[1] - 2
    m.fig_grid(rows.flatten(0, 1), k + 2, path, f"Inpainting, Algorithm 2: {region} part hidden, completions 1..{k}",
               ["input"] + [f"{j + 1}" for j in range(k)] + ["original"], size=0.6)


def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--region", choices=MASKS, default="bottom", help="the part of each digit hidden (default: bottom)")
    add("--ckpt", default="out/mnist/checkpoint.pt", help="mnist_ncsn.py's checkpoint (default: %(default)s)")
    add("--data-dir", default="data/mnist", help="the MNIST .gz files, fetched if missing (default: data/mnist)")
    add("--mirror", help="download from this URL prefix, not the public mirrors (no MD5 check)")
    add("--n-inpaint", type=m.positive(int), default=10, help="test digits to inpaint (default: 10)")
    add("--n-completions", type=m.positive(int), default=6, help="completions per digit (default: 6)")
    add("--L", type=m.positive(int, 2), default=m.ALD_L, help=f"noise levels (default: {m.ALD_L})")
    add("--T", type=m.positive(int), default=m.ALD_T, help=f"Langevin steps a level (default: {m.ALD_T})")
    add("--eps", type=m.positive(float), default=m.EPS, help=f"step size ε, α_i = ε σ_i²/σ_L² (default: {m.EPS:g})")
    add("--guidance", type=m.positive(float), default=m.GUIDANCE["ald"][0], help="w of autoguidance by the "
        f"checkpoint's snapshot at σ <= {m.GUIDANCE['ald'][1]:g}, as mnist_ncsn.py's ald; 1: off "
        f"(default: {m.GUIDANCE['ald'][0]:g})")
    add("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="bf16: the network under autocast; "
        "auto (default): as mnist_ncsn.py picks it, uncompiled (a CPU with native bf16), else fp32")
    add("--seed", type=int, default=0, help="random seed (default: 0)")
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present (default: auto)")
    add("--out", default="out/mnist", help="output folder (default: out/mnist)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def run(args):
    """Load the checkpoint's EMA model and its prior, complete --n-inpaint test digits --n-completions times each
    by Algorithm 2 on ALD's levels, write inpaint.npz and inpaint.png."""
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    precision, why = m.pick_precision(args.precision, device)
    ckpt = m.load_checkpoint(args.ckpt)
    width, train_size = ckpt["args"]["width"], ckpt["args"]["train_size"]
    net = m.UNet(width).to(device).requires_grad_(False)
    m.load_checkpoint(args.ckpt, m.UNet(width).to(device), net)
    score, snapshot = net, ckpt.get("snapshot")  # a checkpoint written before snapshots has none
    if args.guidance != 1 and snapshot is None:
        print(f"{args.ckpt} holds no snapshot (an earlier mnist_ncsn.py wrote it): inpainting unguided")
    elif args.guidance != 1:
        (bad := m.UNet(width).to(device).requires_grad_(False)).load_state_dict(snapshot["ema"])
        score = m.autoguidance(net, bad, args.guidance, m.GUIDANCE["ald"][1])
    data = m.load_mnist(args.data_dir, "train", download=True, mirror=args.mirror)[0][:train_size].to(device)
    prior = m.gaussian_prior(data, m.SIGMA_1)  # every sampler starts here
    images, labels = m.load_mnist(args.data_dir, "test", download=True, mirror=args.mirror)
    if args.n_inpaint > len(images):
        raise m.UserError(f"--n-inpaint {args.n_inpaint}, but {args.data_dir} holds only {len(images)} test images")
    try:  # only now: a wrong checkpoint or data folder leaves no new --out behind
        (out := Path(args.out)).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise m.UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    print(f"loaded {args.ckpt} (UNet(width={width}), epoch {ckpt['epoch']}) | {device}, {precision} ({why})"
          + (f" | guided by the snapshot of epoch {snapshot['epoch']}, w={args.guidance:g} at σ <= "
             f"{m.GUIDANCE['ald'][1]:g}" if score is not net else ""), flush=True)
    n, k, mask = args.n_inpaint, args.n_completions, make_mask(args.region).to(device)
    y = images[:n].repeat_interleave(k, 0).to(device)  # k copies of each digit, one per chain
    sigmas = m.get_sigmas(m.SIGMA_1, m.SIGMA_L, args.L).to(device)
    torch.manual_seed(args.seed)
    score, t0 = m.with_progress(score, args.L * args.T + 1), time.time()
    with torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
        x, _ = anneal_langevin_inpaint(score, prior.sample((len(y),)), y, mask, sigmas, args.eps, args.T)
    x = x.clamp(0, 1).float().cpu().reshape(n, k, 28, 28)
    print(f"inpainted {n} test digits x {k} ({args.region} hidden), {args.L * args.T} Langevin steps, "
          f"ε {args.eps:.3g}, in {time.time() - t0:.1f} s")
    np.savez_compressed(out / "inpaint.npz", originals=images[:n, 0].numpy(), completions=x.numpy(),
                        labels=labels[:n].numpy(), mask=mask[0, 0].cpu().numpy())
    fig_inpaint(images[:n, 0], mask[0].cpu(), x, args.region, out / "inpaint.png")
    print(f"wrote {out}/inpaint.png, inpaint.npz")


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    try:
        run(parse_args(argv))
    except m.UserError as e:
        sys.exit(f"mnist_inpaint.py: error: {e}")


if __name__ == "__main__":
    main()
