"""Tests for langevin_compare.py: eq. (1) and its link to DSM, the manifold experiment, exact scores, both samplers,
a short DSM training run, the CLI."""
import argparse
import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import langevin_compare
from langevin_compare import (Mixture, ScoreNet, anneal_langevin, dsm_loss, get_sigmas, langevin, main, mode_share,
                              parse_args, ring, score_matching_loss, share_curve, train, train_score_matching)

SCRIPT = Path(__file__).resolve().parents[1] / "langevin_compare.py"


def default_sigmas(sigma_1=20.0, sigma_L=0.1, L=10):
    """The script's default geometric schedule."""
    return torch.exp(torch.linspace(math.log(sigma_1), math.log(sigma_L), L))


def start_points(n, seed=0):
    """n points uniform on [-8, 8]^2, as in the script."""
    torch.manual_seed(seed)
    return (2 * torch.rand(n, 2) - 1) * 8


def toy_mixture(weight, dist):
    """The script's target: (1-w) N((-d,-d), I) + w N((d,d), I)."""
    return Mixture(torch.tensor([[-dist, -dist], [dist, dist]]), torch.tensor([1 - weight, weight]))


MU = torch.tensor([1.0, -2.0], dtype=torch.float64)


def gaussian(n, s, seed=0):
    """n samples of N(MU, s² I) in float64."""
    torch.manual_seed(seed)
    return MU + s * torch.randn(n, 2, dtype=torch.float64)


def linear_score(a, m, s):
    """s(x) = a (x - m) / s²: the exact score of N(m, s² I) at a = -1."""
    return lambda y: a * (y - m) / s**2


def ring_score(x, sigma, radius=2.0):
    """Exact score of the ring blurred by N(0, σ² I): p_σ(x) ∝ exp(-(r² + R²)/2σ²) I₀(R r/σ²), r = ‖x‖."""
    r = x.norm(dim=1, keepdim=True)
    z = radius * r / sigma**2
    return (radius * torch.special.i1e(z) / torch.special.i0e(z) * x / r - x) / sigma**2


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_score_matching_loss_of_a_gaussian_is_minus_one_over_variance(s):
    x, score = gaussian(100_000, s), linear_score(-1.0, MU, s)
    loss = score_matching_loss(score, x).item()
    # tr ∇s = -2/s² at every point, exactly: the loss minus ½ mean ‖s‖² is the trace alone.
    assert abs(loss - 0.5 * (score(x) ** 2).sum(1).mean().item() + 2 / s**2) < 1e-12 / s**2
    # -2/s² + ½ E‖x - μ‖²/s⁴ = -1/s². Over 20 seeds at n = 1e5 the relative error was at most 0.78% (std 0.32%).
    assert abs(loss * s**2 + 1) < 0.015


def test_score_matching_loss_is_smallest_with_zero_gradient_at_the_exact_score():
    s, x = 1.0, gaussian(100_000, 1.0, seed=1)

    def closed_form(a, m):
        """E[tr ∇s + ½ ‖s‖²] for s = a(x - m)/s² on N(MU, s² I): 2a/s² + a² (2s² + ‖MU - m‖²)/(2s⁴)."""
        return 2 * a / s**2 + a**2 * (2 * s**2 + ((MU - m) ** 2).sum().item()) / (2 * s**4)

    shift = torch.tensor([0.5, 0.0], dtype=torch.float64)
    params = [(-1.0, MU), (-0.7, MU), (-1.3, MU), (-1.0, MU + shift), (-1.0, MU - shift.flip(0))]
    losses = [score_matching_loss(linear_score(a, m, s), x).item() for a, m in params]
    # Over 20 seeds at n = 1e5 every loss was within 0.014 of its closed form, and the smallest gap to the
    # optimum 0.085 (closed form: 0.09 for a, 0.125 for m); the same x serves every candidate.
    for (a, m), loss in zip(params, losses):
        assert abs(loss - closed_form(a, m)) < 0.03
    assert abs(losses[0] + 1 / s**2) < 0.03 and min(losses[1:]) > losses[0] + 0.05

    def gradient(a, m):
        """d loss / d(a, m) by autograd through score_matching_loss."""
        a, m = torch.tensor(a, dtype=torch.float64, requires_grad=True), m.clone().requires_grad_(True)
        return torch.autograd.grad(score_matching_loss(linear_score(a, m, s), x), (a, m))

    # At the optimum: |gradient| at most 0.016 over 20 seeds (MC std 0.006 for a, 0.003 for m).
    g_a, g_m = gradient(-1.0, MU)
    assert abs(g_a.item()) < 0.03 and g_m.abs().max().item() < 0.03
    # Away from it, the closed form: d/da = 2/s² + a (2s² + ‖MU - m‖²)/s⁴ = -0.925, d/dm = -a² (MU - m)/s⁴ =
    # (0.845, 0); over 20 seeds within 0.023 (a) and 0.013 (m).
    g_a, g_m = gradient(-1.3, MU + shift)
    assert abs(g_a.item() - (2 - 1.3 * 2.25)) < 0.05 and abs(g_a.item()) > 0.5
    torch.testing.assert_close(g_m, 1.69 * shift, atol=0.04, rtol=0)


@pytest.mark.parametrize("case", ["exact score of the perturbed data", "shifted linear score", "untrained ScoreNet"])
def test_dsm_equals_sigma_squared_score_matching_plus_one(case):
    # Vincent 2011; Stein's lemma E[z·s(x + σz)]/σ = E tr ∇s(x + σz) gives, at one fixed σ in 2D,
    # E ½‖σ s(x + σz) + z‖² = σ² E[tr ∇s + ½ ‖s‖²](x + σz) + d/2.
    s, sigma = 1.0, 0.5
    torch.manual_seed(5)
    score = {"exact score of the perturbed data": lambda y, t: -(y - MU) / (s**2 + sigma**2),
             "shifted linear score": lambda y, t: -0.6 * (y - MU - torch.tensor([0.5, -0.5], dtype=torch.float64)),
             "untrained ScoreNet": ScoreNet().double()}[case]
    x = gaussian(50_000, s, seed=6)
    dsm = dsm_loss(score, x, torch.tensor([sigma], dtype=torch.float64)).item()
    x_noisy = x + sigma * torch.randn_like(x)
    sm = score_matching_loss(lambda y: score(y, torch.full((len(y),), sigma, dtype=torch.float64)), x_noisy).item()
    # Over 10 seeds at n = 5e4 the two sides differed by at most 0.0034 for the linear scores and 0.0056 for
    # the ScoreNet (std 0.0037).
    assert abs(dsm - (sigma**2 * sm + 1)) < 0.015
    # Closed forms: DSM's minimum 1 - σ²/(s² + σ²) = 0.8 (measured 0.798-0.803), the shifted score's
    # 1 + σ² (-1.2 + 0.18 (2 (s² + σ²) + 0.5)) = 0.835 (0.833-0.838); the ScoreNet's 1.0-1.3 over 10 random starts.
    expected = {"exact score of the perturbed data": 0.8, "shifted linear score": 0.835}
    if case in expected:
        assert abs(dsm - expected[case]) < 0.012
    else:
        assert dsm > 0.9


def test_dsm_loss_draws_sigma_without_host_sync_in_the_input_dtype():
    # .item() / float() on a meta tensor raises: the loss must be tensor ops from the ladder to the result.
    sigmas = get_sigmas(20.0, 0.1, 10)
    loss = dsm_loss(ScoreNet().to("meta"), torch.zeros(8, 2, device="meta"), sigmas.to("meta"))
    assert loss.is_meta and loss.shape == ()
    loss = dsm_loss(ScoreNet().double(), torch.randn(8, 2, dtype=torch.float64), sigmas.double())
    assert loss.dtype == torch.float64 and torch.isfinite(loss)


@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_perturbed_ring_optimum_is_minus_one_over_two_sigma_squared(sigma):
    # The figure's dashed lines: at the exact score of the blurred ring, eq. (1) is -½ E‖s‖² ≈ -1/(2σ²).
    # Over 10 seeds at n = 1e5 it came within 0.55% (σ = 0.05) and 1.02% (σ = 0.2) of -1/(2σ²).
    torch.manual_seed(7)
    x = ring(100_000, sigma).double()
    loss = score_matching_loss(lambda y: ring_score(y, sigma), x).item()
    assert abs(loss * 2 * sigma**2 + 1) < 0.02


def test_score_matching_on_the_ring_falls_without_end_and_with_noise_settles():
    windows = {}
    for sigma in [0.0, 0.2]:
        torch.manual_seed(0)
        _, losses = train_score_matching(sigma, steps=400, batch=128)
        windows[sigma] = losses.reshape(4, 100).mean(1)
    # Over 8 seeds: on the ring each 100-step window after the first was 2.0-4.4x the one before, the last
    # -807 to -1372; at σ = 0.2 the last two windows were within 6.3% of -12.5 and 0.3 of each other.
    on_ring = windows[0.0]
    assert (on_ring[2:] < 1.5 * on_ring[1:-1]).all() and on_ring[-1] < -500
    noisy, optimum = windows[0.2], -1 / (2 * 0.2**2)
    assert (abs(noisy[2:] / optimum - 1) < 0.1).all() and abs(noisy[-1] - noisy[-2]) < 0.05 * abs(optimum)


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
    x_ald, trace = anneal_langevin(mix.score, x0, default_sigmas(), eps=0.005, T=100, denoise=False)
    # The trace starts with the start point, then one entry after each of the 10 levels.
    assert len(trace) == 11 and torch.equal(trace[0], x0) and torch.equal(trace[-1], x_ald)
    x_plain = langevin(mix.score, x0, 0.0, alpha=0.1, T=1000)
    torch.manual_seed(0)
    steps, shares, kept = share_curve(mix.score, x0, 0.0, 0.1, max_steps=1000, keep=1000, points=5)
    assert steps == [0, 1, 6, 32, 178, 1000] and shares[0] == mode_share(x0)[0] and abs(shares[-1] - 0.8) > 0.15
    assert mode_share(kept)[0] == shares[-1]
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
    model = ScoreNet()
    ema = copy.deepcopy(model).requires_grad_(False)
    args = argparse.Namespace(steps=1000, sigma_1=20.0, sigma_L=0.1, L=10)
    losses = train(model, ema, torch.optim.Adam(model.parameters(), lr=langevin_compare.LR), mix.sample(20_000), args)
    assert losses.shape == (1000,) and losses.device.type == "cpu" and losses[-100:].mean() < losses[:100].mean()
    x_ald, _ = anneal_langevin(ema, start_points(1280), sigmas, eps=0.005, T=100, denoise=False)
    # Over seeds 0-5 the EMA network's share was 0.775-0.806 after 1000 steps (0.763-0.823 after 2000).
    assert abs(mode_share(x_ald)[0] - 0.8) <= 0.05


def test_train_stops_on_a_nan_loss_with_a_user_error():
    model = ScoreNet()
    ema, args = copy.deepcopy(model).requires_grad_(False), argparse.Namespace(steps=3, sigma_1=20.0, sigma_L=0.1, L=10)
    with pytest.raises(langevin_compare.UserError, match="nan"):
        train(model, ema, torch.optim.Adam(model.parameters()), torch.full((10, 2), math.nan), args)


def run_cli(*args, cwd):
    """Run the script in a new process; returns the completed process."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


def run_main(argv, cwd, monkeypatch):
    """Run main(argv) in this process from `cwd` (cheaper than a new process); returns its exit code or message."""
    monkeypatch.chdir(cwd)
    try:
        main(argv)
    except SystemExit as exit_:
        return exit_.code
    return 0


def test_cli_bad_input_one_line_error_in_a_new_process(tmp_path):
    (tmp_path / "setup.cfg").write_text("a file, not a folder")
    r = run_cli("--exact-only", "--out", "setup.cfg/out", cwd=tmp_path)  # --out under a file
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "error:" in r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["--n-samples", "0"], ["--sigma-L", "30"], ["--eps", "1"], ["--plain-eps", "3"],
                                  ["--L", "1"], ["--exact-only", "--out", "setup.cfg/out"]])  # --out under a file
def test_cli_bad_input_one_line_error(args, tmp_path, monkeypatch, capsys):
    (tmp_path / "setup.cfg").write_text("a file, not a folder")
    code = run_main(args, tmp_path, monkeypatch)  # a string: what the interpreter prints on stderr; 2: argparse's
    last = code if isinstance(code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "\n" not in last and "error:" in last


@pytest.mark.parametrize("args", [["--manifold", "--manifold-sigmas", "0.05", "-0.1"],
                                  ["--manifold", "--manifold-sigmas", "a"], ["--manifold", "--manifold-sigmas", "inf"],
                                  ["--manifold", "--manifold-sigmas", "0"], ["--manifold", "--manifold-sigmas"]])
def test_manifold_flags_bad_values_one_line_error(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(args)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code != 0 and "error:" in last and "--manifold" in last


def test_cli_manifold_prints_its_table_and_writes_its_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(langevin_compare, "MANIFOLD_STEPS", 60)
    assert run_main(["--manifold", "--manifold-sigmas", "0.05", "0.2", "--out", "figs"], tmp_path, monkeypatch) == 0
    out = capsys.readouterr().out
    rows = {l.split()[2]: l.split()[3:] for l in out.splitlines() if l.startswith("σ = ") and "steps" not in l}
    assert list(rows) == ["0", "0.05", "0.2"]
    assert rows["0"][-2:] == ["none", "(-∞)"] and rows["0.05"][-1] == "-200.0" and rows["0.2"][-1] == "-12.5"
    # Loss at steps 4-6, 13-15, 28-30, 58-60 (seed 0): -0.4, -0.5, -0.8, -2.6 at σ = 0; -0.3 ... -2.1 at σ = 0.2.
    for sigma, values in rows.items():
        losses = [float(v) for v in values[:4]]
        assert losses[-1] < losses[0] - 1
    assert (tmp_path / "figs" / "langevin_manifold.png").stat().st_size > 20_000


def test_cli_exact_only_seeded_and_reproducible(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(langevin_compare, "LONG_STEPS", 300)  # plain Langevin steps in the share figure
    args = ["--exact-only", "--n-samples", "400", "--plain-T", "200", "--seed", "3", "--out", "figs"]
    lines = []
    for _ in range(2):
        assert run_main(args, tmp_path, monkeypatch) == 0
        lines.append(next(l for l in capsys.readouterr().out.splitlines() if l.startswith("exact:")))
    line = lines[0]
    assert line == lines[1]
    shares = {part.split()[0]: float(part.split()[1].split("±")[0]) for part in line[6:].split("|")}
    assert abs(shares["iid"] - 0.8) < 0.07 and abs(shares["ALD"] - 0.8) < 0.07
    assert abs(shares["Langevin"] - 0.8) > 0.15
    for name in ["langevin_samples.png", "langevin_share.png", "langevin_scores.png"]:
        assert (tmp_path / "figs" / name).stat().st_size > 10_000
