"""NCSN on MNIST: a noise conditional score network trained with denoising score matching,
sampled with annealed Langevin dynamics.

Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS 2019,
arXiv:1907.05600. A small U-Net s(x, sigma) learns the score of MNIST perturbed by Gaussian noise at
L geometric noise levels (eq. (5)-(6)); Algorithm 1 then walks uniform noise down the levels.

    python mnist_ncsn.py --epochs 20 --compile          # GPU: digits in a few minutes
    python mnist_ncsn.py --device cpu --width 24 --batch-size 32 --lr 2e-3 --train-size 10000 \
        --epochs 10 --T 50 --eps 8e-5                   # CPU: rough digits in about 9 minutes
    python mnist_ncsn.py --sample-only --ckpt out/mnist/checkpoint.pt --eps 8e-5

Outputs in --out (default out/mnist/): samples.png, samples.npy, langevin_levels.png, loss.png,
checkpoint.pt. MNIST is read from --data-dir and downloaded there when missing.
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

# ----------------------------------------------------------------------------------------- data
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/"]
FILES = {  # name -> MD5 of the canonical file
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
}


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
                            f"put {', '.join(FILES)} into {data_dir}/")


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


# ---------------------------------------------------------------------------------------- model
class ResBlock(nn.Module):
    """Two GroupNorm-SiLU-conv layers with the log-sigma embedding added in between, plus a skip."""

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
    """Noise conditional U-Net, 28 -> 14 -> 7 and back, returning s(x, sigma) ~ grad log p_sigma(x).

    Unlike the paper's RefineNet (deeper, dilated convs, conditional instance norm per sigma), it is
    a small U-Net conditioned on log sigma through an embedding, with its output divided by sigma.
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
        """s(x, sigma) for images x (n, 1, 28, 28) and one sigma per image, sigma (n,)."""
        emb = self.embed(torch.log(sigma)[:, None])
        h1 = self.down1(self.conv_in(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        # NCSNv2: the true score has norm ~ 1/sigma, so the net only has to output unit scale.
        return out / sigma[:, None, None, None]


# ----------------------------------------------------------------------------------------- loss
def get_sigmas(sigma_1=1.0, sigma_L=0.01, L=10):
    """Geometric noise levels sigma_1 > ... > sigma_L (Section 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


def dsm_loss(score, x, sigmas):
    """Eq. (5)-(6), lambda(sigma) = sigma^2: mean of 1/2 ||sigma s(x + sigma z, sigma) + z||^2."""
    sigma = sigmas[torch.randint(len(sigmas), (x.shape[0],), device=x.device)]
    s = sigma[:, None, None, None]
    z = torch.randn_like(x)
    return 0.5 * (s * score(x + s * z, sigma) + z).square().flatten(1).sum(1).mean()


# -------------------------------------------------------------------------------------- sampler
@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True, n_trace=0):
    """Algorithm 1: for each sigma_i, T steps x <- x + (alpha_i/2) s(x, sigma_i) + sqrt(alpha_i) z.

    alpha_i = eps sigma_i^2 / sigma_L^2. The official code's step_lr is alpha/2 in this form
    (x <- x + step_lr s + sqrt(2 step_lr) z), so its step_lr = 2e-5 is eps = 4e-5 here. With
    denoise, a last step x + sigma_L^2 s(x, sigma_L) removes the remaining noise (Tweedie).
    Returns x and, for the first n_trace samples, their state at the end of every level.
    """
    trace = []
    for sigma in sigmas:
        alpha = eps * (sigma / sigmas[-1]) ** 2
        sigma_n = sigma.expand(len(x))
        for _ in range(T):
            x = x + alpha / 2 * score(x, sigma_n) + alpha.sqrt() * torch.randn_like(x)
        trace.append(x[:n_trace].clone())
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, sigmas[-1].expand(len(x)))
    return x, trace


# -------------------------------------------------------------------------------------- figures
def tile(images, ncols):
    """Images (n, 28, 28) in [0, 1] -> one mosaic array, row-major, with 2-pixel gaps."""
    n = len(images)
    rows = math.ceil(n / ncols)
    mosaic = np.full((rows * 30 + 2, ncols * 30 + 2), 0.5, dtype=np.float32)
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        mosaic[2 + 30 * r:30 * (r + 1), 2 + 30 * c:30 * (c + 1)] = img
    return mosaic


def save_grid(images, path, title):
    """A square grid of samples (10 x 10 for 100 images)."""
    ncols = math.ceil(math.sqrt(len(images)))
    fig, ax = plt.subplots(figsize=(5, 5.3))
    ax.imshow(tile(images.clamp(0, 1).numpy(), ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_levels(trace, final, sigmas, path):
    """A few samples (rows) at the end of each noise level of Algorithm 1 (columns)."""
    columns = trace + [final]
    stacked = torch.stack([c[:, 0].clamp(0, 1).float().cpu() for c in columns], 1)  # (rows, cols)
    ncols = len(columns)
    fig, ax = plt.subplots(figsize=(0.55 * ncols + 1, 0.55 * len(final) + 1.2))
    ax.imshow(tile(stacked.flatten(0, 1).numpy(), ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([16 + 30 * j for j in range(ncols)],
                  [f"{s:.2g}" for s in sigmas.tolist()] + ["denoised"], fontsize=7, rotation=45)
    ax.set_yticks([])
    ax.set(xlabel="noise level σ_i (state after its T steps)", ylabel="sample",
           title="Annealed Langevin dynamics, Algorithm 1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_loss(losses, path):
    """Mean DSM loss per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(losses) + 1), losses, marker=".")
    ax.set(xlabel="epoch", ylabel="DSM loss, eq. (6)", title="Training loss", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------- checkpoint
def save_checkpoint(path, **state):
    """torch.save to a temp file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, model, ema, sigmas, opt=None):
    """Restore model, EMA (and optimiser); refuse another architecture or sigma schedule."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved_sigmas, width = ckpt["sigmas"], ckpt["args"]["width"]
    except Exception as e:  # anything unreadable: missing, truncated, not a checkpoint
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if width != model.width:
        raise UserError(f"{path}: made with --width {width}, this run uses --width {model.width}")
    if saved_sigmas.shape != sigmas.shape or not torch.allclose(saved_sigmas, sigmas.cpu()):
        raise UserError(f"{path}: trained with sigmas {saved_sigmas.tolist()}, this run uses "
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


# ------------------------------------------------------------------------------------- training
def train(model, ema, opt, data, sigmas, args, start_epoch, losses, ckpt_path):
    """Adam on dsm_loss with an EMA of the weights; a checkpoint after every finite epoch."""
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


# ----------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description="NCSN (Song & Ermon 2019) on MNIST: train a noise "
                                "conditional U-Net with DSM, sample with annealed Langevin "
                                "dynamics.")
    p.add_argument("--data-dir", default="data/mnist", help="folder with the four MNIST .gz files "
                   "(downloaded there when missing) [data/mnist]")
    p.add_argument("--mirror", help="download from this URL prefix instead of the public mirrors "
                   "(skips the MD5 check)")
    p.add_argument("--out", default="out/mnist", help="output folder [out/mnist]")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto = CUDA when present [auto]")
    p.add_argument("--seed", type=int, default=0, help="random seed [0]")
    p.add_argument("--epochs", type=int, default=20, help="training epochs [20]")
    p.add_argument("--batch-size", type=int, default=128, help="images per step [128]")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate [1e-3]")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the weights "
                   "[0.999]")
    p.add_argument("--train-size", type=int, help="train on the first N images only [all]")
    p.add_argument("--width", type=int, default=64, help="U-Net channels, a multiple of 8 [64]")
    p.add_argument("--sigma-1", type=float, default=1.0, help="largest noise level sigma_1 [1]")
    p.add_argument("--sigma-L", type=float, default=0.01, help="smallest noise level sigma_L "
                   "[0.01]")
    p.add_argument("--L", type=int, default=10, help="number of noise levels L [10]")
    p.add_argument("--T", type=int, default=100, help="Langevin steps per noise level [100]")
    p.add_argument("--eps", type=float, default=4e-5, help="Langevin step size epsilon of "
                   "Algorithm 1, alpha_i = eps sigma_i^2/sigma_L^2; chosen by measured sample "
                   "quality (README) [4e-5]")
    p.add_argument("--no-denoise", action="store_true", help="skip the final step x + sigma_L^2 s")
    p.add_argument("--n-samples", type=int, default=100, help="images to sample [100]")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step "
                   "(on CUDA: CUDA graphs, bf16 autocast, channels_last)")
    p.add_argument("--resume", action="store_true", help="continue training up to --epochs from "
                   "a checkpoint's model, EMA, optimiser (and its lr) and epoch (--ckpt, else "
                   "OUT/checkpoint.pt)")
    p.add_argument("--sample-only", action="store_true", help="sample from --ckpt, no training")
    p.add_argument("--ckpt", help="checkpoint to read [OUT/checkpoint.pt]")
    args = p.parse_args(argv)
    for name in ["epochs", "batch_size", "width", "L", "T", "n_samples", "train_size"]:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.width % 8:
        p.error("--width must be a multiple of 8 (GroupNorm uses 8 groups)")
    for name in ["lr", "eps", "sigma_L"]:
        if not 0 < getattr(args, name) < math.inf:
            p.error(f"--{name.replace('_', '-')} must be a positive number")
    if not args.sigma_L < args.sigma_1 < math.inf:
        p.error("--sigma-1 must be finite and larger than --sigma-L")
    if not 0 <= args.ema_decay < 1:
        p.error("--ema-decay must be in [0, 1)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def run(args):
    """Train (or load) the model, then sample and write every output."""
    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    ckpt_path = Path(args.ckpt) if args.ckpt else out / "checkpoint.pt"
    torch.manual_seed(args.seed)
    sigmas = get_sigmas(args.sigma_1, args.sigma_L, args.L).to(device)
    model = UNet(args.width).to(device)
    if dev == "cuda" and args.compile:  # compiled: bf16 + NHWC; eager float32 measured faster
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=dev == "cuda")
    print(f"UNet(width={args.width}): {sum(p.numel() for p in model.parameters()):,} parameters | "
          f"{device} | L={len(sigmas)} sigmas {args.sigma_1:g} .. {args.sigma_L:g}")
    epoch, losses = 0, []
    if args.sample_only or args.resume:
        ckpt = load_checkpoint(ckpt_path, model, ema, sigmas, None if args.sample_only else opt)
        epoch, losses = ckpt["epoch"], ckpt["losses"]
        print(f"loaded {ckpt_path} (epoch {epoch})")
    if not args.sample_only:
        data_dir = Path(args.data_dir)
        if not all((data_dir / name).exists() for name in FILES):
            try:
                download_mnist(data_dir, [args.mirror] if args.mirror else MIRRORS,
                               check_md5=args.mirror is None)
            except OSError as e:  # e.g. the data folder cannot be created or written
                raise UserError(f"cannot write MNIST into {data_dir} ({e})") from None
        data = load_mnist(data_dir, "train")[0][:args.train_size].to(device)
        print(f"training on {len(data):,} images from {data_dir}, "
              f"epochs {epoch + 1}..{args.epochs}")
        t0 = time.time()
        train(model, ema, opt, data, sigmas, args, epoch, losses, out / "checkpoint.pt")
        print(f"training took {time.time() - t0:.1f} s" + (f", peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if dev == "cuda" else ""))
        epoch = max(epoch, args.epochs)
        save_loss(losses, out / "loss.png")

    torch.manual_seed(args.seed)
    t0 = time.time()
    x, trace = anneal_langevin(ema, torch.rand(args.n_samples, 1, 28, 28, device=device),
                               sigmas, args.eps, args.T, not args.no_denoise, n_trace=5)
    x = x.clamp(0, 1).float().cpu()
    print(f"sampled {args.n_samples} images, {len(sigmas) * args.T} Langevin steps, "
          f"eps {args.eps:g}, in {time.time() - t0:.1f} s")
    np.save(out / "samples.npy", x[:, 0].numpy().astype(np.float32))
    save_grid(x[:100, 0], out / "samples.png", f"NCSN samples (epoch {epoch}, eps={args.eps:g}, "
              f"T={args.T})")
    save_levels(trace, x[:5], sigmas, out / "langevin_levels.png")
    print(f"wrote {out}/samples.png, samples.npy, langevin_levels.png"
          + ("" if args.sample_only else ", loss.png, checkpoint.pt"))


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    args = parse_args(argv)
    try:
        run(args)
    except UserError as e:
        sys.exit(f"mnist_ncsn.py: error: {e}")


if __name__ == "__main__":
    main()
