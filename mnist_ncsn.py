"""NCSN on MNIST: a noise conditional score network trained with denoising score matching,
sampled with annealed Langevin dynamics, and used to fill in hidden parts of digits.

Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS 2019,
arXiv:1907.05600. A small U-Net s_θ(x, σ) learns the score of MNIST perturbed by Gaussian noise at
L geometric noise levels (eq. (5)-(6)); Algorithm 1 walks uniform noise down the levels, and
Algorithm 2 (appendix) does the same with some pixels held at a given image: inpainting.

    python mnist_ncsn.py                        # without CUDA a CPU-sized run (~9 min), else full
    python mnist_ncsn.py --preset gpu --compile # the full run (20 epochs of width 64)
    python mnist_ncsn.py --sample-only --ckpt out/mnist/checkpoint.pt
    python mnist_ncsn.py --inpaint right --ckpt out/mnist/checkpoint.pt

Outputs in --out (default out/mnist/): samples.png, samples.npy, langevin_levels.png, loss.png,
checkpoint.pt; with --inpaint: inpaint.png, inpaint.npz. MNIST is read from --data-dir and
downloaded there when missing.
"""
import argparse
import copy
import gzip
import hashlib
import math
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ----------------------------------------------------------------------------- data
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/"]
FILES = {  # name -> MD5 of the canonical file
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
}
MASKS = ["right", "bottom", "left", "top", "center"]  # the region --inpaint hides


class UserError(Exception):
    """A problem with the user's files or settings; main() prints it as one line and exits."""


def download_mnist(data_dir, mirrors=MIRRORS, check_md5=True):
    """Fetch the missing MNIST files from the first mirror that serves them; write atomically."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in [name for name in FILES if not (data_dir / name).exists()]:
        problems = []
        for url in [mirror.rstrip("/") + "/" + name for mirror in mirrors]:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    blob = response.read()
                if check_md5 and hashlib.md5(blob).hexdigest() != FILES[name]:
                    raise ValueError("MD5 mismatch")
                break
            except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: bad URL, MD5
                problems.append(f"{url}: {e}")
        else:
            raise UserError(f"could not download {name} ({'; '.join(problems)}); without network, "
                            f"put {', '.join(FILES)} into {data_dir}/ or point --data-dir at "
                            f"your copy")
        (data_dir / (name + ".part")).write_bytes(blob)
        os.replace(data_dir / (name + ".part"), data_dir / name)  # never a half-written file
        print(f"downloaded {url}")


def read_idx(path, magic):
    """Read a gzipped IDX file (magic 2051: images, 2049: labels) into a uint8 tensor."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable gzip file ({e})") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(f"{path}: magic number {found}, expected {magic} (not an MNIST IDX file)")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise UserError(f"{path}: header says {dims} but the file holds {len(body)} values")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_mnist(data_dir, split="train", download=False, mirror=None):
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64; N comes from the header.
    With download, missing files are fetched first (from mirror, without MD5 check, if given)."""
    if download:
        try:
            download_mnist(data_dir, [mirror] if mirror else MIRRORS, check_md5=mirror is None)
        except OSError as e:  # e.g. the data folder cannot be created or written
            raise UserError(f"cannot write MNIST into {data_dir} ({e})") from None
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(Path(data_dir) / f"{prefix}-images-idx3-ubyte.gz", 2051)
    labels = read_idx(Path(data_dir) / f"{prefix}-labels-idx1-ubyte.gz", 2049)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max() > 9:
        raise UserError(f"{data_dir}: {prefix} files disagree (images {tuple(images.shape)}, "
                        f"labels {tuple(labels.shape)}, largest label {labels.max().item()})")
    return images[:, None].float() / 255, labels.long()


def make_mask(region, size=28):
    """Known-pixel mask m of Algorithm 2, (1, 1, size, size) bool: False on the hidden region."""
    mask = torch.ones(1, 1, size, size, dtype=torch.bool)
    h, q = size // 2, size // 4
    hidden = {"right": (slice(None), slice(h, None)), "left": (slice(None), slice(None, h)),
              "bottom": (slice(h, None), slice(None)), "top": (slice(None, h), slice(None)),
              "center": (slice(q, size - q), slice(q, size - q))}[region]
    mask[0, 0][hidden] = False
    return mask


# ----------------------------------------------------------------------------- model
class ResBlock(nn.Module):
    """Two GroupNorm-SiLU-conv layers with the log σ embedding added in between, plus a skip."""

    def __init__(self, c_in, c_out, emb_dim):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        """x (n, c_in, H, W) and emb (n, emb_dim) -> (n, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """Noise conditional U-Net, 28 -> 14 -> 7 and back, returning s_θ(x, σ) ≈ ∇ₓ log p_σ(x).
    Unlike the paper's RefineNet (deeper, dilated convs, conditional instance norm per σ), it is
    a small U-Net conditioned on log σ through an embedding, with its output divided by σ."""

    def __init__(self, width=64):
        super().__init__()
        self.width = width
        c, e = width, 4 * width
        self.embed = nn.Sequential(nn.Linear(1, e), nn.SiLU(), nn.Linear(e, e))
        self.conv_in = nn.Conv2d(1, c, 3, padding=1)
        self.down1, self.down2 = ResBlock(c, c, e), ResBlock(c, 2 * c, e)        # 28x28, 14x14
        self.pool1 = nn.Conv2d(c, c, 3, stride=2, padding=1)                       # 28 -> 14
        self.pool2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)               # 14 -> 7
        self.mid1, self.mid2 = ResBlock(2 * c, 2 * c, e), ResBlock(2 * c, 2 * c, e)  # 7x7
        self.up2, self.up1 = ResBlock(4 * c, c, e), ResBlock(2 * c, c, e)         # 14x14, 28x28
        self.norm_out, self.conv_out = nn.GroupNorm(8, c), nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, sigma):
        """s_θ(x, σ) for images x (n, 1, 28, 28) and one σ per image, sigma (n,)."""
        emb = self.embed(torch.log(sigma)[:, None])
        h1 = self.down1(self.conv_in(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        # NCSNv2: the true score has norm ~ 1/σ, so the net only has to output unit scale.
        return out / sigma[:, None, None, None]


def get_sigmas(sigma_1, sigma_L, L):
    """The paper's noise levels: a geometric sequence σ_1 > ... > σ_L (Section 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


# ----------------------------------------------------------------------------- loss
def dsm_loss(score, x, sigmas):
    """Eq. (5)-(6) with λ(σ) = σ²: mean of ½ ‖σ s_θ(x + σz, σ) + z‖², one random σ_i per example."""
    sigma = sigmas[torch.randint(len(sigmas), (x.shape[0],), device=x.device)]
    s, z = sigma[:, None, None, None], torch.randn_like(x)
    return 0.5 * (s * score(x + s * z, sigma) + z).square().flatten(1).sum(1).mean()


def train(model, ema, opt, data, sigmas, args, start_epoch, losses, ckpt_path):
    """Adam on dsm_loss (eq. (6)) with an EMA of the weights; a checkpoint after every epoch."""
    device = data.device
    amp = device.type == "cuda" and args.compile  # measured: eager bf16 is slower (more casts)
    # CUDA graphs (reduce-overhead) replay forward and backward with one launch each: this small
    # net is bound by kernel launches. Batches have one size (the last partial one is dropped).
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    fwd = torch.compile(model, mode=mode, dynamic=False) if args.compile else model
    params, ema_params = list(model.parameters()), list(ema.parameters())
    batch = min(args.batch_size, len(data))
    steps = len(data) // batch
    step, t_run = start_epoch * steps, None
    for epoch in range(start_epoch + 1, args.epochs + 1):
        torch.manual_seed(args.seed + epoch)  # so a resumed run repeats an uninterrupted one
        perm = torch.randperm(len(data), device=device)
        total = torch.zeros((), device=device)
        t_epoch = t_print = time.time()
        for i in range(steps):
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                loss = dsm_loss(fwd, data[perm[i * batch:(i + 1) * batch]], sigmas)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Warm-up of the EMA decay, so that short runs do not sample from the random init.
            decay = min(args.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, params, 1 - decay)
            total += loss.detach()  # no .item() here: it would wait for the GPU every step
            step += 1
            if t_run is None:  # rates count from the end of the first step, after compilation
                t_run, step_run = time.time(), step
            elif time.time() - t_print > 15 and i < steps - 1:
                t_print, rate = time.time(), (step - step_run) * batch / (time.time() - t_run)
                left = (args.epochs * steps - step) * batch / rate
                print(f"  epoch {epoch} step {i + 1:>5}/{steps} | loss {loss.item():.4f} | "
                      f"{rate:,.0f} img/s | {left:.0f} s left", flush=True)
        mean = total.item() / steps
        if not math.isfinite(mean):
            raise UserError(f"loss is {mean} in epoch {epoch}; stopped, {ckpt_path} keeps the "
                            f"last good epoch (try a lower --lr)")
        losses.append(mean)
        save_checkpoint(ckpt_path, model=model.state_dict(), ema=ema.state_dict(),
                        opt=opt.state_dict(), epoch=epoch, sigmas=sigmas.cpu(), losses=losses,
                        args=vars(args))
        now = time.time()
        epoch_rate = steps * batch / (now - t_epoch)
        rate = (step - step_run) * batch / (now - t_run) if step > step_run else epoch_rate
        print(f"epoch {epoch:>3}/{args.epochs} | loss {mean:.4f} | {epoch_rate:,.0f} img/s | "
              f"{(args.epochs * steps - step) * batch / rate:.0f} s left", flush=True)


def save_checkpoint(path, **state):
    """torch.save to a temp file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, model=None, ema=None, sigmas=None, opt=None):
    """The saved dict; given a model, restore model, EMA (and optimiser) from it. A UserError for
    an unreadable file (missing, truncated, not ours), another architecture or σ schedule."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not {"model", "ema", "sigmas", "args"} <= ckpt.keys():
        raise UserError(f"{path}: not a readable checkpoint (not written by mnist_ncsn.py)")
    if model is None:  # run() only wants the saved flags, before it builds the model
        return ckpt
    saved_sigmas, width = ckpt["sigmas"], ckpt["args"]["width"]
    if width != model.width:
        raise UserError(f"{path}: made with --width {width}, this run uses --width {model.width}")
    if saved_sigmas.shape != sigmas.shape or not torch.allclose(saved_sigmas, sigmas.cpu()):
        raise UserError(f"{path}: trained with σ's {saved_sigmas.tolist()}, this run uses "
                        f"{sigmas.tolist()} (set --sigma-1/--sigma-L/--L to match)")
    try:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        if opt is not None:
            opt.load_state_dict(ckpt["opt"])
    except (KeyError, RuntimeError, ValueError) as e:  # e.g. saved by another version of UNet
        raise UserError(f"{path}: does not fit this model ({' '.join(str(e).split())[:200]})") \
            from None
    return ckpt


# ----------------------------------------------------------------------------- sampler
@torch.no_grad()
def langevin(score, x, sigma, alpha, T, keep=None):
    """T Langevin steps at one noise level: x <- x + (α/2) s_θ(x, σ) + √α z, z ~ N(0, I), the
    inner loop of Algorithms 1 and 2. keep = (m, y): after every step the pixels where the mask m
    is True are reset to y (Algorithm 2, line 9); the others move by Langevin only."""
    sigma_n = sigma.expand(len(x))
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_n) + alpha.sqrt() * torch.randn_like(x)
        if keep is not None:
            x = torch.where(keep[0], keep[1], x)
    return x


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T steps x <- x + (α_i/2) s_θ(x, σ_i) + √α_i z per
    level, α_i = ε σ_i²/σ_L². The official code's step_lr is α/2 in this form (x <- x + step_lr s
    + √(2 step_lr) z), so its step_lr = 2e-5 is ε = 4e-5 here. With denoise, a last step
    x + σ_L² s_θ(x, σ_L) removes the remaining noise (Tweedie). Returns x and trace, the L states
    at the end of each level."""
    trace = []
    for sigma in sigmas:
        x = langevin(score, x, sigma, eps * (sigma / sigmas[-1]) ** 2, T)
        trace.append(x.clone())
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, sigmas[-1].expand(len(x)))
    return x, trace


@torch.no_grad()
def anneal_langevin_inpaint(score, x, y, mask, sigmas, eps, T, denoise=True):
    """Inpainting with annealed Langevin dynamics, the paper's Algorithm 2 (Section 5, Fig. 6).
    The known pixels (mask True) of y are held at y + σ_i z, a sample of the data perturbed to
    level i (z drawn once per level, as in the paper); the hidden ones follow Algorithm 1's steps,
    α_i = ε σ_i²/σ_L², and so sample p_σ_i(hidden | known). After the optional denoising step the
    known pixels are set to y exactly. Returns x and trace, as anneal_langevin."""
    trace = []
    for sigma in sigmas:
        y_sigma = y + sigma * torch.randn_like(y)  # the known pixels, as noisy as this level's data
        x = torch.where(mask, y_sigma, x)
        x = langevin(score, x, sigma, eps * (sigma / sigmas[-1]) ** 2, T, keep=(mask, y_sigma))
        trace.append(x.clone())
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, sigmas[-1].expand(len(x)))
    return torch.where(mask, y, x), trace


def with_progress(score, n_levels, T, every=15.0):
    """Wrap a score network so that the sampler prints its level, img/s and time left: counting
    calls (T per level) says where it is, so the samplers one pastes into notes stay clean."""
    total, calls, t0, t_print = n_levels * T, 0, time.time(), time.time()

    def wrapped(x, sigma):
        """score(x, sigma), and every `every` seconds one progress line."""
        nonlocal calls, t_print
        out, calls, now = score(x, sigma), calls + 1, time.time()
        if now - t_print > every and calls < total:
            t_print, rate = now, calls * len(x) / (now - t0)
            print(f"  level {(calls - 1) // T + 1}/{n_levels} (σ = {sigma[0].item():.3g}) | "
                  f"{rate:,.0f} img/s | {(total - calls) * len(x) / rate:.0f} s left", flush=True)
        return out
    return wrapped


# ----------------------------------------------------------------------------- figures
def save(fig, path):
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grid(images, ncols, path, title, xlabels=None, xlabel=None, size=0.55):
    """Write images (n, 28, 28) in [0, 1] as one tiled figure, row-major, 2-pixel gaps between
    tiles, a label under each column when given."""
    rows = math.ceil(len(images) / ncols)
    mosaic = np.full((rows * 30 + 2, ncols * 30 + 2), 0.5, dtype=np.float32)
    for k, img in enumerate(images.clamp(0, 1).float().cpu().numpy()):
        r, c = divmod(k, ncols)
        mosaic[2 + 30 * r:30 * (r + 1), 2 + 30 * c:30 * (c + 1)] = img
    fig, ax = plt.subplots(figsize=(size * ncols + 1, size * rows + 1.2))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([16 + 30 * j for j in range(ncols)] if xlabels else [], xlabels or [], fontsize=7)
    ax.set(yticks=[], xlabel=xlabel)
    ax.set_title(title, fontsize=9)
    save(fig, path)


def save_samples(x, trace, sigmas, out, title):
    """samples.png: a square grid of up to 100 samples x (n, 1, 28, 28); langevin_levels.png: the
    first five (rows) at the end of each noise level of Algorithm 1 and denoised (columns)."""
    save_grid(x[:100, 0], math.ceil(math.sqrt(len(x[:100]))), out / "samples.png", title, size=0.4)
    columns = torch.stack([t[:5, 0] for t in trace] + [x[:5, 0]], 1)  # (5, L + 1, 28, 28)
    save_grid(columns.flatten(0, 1), columns.shape[1], out / "langevin_levels.png",
              "Annealed Langevin dynamics, Algorithm 1",
              [f"{s:.2g}" for s in sigmas.tolist()] + ["denoised"],
              "noise level σ_i (state after its T steps); one sample per row")


def save_inpaint(originals, mask, completions, region, path):
    """One row per digit: occluded input (hidden part dark grey) | completions | original."""
    occluded = torch.where(mask[0], originals, torch.tensor(0.3))  # gaps between tiles are 0.5
    rows = torch.cat([occluded[:, None], completions, originals[:, None]], 1)  # (n, k + 2, 28, 28)
    k = rows.shape[1] - 2
    save_grid(rows.flatten(0, 1), k + 2, path,
              f"Inpainting, Algorithm 2: {region} part hidden, completions 1..{k}",
              ["input"] + [f"{j + 1}" for j in range(k)] + ["original"], size=0.6)


def save_loss(losses, path):
    """Mean DSM loss per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(losses) + 1), losses, marker=".")
    ax.set(xlabel="epoch", ylabel="DSM loss, eq. (6)", title="Training loss", yscale="log")
    save(fig, path)


# ----------------------------------------------------------------------------- main
# Flags left out take their value from the checkpoint being read (--sample-only, --inpaint,
# --resume), else from the preset: "gpu" is the full run, "cpu" a run sized for a 2-core CPU.
PRESETS = {
    "gpu": dict(epochs=20, batch_size=128, lr=1e-3, ema_decay=0.999, train_size=60000, width=64,
                sigma_1=1.0, sigma_L=0.01, L=10, T=100, eps=4e-5),
    "cpu": dict(epochs=36, batch_size=32, lr=2e-3, ema_decay=0.999, train_size=10000, width=16,
                sigma_1=1.0, sigma_L=0.01, L=10, T=50, eps=4e-5),
}


def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description="NCSN (Song & Ermon 2019) on MNIST: train a noise "
                                "conditional U-Net with DSM, sample with annealed Langevin "
                                "dynamics, inpaint.")
    add = p.add_argument
    add("--data-dir", default="data/mnist", help="folder with the four MNIST .gz files, downloaded "
        "there when missing; without network, point it at your copy (default: data/mnist)")
    add("--mirror", help="download from this URL prefix, not the public mirrors (no MD5 check)")
    add("--out", default="out/mnist", help="output folder (default: out/mnist)")
    add("--device", choices=["auto", "cpu", "cuda"], default="auto",
        help="auto = CUDA when present (default: auto)")
    add("--preset", choices=["auto", "cpu", "gpu"], default="auto", help="defaults of the flags "
        "below; gpu: full run, cpu: sized for a 2-core CPU, auto (default): gpu on CUDA, else cpu")
    add("--seed", type=int, default=0, help="random seed (default: 0)")
    g, c = PRESETS["gpu"], PRESETS["cpu"]
    for flag, text in dict(
            epochs="training epochs", batch_size="images per step", lr="Adam learning rate",
            ema_decay="EMA decay of the weights", train_size="train on the first N images only",
            width="U-Net channels, a multiple of 8", sigma_1="largest noise level σ_1",
            sigma_L="smallest noise level σ_L", L="number of noise levels L",
            T="Langevin steps per noise level",
            eps="Langevin step size ε of Algorithm 1, α_i = ε σ_i²/σ_L²").items():
        default = (f"{g[flag]:g}" if g[flag] == c[flag] else
                   f"{g[flag]:g} with --preset gpu, {c[flag]:g} with cpu")
        add("--" + flag.replace("_", "-"), type=type(g[flag]),  # int or float, as in PRESETS
            help=f"{text} (default: {default}; the checkpoint's when one is read)")
    add("--no-denoise", action="store_true", help="skip the final step x + σ_L² s_θ")
    add("--n-samples", type=int, default=100, help="images to sample (default: 100)")
    add("--compile", action="store_true", help="torch.compile the training step (on CUDA: CUDA "
        "graphs, bf16 autocast, channels_last)")
    add("--resume", action="store_true", help="continue training up to --epochs from a checkpoint "
        "(--ckpt, else OUT/checkpoint.pt)")
    add("--sample-only", action="store_true", help="sample from --ckpt, no training")
    add("--ckpt", help="checkpoint to read (default: OUT/checkpoint.pt)")
    add("--inpaint", choices=MASKS, help="hide this part of test digits and complete them with "
        "Algorithm 2 from the checkpoint's EMA model; no training")
    add("--n-inpaint", type=int, default=10, help="test digits to inpaint (default: 10)")
    add("--n-completions", type=int, default=6, help="completions per digit (default: 6)")
    args = p.parse_args(argv)
    for name in "epochs batch_size width L T n_samples train_size n_inpaint n_completions".split():
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.width is not None and args.width % 8:
        p.error("--width must be a multiple of 8 (GroupNorm uses 8 groups)")
    for name in ["lr", "eps", "sigma_L", "sigma_1"]:
        if getattr(args, name) is not None and not 0 < getattr(args, name) < math.inf:
            p.error(f"--{name.replace('_', '-')} must be a positive number")
    if args.preset == "auto":
        args.preset = "gpu" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    preset = PRESETS[args.preset]  # a checkpoint's σ's are checked against it on loading
    if (args.sigma_L or preset["sigma_L"]) >= (args.sigma_1 or preset["sigma_1"]):
        p.error("--sigma-1 must be finite and larger than --sigma-L")
    if args.ema_decay is not None and not 0 <= args.ema_decay < 1:
        p.error("--ema-decay must be in [0, 1)")
    if args.inpaint and args.resume:
        p.error("--inpaint samples from a checkpoint; it does not go with --resume")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def inpaint(args, score, sigmas, device, out):
    """Hide a region of the first --n-inpaint test digits, complete each --n-completions times
    with Algorithm 2, write inpaint.npz (images in [0, 1], mask True = known) and inpaint.png."""
    images, labels = load_mnist(args.data_dir, "test", download=True, mirror=args.mirror)
    if args.n_inpaint > len(images):
        raise UserError(f"--n-inpaint {args.n_inpaint}, but {args.data_dir} holds only "
                        f"{len(images)} test images")
    n, k, mask = args.n_inpaint, args.n_completions, make_mask(args.inpaint).to(device)
    y = images[:n].repeat_interleave(k, 0).to(device)  # k copies of each digit, one per chain
    t0 = time.time()
    x, _ = anneal_langevin_inpaint(score, torch.rand_like(y), y, mask, sigmas, args.eps, args.T,
                                   not args.no_denoise)
    x = x.clamp(0, 1).float().cpu().reshape(n, k, 28, 28)
    print(f"inpainted {n} test digits x {k} ({args.inpaint} hidden), {len(sigmas) * args.T} "
          f"Langevin steps, ε {args.eps:g}, in {time.time() - t0:.1f} s")
    np.savez_compressed(out / "inpaint.npz", originals=images[:n, 0].numpy(), completions=x.numpy(),
                        labels=labels[:n].numpy(), mask=mask[0, 0].cpu().numpy())
    save_inpaint(images[:n, 0], mask[0].cpu(), x, args.inpaint, out / "inpaint.png")
    print(f"wrote {out}/inpaint.png, inpaint.npz")


def run(args):
    """Train (or load) the model, then sample, or inpaint, and write every output."""
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    ckpt_path = Path(args.ckpt) if args.ckpt else out / "checkpoint.pt"
    training = not (args.sample_only or args.inpaint)
    saved = load_checkpoint(ckpt_path)["args"] if not training or args.resume else {}
    for name, value in PRESETS[args.preset].items():  # flags given > checkpoint > preset
        if getattr(args, name) is None:
            setattr(args, name, saved[name] if saved.get(name) is not None else value)
    if training and device == "cpu":  # say at once what the user is in for
        # Images/s on 2 cores: measured 740 at width 16 and 293 at 32, reported 120 at 64.
        n, rate = min(args.train_size, 60000), 700 * (16 / args.width) ** 1.3
        t = args.epochs * n / rate
        print(f"--preset {args.preset} on the CPU (width {args.width}, {args.epochs} epochs of "
              f"{n:,} images, T={args.T}): " + (f"roughly {t / 60:.0f} min" if t > 60 else
              "under a minute") + " of training on 2 cores; " + (
              "--preset gpu is the full run, about 3 h here" if args.preset == "cpu" else
              "--preset cpu gives digits in about 9 min"), flush=True)
    torch.manual_seed(args.seed)
    sigmas = get_sigmas(args.sigma_1, args.sigma_L, args.L).to(device)
    model = UNet(args.width).to(device)
    if device == "cuda" and args.compile:  # compiled: bf16 + NHWC; eager float32 measured faster
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device == "cuda")
    print(f"UNet(width={args.width}): {sum(p.numel() for p in model.parameters()):,} parameters | "
          f"{device} | L={len(sigmas)} σ's {args.sigma_1:g} .. {args.sigma_L:g}")
    epoch, losses = 0, []
    if saved:
        ckpt = load_checkpoint(ckpt_path, model, ema, sigmas, opt if args.resume else None)
        epoch, losses = ckpt["epoch"], ckpt["losses"]
        print(f"loaded {ckpt_path} (epoch {epoch})")
    if training:
        images = load_mnist(args.data_dir, "train", download=True, mirror=args.mirror)[0]
        data = images[:args.train_size].to(device)
        print(f"training on {len(data):,} images from {args.data_dir}, "
              f"epochs {epoch + 1}..{args.epochs}")
        t0 = time.time()
        train(model, ema, opt, data, sigmas, args, epoch, losses, out / "checkpoint.pt")
        print(f"training took {time.time() - t0:.1f} s" + (f", peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else ""))
        epoch = max(epoch, args.epochs)
        save_loss(losses, out / "loss.png")
    score = with_progress(ema, len(sigmas), args.T)
    torch.manual_seed(args.seed)
    if args.inpaint:
        return inpaint(args, score, sigmas, device, out)
    t0 = time.time()
    x, trace = anneal_langevin(score, torch.rand(args.n_samples, 1, 28, 28, device=device),
                               sigmas, args.eps, args.T, not args.no_denoise)
    x = x.clamp(0, 1).float().cpu()
    print(f"sampled {args.n_samples} images, {len(sigmas) * args.T} Langevin steps, "
          f"ε {args.eps:g}, in {time.time() - t0:.1f} s")
    np.save(out / "samples.npy", x[:, 0].numpy().astype(np.float32))
    save_samples(x, trace, sigmas, out, f"NCSN samples (epoch {epoch}, ε={args.eps:g}, T={args.T})")
    print(f"wrote {out}/samples.png, samples.npy, langevin_levels.png"
          + ("" if not training else ", loss.png, checkpoint.pt"))


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    try:
        run(parse_args(argv))  # parse_args itself exits with its own one-line errors
    except UserError as e:
        sys.exit(f"mnist_ncsn.py: error: {e}")


if __name__ == "__main__":
    main()
