"""Tests for mnist_ncsn.py on the CPU with tiny settings: data, download, U-Net, DSM loss,
annealed Langevin dynamics, inpainting, checkpoints and the command line.

They bring their own data: tests/data/mnist/ holds the first 500 training and 300 test images of
MNIST (see tests/data/README.md), so they run on a fresh clone with no network."""
import hashlib
import functools
import gzip
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import mnist_ncsn as m

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "mnist"  # 500 training and 300 test images, committed
SCRIPT = ROOT / "mnist_ncsn.py"
DEAD = "http://127.0.0.1:1/"  # nothing listens on port 1: connection refused at once
TINY = ["--width", "8", "--batch-size", "16", "--train-size", "32", "--T", "1",
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


def cli(*args, cwd):
    """Run the script; return (returncode, stdout, stderr)."""
    r = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def assert_clean_error(rc, err, *words):
    """Non-zero exit, no traceback, last stderr line is the script's one-line error."""
    assert rc != 0
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mnist_ncsn.py: error:"), err
    for w in words:
        assert w in last, (w, last)


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
    assert list((tmp_path / "b").iterdir()) == []
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
    model = m.UNet(8)
    x = torch.rand(3, 1, 28, 28)
    big, small = model(x, torch.full((3,), 1.0)), model(x, torch.full((3,), 0.01))
    assert big.shape == small.shape == (3, 1, 28, 28)
    # Output is (network output) / sigma; the network output itself must depend on sigma too.
    rel = (big - small * 0.01).norm() / big.norm()
    assert rel > 0.05
    sigma = torch.tensor([1.0, 0.1, 0.01])
    mixed = model(x, sigma)
    for i in range(3):
        alone = model(x[i:i + 1], sigma[i:i + 1])[0]
        assert torch.allclose(mixed[i] * sigma[i], alone * sigma[i], atol=1e-5)


# ----------------------------------------------------------------------------------------- loss
def test_dsm_loss_closed_forms():
    torch.manual_seed(0)
    sigmas = m.get_sigmas(1.0, 0.01, 10)
    assert torch.allclose(sigmas[[0, -1]], torch.tensor([1.0, 0.01]))
    assert torch.allclose(sigmas[1:] / sigmas[:-1], torch.full((9,), 0.01 ** (1 / 9)))
    zeros = torch.zeros(2000, 1, 28, 28)
    # Data at a single point 0: the exact score -x/sigma^2 gives loss 0.
    assert m.dsm_loss(lambda x, s: -x / s[:, None, None, None] ** 2, zeros, sigmas) < 1e-8
    # A zero score gives 1/2 E||z||^2 = d/2 = 392 (standard error 0.44 here).
    assert abs(m.dsm_loss(lambda x, s: torch.zeros_like(x), zeros, sigmas) - 392) < 2.5
    # Gaussian data N(0, tau^2), exact score -x/(tau^2 + sigma^2): d/2 E[tau^2/(tau^2+sigma^2)].
    tau = 0.3
    x = tau * torch.randn(100000, 1, 4, 4)  # standard error of the loss: 0.013
    loss = m.dsm_loss(lambda x, s: -x / (tau ** 2 + s[:, None, None, None] ** 2), x, sigmas)
    expected = 16 / 2 * (tau ** 2 / (tau ** 2 + sigmas ** 2)).mean()
    assert abs(loss - expected) < 0.05, (loss, expected)


def test_dsm_loss_falls_on_small_subset():
    torch.manual_seed(0)
    data = m.load_mnist(DATA)[0][:256]
    sigmas = m.get_sigmas(1.0, 0.01, 10)
    model = m.UNet(8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def held_out():
        """The loss on a fixed batch, noise and sigmas, leaving the global RNG as it was."""
        state = torch.random.get_rng_state()
        torch.manual_seed(123)  # the same noise and sigmas before and after training
        with torch.no_grad():
            loss = m.dsm_loss(model, data[:128], sigmas).item()
        torch.random.set_rng_state(state)
        return loss

    before = held_out()
    for _ in range(40):
        loss = m.dsm_loss(model, data[torch.randint(256, (32,))], sigmas)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert after < 0.5 * before, (before, after)  # measured: 459 -> 130


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
    assert len(trace) == 3 and all(t.shape == x0.shape for t in trace)
    assert torch.equal(trace[-1], x)  # the last level's end state, before denoising
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
    x, trace = m.anneal_langevin_inpaint(score, torch.rand(n, 1, 2, 2),
                                         y.reshape(1, 1, 2, 2).expand(n, 1, 2, 2), mask,
                                         m.get_sigmas(1.0, 0.03, 5), 4.5e-4, 400)
    x = x.reshape(n, 4)
    assert len(trace) == 5 and all(t.shape == (n, 1, 2, 2) for t in trace)
    assert torch.equal(x[:, K], y[K].expand(n, 2))  # known pixels: exactly the input
    # Measured: mean off by (-0.005, 0.007) (standard errors 0.0025, 0.0036), covariance by 3.5%
    # of its largest entry (σ_L² = 9e-4 against conditional variances 0.06 and 0.13, plus the
    # Langevin step's bias). Algorithm 1 without the reset would give the mean (0.6, 0.4).
    assert (x[:, H].mean(0) - cond_mean).abs().max() < 0.015, (x[:, H].mean(0), cond_mean)
    err = (torch.cov(x[:, H].T) - cond_cov).abs().max() / cond_cov.abs().max()
    assert err < 0.08, (torch.cov(x[:, H].T), cond_cov)


def test_masks_and_progress_lines(capsys):
    masks = {name: m.make_mask(name)[0, 0] for name in m.MASKS}
    assert all(mk.shape == (28, 28) and mk.dtype == torch.bool for mk in masks.values())
    assert masks["right"][:, :14].all() and not masks["right"][:, 14:].any()
    assert masks["bottom"][:14].all() and not masks["bottom"][14:].any()
    assert torch.equal(masks["left"], masks["right"].flip(1))
    assert torch.equal(masks["top"], masks["bottom"].flip(0))
    assert (~masks["center"]).sum() == 14 * 14 and not masks["center"][14, 14]
    # The sampler's progress wrapper: same outputs, one line per call when every=0.
    score = m.with_progress(lambda x, s: -x, n_levels=2, T=3, every=0)
    x, _ = m.anneal_langevin(score, torch.ones(4, 1, 2, 2), torch.tensor([1.0, 0.5]), 0.1, 3,
                             denoise=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # after calls 1..5 of 6: the last call prints nothing
    assert [ln.split(" (")[0] for ln in lines] == ["  level 1/2"] * 3 + ["  level 2/2"] * 2
    assert lines[0].startswith("  level 1/2 (σ = 1) | ") and "(σ = 0.5)" in lines[-1]
    assert all("img/s" in ln and ln.endswith("s left") for ln in lines)


# ----------------------------------------------------------------------------------- checkpoint
def test_checkpoint_round_trip_and_validation(tmp_path):
    torch.manual_seed(0)
    sigmas = m.get_sigmas(1.0, 0.01, 10)
    model, ema = m.UNet(8), m.UNet(8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = m.dsm_loss(model, torch.rand(4, 1, 28, 28), sigmas)
    loss.backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    m.save_checkpoint(path, model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                      epoch=3, sigmas=sigmas, losses=[2.0, 1.0], args={"width": 8})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # the temp file was renamed
    torch.manual_seed(1)
    model2, ema2 = m.UNet(8), m.UNet(8)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    ckpt = m.load_checkpoint(path, model2, ema2, sigmas, opt2)
    assert ckpt["epoch"] == 3 and ckpt["losses"] == [2.0, 1.0]
    x, s = torch.rand(2, 1, 28, 28), torch.tensor([0.5, 0.05])
    assert torch.equal(model(x, s), model2(x, s)) and torch.equal(ema(x, s), ema2(x, s))
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"],
                       opt2.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(m.UserError, match="made with --width 8, this run uses --width 16"):
        m.load_checkpoint(path, m.UNet(16), m.UNet(16), sigmas)
    with pytest.raises(m.UserError, match="trained with σ's"):
        m.load_checkpoint(path, m.UNet(8), m.UNet(8), m.get_sigmas(1.0, 0.01, 5))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(m.UserError, match="not a readable checkpoint"):
        m.load_checkpoint(tmp_path / "junk.pt", m.UNet(8), m.UNet(8), sigmas)


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A tiny one-epoch run: its folder and its stdout."""
    out = tmp_path_factory.mktemp("one_epoch")
    rc, stdout, err = cli(*TINY, "--data-dir", DATA, "--epochs", 1, "--out", out, cwd=out)
    assert rc == 0, err
    return out, stdout


def test_cli_writes_every_output(one_epoch):
    out, stdout = one_epoch
    assert stdout.splitlines()[0].startswith("--preset cpu on the CPU (width 8")  # said at once
    assert "UNet(width=8): 26,025 parameters" in stdout
    samples = np.load(out / "samples.npy")
    assert samples.shape == (4, 28, 28) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1 and samples.std() > 0
    for name in ["samples.png", "langevin_levels.png", "loss.png"]:
        blob = (out / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["losses"]) == 1 and ckpt["args"]["width"] == 8


def test_cli_resume_download_and_sample_only(one_epoch, tmp_path, mirror):
    first, _ = one_epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(first, resumed)
    rc, stdout, err = cli(*TINY, "--data-dir", DATA, "--epochs", 2, "--out", resumed, "--resume",
                          cwd=tmp_path)
    assert rc == 0, err
    assert "loaded" in stdout and "(epoch 1)" in stdout and "epochs 2..2" in stdout
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
                          tmp_path / "sampled", *TINY, cwd=tmp_path)
    assert rc == 0, err
    assert np.allclose(np.load(tmp_path / "sampled" / "samples.npy"),
                       np.load(resumed / "samples.npy"), atol=1e-6)


def test_cli_inpaint(one_epoch, tmp_path):
    first, _ = one_epoch
    rc, stdout, err = cli("--inpaint", "bottom", "--ckpt", first / "checkpoint.pt", "--data-dir",
                          DATA, "--n-inpaint", 3, "--n-completions", 2, "--out", tmp_path,
                          "--device", "cpu", cwd=tmp_path)
    assert rc == 0, err
    assert "inpainted 3 test digits x 2 (bottom hidden)" in stdout
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
    for argv, message in [(["--epochs", "0"], "--epochs must be at least 1"),
                          (["--inpaint", "diagonal"], "argument --inpaint: invalid choice"),
                          (["--n-inpaint", "0"], "--n-inpaint must be at least 1"),
                          (["--n-completions", "-1"], "--n-completions must be at least 1"),
                          (["--inpaint", "right", "--resume"], "does not go with --resume"),
                          (["--n-samples", "-3"], "--n-samples must be at least 1"),
                          (["--sigma-L", "2"], "--sigma-1 must be finite and larger"),
                          (["--eps", "nan"], "--eps must be a positive number"),
                          (["--width", "12"], "--width must be a multiple of 8")]:
        with pytest.raises(SystemExit) as e:
            m.parse_args(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
    rc, _, err = cli("--train-size", "0", cwd=tmp_path)
    assert rc == 2 and err.strip().splitlines()[-1].endswith("--train-size must be at least 1")
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
    # Inpainting: more digits than the test set holds; a checkpoint that is not there.
    rc, _, err = cli("--inpaint", "right", "--ckpt", ckpt, "--data-dir", DATA, "--n-inpaint",
                     301, "--out", tmp_path / "o4", cwd=tmp_path)
    assert_clean_error(rc, err, "--n-inpaint 301", "holds only 300 test images")
    rc, _, err = cli("--inpaint", "top", "--ckpt", tmp_path / "none.pt", "--out", tmp_path / "o5",
                     cwd=tmp_path)
    assert_clean_error(rc, err, "none.pt: not a readable checkpoint")


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
