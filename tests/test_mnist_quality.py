"""Tests for benchmarks/mnist_quality.py: the Fréchet distance against identities that hold
exactly for the sample means and covariances, and the inpainting report on a made-up case."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mnist_quality as q  # noqa: E402


def test_frechet_distance_closed_forms():
    torch.manual_seed(0)
    a = torch.randn(400, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    a = a - a.mean(0)
    c = torch.arange(6.0, dtype=torch.float64)
    cov_trace = torch.cov(a.T.double()).trace().item()
    assert abs(q.frechet_distance(a, a)) < 1e-8
    # Same covariance, means apart by c: ‖c‖² = 55.
    assert abs(q.frechet_distance(a, a + c) - 55) < 1e-8
    # Covariances C and 4C: tr(C + 4C − 2·2C) = tr C.
    assert abs(q.frechet_distance(a, 2 * a) - cov_trace) < 1e-8 * cov_trace
    # Symmetric, and not fooled by a permutation of the rows.
    b = torch.randn(300, 6, dtype=torch.float64)
    assert abs(q.frechet_distance(a, b) - q.frechet_distance(b, a)) < 1e-8
    assert abs(q.frechet_distance(a, b) - q.frechet_distance(a[torch.randperm(400)], b)) < 1e-8


def test_inpaint_report(capsys):
    class Net(torch.nn.Module):
        """A fake classifier: the class is the number of bright pixels in the top row, mod 10."""

        def forward(self, x):
            """One-hot logits (scaled) from the count."""
            return 50.0 * torch.nn.functional.one_hot((x[:, 0, 0] > 0.5).sum(1) % 10, 10).float()

    originals = np.zeros((2, 28, 28), np.float32)
    originals[:, 0, :3] = 1  # both digits are "3" in full
    mask = np.ones((28, 28), bool)
    mask[:, 2:] = False  # hides the third bright pixel: the occluded input reads "2"
    completions = np.repeat(originals[:, None], 3, 1)
    completions[1, 0, 0, 2] = 0  # one wrong completion of the second digit
    q.report_inpaint(Net(), {"originals": originals, "labels": np.array([3, 3]), "mask": mask,
                             "completions": completions}, torch.device("cpu"))
    out = capsys.readouterr().out
    assert "completions 0.833 | occluded input (zeros) 0.000 | original 1.000" in out
    assert "more than one label: 0.500 of the inputs (mean 1.50 labels per input)" in out
