"""The scaling-law fit against np.linalg.lstsq and pseudo-inverse standard errors (float64), and
the paper's helpful-only fit at its stated values."""

import numpy as np
import pytest

from hh.eval.scaling import describe, fit_scaling, paper_accuracy, plot_scaling, predict


def _sweep(noise, seed=0):
    rng = np.random.default_rng(seed)
    p = np.repeat([13e6, 42e6, 197e6, 810e6], 4)
    d = np.tile([1e3, 4e3, 16e3, 64e3], 4)
    y = 0.3 + 0.01 * np.log(p) + 0.02 * np.log(d) + noise * rng.normal(size=p.size)
    return p, d, y


def test_noiseless_data_recovers_the_coefficients():
    fit = fit_scaling(*_sweep(0.0))
    assert fit["a"] == pytest.approx(0.3, abs=1e-9) and fit["b"] == pytest.approx(0.01, abs=1e-10)
    assert fit["c"] == pytest.approx(0.02, abs=1e-10) and fit["se_b"] < 1e-8


def test_matches_lstsq_and_pseudo_inverse_standard_errors():
    p, d, y = _sweep(0.01, seed=3)
    fit = fit_scaling(p, d, y)
    x = np.column_stack([np.ones_like(p), np.log(p), np.log(d)])
    theta, rss, _, _ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose([fit["a"], fit["b"], fit["c"]], theta, rtol=1e-9)
    sigma2 = rss[0] / (len(y) - 3)
    pinv = np.linalg.pinv(x)
    se = np.sqrt(sigma2 * np.diag(pinv @ pinv.T))
    np.testing.assert_allclose([fit["se_a"], fit["se_b"], fit["se_c"]], se, rtol=1e-8)
    assert 0.0 < fit["r2"] <= 1.0
    np.testing.assert_allclose(predict(fit, p, d), x @ theta, rtol=1e-12)


def test_paper_fit_values():
    # Bai et al. 2022 App. A.3 fit, natural logs: the accuracies it implies at D = 8e4
    np.testing.assert_allclose(paper_accuracy([13e6, 52e9, 1e11], 8e4), [0.657, 0.715, 0.72], atol=6e-4)
    assert paper_accuracy(1e11, 1.6e5) - paper_accuracy(1e11, 8e4) == pytest.approx(0.015 * np.log(2))


def test_errors_and_output(tmp_path):
    with pytest.raises(ValueError, match="vary both"):
        fit_scaling([1e7] * 5, [1e3, 2e3, 3e3, 4e3, 5e3], [0.5, 0.6, 0.6, 0.7, 0.7])
    with pytest.raises(ValueError, match=">= 4 runs"):
        fit_scaling([1e7, 1e8, 1e9], [1e3, 2e3, 3e3], [0.5, 0.6, 0.7])
    p, d, y = _sweep(0.01)
    fit = fit_scaling(p, d, y)
    text = describe(fit)
    assert "paper: accuracy = 0.72 + 0.007·ln(P/1e11)" in text and f"{fit['b']:.4f}" in text
    plot_scaling(p, d, y, fit, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
