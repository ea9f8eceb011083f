"""NCSN on MNIST: a noise conditional score network trained with denoising score matching,
sampled with annealed Langevin dynamics, and used to fill in hidden parts of digits.

Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS 2019,
arXiv:1907.05600. A small U-Net s_θ(x, σ) learns the score of MNIST perturbed by Gaussian noise at
L geometric noise levels (eq. (5)-(6)); Algorithm 1 walks uniform noise down the levels, and
Algorithm 2 (appendix) does the same with some pixels held at a given image: inpainting.

    python mnist_ncsn.py                        # without CUDA a CPU-sized run (~10 min), else full
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
    for name, md5 in FILES.items():
        path = data_dir / name
        if path.exists():
            continue
        problems = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    blob = response.read()
            except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: bad URL
                problems.append(f"{url}: {e}")
                continue
            if check_md5 and hashlib.md5(blob).hexdigest() != md5:
                problems.append(f"{url}: MD5 mismatch")
                continue
            fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=name, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)  # a half-written file never carries the final name
            print(f"downloaded {url}")
            break
        else:
            raise UserError(f"could not download {name} ({'; '.join(problems)}); without network, "
                            f"put {', '.join(FILES)} into {data_dir}/ or point --data-dir at "
                            f"your copy")


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


def load_mnist(data_dir, split="train"):
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64; N comes from the header."""
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
    a small U-Net conditioned on log σ through an embedding, with its output divided by σ.
    """

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
    s = sigma[:, None, None, None]
    z = torch.randn_like(x)
    return 0.5 * (s * score(x + s * z, sigma) + z).square().flatten(1).sum(1).mean()


def train(model, ema, opt, data, sigmas, args, start_epoch, losses, ckpt_path):
    """Adam on dsm_loss (eq. (6)) with an EMA of the weights; a checkpoint after every epoch."""
    device = data.device
    amp = device.type == "cuda" and args.compile  # measured: eager bf16 is slower (more casts)
    # CUDA graphs (reduce-overhead) replay the whole forward/backward with one launch each: at
    # batch 128 this small net is bound by kernel launches, not arithmetic. The batch size is fixed
    # (the last partial batch is dropped), so dynamic=False.
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    fwd = torch.compile(model, mode=mode, dynamic=False) if args.compile else model
    params, ema_params = list(model.parameters()), list(ema.parameters())
    batch = min(args.batch_size, len(data))
    steps = len(data) // batch
    step, t_run, images_run = start_epoch * steps, None, 0
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
            step, images_run = step + 1, images_run + batch
            if t_run is None:  # rates count from the end of the first step, after compilation
                t_run, images_run = time.time(), 0
            elif time.time() - t_print > 15 and i < steps - 1:
                t_print, rate = time.time(), images_run / (time.time() - t_run)
                left = ((args.epochs - epoch + 1) * steps - i - 1) * batch / rate
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
        rate = images_run / (now - t_run) if images_run else steps * batch / (now - t_epoch)
        print(f"epoch {epoch:>3}/{args.epochs} | loss {mean:.4f} | "
              f"{steps * batch / (now - t_epoch):,.0f} img/s | "
              f"{(args.epochs - epoch) * steps * batch / rate:.0f} s left", flush=True)


def save_checkpoint(path, **state):
    """torch.save to a temp file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path):
    """The saved dict, or a UserError for anything unreadable (missing, truncated, not ours)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not {"model", "ema", "sigmas", "args"} <= ckpt.keys():
        raise UserError(f"{path}: not a readable checkpoint (not written by mnist_ncsn.py)")
    return ckpt


def load_checkpoint(path, model, ema, sigmas, opt=None):
    """Restore model, EMA (and optimiser); refuse another architecture or σ schedule."""
    ckpt = read_checkpoint(path)
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
    """T Langevin steps at one noise level: x <- x + (α/2) s_θ(x, σ) + √α z, z ~ N(0, I).

    The inner loop of Algorithms 1 and 2. keep = (m, y): after every step the pixels where the
    mask m is True are reset to y (Algorithm 2, line 9); the others move by Langevin only.
    """
    sigma_n = sigma.expand(len(x))
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_n) + alpha.sqrt() * torch.randn_like(x)
        if keep is not None:
            x = torch.where(keep[0], keep[1], x)
    return x


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T steps x <- x + (α_i/2) s_θ(x, σ_i) + √α_i z per
    level, α_i = ε σ_i²/σ_L².

    The official code's step_lr is α/2 in this form (x <- x + step_lr s + √(2 step_lr) z), so its
    step_lr = 2e-5 is ε = 4e-5 here. With denoise, a last step x + σ_L² s_θ(x, σ_L) removes the
    remaining noise (Tweedie). Returns x and trace, the L states at the end of each level.
    """
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

    The known pixels (mask True) of the image y are held at y + σ_i z, a sample of the data
    perturbed to level i (z drawn once per level, as in the paper); the hidden ones follow
    Algorithm 1's steps, α_i = ε σ_i²/σ_L², and so sample p_σ_i(hidden | known). After the
    optional denoising step the known pixels are set to y exactly. Returns x and the L states
    at the end of each level, as anneal_langevin.
    """
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
    """Wrap a score network so that the sampler prints its level, img/s and time left.

    A Langevin sampler calls the network T times per level: counting those calls is enough to
    know where it is, without changing the samplers (the functions one pastes into notes).
    """
    total, state = n_levels * T, {"calls": 0, "t0": time.time(), "t_print": time.time()}

    def wrapped(x, sigma):
        """score(x, sigma), and every `every` seconds one progress line."""
        out = score(x, sigma)
        state["calls"] += 1
        now, done = time.time(), state["calls"]
        if now - state["t_print"] > every and done < total:
            rate = done * len(x) / (now - state["t0"])
            print(f"  level {(done - 1) // T + 1}/{n_levels} (σ = {sigma[0].item():.3g})"
                  f" | {rate:,.0f} img/s | {(total - done) * len(x) / rate:.0f} s left",
                  flush=True)
            state["t_print"] = now
        return out
    return wrapped


# ----------------------------------------------------------------------------- figures
def tile(images, ncols):
    """Images (n, 28, 28) in [0, 1] -> one mosaic array, row-major, with 2-pixel gaps."""
    n = len(images)
    rows = math.ceil(n / ncols)
    mosaic = np.full((rows * 30 + 2, ncols * 30 + 2), 0.5, dtype=np.float32)
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        mosaic[2 + 30 * r:30 * (r + 1), 2 + 30 * c:30 * (c + 1)] = img
    return mosaic


def save(fig, path):
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grid(images, path, title):
    """A square grid of samples (10 x 10 for 100 images)."""
    ncols = math.ceil(math.sqrt(len(images)))
    fig, ax = plt.subplots(figsize=(5, 5.3))
    ax.imshow(tile(images.clamp(0, 1).numpy(), ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    save(fig, path)


def save_levels(trace, final, sigmas, path):
    """A few samples (rows) at the end of each noise level of Algorithm 1 (columns)."""
    columns = [t[:len(final)] for t in trace] + [final]
    stacked = torch.stack([c[:, 0].clamp(0, 1).float().cpu() for c in columns], 1)  # (rows, cols)
    ncols = len(columns)
    fig, ax = plt.subplots(figsize=(0.55 * ncols + 1, 0.55 * len(final) + 1.2))
    ax.imshow(tile(stacked.flatten(0, 1).numpy(), ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([16 + 30 * j for j in range(ncols)],
                  [f"{s:.2g}" for s in sigmas.tolist()] + ["denoised"], fontsize=7, rotation=45)
    ax.set_yticks([])
    ax.set(xlabel="noise level σ_i (state after its T steps)", ylabel="sample",
           title="Annealed Langevin dynamics, Algorithm 1")
    save(fig, path)


def save_inpaint(originals, mask, completions, region, path):
    """One row per digit: occluded input (hidden part dark grey) | completions | original."""
    occluded = torch.where(mask[0], originals, torch.tensor(0.3))  # gaps between tiles are 0.5
    rows = torch.cat([occluded[:, None], completions, originals[:, None]], 1)  # (n, k + 2, 28, 28)
    ncols = rows.shape[1]
    fig, ax = plt.subplots(figsize=(0.6 * ncols + 0.6, 0.6 * len(rows) + 1.0))
    ax.imshow(tile(rows.flatten(0, 1).clamp(0, 1).numpy(), ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([16 + 30 * j for j in range(ncols)],
                  ["input"] + [f"{j + 1}" for j in range(ncols - 2)] + ["original"], fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"Inpainting, Algorithm 2: {region} part hidden, completions 1..{ncols - 2}",
                 fontsize=9)
    save(fig, path)


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
    "cpu": dict(epochs=20, batch_size=64, lr=2e-3, ema_decay=0.999, train_size=10000, width=16,
                sigma_1=1.0, sigma_L=0.01, L=10, T=50, eps=8e-5),
}


def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description="NCSN (Song & Ermon 2019) on MNIST: train a noise "
                                "conditional U-Net with DSM, sample with annealed Langevin "
                                "dynamics, inpaint.")
    p.add_argument("--data-dir", default="data/mnist", help="folder with the four MNIST .gz files, "
                   "downloaded there when missing; without network, point it at your copy "
                   "(default: data/mnist)")
    p.add_argument("--mirror", help="download from this URL prefix instead of the public mirrors "
                   "(skips the MD5 check)")
    p.add_argument("--out", default="out/mnist", help="output folder (default: out/mnist)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto = CUDA when present (default: auto)")
    p.add_argument("--preset", choices=["auto", "cpu", "gpu"], default="auto",
                   help="defaults for the flags below: gpu = the full run, cpu = sized for a "
                   "2-core CPU; auto = gpu on CUDA, else cpu (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g, c = PRESETS["gpu"], PRESETS["cpu"]
    for flag, kind, text in [
            ("epochs", int, "training epochs"), ("batch_size", int, "images per step"),
            ("lr", float, "Adam learning rate"), ("ema_decay", float, "EMA decay of the weights"),
            ("train_size", int, "train on the first N images only"),
            ("width", int, "U-Net channels, a multiple of 8"),
            ("sigma_1", float, "largest noise level σ_1"), ("sigma_L", float,
                                                             "smallest noise level σ_L"),
            ("L", int, "number of noise levels L"), ("T", int, "Langevin steps per noise level"),
            ("eps", float, "Langevin step size ε of Algorithm 1, α_i = ε σ_i²/σ_L²")]:
        default = f"{g[flag]:g}" if g[flag] == c[flag] else f"{g[flag]:g} with --preset gpu, " \
            f"{c[flag]:g} with cpu"
        p.add_argument("--" + flag.replace("_", "-"), type=kind, help=f"{text} (default: "
                       f"{default}; the checkpoint's when one is read)")
    p.add_argument("--no-denoise", action="store_true", help="skip the final step x + σ_L² s_θ")
    p.add_argument("--n-samples", type=int, default=100, help="images to sample (default: 100)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step "
                   "(on CUDA: CUDA graphs, bf16 autocast, channels_last)")
    p.add_argument("--resume", action="store_true", help="continue training up to --epochs from "
                   "a checkpoint (--ckpt, else OUT/checkpoint.pt)")
    p.add_argument("--sample-only", action="store_true", help="sample from --ckpt, no training")
    p.add_argument("--ckpt", help="checkpoint to read (default: OUT/checkpoint.pt)")
    p.add_argument("--inpaint", choices=MASKS, help="hide this part of test digits and complete "
                   "them with Algorithm 2 from the checkpoint's EMA model; no training")
    p.add_argument("--n-inpaint", type=int, default=10, help="test digits to inpaint (default: 10)")
    p.add_argument("--n-completions", type=int, default=6, help="completions per digit "
                   "(default: 6)")
    args = p.parse_args(argv)
    for name in ["epochs", "batch_size", "width", "L", "T", "n_samples", "train_size",
                 "n_inpaint", "n_completions"]:
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


def get_mnist(args, split):
    """Images and labels of one split from --data-dir, downloaded there when missing."""
    data_dir = Path(args.data_dir)
    if not all((data_dir / name).exists() for name in FILES):
        try:
            download_mnist(data_dir, [args.mirror] if args.mirror else MIRRORS,
                           check_md5=args.mirror is None)
        except OSError as e:  # e.g. the data folder cannot be created or written
            raise UserError(f"cannot write MNIST into {data_dir} ({e})") from None
    return load_mnist(data_dir, split)


def inpaint(args, score, sigmas, device, out):
    """Hide a region of the first --n-inpaint test digits, complete each --n-completions times
    with Algorithm 2, write inpaint.npz (images in [0, 1], mask True = known) and inpaint.png."""
    images, labels = get_mnist(args, "test")
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
    np.savez_compressed(out / "inpaint.npz", originals=images[:n, 0].numpy(),
                        labels=labels[:n].numpy(), mask=mask[0, 0].cpu().numpy(),
                        completions=x.numpy())
    save_inpaint(images[:n, 0], mask[0].cpu(), x, args.inpaint, out / "inpaint.png")
    print(f"wrote {out}/inpaint.png, inpaint.npz")


def run(args):
    """Train (or load) the model, then sample, or inpaint, and write every output."""
    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    ckpt_path = Path(args.ckpt) if args.ckpt else out / "checkpoint.pt"
    training = not (args.sample_only or args.inpaint)
    saved = read_checkpoint(ckpt_path)["args"] if not training or args.resume else {}
    for name, value in PRESETS[args.preset].items():  # flags given > checkpoint > preset
        if getattr(args, name) is None:
            setattr(args, name, saved[name] if saved.get(name) is not None else value)
    if training and dev == "cpu":  # say at once what the user is in for
        print(f"--preset cpu: a CPU-sized run (width {args.width}, {args.epochs} epochs of "
              f"{args.train_size:,} images, T={args.T}), about 10 min on 2 cores; --preset gpu "
              f"is the full run, about 3 h on 2 cores" if args.preset == "cpu" else
              "--preset gpu on a CPU: about 3 h on 2 cores; --preset cpu gives digits in about "
              "10 min", flush=True)
    torch.manual_seed(args.seed)
    sigmas = get_sigmas(args.sigma_1, args.sigma_L, args.L).to(device)
    model = UNet(args.width).to(device)
    if dev == "cuda" and args.compile:  # compiled: bf16 + NHWC; eager float32 measured faster
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=dev == "cuda")
    print(f"UNet(width={args.width}): {sum(p.numel() for p in model.parameters()):,} parameters | "
          f"{device} | L={len(sigmas)} σ's {args.sigma_1:g} .. {args.sigma_L:g}")
    epoch, losses = 0, []
    if saved:
        ckpt = load_checkpoint(ckpt_path, model, ema, sigmas, opt if args.resume else None)
        epoch, losses = ckpt["epoch"], ckpt["losses"]
        print(f"loaded {ckpt_path} (epoch {epoch})")
    if training:
        data = get_mnist(args, "train")[0][:args.train_size].to(device)
        print(f"training on {len(data):,} images from {args.data_dir}, "
              f"epochs {epoch + 1}..{args.epochs}")
        t0 = time.time()
        train(model, ema, opt, data, sigmas, args, epoch, losses, out / "checkpoint.pt")
        print(f"training took {time.time() - t0:.1f} s" + (f", peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if dev == "cuda" else ""))
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
    save_grid(x[:100, 0], out / "samples.png", f"NCSN samples (epoch {epoch}, ε={args.eps:g}, "
              f"T={args.T})")
    save_levels(trace, x[:5], sigmas, out / "langevin_levels.png")
    print(f"wrote {out}/samples.png, samples.npy, langevin_levels.png"
          + ("" if not training else ", loss.png, checkpoint.pt"))


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    args = parse_args(argv)
    try:
        run(args)
    except UserError as e:
        sys.exit(f"mnist_ncsn.py: error: {e}")


if __name__ == "__main__":
    main()
