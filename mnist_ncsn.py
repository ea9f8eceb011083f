"""NCSN (Song & Ermon 2019, arXiv:1907.05600) on MNIST: a small U-Net s_θ(x, σ) learns the score of noisy digits by
denoising score matching (eq. (5)-(6)) as EDM trains (Karras et al. 2022, arXiv:2206.00364); annealed Langevin
dynamics (Algorithm 1), the reverse SDE, the probability-flow ODE, DDPM and DDIM (Song et al. 2021) sample it, as in
toy_ncsn.py, each guided by the run's own early snapshot (autoguidance, Karras et al. 2024, arXiv:2406.02507).
Inpainting (Algorithm 2): mnist_inpaint.py; bits per dimension: mnist_likelihood.py.

    python mnist_ncsn.py                        # without CUDA 10 min of training on the CPU, else full
    python mnist_ncsn.py --preset gpu --compile # the full run (20 epochs of width 128)

Outputs in --out (default out/mnist/): samples.png/.npy, levels.png, loss.png, checkpoint.pt; MNIST from --data-dir.
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
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]
FILES = {"t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",  # name -> MD5 of the canonical file
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
         "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432"}


class UserError(Exception):
    """A problem with the user's files or settings; main() prints it as one line and exits."""


def download_mnist(data_dir, mirrors=MIRRORS, check_md5=True):
    """Fetch the missing MNIST files from the first mirror that serves them; write atomically."""
    for name in [name for name in FILES if not Path(data_dir, name).exists()]:
        problems = []
        for url in [mirror.rstrip("/") + "/" + name for mirror in mirrors]:
            try:
                blob = urllib.request.urlopen(url, timeout=30).read()
                if check_md5 and hashlib.md5(blob).hexdigest() != FILES[name]:
                    raise ValueError("MD5 mismatch")
                break
            except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: bad URL, MD5
                problems.append(f"{url}: {e}")
        else:
            raise UserError(f"could not download {name} ({'; '.join(problems)}); without network, put "
                            f"{', '.join(FILES)} into {data_dir}/ or point --data-dir at your copy")
        Path(data_dir).mkdir(parents=True, exist_ok=True)  # only now: a failed download leaves no empty folder
        Path(data_dir, name + ".part").write_bytes(blob)
        os.replace(Path(data_dir, name + ".part"), Path(data_dir, name))  # never a half-written file
        print(f"downloaded {url}")


def read_idx(path, magic):
    """Read a gzipped IDX file (magic 2051: images, 2049: labels) into a uint8 tensor."""
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable gzip file ({e})") from None
    if (found := int.from_bytes(raw[:4], "big")) != magic:
        raise UserError(f"{path}: magic number {found}, expected {magic} (not an MNIST IDX file)")
    dims = [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, 1 + (magic & 0xFF))]
    if len(body := raw[4 + 4 * len(dims):]) != math.prod(dims):
        raise UserError(f"{path}: header says {dims} but the file holds {len(body)} values")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_mnist(data_dir, split="train", download=False, mirror=None):
    """Images (N, 1, 28, 28) in [0, 1], labels (N,); with download, missing files are fetched first (mirror: no MD5)."""
    if download:
        try:
            download_mnist(data_dir, [mirror] if mirror else MIRRORS, check_md5=mirror is None)
        except OSError as e:  # e.g. the data folder cannot be created or written
            raise UserError(f"cannot write MNIST into {data_dir} ({e})") from None
    prefix = Path(data_dir) / ("train" if split == "train" else "t10k")
    images, labels = read_idx(f"{prefix}-images-idx3-ubyte.gz", 2051), read_idx(f"{prefix}-labels-idx1-ubyte.gz", 2049)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise UserError(f"{prefix}: images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree")
    return images[:, None].float() / 255, labels.long()


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
    """Noise conditional U-Net s_θ(x, σ) ≈ ∇ₓ log p_σ(x), not the paper's RefineNet: F_θ in EDM's preconditioning (Table
    1), D_θ(x, σ) = c_skip x + c_out F_θ(c_in x, c_noise), input and target of unit variance at every σ. On 2x2 patches
    (1x28x28 -> 4x14x14, 14 -> 7 -> 4 and back) at twice the width: 28x28's FLOPs in larger, faster matrix products."""

    def __init__(self, width=32, sigma_data=0.5):
        super().__init__()
        self.width = width
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))  # saved with the weights
        c, e = width, 4 * width
        self.embed = nn.Sequential(nn.Linear(1, e), nn.SiLU(), nn.Linear(e, e))
        self.conv_in = nn.Conv2d(4, c, 3, padding=1)                               # a 2x2 patch's pixels
        self.down1, self.down2 = ResBlock(c, c, e), ResBlock(c, 2 * c, e)        # 14x14, 7x7
        self.pool1, self.pool2 = nn.Conv2d(c, c, 3, 2, padding=1), nn.Conv2d(2 * c, 2 * c, 3, 2, padding=1)  # 14->7->4
        self.mid1, self.mid2 = ResBlock(2 * c, 2 * c, e), ResBlock(2 * c, 2 * c, e)  # 4x4
        self.up2, self.up1 = ResBlock(4 * c, c, e), ResBlock(2 * c, c, e)         # 7x7, 14x14
        self.norm_out, self.conv_out = nn.GroupNorm(8, c), nn.Conv2d(c, 4, 3, padding=1)

    def F(self, x, c_noise):
        """The raw U-Net F_θ on images x (n, 1, 28, 28) and its noise input c_noise (n,)."""
        emb = self.embed(c_noise[:, None])
        h1 = self.down1(self.conv_in(F.pixel_unshuffle(x, 2)), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)
        h = self.up2(torch.cat([F.interpolate(h, size=h2.shape[-2:]), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, size=h1.shape[-2:]), h1], 1), emb)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), 2).float()  # float32 also under autocast

    def denoiser(self, x, sigma):
        """D_θ(x, σ) = c_skip x + c_out F_θ(c_in x, c_noise) ≈ E[x_0 | x], one σ per image, sigma (n,)."""
        c_skip, c_out, c_in, c_noise = precondition(sigma[:, None, None, None], self.sigma_data)
        return c_skip * x + c_out * self.F(c_in * x, c_noise.flatten())

    def forward(self, x, sigma):
        """s_θ(x, σ) = (D_θ(x, σ) - x)/σ²: Tweedie's formula solved for the score."""
        return (self.denoiser(x, sigma) - x) / sigma[:, None, None, None] ** 2


def precondition(sigma, sigma_data):
    """EDM's c_skip, c_out, c_in, c_noise (Table 1): for small σ, D_θ ≈ x + σ F_θ (F_θ predicts the
    noise); for large σ, D_θ ≈ σ_data F_θ (F_θ predicts the clean image)."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out, 1 / (sigma**2 + sigma_data**2).sqrt(), sigma.log() / 4


P_MEAN, P_STD = -0.4, 1.2  # ln σ of training ~ N(P_MEAN, P_STD²): EDM's P_std, P_mean above its -1.2 (measured)
WARMUP_IMAGES = 10_000  # the learning rate rises linearly over the first images (EDM: 10M of 200M), then stays
EMA_HALFLIFE = 0.05  # the EMA's half-life, a share of the steps so far: it never holds the random init
GUIDE_AT = 0.2  # the snapshot autoguidance samples with: the EMA at this share of the run (measured)
RECIPE = "edm-patch"  # saved in each checkpoint: load_checkpoint refuses others, whose weights mean other things


def get_sigmas(sigma_1, sigma_L, L):
    """The paper's noise levels: a geometric sequence σ_1 > ... > σ_L (Section 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


def karras_sigmas(sigma_1, sigma_L, N, rho=7.0):
    """EDM's σ's (Karras et al. 2022, eq. 5): σ_i = (σ_1^(1/ρ) + i/(N-1) (σ_L^(1/ρ) - σ_1^(1/ρ)))^ρ, i = 0..N-1.
    With ρ = 7 the steps crowd towards σ_L, where the images' fine detail is decided."""
    return (sigma_1 ** (1 / rho) + torch.linspace(0, 1, N) * (sigma_L ** (1 / rho) - sigma_1 ** (1 / rho))) ** rho


# ----------------------------------------------------------------------------- loss
def dsm_loss(score, x, sigma_data, p_mean, p_std):
    """Denoising score matching, eq. (5)-(6), with EDM's σ distribution and weight (Table 1): one σ per image,
    ln σ ~ N(p_mean, p_std²), loss λ(σ) ‖D_θ(x + σz, σ) - x‖² = ‖F_θ - its target‖², λ(σ) = (σ² + σ_data²)/(σ σ_data)².
    As D_θ - x = σ (σ s_θ + z), that is eq. (6) with λ(σ) = σ² (1 + σ²/σ_data²): more weight on the large σ's."""
    sigma = (p_mean + p_std * torch.randn(len(x), device=x.device, dtype=x.dtype)).exp()
    s, z = sigma[:, None, None, None], torch.randn_like(x)
    # σ² ‖s + (x̃ - x)/σ²‖² = ‖σ s + z‖²: the same quantity, without dividing by a tiny σ².
    weight = 1 + s**2 / sigma_data**2
    return (weight * (s * score(x + s * z, sigma) + z).square()).flatten(1).sum(1).mean()


def train(model, ema, opt, data, args, state, ckpt_path):
    """Adam on dsm_loss for --epochs or --minutes of wall clock, resuming from `state`: EDM's learning-rate warm-up, an
    EMA whose half-life is a share of the steps, a checkpoint every epoch, the EMA's snapshot at GUIDE_AT of the run."""
    # CUDA graphs replay forward and backward in one launch each: this small net is bound by kernel launches.
    mode = "reduce-overhead" if data.device.type == "cuda" else "default"  # batches of one size: the last is dropped
    fwd = torch.compile(model, mode=mode, dynamic=False) if args.compile else model
    params, ema_params, batch = list(model.parameters()), list(ema.parameters()), min(args.batch_size, len(data))
    steps, budget = len(data) // batch, args.minutes and args.minutes * 60
    t0, seconds0, ends = time.time(), state["seconds"], [time.time()]
    while state["seconds"] < budget if budget else state["epoch"] < args.epochs:
        state["epoch"] += 1
        torch.manual_seed(args.seed + state["epoch"])  # so a resumed run repeats an uninterrupted one
        perm = torch.randperm(len(data), device=data.device)
        total, n = torch.zeros((), device=data.device), 0
        for i in range(steps):
            opt.param_groups[0]["lr"] = args.lr * min(1, (state["step"] + 1) * batch / WARMUP_IMAGES)
            with torch.autocast(data.device.type, torch.bfloat16, enabled=args.precision == "bf16"):  # loss, EMA: fp32
                loss = dsm_loss(fwd, data[perm[i * batch:(i + 1) * batch]], model.sigma_data, P_MEAN, P_STD)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            torch._foreach_lerp_(ema_params, params, 1 - 0.5 ** (1 / (EMA_HALFLIFE * state["step"])))
            total, n = total + loss.detach(), n + 1  # no .item() here: it would wait for the GPU every step
            state["seconds"] = seconds0 + time.time() - t0
            if budget and state["seconds"] >= budget:
                break
        if not math.isfinite(mean := total.item() / n):
            raise UserError(f"loss is {mean} in epoch {state['epoch']}; stopped, {ckpt_path} keeps the "
                            f"last good epoch (try a lower --lr)")
        state["losses"].append(mean)
        share = state["seconds"] / budget if budget else state["epoch"] / args.epochs  # of the run, done
        if state["snapshot"] is None and share >= GUIDE_AT:  # autoguidance's bad model; a resumed run keeps it
            state["snapshot"] = dict(ema=copy.deepcopy(ema.state_dict()), epoch=state["epoch"], share=share)
        tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")  # saved whole, then renamed: never a half-written file
        torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), recipe=RECIPE,
                        args=vars(args), **state), tmp)
        os.replace(tmp, ckpt_path)
        print(f"epoch {state['epoch']:>3}{'' if budget else f'/{args.epochs}'} | loss {mean:.4f} | "
              f"{state['seconds']:.0f} s", flush=True)
        if len(ends := ends + [time.time()]) == 5:  # after .item(): the GPU's time. Epochs 2-4 (the first compiles):
            rate = 3 * steps * batch / (ends[4] - ends[1])  # one epoch's rate can be 15% off the run's, 20 steps' 40%
            left = budget - state["seconds"] if budget else (args.epochs - state["epoch"]) * steps * batch / rate
            print(f"training at {rate:,.0f} img/s (epochs 2-4): about {left / 60:.1f} min"
                  + (f", {rate * left / (steps * batch):.0f} more epochs" if budget else "") + " to go", flush=True)


def load_checkpoint(path, model=None, ema=None, opt=None):
    """The saved dict; given a model, restore model, EMA (and optimiser) from it; a one-line UserError if it can't."""
    try:
        ckpt, what = torch.load(path, map_location="cpu", weights_only=True), None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        ckpt, what = None, "missing" if not os.path.exists(path) else e.strerror
    except Exception:  # torch's message runs to lines, asking for a bug report; torch.save's zips begin PK\3\4
        ckpt, what = None, {b"": "empty", b"PK\x03\x04": "truncated"}.get(Path(path).read_bytes()[:4])
    if not isinstance(ckpt, dict) or not {"model", "ema"} <= ckpt.keys():  # toy_ncsn.py's model.pt has no EMA
        toy = isinstance(ckpt, dict) and "sigmas" in ckpt and "a toy_ncsn.py model, not an mnist_ncsn.py checkpoint"
        raise UserError(f"{path}: {what or toy or 'not an mnist_ncsn.py checkpoint'}; run `python mnist_ncsn.py`")
    if ckpt.get("recipe") != RECIPE:
        raise UserError(f"{path}: written by an earlier mnist_ncsn.py, whose U-Net was another (no 2x2 patches or no "
                        f"EDM preconditioning): its weights mean something else here; train a new model")
    if model is not None and ckpt["args"]["width"] != model.width:
        raise UserError(f"{path}: made with --width {ckpt['args']['width']}, this run uses --width {model.width}")
    try:  # no model: run() only wants the saved flags, before it builds the model
        for part, key in [(p, k) for p, k in [(model, "model"), (ema, "ema"), (opt, "opt")] if p is not None]:
            part.load_state_dict(ckpt[key])
    except (KeyError, RuntimeError, ValueError) as e:  # e.g. saved by another version of UNet
        raise UserError(f"{path}: does not fit this model ({' '.join(str(e).split())[:200]})") from None
    return ckpt


# ----------------------------------------------------------------------------- sampler
# Every sampler takes score(x, σ) with one σ per image, x (n, 1, 28, 28) and a descending tensor of σ's, and
# returns (x, trace): trace[0] the start, trace[i] the images after step (ALD: level) i. They are toy_ncsn.py's.
def sigma_like(x, sigma):
    """σ once per image of x: the form the network takes."""
    return torch.full((len(x),), sigma, device=x.device, dtype=x.dtype)


def tweedie(score, x, sigma):
    """E[x_0 | x] = x + σ² s_θ(x, σ), Tweedie's formula, = D_θ(x, σ): the noise-free last step of every sampler."""
    return x + sigma**2 * score(x, sigma_like(x, sigma))


def gaussian_prior(data, sigma_1):
    """π = N(mean, σ_1² + var) per pixel of the training images: p_σ1 is nearly Gaussian; every sampler starts here."""
    std = (sigma_1**2 + data.var(0)).sqrt()
    return torch.distributions.Independent(torch.distributions.Normal(data.mean(0), std), data.dim() - 1)


@torch.no_grad()
def langevin(score, x, sigma, alpha, T):
    """Langevin dynamics at one noise level: T steps x <- x + (α/2) s_θ(x, σ) + √α z."""
    for _ in range(T):
        x = x + alpha / 2 * score(x, sigma_like(x, sigma)) + math.sqrt(alpha) * torch.randn_like(x)
    return x


@torch.no_grad()
def anneal_langevin(score, x, sigmas, eps, T, denoise=True):
    """Annealed Langevin dynamics, Algorithm 1: T Langevin steps at each σ_i with α_i = ε σ_i²/σ_L²; `denoise` adds
    the Tweedie step. The official code writes x <- x + step_lr s + √(2 step_lr) z: its `step_lr` is α/2 here."""
    trace, sigma_L = [x], sigmas[-1].item()
    for sigma in sigmas.tolist():
        x = langevin(score, x, sigma, eps * sigma**2 / sigma_L**2, T)
        trace.append(x)
    return (tweedie(score, x, sigma_L) if denoise else x), trace


@torch.no_grad()
def reverse_sde(score, x, sigmas, eps=2e-5, T=0, denoise=True):
    """Reverse-time VE SDE (Song et al. 2021): x <- x + (σ_i² - σ_{i+1}²) s_θ(x, σ_i) + √(σ_i² - σ_{i+1}²) z;
    with T > 0, T Langevin corrector steps (α_i = ε σ_i²/σ_L², as in ALD) after each: predictor-corrector."""
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        var = sigma**2 - sigma_next**2  # the noise the forward process added between the two levels
        x = x + var * score(x, sigma_like(x, sigma)) + math.sqrt(var) * torch.randn_like(x)
        x = langevin(score, x, sigma_next, eps * sigma_next**2 / levels[-1] ** 2, T)
        trace.append(x)
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


@torch.no_grad()
def probability_flow_ode(score, x, sigmas, heun=True, denoise=True):
    """Probability-flow ODE of the VE SDE, dx/dσ = -σ s_θ(x, σ) (Song et al. 2021), deterministic; Heun's method
    (Karras et al. 2022, Algorithm 1) averages the slopes at both ends of each step, else Euler's."""
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        slope = -sigma * score(x, sigma_like(x, sigma))
        x_next = x + (sigma_next - sigma) * slope  # Euler
        if heun:
            slope_next = -sigma_next * score(x_next, sigma_like(x, sigma_next))
            x_next = x + (sigma_next - sigma) * (slope + slope_next) / 2
        x = x_next
        trace.append(x)
    # Tweedie's step is also one Euler step of this ODE from σ_L down to 0.
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


@torch.no_grad()
def ddpm(score, x, sigmas, denoise=True):
    """DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2) on the VE network: ᾱ_i = 1/(1 + σ_i²) and x_t = √ᾱ_i x
    map the VE point to the VP one, ε_θ(x_t) = -σ_i s_θ(x_t/√ᾱ_i, σ_i); x_{t-1} = (x_t - β_t/√(1 - ᾱ_t) ε_θ)/√α_t
    + √β̃_t z, α_t = ᾱ_t/ᾱ_{t-1} = 1 - β_t, β̃_t = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t). The trace holds VE points."""
    trace, levels = [x], sigmas.tolist()
    for sigma, sigma_next in zip(levels, levels[1:]):
        abar, abar_prev = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)  # ᾱ_t, ᾱ_{t-1}: t counts down
        beta = 1 - abar / abar_prev
        x_t = math.sqrt(abar) * x
        eps = -sigma * score(x_t / math.sqrt(abar), sigma_like(x, sigma))
        var = beta * (1 - abar_prev) / (1 - abar)
        x_t = (x_t - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta) + math.sqrt(var) * torch.randn_like(x)
        x = x_t / math.sqrt(abar_prev)
        trace.append(x)
    # Tweedie's step is DDPM's last one, t = 1 -> 0 (ᾱ_0 = 1: no noise is added).
    return (tweedie(score, x, levels[-1]) if denoise else x), trace


def ddim(score, x, sigmas, denoise=True):
    """DDIM with η = 0 (Song, Meng & Ermon 2021, eq. 12): in VE coordinates its step x <- x + σ_i (σ_i - σ_{i+1}) s_θ
    is Euler's on the probability-flow ODE (toy_ncsn.py's ddim takes it in DDPM's variables: the same steps)."""
    return probability_flow_ode(score, x, sigmas, heun=False, denoise=denoise)


def autoguidance(good, bad, w, sigma_max=math.inf):
    """Autoguidance (Karras et al. 2024, arXiv:2406.02507): s = s_bad + w (s_good - s_bad) for σ <= sigma_max, else
    s_good; w = 1 is no guidance. `bad` is the same network earlier in training: its errors are the final one's,
    larger, so s_good - s_bad points away from them, towards the data. Guidance only at small σ (Kynkäänniemi et al.
    2024, arXiv:2404.07724) leaves the large σ's, where the classes are chosen, unnarrowed."""
    def guided(x, sigma):
        s_good = good(x, sigma)
        if w == 1 or sigma[0].item() > sigma_max:  # compared on the host: on CUDA, a wait for the GPU per call
            return s_good
        s_bad = bad(x, sigma)
        return s_bad + w * (s_good - s_bad)
    return guided


def with_progress(score, total, every=15.0):
    """Wrap a score network to print σ, img/s and time left every `every` s of `total` calls: samplers stay clean."""
    calls, t0, t_print = 0, time.time(), time.time()
    def wrapped(x, sigma):
        nonlocal calls, t_print
        out, calls, now = score(x, sigma), calls + 1, time.time()
        if now - t_print > every and calls < total:
            t_print, rate = now, calls * len(x) / (now - t0)
            print(f"  evaluation {calls}/{total} (σ = {sigma[0].item():.3g}) | {rate:,.0f} img/s | "
                  f"{(total - calls) * len(x) / rate:.0f} s left", flush=True)
        return out
    return wrapped


# ----------------------------------------------------------------------------- figures
def save(fig, path):
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fig_grid(images, ncols, path, title, xlabels=None, xlabel=None, size=0.55):
    """Write images (n, 28, 28) in [0, 1] as one tiled figure, row-major, a label under each column when given."""
    rows = math.ceil(len(images) / ncols)
    mosaic = np.full((rows * 30 + 2, ncols * 30 + 2), 0.5, dtype=np.float32)
    for k, img in enumerate(images.clamp(0, 1).float().cpu().numpy()):
        r, c = divmod(k, ncols)
        mosaic[2 + 30 * r:30 * (r + 1), 2 + 30 * c:30 * (c + 1)] = img
    fig, ax = plt.subplots(figsize=(size * ncols + 1, size * rows + 1.2))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # the pixels as they are; 4x smaller PNGs
    ax.set_xticks([16 + 30 * j for j in range(ncols)] if xlabels else [], xlabels or [], fontsize=7)
    ax.set(yticks=[], xlabel=xlabel)
    ax.set_title(title, fontsize=9)
    save(fig, path)


# ----------------------------------------------------------------------------- main
PRESETS = {"gpu": dict(epochs=20, minutes=None, batch_size=128, lr=1e-3, train_size=60000, width=128),
           "cpu": dict(epochs=None, minutes=10.0, batch_size=32, lr=2e-3, train_size=10000, width=32)}
SAMPLER, ALD_L, ALD_T, SDE_T, EPS = "sde", 95, 3, 2, 2e-5  # (measured: docs/results.md)
SAMPLER_N = {"sde": 100, "ode": 18, "ddpm": 300, "ddim": 50}  # Karras σ's stepped through
GUIDANCE = {"ald": (1, 2), "sde": (1.5, 1), "ode": (2.5, 2), "ddpm": (1, 2), "ddim": (2.5, 2)}  # w, guided at σ <= this
SIGMA_1, SIGMA_L = 16.0, 0.01  # σ_1: the largest distance between two training digits (NCSNv2's Technique 1)
SAMPLE_BATCH = 100  # images sampled at a time


def pick_precision(precision, device, compiled=False):
    """--precision auto: bf16 where the hardware has it and it was measured to pay, else fp32; returns (it, why)."""
    if precision != "auto":
        return precision, "as asked"
    if device == "cuda":  # a T4 (7.5) or V100 (7.0) has no bf16 units: emulated, slower than float32
        cc = torch.cuda.get_device_capability()
        why = "no native bf16" if cc < (8, 0) else "compiled" if compiled else "eager bf16 measured slower"
        return "bf16" if cc >= (8, 0) and compiled else "fp32", f"auto: compute capability {cc[0]}.{cc[1]}, {why}"
    native = any(getattr(torch.cpu, f"_is_{f}_supported", lambda: False)() for f in ("avx512_bf16", "amx_tile"))
    return "bf16" if native else "fp32", f"auto: {'' if native else 'no '}native bf16 on this CPU"  # AVX512-BF16, AMX


def positive(kind, least=None):
    """An argparse type: a finite number of `kind` (int or float) above 0, or at least `least`."""
    def parse(text):
        value = kind(text)  # a ValueError becomes argparse's "invalid int value"
        if not (0 < value if least is None else least <= value) or value == math.inf:
            raise argparse.ArgumentTypeError(f"must be {f'at least {least}' if least else 'above 0'}, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None):
    """Command-line flags; bad values end in parser.error (one line, exit code 2)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add, g, c = p.add_argument, PRESETS["gpu"], PRESETS["cpu"]
    add("--data-dir", default="data/mnist", help="the MNIST .gz files, fetched if missing (default: data/mnist)")
    add("--mirror", help="download from this URL prefix, not the public mirrors (no MD5 check)")
    add("--out", default="out/mnist", help="output folder (default: out/mnist)")
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present (default: auto)")
    add("--preset", choices=["auto", "cpu", "gpu"], default="auto", help="defaults of the training flags: gpu the "
        "full run, cpu ten minutes of training on any CPU; auto (default): gpu on CUDA, else cpu")
    add("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="bf16: the network under autocast; auto "
        "(default): bf16 on CPUs with native bf16 and, with --compile, on CUDA 8.0+ (not a T4, V100), else fp32")
    add("--seed", type=int, default=0, help="random seed (default: 0)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive(int), help=f"train this many epochs (default: {g['epochs']}, gpu)")
    length.add_argument("--minutes", type=positive(float), help=f"minutes of training (default: {c['minutes']:g}, cpu)")
    add("--batch-size", type=positive(int), help=f"images a step (default: {g['batch_size']} gpu, {c['batch_size']})")
    add("--lr", type=positive(float), help=f"Adam learning rate (default: {g['lr']:g} gpu, {c['lr']:g} cpu)")
    add("--train-size", type=positive(int), help=f"first N images (default: {g['train_size']} gpu, {c['train_size']})")
    add("--width", type=positive(int), help=f"U-Net width, a multiple of 8 (default: {g['width']} gpu, {c['width']})")
    add("--sampler", choices=["ald", "sde", "ode", "ddpm", "ddim"], default=SAMPLER, help="annealed Langevin "
        f"(Algorithm 1), reverse VE SDE, probability-flow ODE, DDPM or DDIM (default: {SAMPLER})")
    add("--n-samples", type=positive(int), default=100, help="images to sample (default: 100)")
    add("--sigma-1", type=positive(float), default=SIGMA_1, help=f"the samplers' largest σ (default: {SIGMA_1:g})")
    add("--sigma-L", type=positive(float), default=SIGMA_L, help=f"the samplers' smallest σ (default: {SIGMA_L:g})")
    add("--L", type=positive(int, 2), default=ALD_L, help=f"ald: number of noise levels (default: {ALD_L})")
    add("--T", type=int, help=f"ald: Langevin steps a level (default: {ALD_T}); sde: corrector steps ({SDE_T})")
    add("--eps", type=positive(float), default=EPS, help=f"Langevin step size ε, α_i = ε σ_i²/σ_L² (default: {EPS:g})")
    add("--N", type=positive(int, 2), help="sde/ode/ddpm/ddim: σ's stepped through (default: "
        + ", ".join(f"{n} for {s}" for s, n in SAMPLER_N.items()) + ")")
    add("--guidance", type=positive(float), metavar="W", help="autoguidance, s_bad + W (s_good - s_bad) with the run's "
        "snapshot as bad; 1: off (default: " + ", ".join(f"{w:g} for {s}" for s, (w, _) in GUIDANCE.items()) + ")")
    add("--no-denoise", action="store_true", help="skip the final Tweedie step x + σ_L² s_θ")
    add("--compile", action="store_true", help="torch.compile the training step (CUDA: CUDA graphs, channels_last)")
    add("--resume", action="store_true", help="continue training from --ckpt")
    add("--sample-only", action="store_true", help="sample from --ckpt, no training")
    add("--ckpt", help="checkpoint to read, whose flags are the defaults (default: OUT/checkpoint.pt)")
    args = p.parse_args(argv)
    if args.T is not None and args.T < (args.sampler == "ald"):
        p.error(f"--T must be at least 1 for --sampler ald, got {args.T}")
    if args.width is not None and args.width % 8:
        p.error("--width must be a multiple of 8 (GroupNorm uses 8 groups)")
    if args.sigma_L >= args.sigma_1:
        p.error("--sigma-1 must be larger than --sigma-L")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    return args


def fill_defaults(args, ckpt, device):
    """Fill the flags left out: training ones from the checkpoint or preset, sampling ones per sampler, precision."""
    args.preset = args.preset if args.preset != "auto" else "gpu" if device == "cuda" else "cpu"
    saved = ckpt["args"] if ckpt else {}
    if args.epochs or args.minutes:  # one of the two sets the length: the other is off
        saved = {**saved, "epochs": args.epochs, "minutes": args.minutes}
    for name, value in PRESETS[args.preset].items():  # flags given > checkpoint > preset
        if getattr(args, name) is None:
            setattr(args, name, saved[name] if name in saved else value)
    args.N = args.N or SAMPLER_N.get(args.sampler)
    args.T = args.T if args.T is not None else {"ald": ALD_T, "sde": SDE_T}.get(args.sampler, 0)
    args.guidance, args.guide_below = args.guidance or GUIDANCE[args.sampler][0], GUIDANCE[args.sampler][1]
    args.precision, args.precision_why = pick_precision(args.precision, device, args.compile)


def build(args, ckpt, ckpt_path, device):
    """The U-Net, its EMA, Adam, the training state (the checkpoint's, if read), the images; σ_data theirs (EDM's)."""
    torch.manual_seed(args.seed)
    model = UNet(args.width).to(device)
    if device == "cuda" and args.compile:  # compiled: NHWC; eager float32 measured faster
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device == "cuda")
    state = dict(epoch=0, step=0, seconds=0.0, losses=[], snapshot=None)
    if ckpt:  # checked before the data is read: a wrong file fails at once
        load_checkpoint(ckpt_path, model, ema, opt if args.resume else None)
        state = {k: ckpt.get(k, v) for k, v in state.items()}  # one written before snapshots has none
    data = load_mnist(args.data_dir, "train", download=True, mirror=args.mirror)[0][:args.train_size].to(device)
    for net in [] if ckpt else [model, ema]:
        net.sigma_data.fill_(data.std())
    print(f"--preset {args.preset}: UNet(width={args.width}), {sum(p.numel() for p in model.parameters()):,} "
          f"parameters | {device}, {args.precision} ({args.precision_why}) | σ_data {model.sigma_data:.3f}"
          + (f"\nloaded {ckpt_path} (epoch {state['epoch']}, {state['seconds']:.0f} s of training)" if ckpt else ""),
          flush=True)
    return model, ema, opt, state, data


def sample(args, ema, snapshot, prior, device):
    """Run --sampler on --n-samples images from the prior, SAMPLE_BATCH at a time, by the EMA (guided by the snapshot
    if any); returns (samples, the first batch's trace, the σ of each trace entry, network evaluations per image)."""
    ald, denoise, samples, trace = args.sampler == "ald", not args.no_denoise, [], None
    sigmas = (get_sigmas if ald else karras_sigmas)(args.sigma_1, args.sigma_L, args.L if ald else args.N).to(device)
    lv, T = sigmas.tolist(), args.T  # the σ's at which the sampler asks for the score (ode: Heun's two a step)
    at = {"ald": lv * T, "sde": lv[:-1] + lv[1:] * T, "ode": lv[:-1] + lv[1:]}.get(args.sampler, lv[:-1])
    at += lv[-1:] * denoise  # and Tweedie's step
    sizes = [min(SAMPLE_BATCH, args.n_samples - i) for i in range(0, args.n_samples, SAMPLE_BATCH)]
    score, guided = ema, snapshot is not None and args.guidance != 1
    if guided:  # the bad model: the EMA's architecture, the snapshot's weights
        (bad := copy.deepcopy(ema)).load_state_dict(snapshot["ema"])
        score = autoguidance(ema, bad, args.guidance, args.guide_below)
    score = with_progress(score, len(at) * len(sizes))
    sampler = dict(ald=anneal_langevin, sde=reverse_sde, ode=probability_flow_ode, ddpm=ddpm, ddim=ddim)[args.sampler]
    langevin_args = (args.eps, args.T) if args.sampler in ("ald", "sde") else ()  # ε and T: Langevin's only
    for n in sizes:
        x0 = prior.sample((n,))
        with torch.autocast(device, torch.bfloat16, enabled=args.precision == "bf16"):
            x, steps = sampler(score, x0, sigmas, *langevin_args, denoise=denoise)
        samples.append(x.clamp(0, 1).float().cpu())
        trace = trace or [t[:5].float().cpu() for t in steps]  # the figure shows five; free the rest
    nfe = len(at) + guided * sum(sigma <= args.guide_below for sigma in at)  # the snapshot's too, where guided
    return torch.cat(samples), trace, lv[:1] * ald + lv, nfe  # ALD's trace[0], the start, drawn for σ_1


def run(args):
    """Train (or load) the model, then sample it and write every output."""
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    ckpt_path, training = Path(args.ckpt or Path(args.out) / "checkpoint.pt"), not args.sample_only
    ckpt = load_checkpoint(ckpt_path) if not training or args.resume else None
    fill_defaults(args, ckpt, device)
    model, ema, opt, state, data = build(args, ckpt, ckpt_path, device)
    try:  # only now: a wrong checkpoint or data folder leaves no new --out behind
        (out := Path(args.out)).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror or e})") from None
    if training:
        print(f"training for {f'{args.minutes:g} min' if args.minutes else f'{args.epochs} epochs'} on {len(data):,} "
              f"images from {args.data_dir}", flush=True)
        t0 = time.time()
        train(model, ema, opt, data, args, state, out / "checkpoint.pt")
        print(f"training took {time.time() - t0:.1f} s ({state['epoch']} epochs)" + (f", peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else ""))
        fig, ax = plt.subplots(figsize=(5, 3.2))  # the mean DSM loss of each epoch
        ax.plot(range(1, len(state["losses"]) + 1), state["losses"], marker=".")
        ax.set(xlabel="epoch", ylabel="DSM loss, eq. (6)", title="Training loss", yscale="log")
        save(fig, out / "loss.png")
    prior, snapshot = gaussian_prior(data, args.sigma_1), state["snapshot"]  # every sampler starts at the prior
    if snapshot is None and args.guidance != 1:
        print(f"{ckpt_path} holds no snapshot (an earlier mnist_ncsn.py wrote it): sampling unguided", flush=True)
    torch.manual_seed(args.seed)
    t0 = time.time()
    x, trace, levels, nfe = sample(args, ema, snapshot, prior, device)
    how = (f"L={args.L}, T={args.T}, ε={args.eps:.3g}" if args.sampler == "ald" else f"N={args.N}"
           + (f", T={args.T}, ε={args.eps:.3g}" if args.sampler == "sde" and args.T else "")) + (
        f", w={args.guidance:g} at σ <= {args.guide_below:g}" if snapshot and args.guidance != 1 else "")
    print(f"sampled {args.n_samples} images by {args.sampler} ({how}): {nfe} network evaluations each, in "
          f"{time.time() - t0:.1f} s")
    np.save(out / "samples.npy", x[:, 0].numpy().astype(np.float32))
    fig_grid(x[:100, 0], math.ceil(math.sqrt(len(x[:100]))), out / "samples.png",  # up to 100, a square
             f"NCSN samples by {args.sampler}, {how} (epoch {state['epoch']})", size=0.4)
    picks = torch.linspace(0, len(trace) - 1, min(9, len(trace))).round().long().tolist()  # levels.png: 9 columns
    columns = torch.stack([trace[i][:, 0] for i in picks] + [x[:len(trace[0]), 0]], 1)  # (≤ 5, 10, 28, 28)
    fig_grid(columns.flatten(0, 1), columns.shape[1], out / "levels.png", f"{args.sampler}: the images at decreasing σ",
             [f"{levels[i]:.2g}" for i in picks] + ["final"], "σ (the start, then the state after its steps "
             "there); one sample per row")
    print(f"wrote {out}/samples.png, samples.npy, levels.png" + (", loss.png, checkpoint.pt" if training else ""))


def main(argv=None):
    """Entry point: every runtime problem becomes one line on stderr and a non-zero exit."""
    try:
        run(parse_args(argv))  # parse_args itself exits with its own one-line errors
    except UserError as e:
        sys.exit(f"mnist_ncsn.py: error: {e}")


if __name__ == "__main__":
    main()
