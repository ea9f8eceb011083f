"""Tests for benchmarks/mnist_quality.py and mnist_seeds.py: the pinned classifier on the fixture's
test digits and its one-line errors, the Fréchet distance against identities that hold exactly
for the sample means and covariances, the inpainting report on a made-up case, and the seeds
runner end to end with tiny settings."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import mnist_quality as q  # noqa: E402
import mnist_seeds  # noqa: E402
from mnist_ncsn import load_mnist  # noqa: E402

DATA = ROOT / "tests" / "data" / "mnist"  # 500 training and 300 test digits, committed


def error_of(main, argv, capsys):
    """Run a script's main in-process; return its exit code and stderr, which must be its
    one-line error (sys.exit with a message), never a traceback."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    message = e.value.code if isinstance(e.value.code, str) else err
    return (1 if isinstance(e.value.code, str) else e.value.code), message.strip()


def test_pinned_classifier_labels_fixture_digits():
    net = q.load_classifier(q.CLASSIFIER, "cpu")
    x, y = load_mnist(DATA, "test")
    right = (q.predict(net, x, "cpu").argmax(1) == y).sum().item()
    assert right >= 297  # measured: 298 of the 300 (0.993); 0.988 on the full 10,000 test images
    assert q.predict(net, x[:5], "cpu", features=True).shape == (5, 128)


def test_missing_or_corrupt_classifier_is_one_line_error(tmp_path, capsys):
    np.save(tmp_path / "samples.npy", np.zeros((10, 28, 28), np.float32))
    (tmp_path / "truncated.pt").write_bytes(q.CLASSIFIER.read_bytes()[:5000])
    torch.save({"net": {"0.weight": torch.zeros(3)}, "test_acc": 1.0}, tmp_path / "other.pt")
    for name in ["missing.pt", "truncated.pt", "other.pt"]:
        path = tmp_path / name
        rc, err = error_of(q.main, [str(tmp_path / "samples.npy"), "--data-dir", str(DATA),
                                    "--classifier", str(path)], capsys)
        assert rc != 0 and len(err.splitlines()) == 1
        assert err.startswith(f"mnist_quality.py: error: {'no classifier at ' * (name == 'missing.pt')}"
                              f"{path}")
        assert err.endswith("rebuild it with: python benchmarks/train_mnist_classifier.py "
                            f"--data-dir {DATA} --out {path}")


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


def test_samples_report_of_the_test_digits_themselves(tmp_path, capsys):
    np.save(tmp_path / "samples.npy", load_mnist(DATA, "test")[0][:, 0].numpy())
    q.main([str(tmp_path / "samples.npy"), "--data-dir", str(DATA)])
    rows = {line.split("  ")[0]: line.split("|") for line in capsys.readouterr().out.splitlines()}
    # The samples are the 300 test digits: the same labels and features, a Fréchet distance of 0.
    assert abs(float(rows["samples (300)"][-1])) < 0.005
    assert rows["samples (300)"][1] == rows["real test (300)"][1]
    assert rows["samples (300)"][0].split()[-1] == rows["real test (300)"][0].split()[-1]


def test_seeds_runner_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the two mnist_ncsn.py runs it starts
    tiny = ["--width", "8", "--batch-size", "16", "--train-size", "32", "--epochs", "2",
            "--T", "1", "--N", "5", "--device", "cpu"]
    mnist_seeds.main(["--seeds", "0", "1", "--n-samples", "20", "--out", str(tmp_path / "runs"),
                      "--data-dir", str(DATA), "--", *tiny])
    out = capsys.readouterr().out
    assert "roughly" in out.splitlines()[1]  # the time estimate comes before the first run
    assert "  | training took" in out  # the child's lines, shown as they come
    for seed in [0, 1]:
        assert (tmp_path / "runs" / f"seed_{seed}" / "checkpoint.pt").exists()
    rows = {line.split("  ")[0]: line.split("|") for line in out.splitlines() if "|" in line}
    confident = [float(rows[f"seed {s}"][0].split()[-1]) for s in [0, 1]]
    fd = [float(rows[f"seed {s}"][3]) for s in [0, 1]]
    assert abs(float(rows["median"][0].split()[-1]) - sum(confident) / 2) <= 0.0005
    assert float(rows["worst"][3]) == max(fd)
    # The floor is mnist_quality's own measure of the first 20 real training images.
    net = q.load_classifier(q.CLASSIFIER, "cpu")
    features = [q.predict(net, load_mnist(DATA, split)[0][:n], "cpu", features=True)
                for split, n in [("train", 20), ("test", 300)]]
    assert float(rows["real train (20)"][3].split()[0]) == round(q.frechet_distance(*features), 2)


def test_seeds_runner_rejects_bad_flags_before_training(tmp_path, capsys):
    rc, err = error_of(mnist_seeds.main, ["--out", str(tmp_path / "runs"), "--data-dir", str(DATA),
                                          "--", "--width", "12"], capsys)
    assert rc == 2 and err == ("mnist_seeds.py: error: flag for mnist_ncsn.py: --width must be a "
                               "multiple of 8 (GroupNorm uses 8 groups)")
    assert not (tmp_path / "runs").exists()
