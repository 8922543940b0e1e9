"""LR range test on numpy problems whose divergence learning rate is known analytically."""
import csv
import math

import numpy as np
import pytest

from models.lr_range import lr_range_test, write_lr_range_csv

SEED = 11


class Quadratic:
    """Gradient descent on f(w) = a w^2 / 2 + c; diverges exactly for lr > 2 / a."""

    def __init__(self, a, c=0.01, w0=1.0):
        self.a, self.c, self.w = a, c, w0

    def __call__(self, lr):
        loss = self.a * self.w ** 2 / 2 + self.c
        self.w -= lr * self.a * self.w
        return loss


class LinearRegression:
    """Full-batch GD on noisy least squares; diverges for lr > 2 / lambda_max(X^T X / n)."""

    def __init__(self, seed=SEED, n=200, d=5):
        rs = np.random.RandomState(seed)
        self.x = rs.randn(n, d) * np.array([3.0, 1.0, 1.0, 0.5, 0.2])
        self.y = self.x @ rs.randn(d) + 0.3 * rs.randn(n)
        self.w = np.zeros(d)
        self.diverge_lr = 2 / np.linalg.eigvalsh(self.x.T @ self.x / n).max()

    def __call__(self, lr):
        r = self.x @ self.w - self.y
        loss = 0.5 * np.mean(r ** 2)
        self.w = self.w - lr * self.x.T @ r / len(self.y)
        return loss


@pytest.mark.parametrize("a,max_factor", [(1.0, 100.0), (10.0, 100.0), (300.0, 1000.0)])
def test_quadratic_stops_after_divergence_and_suggests_below(a, max_factor):
    diverge = 2 / a
    res = lr_range_test(Quadratic(a), min_lr=1e-6 / a, max_lr=max_factor / a, num_iters=100)
    assert res["stopped_early"] and len(res["lrs"]) < 100
    # below 2/a GD on a quadratic never increases the loss, so no stop can come earlier
    assert res["lrs"][-1] > diverge
    assert 0 < res["suggested_max_lr"] < diverge
    assert res["suggested_base_lr"] == pytest.approx(res["suggested_max_lr"] / 4)
    assert len(res["lrs"]) == len(res["losses"]) == len(res["smoothed"])


def test_linear_regression_suggestion_below_divergence():
    problem = LinearRegression()
    res = lr_range_test(problem, min_lr=1e-5, max_lr=100.0, num_iters=120)
    assert res["stopped_early"], f"seed {SEED}"
    assert res["lrs"][-1] > problem.diverge_lr
    assert res["suggested_max_lr"] < problem.diverge_lr
    assert res["min_loss_lr"] >= res["suggested_max_lr"]


def test_lr_sweep_is_exponential_and_full_without_divergence():
    seen = []
    res = lr_range_test(lambda lr: seen.append(lr) or 1.0, min_lr=1e-4, max_lr=1e-1, num_iters=4)
    np.testing.assert_allclose(seen, [1e-4, 1e-3, 1e-2, 1e-1])
    assert res["lrs"] == seen and not res["stopped_early"]


def test_smoothing_is_bias_corrected_ema():
    rs = np.random.RandomState(SEED)
    losses = list(rs.uniform(1.0, 2.0, 30))
    it = iter(losses)
    res = lr_range_test(lambda lr: next(it), num_iters=30, beta=0.9, diverge_factor=100.0)
    avg, want = 0.0, []
    for i, loss in enumerate(losses):
        avg = 0.9 * avg + 0.1 * loss
        want.append(avg / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(res["smoothed"], want, rtol=1e-12)
    const = lr_range_test(lambda lr: 3.0, num_iters=10)
    np.testing.assert_allclose(const["smoothed"], 3.0)  # no start-up bias towards 0


def test_non_finite_loss_stops():
    calls = []

    def step(lr):
        calls.append(lr)
        return 1.0 / (len(calls)) if len(calls) < 6 else math.inf

    res = lr_range_test(step, num_iters=50)
    assert res["stopped_early"] and len(calls) == 6 and "non-finite" in res["stop_reason"]
    assert math.isnan(res["smoothed"][-1])
    assert res["suggested_max_lr"] is not None and res["suggested_max_lr"] < calls[-1]


def test_write_csv(tmp_path):
    res = lr_range_test(Quadratic(1.0), min_lr=1e-4, max_lr=100.0, num_iters=40)
    path = tmp_path / "lr_range.csv"
    write_lr_range_csv(path, res)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["iteration", "lr", "loss", "smoothed"]
    assert len(rows) == len(res["lrs"])
    assert [float(r["lr"]) for r in rows] == res["lrs"]
    assert [float(r["smoothed"]) for r in rows] == res["smoothed"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(min_lr=0.0), "min_lr"), (dict(min_lr=1.0, max_lr=0.5), "min_lr"),
    (dict(num_iters=1), "num_iters"), (dict(beta=1.0), "beta"),
    (dict(diverge_factor=1.0), "diverge"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_range_test(lambda lr: 1.0, **kwargs)
