"""Tests for mnist_ncsn.py, mnist_inpaint.py and mnist_likelihood.py on the CPU with tiny settings: data, download,
U-Net, DSM loss, annealed Langevin dynamics, inpainting, the likelihood, checkpoints and the command line (one shell
run each, the other runs through main(argv) in this process).

They bring their own data: tests/data/mnist/ holds the first 500 training and 300 test images of
MNIST (see tests/data/README.md), so they run on a fresh clone with no network."""
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import mnist_inpaint as inp
import mnist_likelihood as lik
import mnist_ncsn as m
import toy_ncsn as toy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "mnist"  # 500 training and 300 test images, committed
SCRIPT = ROOT / "mnist_ncsn.py"
DEAD = "http://127.0.0.1:1/"  # nothing listens on port 1: connection refused at once
TINY = ["--width", "8", "--batch-size", "16", "--train-size", "32", "--L", "5", "--T", "1", "--N", "5",
        "--n-samples", "4", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "no_proxy": "127.0.0.1", "MPLBACKEND": "Agg"}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, *args):
        """Drop the request log."""


@pytest.fixture(scope="module")
def mirror():
    """A local HTTP server on 127.0.0.1 serving the fixture's MNIST files."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(DATA)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def shell(*args, cwd, script=SCRIPT):
    """Run the script as a user would, in a new process; return (returncode, stdout, stderr)."""
    r = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def cli(*args, cwd=None, module=m):
    """Run the script's main(argv) in this process, as the shell would see it: (returncode, stdout, stderr);
    any exception but SystemExit (a traceback in the shell) fails the test. Every path is given: cwd is unused."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            module.main([str(a) for a in args])
            rc = 0
        except SystemExit as e:  # sys.exit("message") prints the message and exits with 1
            rc = e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or 1)
    return rc, out.getvalue(), err.getvalue()


def assert_clean_error(rc, err, *words, script="mnist_ncsn.py"):
    """Non-zero exit, no traceback, last stderr line is the script's one-line error."""
    assert rc != 0
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error:"), err
    for w in words:
        assert w in last, (w, last)


def assert_usage_error(parse_args, argv, message, capsys):
    """argparse's one-line error: exit code 2 and `message` on stderr."""
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- data
def test_idx_reader_on_fixture_files():
    raw = m.read_idx(DATA / "train-images-idx3-ubyte.gz", 2051)
    assert raw.dtype == torch.uint8 and raw.shape == (500, 28, 28)  # from the header, not 60k
    x, y = m.load_mnist(DATA, "train")
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert y.dtype == torch.int64 and sorted(y.unique().tolist()) == list(range(10))
    assert torch.equal(x[:, 0], raw.float() / 255)
    xt, yt = m.load_mnist(DATA, "test")
    assert xt.shape == (300, 1, 28, 28)
    assert yt[:5].tolist() == [7, 2, 1, 0, 4]  # the canonical test set starts 7, 2, 1, 0, 4
    assert abs(xt.mean().item() - 0.12002) < 5e-5  # its first 300 images' mean pixel value


def test_idx_reader_rejects_bad_files(tmp_path):
    blob = (DATA / "t10k-labels-idx1-ubyte.gz").read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(blob[:len(blob) // 2])  # truncated gzip stream
    with pytest.raises(m.UserError, match="not a readable gzip"):
        m.read_idx(cut, 2049)
    raw = gzip.decompress(blob)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(raw[:208]))  # valid gzip, fewer labels than the header says
    with pytest.raises(m.UserError, match=r"header says \[300\] but the file holds 200"):
        m.read_idx(short, 2049)
    with pytest.raises(m.UserError, match="magic number 2049, expected 2051"):
        m.read_idx(DATA / "t10k-labels-idx1-ubyte.gz", 2051)  # labels where images belong
    text = tmp_path / "text.gz"
    text.write_text("not gzip at all")
    with pytest.raises(m.UserError, match="not a readable gzip"):
        m.read_idx(text, 2051)


def test_download_from_local_mirror(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    m.download_mnist(tmp_path / "a", [DEAD, mirror], check_md5=False)  # first mirror is dead
    for name in m.FILES:
        assert (tmp_path / "a" / name).read_bytes() == (DATA / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(m.FILES)  # no temp files
    # With the MD5 check, the fixture's files differ from the canonical ones: the first one is
    # rejected, the download stops there, and the rejected file leaves nothing behind.
    with pytest.raises(m.UserError, match="t10k-images-idx3-ubyte.gz: MD5 mismatch") as e:
        m.download_mnist(tmp_path / "b", [mirror], check_md5=True)
    assert str(e.value).count("MD5 mismatch") == 1 and str(tmp_path / "b") in str(e.value)
    assert all(name in str(e.value) for name in m.FILES)
    assert not (tmp_path / "b").exists()  # the folder is made for the first file that comes, not before
    # Files whose MD5 matches are accepted: the fixture's own MD5s for three names, one wrong.
    md5 = {name: hashlib.md5((DATA / name).read_bytes()).hexdigest() for name in m.FILES}
    md5["train-labels-idx1-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(m, "FILES", md5)
    with pytest.raises(m.UserError, match="train-labels-idx1-ubyte.gz: MD5 mismatch") as e:
        m.download_mnist(tmp_path / "c", [mirror], check_md5=True)
    assert str(e.value).count("MD5 mismatch") == 1
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"]


# ---------------------------------------------------------------------------------------- model
def test_unet_shape_sigma_dependence_and_per_example_sigma():
    torch.manual_seed(0)
    model = m.UNet(8, sigma_data=0.3)
    x = torch.rand(3, 1, 28, 28)
    big, small = model(x, torch.full((3,), 1.0)), model(x, torch.full((3,), 0.01))
    assert big.shape == small.shape == (3, 1, 28, 28) and model.sigma_data == 0.3
    # The score is (D_θ - x)/σ²: rescaled by σ, the outputs still differ, so F_θ sees σ too.
    rel = (big - small * 0.01).norm() / big.norm()
    assert rel > 0.05
    sigma = torch.tensor([1.0, 0.1, 0.01])
    mixed = model(x, sigma)
    for i in range(3):
        alone = model(x[i:i + 1], sigma[i:i + 1])[0]
        assert torch.allclose(mixed[i] * sigma[i] ** 2, alone * sigma[i] ** 2, atol=1e-5)
    assert m.UNet(8, sigma_data=0.25).state_dict()["sigma_data"] == 0.25  # saved with the weights


def test_unet_runs_on_2x2_patches_and_returns_every_pixel():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    patches = torch.nn.functional.pixel_unshuffle(x, 2)
    assert patches.shape == (2, 4, 14, 14) and torch.equal(patches[0, :, 0, 0], x[0, 0, :2, :2].flatten())
    assert torch.equal(torch.nn.functional.pixel_shuffle(patches, 2), x)  # the round trip is the identity
    torch.manual_seed(0)
    model = m.UNet(8)
    assert model.conv_in.in_channels == model.conv_out.out_channels == 4  # a patch's four pixels in and out
    assert model.F(torch.rand(2, 1, 28, 28), torch.zeros(2)).shape == (2, 1, 28, 28)
    assert sum(p.numel() for p in m.UNet(m.PRESETS["cpu"]["width"]).parameters()) == 407_652


class ExactDenoiserUNet(m.UNet):
    """The U-Net with F_θ replaced by the F that makes D_θ the exact denoiser of N(μ, τ²) pixels."""

    def __init__(self, mu, tau2, sigma_data):
        super().__init__(8, sigma_data)
        self.mu, self.tau2 = mu, tau2

    def F(self, u, c_noise):
        """F = (D* - c_skip x)/c_out at x = u/c_in, σ = exp(4 c_noise): D* = μ + τ²/(τ² + σ²) (x - μ)."""
        sigma = (4 * c_noise).exp()[:, None, None, None]
        c_skip, c_out, c_in, _ = m.precondition(sigma, self.sigma_data)
        x = u / c_in
        return (self.mu + self.tau2 / (self.tau2 + sigma**2) * (x - self.mu) - c_skip * x) / c_out


@pytest.mark.parametrize("sigma_data", [0.2, 0.5])
def test_preconditioned_score_of_the_exact_denoiser_is_a_gaussians_score(sigma_data):
    """(D_θ - x)/σ² with D_θ = c_skip x + c_out F(c_in x, c_noise) and the exact F: -(x - μ)/(τ² + σ²)."""
    torch.manual_seed(0)
    mu, tau2 = 0.3, 0.04
    net, sigma = ExactDenoiserUNet(mu, tau2, sigma_data), torch.tensor([16.0, 1.0, 0.1, 0.01])
    x = mu + (tau2 + sigma[:, None, None, None] ** 2).sqrt() * torch.randn(4, 1, 28, 28)
    exact = -(x - mu) / (tau2 + sigma[:, None, None, None] ** 2)
    assert torch.allclose(net(x, sigma), exact, rtol=1e-4, atol=1e-3)  # float32 at σ = 0.01: |s| ~ 100
    assert torch.allclose(m.tweedie(net, x[:1], 0.1), net.denoiser(x[:1], sigma[2:3]), atol=1e-6)
    c_skip, c_out, c_in, c_noise = m.precondition(torch.tensor([1e-3, 1e3]), sigma_data)
    assert torch.allclose(c_skip, torch.tensor([1.0, 0.0]), atol=1e-4)  # σ -> 0: D = x; σ -> ∞: D = σ_data F
    assert torch.allclose(c_out, torch.tensor([1e-3, sigma_data]), rtol=1e-5)
    assert torch.allclose(c_in * (torch.tensor([1e-6, 1e6]) + sigma_data**2).sqrt(), torch.ones(2), rtol=1e-3)


# ----------------------------------------------------------------------------------------- loss
def lognormal_mean(f, p_mean, p_std, n=20001):
    """E f(σ) for ln σ ~ N(p_mean, p_std²), by the trapezoid rule over ±8 standard deviations."""
    t = np.linspace(-8, 8, n)
    return np.trapezoid(f(np.exp(p_mean + p_std * t)) * np.exp(-t**2 / 2) / math.sqrt(2 * math.pi), t)


def test_dsm_loss_closed_forms():
    torch.manual_seed(0)
    sigmas = m.get_sigmas(1.0, 0.01, 10)
    assert torch.allclose(sigmas[[0, -1]], torch.tensor([1.0, 0.01]))
    assert torch.allclose(sigmas[1:] / sigmas[:-1], torch.full((9,), 0.01 ** (1 / 9)))
    zeros = torch.zeros(2000, 1, 28, 28)
    # Data at a single point 0: the exact score -x/σ² gives loss 0.
    assert m.dsm_loss(lambda x, s: -x / s[:, None, None, None] ** 2, zeros, 0.5, -1.2, 1.2) < 1e-8
    # A zero score: E (1 + σ²/σ_data²) ‖z‖² = d (1 + E σ²/σ_data²), E σ² = exp(2 P_mean + 2 P_std²).
    loss = m.dsm_loss(lambda x, s: torch.zeros_like(x), zeros, 0.5, -1.2, 0.5)
    expected = 784 * (1 + math.exp(-2.4 + 0.5) / 0.25)
    assert abs(loss / expected - 1) < 0.02, (loss, expected)  # measured 0.3% off
    # Gaussian data N(0, τ²) and its exact score -x/(τ² + σ²): ‖σ s + z‖² has mean d τ²/(τ² + σ²), so with
    # σ_data = τ EDM's weight 1 + σ²/τ² makes the loss d at every σ; with another σ_data, its lognormal mean.
    tau = 0.3
    x = tau * torch.randn(100000, 1, 4, 4)
    for sigma_data in [tau, 2 * tau]:
        loss = m.dsm_loss(lambda x, s: -x / (tau**2 + s[:, None, None, None] ** 2), x, sigma_data, -1.2, 1.2)
        expected = 16 * lognormal_mean(lambda s: (1 + s**2 / sigma_data**2) * tau**2 / (tau**2 + s**2), -1.2, 1.2)
        assert abs(loss / expected - 1) < 0.01, (sigma_data, loss, expected)  # standard error 0.2%
    assert abs(expected / 16 - 0.5) > 0.05  # the second case is not the first's d (it is 0.42 d)
    # Any float dtype: σ is drawn in x's.
    assert m.dsm_loss(lambda x, s: -x / s[:, None, None, None] ** 2, zeros[:4].double(), 0.5, -1.2, 1.2).dtype \
        == torch.float64


class LinearScore(torch.nn.Module):
    """s(x̃, σ) = a (x̃ - m)/(τ² + σ²): the exact score of N(μ, τ²I) * N(0, σ²I) at a = -1, m = μ."""

    def __init__(self, a, m, tau2):
        super().__init__()
        self.a, self.m, self.tau2 = torch.nn.Parameter(torch.tensor(a)), torch.nn.Parameter(torch.tensor(m)), tau2

    def forward(self, x, sigma):
        """The score at images x (n, 1, 2, 2), one σ each."""
        return self.a * (x - self.m) / (self.tau2 + sigma[:, None, None, None] ** 2)


def dsm_at(a, mean, n=100_000):
    """dsm_loss and its gradient for LinearScore(a, mean) on N(0.3, 0.2²) images, the same noise for all."""
    torch.manual_seed(0)
    x = 0.3 + 0.2 * torch.randn(n, 1, 2, 2)
    model = LinearScore(a, mean, 0.04)
    loss = m.dsm_loss(model, x, 0.2, -1.2, 1.2)
    loss.backward()
    return loss.item(), torch.stack([model.a.grad, model.m.grad])


def test_dsm_loss_is_smallest_with_zero_gradient_at_the_exact_score():
    best, g_opt = dsm_at(-1.0, 0.3)
    for a, mean in [(-0.9, 0.3), (-1.1, 0.3), (-1.0, 0.2), (-1.0, 0.4)]:
        assert dsm_at(a, mean)[0] > best + 1e-3, (a, mean)
    assert g_opt.abs().max() < 0.5  # measured 0.14: sampling noise of 100,000 images (EDM's weight is heavy-tailed)
    assert dsm_at(-1.1, 0.4)[1].abs().min() > 5  # measured 15 and 35: the test would catch a wrong optimum


def test_bf16_autocast_gives_the_float32_loss_and_gradient():
    torch.manual_seed(0)
    model, x = m.UNet(8, sigma_data=0.3), m.load_mnist(DATA)[0][:64]
    losses, grads = [], []
    for bf16 in [False, True]:
        torch.manual_seed(1)  # the same σ's and noise
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = m.dsm_loss(model, x, model.sigma_data, -1.2, 1.2)
        model.zero_grad()
        loss.backward()
        losses.append(loss)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[1].dtype == torch.float32 and model(x, torch.full((64,), 0.5)).dtype == torch.float32
    # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% an operation): measured 5e-5 on
    # the loss and 0.5% on the gradient, whose norm a wrong cast (bf16 loss, EMA) would move more.
    assert abs(losses[1] / losses[0] - 1) < 2e-3, losses
    assert (grads[1] - grads[0]).norm() / grads[0].norm() < 0.03


def test_dsm_loss_falls_on_small_subset():
    torch.manual_seed(0)
    data = m.load_mnist(DATA)[0][:256]
    model = m.UNet(8, sigma_data=data.std().item())
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def held_out():
        """The loss on a fixed batch, noise and sigmas, leaving the global RNG as it was."""
        state = torch.random.get_rng_state()
        torch.manual_seed(123)  # the same noise and sigmas before and after training
        with torch.no_grad():
            loss = m.dsm_loss(model, data[:64], model.sigma_data, -1.2, 1.2).item()
        torch.random.set_rng_state(state)
        return loss

    before = held_out()
    for _ in range(40):
        loss = m.dsm_loss(model, data[torch.randint(256, (16,))], model.sigma_data, -1.2, 1.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert after < 0.72 * before, (before, after)  # measured: 955 -> 619 (seeds 0-2: 0.62-0.66 of the start)


# -------------------------------------------------------------------------------------- sampler
def test_anneal_langevin_on_gaussian_matches_closed_form():
    torch.manual_seed(0)
    mu, tau = 0.4, 0.3
    sigmas = m.get_sigmas(1.0, 0.1, 3)
    seen = []

    def score(x, s):
        """Exact score of N(mu, tau^2) perturbed by N(0, s^2); records the shape of s."""
        seen.append(s.shape)
        return -(x - mu) / (tau ** 2 + s[:, None, None, None] ** 2)

    x0 = torch.rand(4000, 1, 4, 4)
    eps, T = 0.01, 200
    torch.manual_seed(1)
    x, trace = m.anneal_langevin(score, x0, sigmas, eps, T, denoise=False)
    assert x.shape == x0.shape and torch.isfinite(x).all()
    assert len(trace) == 4 and all(t.shape == x0.shape for t in trace)  # the start, then one per level
    assert torch.equal(trace[0], x0) and torch.equal(trace[-1], x)  # the last level's end state, before denoising
    assert set(seen) == {(4000,)}  # one sigma per example
    assert len(seen) == 3 * T
    # Unadjusted Langevin on a Gaussian with variance v and step alpha = eps (last level) has the
    # stationary variance v / (1 - alpha / (4 v)).
    v = tau ** 2 + 0.1 ** 2
    std = (v / (1 - eps / (4 * v))) ** 0.5
    assert abs(x.mean() - mu) < 0.01
    assert abs(x.std() / std - 1) < 0.008, (x.std(), std)  # sqrt(v) alone is ~1.2% off
    torch.manual_seed(1)  # the same noise as above
    xd, _ = m.anneal_langevin(score, x0, sigmas, eps, T, denoise=True)
    # Denoising x + sigma_L^2 s shrinks deviations from mu by tau^2 / v.
    assert torch.allclose(xd - mu, (x - mu) * tau ** 2 / v, atol=1e-5)


def image_gaussian_score(mu, tau2):
    """The exact score of N(μ, τ²I) perturbed by N(0, σ²I), for images (n, 1, H, W) and one σ each."""
    return lambda x, s: -(x - mu) / (tau2 + s[:, None, None, None] ** 2)


@pytest.mark.parametrize("name", ["anneal_langevin", "reverse_sde", "probability_flow_ode", "ddpm", "ddim"])
def test_samplers_are_the_toys_own(name):
    """Copied, not imported (each script stands alone): the same inputs and noise give the same images. DDIM here is
    the ODE's Euler step, the toy's the same step in DDPM's variables: equal to float32 round-off."""
    score, sigmas = image_gaussian_score(0.3, 0.04), m.get_sigmas(16.0, 0.01, 20)
    x0 = 0.3 + 16 * torch.randn(50, 1, 4, 4)
    extra = {"anneal_langevin": (2e-5, 3), "reverse_sde": (2e-5, 2)}.get(name, ())
    runs = []
    for module in [m, toy]:
        torch.manual_seed(0)
        runs.append(getattr(module, name)(score, x0, sigmas, *extra))
    (x, trace), (x_toy, trace_toy) = runs
    assert len(trace) == len(trace_toy) == 20 + (name == "anneal_langevin") and x.shape == x0.shape
    assert torch.equal(trace[0], x0)  # every trace starts with the start
    same = torch.equal if name != "ddim" else functools.partial(torch.allclose, rtol=1e-5, atol=1e-5)
    assert same(x, x_toy) and all(same(a, b) for a, b in zip(trace, trace_toy))


def test_the_prior_is_the_toys_own():
    points = torch.randn(100, 2) * torch.tensor([1.0, 3.0])
    x = torch.randn(7, 2)
    assert torch.equal(m.gaussian_prior(points, 5.0).log_prob(x), toy.gaussian_prior(points, 5.0).log_prob(x))
    images = m.load_mnist(DATA)[0]
    prior = m.gaussian_prior(images, 16.0)
    assert prior.event_shape == (1, 28, 28) and prior.sample((3,)).shape == (3, 1, 28, 28)
    assert torch.allclose(prior.stddev, (256 + images.var(0)).sqrt())


def test_karras_sigmas_endpoints_spacing_and_rho():
    sigmas = m.karras_sigmas(16.0, 0.01, 18)
    assert len(sigmas) == 18 and torch.allclose(sigmas[[0, -1]], torch.tensor([16.0, 0.01]))
    assert (sigmas[1:] < sigmas[:-1]).all()
    roots = sigmas ** (1 / 7)  # equal steps in σ^(1/ρ), ρ = 7 (EDM eq. 5)
    assert torch.allclose(roots[1:] - roots[:-1], (roots[-1] - roots[0]) / 17 * torch.ones(17), atol=1e-6)
    ratios = sigmas[1:] / sigmas[:-1]  # unlike geometric σ's, the steps shrink in ratio towards σ_L
    assert ratios[0] > 0.7 and ratios[-1] < 0.5
    assert torch.allclose(m.karras_sigmas(16.0, 0.01, 18, rho=1e4), m.get_sigmas(16.0, 0.01, 18), rtol=1e-2)


# Relative error of the variance, measured on 80,000 pixels (sampling error ±0.005): after 300 geometric σ's
# the SDE's Euler-Maruyama step adds variance, DDPM's and DDIM's steps lose some, Heun's ODE is exact; 100
# Karras σ's take longer steps where σ ≈ τ and keep more of each error.
VARIANCE_ERROR = {"reverse_sde": (0.034, 0.080), "probability_flow_ode": (-0.0004, 0.0011), "ddpm": (-0.016, -0.091),
                  "ddim": (-0.013, -0.043)}


@pytest.mark.parametrize("name", list(VARIANCE_ERROR))
@pytest.mark.parametrize("schedule", ["geometric", "karras"])
def test_samplers_give_a_gaussians_mean_and_variance(name, schedule):
    """From the Gaussian prior at σ_1 = 16 down to σ_L = 0.01 (300 geometric or 100 Karras σ's), N(0.3, 0.2²)."""
    torch.manual_seed(0)
    mu, tau2 = 0.3, 0.04
    x0 = mu + math.sqrt(tau2 + 256) * torch.randn(20000, 1, 2, 2)
    sigmas = m.get_sigmas(16.0, 0.01, 300) if schedule == "geometric" else m.karras_sigmas(16.0, 0.01, 100)
    x, _ = getattr(m, name)(image_gaussian_score(mu, tau2), x0, sigmas, denoise=False)
    assert abs(x.mean() - mu) < 0.005, x.mean()  # standard error 0.0007
    error = VARIANCE_ERROR[name][schedule == "karras"]
    assert abs(x.var() / (tau2 + 0.01**2) - 1 - error) < 0.015, x.var()


def test_anneal_langevin_inpaint_gives_gaussian_conditional():
    """Algorithm 2 with the exact perturbed score of a correlated Gaussian on 2x2 images: the
    hidden bottom row must follow the Gaussian's conditional law given the known top row."""
    torch.manual_seed(0)
    mu = torch.tensor([0.5, 0.3, 0.6, 0.4])
    A = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0], [0.7, -0.3, 0.5, 0.0],
                      [0.2, 0.5, 0.4, 0.6]])
    cov = 0.25 * A @ A.T

    def score(x, s):
        """∇ₓ log N(x; μ, Σ + σ²I), the exact score of the perturbed Gaussian (one σ a call)."""
        precision = torch.linalg.inv(cov + s[0] ** 2 * torch.eye(4))
        return -((x.reshape(len(x), 4) - mu) @ precision).reshape(x.shape)

    n, K, H = 10000, [0, 1], [2, 3]
    mask = torch.tensor([True, True, False, False]).reshape(1, 1, 2, 2)
    y = torch.tensor([0.7, 0.2, -5.0, 5.0])  # hidden values are never looked at
    cond_mean = mu[H] + cov[H][:, K] @ torch.linalg.solve(cov[K][:, K], y[K] - mu[K])
    cond_cov = cov[H][:, H] - cov[H][:, K] @ torch.linalg.solve(cov[K][:, K], cov[K][:, H])
    x, trace = inp.anneal_langevin_inpaint(score, torch.rand(n, 1, 2, 2), y.reshape(1, 1, 2, 2).expand(n, 1, 2, 2),
                                           mask, m.get_sigmas(1.0, 0.03, 5), 4.5e-4, 400)
    x = x.reshape(n, 4)
    assert len(trace) == 6 and all(t.shape == (n, 1, 2, 2) for t in trace)  # the start, then one per level
    assert torch.equal(x[:, K], y[K].expand(n, 2))  # known pixels: exactly the input
    # Measured: mean off by (-0.005, 0.007) (standard errors 0.0025, 0.0036), covariance by 3.5%
    # of its largest entry (σ_L² = 9e-4 against conditional variances 0.06 and 0.13, plus the
    # Langevin step's bias). Algorithm 1 without the reset would give the mean (0.6, 0.4).
    assert (x[:, H].mean(0) - cond_mean).abs().max() < 0.015, (x[:, H].mean(0), cond_mean)
    err = (torch.cov(x[:, H].T) - cond_cov).abs().max() / cond_cov.abs().max()
    assert err < 0.08, (torch.cov(x[:, H].T), cond_cov)


def test_masks_and_progress_lines(capsys):
    masks = {name: inp.make_mask(name)[0, 0] for name in inp.MASKS}
    assert all(mk.shape == (28, 28) and mk.dtype == torch.bool for mk in masks.values())
    assert masks["right"][:, :14].all() and not masks["right"][:, 14:].any()
    assert masks["bottom"][:14].all() and not masks["bottom"][14:].any()
    assert torch.equal(masks["left"], masks["right"].flip(1))
    assert torch.equal(masks["top"], masks["bottom"].flip(0))
    assert (~masks["center"]).sum() == 14 * 14 and not masks["center"][14, 14]
    # The sampler's progress wrapper: same outputs, one line per call when every=0.
    outputs = []
    for score in [lambda x, s: -x, m.with_progress(lambda x, s: -x, total=7, every=0)]:
        torch.manual_seed(0)
        outputs.append(m.anneal_langevin(score, torch.ones(4, 1, 2, 2), torch.tensor([1.0, 0.5]), 0.1, 3)[0])
    assert torch.equal(*outputs)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # after calls 1..6 of 7: the last call prints nothing
    assert [ln.split(" (")[0] for ln in lines] == [f"  evaluation {i}/7" for i in range(1, 7)]
    assert lines[0].startswith("  evaluation 1/7 (σ = 1) | ") and "(σ = 0.5)" in lines[-1]
    assert all("img/s" in ln and ln.endswith("s left") for ln in lines)


def test_autoguidance_of_two_gaussians_is_the_closed_form():
    """Guiding p_good = N(μ_g, v_g + σ²) by p_bad = N(μ_b, v_b + σ²): s_bad + w (s_good - s_bad) is the score of the
    Gaussian whose precision and precision-weighted mean are extrapolated from the bad model through the good one,
    a = w/(v_g + σ²) + (1 - w)/(v_b + σ²), mean = (w μ_g/(v_g + σ²) + (1 - w) μ_b/(v_b + σ²))/a."""
    mu_g, v_g, mu_b, v_b, calls = 0.3, 0.04, 0.1, 0.2, []  # the bad model: blurrier, its mean off

    def gaussian(mu, v, name):
        """The exact score of N(mu, v + σ²) per pixel, its calls logged."""
        return lambda x, s: calls.append(name) or -(x - mu) / (v + s[:, None, None, None] ** 2)

    good, bad = gaussian(mu_g, v_g, "good"), gaussian(mu_b, v_b, "bad")
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    for w in [0.5, 1.5, 2.0, 3.0]:
        for sigma in [0.05, 0.5]:
            a = w / (v_g + sigma**2) + (1 - w) / (v_b + sigma**2)
            mean = (w * mu_g / (v_g + sigma**2) + (1 - w) * mu_b / (v_b + sigma**2)) / a
            guided = m.autoguidance(good, bad, w, 1.0)(x, m.sigma_like(x, sigma))
            assert torch.allclose(guided, -(x - mean) * a, rtol=1e-12, atol=1e-12), (w, sigma)
            if w > 1:  # sharper than the good model, its mean pushed past μ_g, away from μ_b
                assert 1 / a < v_g + sigma**2 and mean > mu_g
    assert m.autoguidance(good, bad, 2.0, 1.0)(x, m.sigma_like(x, 0.05))[0, 0, 0, 0] == pytest.approx(
        -(x[0, 0, 0, 0].item() - 0.32346) * 42.120, rel=1e-4)  # σ = 0.05: a = 2/0.0425 - 1/0.2025
    calls.clear()  # w = 1, and σ above the interval: the good score unchanged, the bad model never asked
    s, big = m.sigma_like(x, 0.5), m.sigma_like(x, 2.0)
    assert torch.equal(m.autoguidance(good, bad, 1.0)(x, s), good(x, s))
    assert torch.equal(m.autoguidance(good, bad, 2.0, 1.0)(x, big), good(x, big))
    assert calls == ["good"] * 4


def test_precision_auto_asks_the_card(monkeypatch):
    """On CUDA, bf16 only with --compile on compute capability 8.0 or later (no T4, no V100); the CPU's own test."""
    for capability, compiled, want in [((8, 0), True, "bf16"), ((9, 0), True, "bf16"), ((7, 5), True, "fp32"),
                                       ((7, 0), True, "fp32"), ((8, 0), False, "fp32")]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, cc=capability: cc)
        precision, why = m.pick_precision("auto", "cuda", compiled)
        assert precision == want and f"compute capability {capability[0]}.{capability[1]}" in why
        args = m.parse_args(["--compile"] if compiled else [])
        m.fill_defaults(args, None, "cuda")  # the path the script takes: --preset auto is gpu on CUDA
        assert (args.preset, args.precision) == ("gpu", want)
    assert m.pick_precision("fp32", "cuda", True) == ("fp32", "as asked")
    assert m.pick_precision("bf16", "cpu") == ("bf16", "as asked")
    for avx512_bf16, amx, want in [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert m.pick_precision("auto", "cpu")[0] == want


# ----------------------------------------------------------------------------------- checkpoint
def test_checkpoint_round_trip_and_validation(tmp_path):
    torch.manual_seed(0)
    model, ema = m.UNet(8, sigma_data=0.3), m.UNet(8, sigma_data=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = m.dsm_loss(model, torch.rand(4, 1, 28, 28), 0.3, -1.2, 1.2)
    loss.backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                    recipe=m.RECIPE, epoch=3, losses=[2.0, 1.0], args={"width": 8}), path)
    torch.manual_seed(1)
    model2, ema2 = m.UNet(8), m.UNet(8)  # σ_data 0.5 until the checkpoint's 0.3 is read
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    ckpt = m.load_checkpoint(path, model2, ema2, opt2)
    assert ckpt["epoch"] == 3 and ckpt["losses"] == [2.0, 1.0] and model2.sigma_data == 0.3
    x, s = torch.rand(2, 1, 28, 28), torch.tensor([0.5, 0.05])
    assert torch.equal(model(x, s), model2(x, s)) and torch.equal(ema(x, s), ema2(x, s))
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"],
                       opt2.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(m.UserError, match="made with --width 8, this run uses --width 16"):
        m.load_checkpoint(path, m.UNet(16), m.UNet(16))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(m.UserError, match="junk.pt: not an mnist_ncsn.py checkpoint"):
        m.load_checkpoint(tmp_path / "junk.pt", m.UNet(8), m.UNet(8))
    # Earlier recipes' checkpoints (no EDM preconditioning; the U-Net at 28x28, "edm") are refused, not misread.
    for tag in [dict(dsm="log-uniform"), dict(recipe="edm")]:
        torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), args={"width": 8}, **tag), path)
        with pytest.raises(m.UserError, match="ckpt.pt: written by an earlier mnist_ncsn.py, whose U-Net was another"):
            m.load_checkpoint(path)


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A tiny one-epoch run from the shell, as a user starts it: its folder and its stdout."""
    out = tmp_path_factory.mktemp("one_epoch")
    rc, stdout, err = shell(*TINY, "--data-dir", DATA, "--epochs", 1, "--out", out, cwd=out)
    assert rc == 0, err
    return out, stdout


def test_cli_writes_every_output(one_epoch):
    out, stdout = one_epoch
    first = stdout.splitlines()[0]  # said at once: preset, size, device and precision
    precision, why = m.pick_precision("auto", "cpu")
    assert first.startswith(f"--preset cpu: UNet(width=8), 26,460 parameters | cpu, {precision} ({why}) | σ_data 0.3")
    assert "training for 1 epochs on 32 images" in stdout
    samples = np.load(out / "samples.npy")
    assert samples.shape == (4, 28, 28) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1 and samples.std() > 0
    for name in ["samples.png", "levels.png", "loss.png"]:
        blob = (out / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    assert not (out / "checkpoint.pt.tmp").exists()  # the checkpoint is written whole, then renamed
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["losses"]) == 1 and ckpt["args"]["width"] == 8
    assert ckpt["step"] == 2 and ckpt["recipe"] == m.RECIPE and 0 < ckpt["seconds"] < 60
    # The last of 2 steps ran at the warm-up's rate for 32 of its 10,000 images.
    assert ckpt["opt"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * 32 / m.WARMUP_IMAGES)


def test_cli_resume_download_and_sample_only(tmp_path, mirror, monkeypatch):
    # A two-epoch run stopped (Ctrl-C) right after its first checkpoint, then resumed with the same flags.
    resumed, replace = tmp_path / "resumed", os.replace

    def replace_then_stop(src, dst):
        """os.replace, then a KeyboardInterrupt: the user stops the run."""
        replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(m.os, "replace", replace_then_stop)
    with pytest.raises(KeyboardInterrupt):
        cli(*TINY, "--data-dir", DATA, "--epochs", 2, "--out", resumed, cwd=tmp_path)
    monkeypatch.undo()
    rc, stdout, err = cli(*TINY, "--data-dir", DATA, "--epochs", 2, "--out", resumed, "--resume",
                          cwd=tmp_path)
    assert rc == 0, err
    assert "(epoch 1, 0 s of training)" in stdout and "training for 2 epochs" in stdout
    # The warm-up goes on where it stopped: the fourth step at 64 images.
    lr = torch.load(resumed / "checkpoint.pt", weights_only=True)["opt"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(2e-3 * 64 / m.WARMUP_IMAGES)
    # The uninterrupted two-epoch run, with MNIST downloaded from the local mirror.
    straight = tmp_path / "straight"
    rc, stdout, err = cli(*TINY, "--data-dir", tmp_path / "data", "--mirror", mirror,
                          "--epochs", 2, "--out", straight, cwd=tmp_path)
    assert rc == 0, err
    assert stdout.count("downloaded http://127.0.0.1") == 4
    a = torch.load(resumed / "checkpoint.pt", weights_only=True)
    b = torch.load(straight / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and np.allclose(a["losses"], b["losses"], rtol=1e-5)
    for key in a["ema"]:
        assert torch.allclose(a["ema"][key], b["ema"][key], atol=1e-6), key
    # Sampling from the saved checkpoint gives the samples written at the end of training.
    rc, stdout, err = cli("--sample-only", "--ckpt", resumed / "checkpoint.pt", "--out",
                          tmp_path / "sampled", "--data-dir", DATA, *TINY, cwd=tmp_path)
    assert rc == 0, err
    assert np.allclose(np.load(tmp_path / "sampled" / "samples.npy"),
                       np.load(resumed / "samples.npy"), atol=1e-6)


@pytest.mark.parametrize("sampler, precision, evaluations", [
    ("ald", "fp32", 6), ("ald", "bf16", 6), ("sde", "bf16", 9), ("ode", "fp32", 9), ("ddpm", "bf16", 5),
    ("ddim", "fp32", 5)])
@pytest.mark.parametrize("guided", [False, True])
def test_cli_every_sampler_and_precision(one_epoch, tmp_path, monkeypatch, sampler, precision, evaluations, guided):
    """From the tiny run's checkpoint: L = 5 levels of T = 1 (ald), N = 5 σ's (sde with one corrector
    step, Heun's two evaluations a step for ode), the Tweedie step last; 4 images in batches of 3. Guided at
    σ <= 1, the snapshot is evaluated too wherever the sampler asks for σ <= 1: at ald's last three geometric σ's
    (0.4, 0.063, 0.01) and Tweedie's; elsewhere at Karras's last two (0.146, 0.01) as often as the sampler evaluates
    them (sde: one predictor and two corrector steps, ode: Heun's three slopes) and Tweedie's."""
    first, _ = one_epoch
    monkeypatch.setattr(m, "SAMPLE_BATCH", 3)
    monkeypatch.setattr(m, "GUIDANCE", {name: (1.0, 1.0) for name in m.GUIDANCE})  # guided at σ <= 1, as counted
    rc, stdout, err = cli("--sample-only", "--ckpt", first / "checkpoint.pt", "--out", tmp_path, "--data-dir", DATA,
                          "--sampler", sampler, "--precision", precision, "--guidance", 2 if guided else 1,
                          *TINY, cwd=tmp_path)
    assert rc == 0, err
    evaluations += guided * {"ald": 4, "sde": 4, "ode": 4, "ddpm": 2, "ddim": 2}[sampler]
    assert f"| cpu, {precision} (as asked) |" in stdout and ("w=2 at σ <= 1" in stdout) == guided
    assert f"sampled 4 images by {sampler} (" in stdout and f"): {evaluations} network evaluations" in stdout
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (4, 28, 28) and np.isfinite(samples).all() and samples.std() > 0


def test_cli_minutes_trains_to_the_clock_and_resumes(tmp_path):
    """--minutes stops at the budget, mid-epoch if need be, and a resumed run keeps what was spent."""
    out = tmp_path / "clock"
    rc, stdout, err = cli(*TINY, "--train-size", 500, "--data-dir", DATA, "--minutes", 0.02, "--out", out,
                          cwd=tmp_path)
    assert rc == 0, err
    assert "training for 0.02 min on 500 images" in stdout
    assert "training at " in stdout and "img/s (epochs 2-4): about 0.0 min, " in stdout
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1.2 <= ckpt["seconds"] < 2.2 and ckpt["args"]["minutes"] == 0.02 and ckpt["args"]["epochs"] is None
    warm = lambda ckpt: 2e-3 * min(1, ckpt["step"] * 16 / m.WARMUP_IMAGES)  # noqa: E731  the warm-up by steps
    assert ckpt["opt"]["param_groups"][0]["lr"] == pytest.approx(warm(ckpt))
    rc, stdout, err = cli(*TINY, "--data-dir", DATA, "--minutes", 0.04, "--out", out, "--resume", cwd=tmp_path)
    assert rc == 0, err
    again = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 2.4 <= again["seconds"] < 3.4 and again["step"] > ckpt["step"] and len(again["losses"]) > len(ckpt["losses"])
    assert again["opt"]["param_groups"][0]["lr"] == pytest.approx(warm(again))  # not restarted by the resume


def recorded_saves(monkeypatch):
    """Patch torch.save to keep, for each checkpoint train() writes: its epoch, seconds, the snapshot's epoch and the
    EMA's weights."""
    seen, save = [], torch.save

    def recording(obj, path):
        """torch.save, after noting what a checkpoint holds."""
        if isinstance(obj, dict) and "ema" in obj:
            seen.append(dict(epoch=obj["epoch"], seconds=obj["seconds"], ema={k: v.clone() for k, v in obj["ema"].items()},
                             snapshot=obj["snapshot"] and obj["snapshot"]["epoch"]))
        save(obj, path)
    monkeypatch.setattr(torch, "save", recording)
    return seen


def assert_same_weights(a, b):
    """Two state dicts hold the same tensors (to float32 round-off: a resumed run's Adam state is reloaded)."""
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_snapshot_is_the_ema_after_the_promised_epoch(tmp_path, monkeypatch):
    """The snapshot is the EMA after the first epoch that ends at or past GUIDE_AT of the run: by epochs for
    --epochs, by the clock for --minutes; a run stopped and resumed before or after it keeps the same one."""
    seen = recorded_saves(monkeypatch)
    rc, _, err = cli(*TINY, "--data-dir", DATA, "--epochs", 10, "--out", tmp_path / "straight")
    assert rc == 0, err
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["snapshot"]
    assert m.GUIDE_AT == 0.2 and straight["epoch"] == 2 and straight["share"] == 0.2  # 2 of 10 epochs
    assert [r["snapshot"] for r in seen] == [None] + [2] * 9
    assert_same_weights(straight["ema"], seen[1]["ema"])
    for stop_after in [1, 3]:  # Ctrl-C after the first (no snapshot yet) or the third checkpoint, then --resume
        out, replace, count = tmp_path / f"stopped_{stop_after}", os.replace, []

        def replace_then_stop(src, dst):
            """os.replace, then a KeyboardInterrupt after the `stop_after`-th checkpoint."""
            replace(src, dst)
            count.append(dst)
            if len(count) == stop_after:
                raise KeyboardInterrupt
        monkeypatch.setattr(m.os, "replace", replace_then_stop)
        with pytest.raises(KeyboardInterrupt):
            cli(*TINY, "--data-dir", DATA, "--epochs", 10, "--out", out)
        monkeypatch.setattr(m.os, "replace", replace)
        rc, _, err = cli(*TINY, "--data-dir", DATA, "--epochs", 10, "--out", out, "--resume")
        assert rc == 0, err
        resumed = torch.load(out / "checkpoint.pt", weights_only=True)["snapshot"]
        assert resumed["epoch"] == 2
        assert_same_weights(resumed["ema"], straight["ema"])
    seen.clear()  # by the clock: 0.03 min, so the snapshot is the EMA after the first epoch ending at 0.36 s or later
    rc, _, err = cli(*TINY, "--train-size", 128, "--data-dir", DATA, "--minutes", 0.03, "--out", tmp_path / "clock")
    assert rc == 0, err
    clock = torch.load(tmp_path / "clock" / "checkpoint.pt", weights_only=True)["snapshot"]
    at = seen[clock["epoch"] - 1]
    assert all(r["seconds"] < 0.36 for r in seen[:clock["epoch"] - 1]) and at["seconds"] >= 0.36, [r["seconds"] for r in seen]
    assert len(seen) > clock["epoch"] and clock["share"] == pytest.approx(at["seconds"] / 1.8)
    assert_same_weights(clock["ema"], at["ema"])


def test_cli_guidance_flags_and_a_checkpoint_without_snapshot(one_epoch, tmp_path, capsys):
    first, _ = one_epoch
    for parse_args in [m.parse_args, inp.parse_args]:
        for argv, message in [(["--guidance", "0"], "argument --guidance: must be above 0, not 0"),
                              (["--guidance", "-1"], "argument --guidance: must be above 0, not -1"),
                              (["--guidance", "inf"], "argument --guidance: must be above 0, not inf"),
                              (["--guidance", "strong"], "argument --guidance: invalid float value: 'strong'")]:
            assert_usage_error(parse_args, argv, message, capsys)
    ckpt = torch.load(first / "checkpoint.pt", weights_only=True)
    assert ckpt["snapshot"]["epoch"] == 1  # one epoch: the end is past GUIDE_AT
    del ckpt["snapshot"]  # as mnist_ncsn.py wrote its checkpoints before it kept one
    torch.save(ckpt, old := tmp_path / "old.pt")
    rc, stdout, err = cli("--sample-only", "--ckpt", old, "--out", tmp_path / "o", "--data-dir", DATA, "--sampler",
                          "sde", "--guidance", 2, *TINY)
    assert rc == 0, err
    assert f"{old} holds no snapshot (an earlier mnist_ncsn.py wrote it): sampling unguided" in stdout
    assert "(N=5, T=1, ε=2e-05): 9 network evaluations each" in stdout  # unguided
    rc, stdout, err = cli("--ckpt", old, "--data-dir", DATA, "--n-inpaint", 1, "--n-completions", 1, "--L", 2,
                          "--guidance", 2, "--out", tmp_path / "i", "--device", "cpu", module=inp)
    assert rc == 0 and "old.pt holds no snapshot (an earlier mnist_ncsn.py wrote it): inpainting unguided" in stdout


def test_cli_gpu_preset_runs_end_to_end_on_the_cpu(tmp_path):
    """--preset gpu's plumbing (batch 128, 60,000 images, 20 epochs, its learning rate) with a small width, a
    few hundred images and one epoch, so that it cannot rot unseen where there is no GPU."""
    rc, stdout, err = cli("--preset", "gpu", "--device", "cpu", "--width", 16, "--train-size", 300, "--epochs", 1,
                          "--n-samples", 3, "--N", 4, "--data-dir", DATA, "--out", tmp_path)
    assert rc == 0, err
    assert stdout.startswith("--preset gpu: UNet(width=16), ") and "training for 1 epochs on 300 images" in stdout
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["args"]["batch_size"] == 128 and ckpt["snapshot"]["epoch"] == 1
    assert ckpt["opt"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 256 / m.WARMUP_IMAGES)  # gpu's lr, warming
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (3, 28, 28) and np.isfinite(samples).all() and samples.std() > 0


def test_cli_inpaint(one_epoch, tmp_path):
    first, _ = one_epoch
    rc, stdout, err = shell("--region", "bottom", "--ckpt", first / "checkpoint.pt", "--data-dir", DATA,
                            "--n-inpaint", 3, "--n-completions", 2, "--out", tmp_path, "--L", 10, "--T", 2,
                            "--device", "cpu", cwd=tmp_path, script=ROOT / "mnist_inpaint.py")  # from the shell
    assert rc == 0, err
    assert "inpainted 3 test digits x 2 (bottom hidden), 20 Langevin steps" in stdout
    f = np.load(tmp_path / "inpaint.npz")
    originals, mask, completions = f["originals"], f["mask"], f["completions"]
    assert f["labels"].tolist() == [7, 2, 1] and originals.shape == (3, 28, 28)
    assert mask.shape == (28, 28) and mask[:14].all() and not mask[14:].any()
    assert completions.shape == (3, 2, 28, 28) and completions.dtype == np.float32
    assert np.array_equal(originals, m.load_mnist(DATA, "test")[0][:3, 0].numpy())
    known = np.broadcast_to(mask, completions.shape)
    assert np.array_equal(completions[known], np.repeat(originals[:, None], 2, 1)[known])
    hidden = completions[~known]  # filled: not the zeros nor the original's pixels
    assert 0 <= hidden.min() and hidden.max() <= 1 and hidden.std() > 0.01
    assert not np.allclose(completions[:, 0], completions[:, 1])  # two different completions
    blob = (tmp_path / "inpaint.png").read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000


def test_cli_fails_cleanly_on_bad_input(one_epoch, tmp_path, capsys):
    first, _ = one_epoch
    for argv, message in [(["--epochs", "0"], "argument --epochs: must be above 0, not 0"),
                          (["--epochs", "2", "--minutes", "3"], "--minutes: not allowed with argument --epochs"),
                          (["--minutes", "inf"], "argument --minutes: must be above 0, not inf"),
                          (["--inpaint", "right"], "unrecognized arguments: --inpaint right"),  # mnist_inpaint.py's
                          (["--ema-halflife", "0.1"], "unrecognized arguments: --ema-halflife"),  # EMA_HALFLIFE now
                          (["--n-samples", "3.5"], "argument --n-samples: invalid int value: '3.5'"),
                          (["--sigma-L", "20"], "--sigma-1 must be larger than --sigma-L"),
                          (["--L", "1"], "argument --L: must be at least 2, not 1"),
                          (["--sampler", "ode", "--N", "1"], "argument --N: must be at least 2, not 1"),
                          (["--likelihood"], "unrecognized arguments: --likelihood"),  # mnist_likelihood.py's now
                          (["--sample-batch", "3"], "unrecognized arguments: --sample-batch"),  # SAMPLE_BATCH now
                          (["--sampler", "ald", "--T", "0"], "--T must be at least 1 for --sampler ald, got 0"),
                          (["--schedule", "geometric"], "unrecognized arguments: --schedule"),  # ald's σ's only
                          (["--precision", "fp16"], "argument --precision: invalid choice"),
                          (["--eps", "nan"], "argument --eps: must be above 0, not nan"),
                          (["--width", "12"], "--width must be a multiple of 8")]:
        assert_usage_error(m.parse_args, argv, message, capsys)
    rc, _, err = cli("--train-size", "0", cwd=tmp_path)
    assert rc == 2 and err.strip().splitlines()[-1].endswith("argument --train-size: must be above 0, not 0")
    # No data and no network: one line naming the folder and the four files.
    rc, _, err = cli(*TINY, "--data-dir", tmp_path / "none", "--mirror", DEAD, "--out",
                     tmp_path / "o1", cwd=tmp_path)
    assert_clean_error(rc, err, str(tmp_path / "none"), *m.FILES)
    # A corrupt (truncated) training file.
    bad = tmp_path / "bad"
    shutil.copytree(DATA, bad)
    os.chmod(bad, 0o755)
    blob = (DATA / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").unlink()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(blob[:len(blob) // 2])
    rc, _, err = cli(*TINY, "--data-dir", bad, "--out", tmp_path / "o2", cwd=tmp_path)
    assert_clean_error(rc, err, "train-images-idx3-ubyte.gz", "not a readable gzip")
    # An output folder that cannot be created (its parent is a file).
    (tmp_path / "file").write_text("x")
    rc, _, err = cli(*TINY, "--data-dir", DATA, "--out", tmp_path / "file" / "out", cwd=tmp_path)
    assert_clean_error(rc, err, "cannot write to --out")
    # A checkpoint from another architecture (the sigma check: test_checkpoint_round_trip...).
    ckpt = first / "checkpoint.pt"
    rc, _, err = cli("--sample-only", "--ckpt", ckpt, "--width", 16, "--device", "cpu",
                     "--out", tmp_path / "o3", cwd=tmp_path)
    assert_clean_error(rc, err, "made with --width 8, this run uses --width 16")
    # Inpainting: bad flags; more digits than the test set holds; a checkpoint that is not there; no --out.
    for argv, message in [(["--region", "diagonal"], "argument --region: invalid choice"),
                          (["--n-inpaint", "0"], "argument --n-inpaint: must be above 0, not 0"),
                          (["--n-completions", "-1"], "argument --n-completions: must be above 0, not -1"),
                          (["--T", "0"], "argument --T: must be above 0, not 0"),
                          (["--sampler", "ddpm"], "unrecognized arguments: --sampler ddpm")]:
        assert_usage_error(inp.parse_args, argv, message, capsys)
    rc, _, err = cli("--ckpt", ckpt, "--data-dir", DATA, "--n-inpaint", 301, "--out", tmp_path / "o4", module=inp)
    assert_clean_error(rc, err, "--n-inpaint 301", "holds only 300 test images", script="mnist_inpaint.py")
    rc, _, err = cli("--ckpt", tmp_path / "none.pt", "--out", tmp_path / "o5", module=inp)
    assert_clean_error(rc, err, "none.pt: missing", script="mnist_inpaint.py")
    rc, _, err = cli("--ckpt", ckpt, "--data-dir", DATA, "--out", tmp_path / "file" / "out", module=inp)
    assert_clean_error(rc, err, "cannot write to --out", script="mnist_inpaint.py")


def bad_file(folder, kind, checkpoint):
    """A file in `folder` that is not a checkpoint of mnist_ncsn.py: text, empty, `checkpoint` cut short, a model of
    toy_ncsn.py (its form: the EMA's state dict, the σ's, the run's flags), or one that is missing."""
    path = folder / f"{kind}.pt"
    if kind == "toy":
        sigmas, args = toy.get_sigmas(3.0, 0.01, 10), vars(toy.parse_args(["--dist", "moons", "--sigma-1", "3"]))
        torch.save({"model": toy.ScoreNet(16).state_dict(), "sigmas": sigmas, "args": args}, path)
    elif kind != "missing":
        half = checkpoint.read_bytes()[:checkpoint.stat().st_size // 2]
        path.write_bytes({"text": b"# notes\n", "empty": b"", "truncated": half}[kind])
    return path


def listing(folder):
    """Every path under folder, for a before and after."""
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("kind, what", [("text", "not an mnist_ncsn.py checkpoint"), ("empty", "empty"),
                                        ("truncated", "truncated"), ("missing", "missing"),
                                        ("toy", "a toy_ncsn.py model, not an mnist_ncsn.py checkpoint")])
def test_cli_a_file_that_is_no_checkpoint_fails_in_one_line_and_leaves_nothing(one_epoch, tmp_path, kind, what):
    path = bad_file(tmp_path, kind, one_epoch[0] / "checkpoint.pt")
    before = listing(tmp_path)
    for module, flags in [(m, ["--sample-only", *TINY]), (inp, []), (lik, [])]:
        rc, _, err = cli(*flags, "--ckpt", path, "--data-dir", DATA, "--out", tmp_path / "out", "--device", "cpu",
                         module=module)
        assert rc == 1 and err == f"{module.__name__}.py: error: {path}: {what}; run `python mnist_ncsn.py`\n", err
    assert listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "toy", "missing"])
def test_cli_bad_data_fails_in_one_line_and_leaves_nothing(one_epoch, tmp_path, kind):
    """--data-dir a file or a new folder (no network: nothing to fetch), or an MNIST file in it that is no IDX file."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    os.chmod(data, 0o755)
    (data / "train-images-idx3-ubyte.gz").unlink()
    path = bad_file(tmp_path, kind, one_epoch[0] / "checkpoint.pt")
    if kind != "missing":
        shutil.copy(path, data / "train-images-idx3-ubyte.gz")
    before = listing(tmp_path)
    for data_dir, words in [(path if kind != "missing" else tmp_path / "new" / "mnist", "could not download"),
                            (data, "train-images-idx3-ubyte.gz")]:
        rc, _, err = cli(*TINY, "--data-dir", data_dir, "--mirror", DEAD, "--out", tmp_path / "out")
        assert_clean_error(rc, err, str(data_dir), words)
        assert len(err.splitlines()) == 1, err
    assert listing(tmp_path) == before


def test_cli_nan_loss_keeps_last_good_checkpoint(one_epoch, tmp_path):
    first, _ = one_epoch
    out = tmp_path / "nan"
    out.mkdir()
    shutil.copy(first / "checkpoint.pt", out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    # A fresh run into the same folder whose first epoch diverges must not overwrite it.
    rc, _, err = cli(*TINY, "--data-dir", DATA, "--epochs", 1, "--lr", "1e30", "--out", out,
                     cwd=tmp_path)
    assert_clean_error(rc, err, "loss is nan in epoch 1", "keeps the last good epoch")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not (out / "samples.npy").exists()


# ----------------------------------------------------------------------------------- likelihood
class FlatPrior:
    """A distribution over flat vectors, read on images (n, 1, H, W): log_prob(x) per image."""

    def __init__(self, dist):
        self.dist = dist

    def log_prob(self, x):
        """The log-density of each flattened image."""
        return self.dist.log_prob(x.flatten(1))


def test_log_likelihood_of_a_gaussian_in_256_dimensions_is_its_closed_form():
    """Isotropic: the Jacobian of the score is diagonal, so every Rademacher probe gives the exact trace."""
    torch.manual_seed(0)
    mu, tau2 = 0.3, 0.04
    x = mu + math.sqrt(tau2) * torch.randn(500, 1, 16, 16)

    def normal(var):
        return torch.distributions.Independent(torch.distributions.Normal(
            torch.full((1, 16, 16), mu), math.sqrt(var) * torch.ones(1, 16, 16)), 3)

    exact = normal(tau2 + 1e-4).log_prob(x)  # 48.5 nats an image on average
    errors = [(lik.log_likelihood(image_gaussian_score(mu, tau2), x, m.get_sigmas(16.0, 0.01, n),
                                  normal(tau2 + 256), probes=1) - exact).abs() for n in [100, 200]]
    # Heun's error, the same sign for every image: measured 0.86 and 0.21 nats (0.001 bits/dim at 200
    # σ's), 4.0 times smaller for twice the σ's, as a second-order method's should be.
    assert errors[1].max() < 0.3 and 3 < errors[0].mean() / errors[1].mean() < 5, errors


def test_a_point_mass_blurred_by_sigma_L_scores_the_floor_at_its_centre():
    """p = δ_μ: p_σ = N(μ, σ²I), whose top, at μ, no density blurred by N(0, σ_L²) can exceed."""
    mu, x, sigmas = 0.3, torch.full((2, 1, 28, 28), 0.3), m.get_sigmas(16.0, 0.01, 200)
    prior = FlatPrior(torch.distributions.Independent(torch.distributions.Normal(torch.full((784,), mu), 16.0), 1))
    log_p = lik.log_likelihood(lambda x, s: -(x - mu) / s[:, None, None, None] ** 2, x, sigmas, prior)
    bits = -log_p / (784 * math.log(2)) + 8
    assert lik.blur_floor(0.01) == pytest.approx(2.682, abs=5e-4)  # 8 - ½ log₂ 1591.5
    assert bits.tolist() == pytest.approx([lik.blur_floor(0.01)] * 2, abs=0.005)  # Heun: -0.0024 (100 σ's: -0.0099)


def test_log_likelihood_of_a_correlated_gaussian_within_hutchinsons_error():
    """A non-diagonal Jacobian: one Rademacher probe per image is unbiased, with a spread of its own."""
    torch.manual_seed(0)
    d, mu, sigmas = 64, 0.3, m.get_sigmas(16.0, 0.01, 100)
    a = torch.randn(d, d) / math.sqrt(d)
    cov = 0.04 * (a @ a.T + 0.1 * torch.eye(d))
    lam, q = torch.linalg.eigh(cov)

    def score(x, s):
        """-(Σ + σ²I)^-1 (x - μ), one σ per image."""
        y = (x.flatten(1) - mu) @ q / (lam + s[:, None] ** 2)
        return -(y @ q.T).reshape(x.shape)

    def gaussian(var_extra):
        return FlatPrior(torch.distributions.MultivariateNormal(torch.full((d,), mu), cov + var_extra * torch.eye(d)))

    x = (mu + torch.randn(400, d) @ torch.linalg.cholesky(cov).T).reshape(400, 1, 8, 8)
    error = lik.log_likelihood(score, x, sigmas, gaussian(256), probes=1) - gaussian(1e-4).log_prob(x)
    four = lik.log_likelihood(score, x, sigmas, gaussian(256), probes=4) - gaussian(1e-4).log_prob(x)
    # Measured in 64 dimensions on 100 σ's: mean errors 0.53 ± 0.29 (one probe) and 0.20 ± 0.15 nats (four), Heun's
    # part under 0.3; each image's error spreads by 5.7 and 3.0 nats: Hutchinson's, 1/√probes.
    for e in [error, four]:
        assert abs(e.mean()) < 3 * e.std() / math.sqrt(len(e)) + 0.3, e.mean()
    assert 1.6 < error.std() / four.std() < 2.4


def test_hutchinson_divergence_of_a_unet_is_its_exact_trace_on_average():
    torch.manual_seed(0)
    net, x, sigma = m.UNet(8), m.load_mnist(DATA)[0][:1], 0.5
    basis = math.sqrt(784) * torch.eye(784).reshape(784, 1, 1, 28, 28).expand(784, 1, 1, 28, 28)
    s, exact = lik.score_and_divergence(net, x, sigma, basis)  # √D e_i: vᵀJv averages to tr J exactly
    assert torch.allclose(s, net(x, torch.full((1,), sigma)))
    probes = torch.randint(0, 2, (100, 1, 1, 28, 28)).float() * 2 - 1
    one = torch.stack([lik.score_and_divergence(net, x, sigma, v[None])[1] for v in probes[:30]])
    _, mean = lik.score_and_divergence(net, x, sigma, probes)
    se = one.std(0) / math.sqrt(100)  # the spread of one probe's estimate, over 100
    assert ((mean - exact).abs() < 4 * se).all(), (mean, exact, se)
    assert (one.std(0) > 0.01 * exact.abs()).all()  # a real estimate, not the trace in disguise


def test_cli_likelihood(one_epoch, tmp_path, monkeypatch):
    first, _ = one_epoch
    rc, stdout, err = cli("--ckpt", first / "checkpoint.pt", "--data-dir", DATA, "--out", tmp_path,
                          "--n-likelihood", 20, "--N", 5, "--device", "cpu", module=lik)
    assert rc == 0, err
    line = next(ln for ln in stdout.splitlines() if ln.startswith("bits/dim = "))
    assert line.endswith("s); a density blurred by N(0, σ_L²) scores at least 2.68")
    assert "over 20 test digits (probability-flow ODE, 5 σ's, 1 probe(s) a digit" in line
    bits = np.load(tmp_path / "likelihood.npz")["bits"]
    mean, se = map(float, line.split()[2:5:2])
    assert bits.shape == (20,) and mean == pytest.approx(bits.mean(), abs=1e-3)
    assert se == pytest.approx(bits.std(ddof=1) / math.sqrt(20), abs=1e-3)
    # One epoch on 32 images: far worse than the 1.7 bits/dim of per-pixel histograms; 8 is 256 levels.
    assert 1.7 < mean < 30
    assert (tmp_path / "likelihood.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # PROBES, the probes per digit, reach the estimate: two give another number, and say so.
    monkeypatch.setattr(lik, "PROBES", 2)
    rc, stdout, err = cli("--ckpt", first / "checkpoint.pt", "--data-dir", DATA, "--out", tmp_path / "two",
                          "--n-likelihood", 20, "--N", 5, "--device", "cpu", module=lik)
    assert rc == 0, err
    assert "5 σ's, 2 probe(s) a digit" in stdout
    assert not np.array_equal(np.load(tmp_path / "two" / "likelihood.npz")["bits"], bits)
    for flags, message in [(["--n-likelihood", 301], "--n-likelihood 301, but"),
                           (["--ckpt", tmp_path / "none.pt"], "none.pt: missing")]:
        rc, _, err = cli("--ckpt", first / "checkpoint.pt", "--data-dir", DATA, "--out", tmp_path, *flags, module=lik)
        assert_clean_error(rc, err, message, script="mnist_likelihood.py")
    for flags, message in [(["--N", 1], "argument --N: must be at least 2, not 1"),
                           (["--probes", 2], "unrecognized arguments: --probes 2")]:  # PROBES, a constant now
        rc, _, err = cli(*flags, module=lik)
        assert rc == 2 and err.strip().splitlines()[-1].endswith(message)
