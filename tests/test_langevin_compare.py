"""Tests for langevin_compare.py: exact scores, both samplers, a short DSM training run, the CLI."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from langevin_compare import Mixture, anneal_langevin, langevin, mode_share, toy_mixture, train

SCRIPT = Path(__file__).resolve().parents[1] / "langevin_compare.py"


def default_sigmas(sigma_1=20.0, sigma_L=0.1, L=10):
    """The script's default geometric schedule."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


def start_points(n, seed=0):
    """n points uniform on [-8, 8]^2, as in the script."""
    torch.manual_seed(seed)
    return (2 * torch.rand(n, 2) - 1) * 8


@pytest.mark.parametrize("sigma", [0.0, 0.5, 5.0])
def test_exact_score_matches_autograd_of_log_density(sigma):
    mix = Mixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=torch.float64),
                  torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.manual_seed(0)
    near = 3 * torch.randn(200, 2, dtype=torch.float64)
    far = 50 * torch.nn.functional.normalize(torch.randn(200, 2, dtype=torch.float64), dim=1)
    x = torch.cat([near, far]).requires_grad_(True)
    grad, = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
    s = mix.score(x.detach(), torch.full((len(x),), sigma, dtype=torch.float64))
    assert torch.isfinite(s).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(s, grad, rtol=1e-9, atol=1e-9)


def test_far_points_float32_finite_and_pointing_home():
    mix = toy_mixture(0.8, 5.0)
    x = torch.tensor([[50.0, 50.0], [-50.0, -50.0], [50.0, -50.0], [-50.0, 0.0]])
    s = mix.score(x, torch.zeros(4))
    assert torch.isfinite(s).all() and torch.isfinite(mix.log_prob(x)).all()
    # Far out, the nearest mode's responsibility is 1: score = mu_nearest - x.
    torch.testing.assert_close(s[:2], torch.tensor([[-45.0, -45.0], [45.0, 45.0]]))


def test_perturbed_score_at_sigma_zero_is_the_data_score():
    mix = toy_mixture(0.8, 5.0)
    torch.manual_seed(1)
    x = 4 * torch.randn(500, 2, dtype=torch.float64)
    means, weights = mix.means.double(), mix.weights.double()
    # Data score written out directly: sum_k w_k N_k (mu_k - x) / sum_k w_k N_k (unit variances).
    dens = weights * torch.exp(-0.5 * ((x[:, None, :] - means) ** 2).sum(-1))
    data_score = (dens[:, :, None] * (means - x[:, None, :])).sum(1) / dens.sum(1, keepdim=True)
    torch.testing.assert_close(mix.score(x.float(), torch.zeros(500)), data_score.float(), rtol=1e-4, atol=1e-4)


def test_exact_scores_ald_recovers_weights_plain_langevin_does_not():
    mix, x0 = toy_mixture(0.8, 5.0), start_points(1280)
    x_ald, _ = anneal_langevin(mix.score, x0, default_sigmas(), eps=0.005, T=100, denoise=False)
    x_plain = langevin(mix.score, x0, 0.0, alpha=0.1, T=1000)
    assert abs(mode_share(x_ald)[0] - 0.8) <= 0.03
    assert abs(mode_share(x_plain)[0] - 0.8) > 0.15
    # ALD's samples match the data: mode means (+-5, +-5), unit variance per coordinate around them.
    centre = torch.where(x_ald.sum(1, keepdim=True) > 0, 5.0, -5.0)
    for side in [centre[:, 0] > 0, centre[:, 0] < 0]:
        torch.testing.assert_close(x_ald[side].mean(0), centre[side][0].expand(2), atol=0.2, rtol=0)
    torch.testing.assert_close((x_ald - centre).pow(2).mean(0), torch.ones(2), atol=0.12, rtol=0)


def test_both_samplers_on_a_single_gaussian():
    mu, var = torch.tensor([1.0, -2.0]), 2.25
    gauss = Mixture(mu[None], torch.tensor([1.0]), var)
    x0 = start_points(4000, seed=2)
    for x in [langevin(gauss.score, x0, 0.0, alpha=0.1, T=1000),
              anneal_langevin(gauss.score, x0, default_sigmas(), eps=0.005, T=100, denoise=False)[0]]:
        torch.testing.assert_close(x.mean(0), mu, atol=0.1, rtol=0)
        torch.testing.assert_close(x.var(0), torch.full((2,), var), atol=0.2, rtol=0)


def test_short_dsm_training_gives_ald_share_near_true_weight():
    torch.manual_seed(0)
    mix, sigmas = toy_mixture(0.8, 5.0), default_sigmas()
    net = train(mix, sigmas, steps=2000)
    x_ald, _ = anneal_langevin(net, start_points(1280), sigmas, eps=0.005, T=100, denoise=False)
    assert abs(mode_share(x_ald)[0] - 0.8) <= 0.05


def run_cli(*args, cwd):
    """Run the script; returns the completed process."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("args", [["--weight", "1.5"], ["--sigma-L", "30"], ["--ald-eps", "1"],
                                  ["--exact-only", "--out", "setup.cfg/out"]])  # --out under a file
def test_cli_bad_input_one_line_error(args, tmp_path):
    (tmp_path / "setup.cfg").write_text("a file, not a folder")
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "error:" in r.stderr.strip().splitlines()[-1]


def test_cli_exact_only_seeded_and_reproducible(tmp_path):
    args = ["--exact-only", "--n-samples", "400", "--T", "200", "--long-steps", "300", "--seed", "3", "--out", "figs"]
    first, second = run_cli(*args, cwd=tmp_path), run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    line = next(l for l in first.stdout.splitlines() if l.startswith("exact:"))
    assert line == next(l for l in second.stdout.splitlines() if l.startswith("exact:"))
    shares = {part.split()[0]: float(part.split()[1].split("±")[0]) for part in line[6:].split("|")}
    assert abs(shares["iid"] - 0.8) < 0.07 and abs(shares["ALD"] - 0.8) < 0.07
    assert abs(shares["Langevin"] - 0.8) > 0.15
    for name in ["langevin_samples.png", "langevin_share.png", "langevin_scores.png"]:
        assert (tmp_path / "figs" / name).stat().st_size > 10_000
