"""OOD detection: AUROC against a brute-force pair count, Mahalanobis against a direct float64
formula, the relative score's meaning on hand-built Gaussians, outlier exposure, and padding-
invariant pooled activations of a smoke transformer. On Gaussians whose answer is known in closed
form, each score's AUROC lands on it; with shuffled labels every score lands near 0.5."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.data.prompt_data import left_padded
from hh.eval.ood import (auroc, fit_gaussian, layer_aurocs, mahalanobis, outlier_exposure,
                         plot_layer_aurocs, pooled_hidden_states, relative_mahalanobis)
from hh.models import presets
from hh.models.transformer import TransformerLM


def brute_force_auroc(a, b):
    return np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])


def test_auroc_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 40), rng.integers(2, 9, 30)
    assert auroc(a, b) == pytest.approx(brute_force_auroc(a, b))
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5


def test_mahalanobis_matches_direct_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    g = fit_gaussian(x, ridge=0.0)
    z = rng.normal(size=(7, 4))
    cov = np.cov(x, rowvar=False, bias=True)
    direct = [(v - x.mean(0)) @ np.linalg.inv(cov) @ (v - x.mean(0)) for v in z]
    np.testing.assert_allclose(mahalanobis(z, g), direct, rtol=1e-10)
    diag = np.sum((z - x.mean(0)) ** 2 / np.diag(cov), axis=1)
    np.testing.assert_allclose(relative_mahalanobis(z, g), np.array(direct) - diag, rtol=1e-8, atol=1e-8)


def test_relative_score_flags_broken_correlations_not_wide_directions():
    # Two strongly correlated coordinates: (3, 3) lies along the data, (1.5, −1.5) breaks the
    # correlation. The diagonal distance ranks (3, 3) further; the relative score reverses it.
    rng = np.random.default_rng(2)
    base = rng.normal(size=(20000, 1))
    x = np.concatenate([base, base + 0.1 * rng.normal(size=(20000, 1))], axis=1)
    g = fit_gaussian(x)
    along, across = np.array([[3.0, 3.0]]), np.array([[1.5, -1.5]])
    diagonal = lambda v: mahalanobis(v, g)[0] - relative_mahalanobis(v, g)[0]  # noqa: E731
    assert diagonal(along) > diagonal(across)
    assert relative_mahalanobis(across, g)[0] > relative_mahalanobis(along, g)[0]
    assert mahalanobis(across, g)[0] > mahalanobis(along, g)[0]


def test_layer_report_on_shifted_gaussians(tmp_path):
    rng = np.random.default_rng(3)
    d = 6
    train_in, test_in = rng.normal(size=(3, 400, d)), rng.normal(size=(3, 200, d))
    shift = np.array([0.0, 0.5, 3.0])[:, None, None]            # layer 2 separates clearly
    test_out, exposure = rng.normal(size=(3, 200, d)) + shift, rng.normal(size=(3, 8, d)) + shift
    report = layer_aurocs(train_in, test_in, test_out, exposure)
    assert set(report) == {"mahalanobis", "relative_mahalanobis", "outlier_exposure"}
    assert abs(report["mahalanobis"][0] - 0.5) < 0.1
    assert report["mahalanobis"][2] > 0.99 and report["outlier_exposure"][2] > 0.99
    assert report["outlier_exposure"][1] > report["outlier_exposure"][0]
    plot_layer_aurocs(report, tmp_path / "ood.png")
    assert (tmp_path / "ood.png").stat().st_size > 1000


def test_outlier_exposure_separates_with_few_examples():
    rng = np.random.default_rng(4)
    direction = np.eye(5)[0] * 2.5
    in_x, out_x = rng.normal(size=(300, 5)), rng.normal(size=(5, 5)) + direction
    score = outlier_exposure(in_x, out_x)
    test_in, test_out = rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + direction
    assert auroc(score(test_in), score(test_out)) > 0.93


def test_pooled_activations_are_padding_invariant():
    cfg = presets.model_config("smoke")
    model = TransformerLM(cfg)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    rows = [[1, 30, 31, 32], [1, 40, 41]]
    pool = jax.jit(pooled_hidden_states, static_argnums=(1, 3))
    narrow = {k: jnp.asarray(v) for k, v in left_padded(rows, 4).items() if k != "prompt_length"}
    wide = {k: jnp.asarray(v) for k, v in left_padded(rows, 9).items() if k != "prompt_length"}
    for pooling in ("mean", "last"):
        a, b = pool(params, model, narrow, pooling), pool(params, model, wide, pooling)
        assert a.shape == (cfg.n_layers + 1, 2, cfg.d_model)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        pooled_hidden_states(params, model, narrow, "max")


def normal_cdf(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_auroc_of_two_gaussians_is_phi_of_d_prime_over_root_two():
    # Scores N(0, 1) vs N(d', 1): P(Y > X) = P(N(d', 2) > 0) = Φ(d'/√2). Measured over seeds 0-19
    # × d' ∈ {0.5, 1, 2}, 2000 per side: |AUROC − Φ(d'/√2)| mean 0.006, sd 0.005, max 0.021.
    rng = np.random.default_rng(5)
    for d_prime in (0.5, 1.0, 2.0):
        a, b = rng.normal(size=2000), rng.normal(size=2000) + d_prime
        assert auroc(a, b) == pytest.approx(normal_cdf(d_prime / math.sqrt(2)), abs=0.03), d_prime


def test_mahalanobis_auroc_matches_the_chi_square_closed_form():
    # In-distribution N(0, I₂), OOD N(μ, s²I₂). An in-distribution squared distance is χ²₂, CDF
    # 1 − e^(−t/2), so AUROC = 1 − E[e^(−D_out/2)] = 1 − exp(−|μ|²/(2(1 + s²)))/(1 + s²) (the
    # MGF of a scaled non-central χ²₂). A pure widening (μ = 0) is what the relative score
    # discounts: with an isotropic fit it is noise symmetric about 0, so its AUROC is 1/2.
    # Measured over seeds 0-19 (5000 fitted, 2000 per side): Mahalanobis |error| mean 0.005,
    # max 0.016; relative |AUROC − 0.5| mean 0.007, max 0.012.
    rng = np.random.default_rng(6)
    g = fit_gaussian(rng.normal(size=(5000, 2)))
    test_in = rng.normal(size=(2000, 2))
    for mu, s in ((0.0, 2.0), (2.0, 1.0), (1.5, 1.5)):
        out = rng.normal(size=(2000, 2)) * s + np.array([mu, 0.0])
        expected = 1.0 - math.exp(-mu ** 2 / (2.0 * (1.0 + s ** 2))) / (1.0 + s ** 2)
        assert auroc(mahalanobis(test_in, g), mahalanobis(out, g)) == pytest.approx(expected, abs=0.03), (mu, s)
    widened = rng.normal(size=(2000, 2)) * 2.0
    assert auroc(relative_mahalanobis(test_in, g), relative_mahalanobis(widened, g)) == pytest.approx(0.5, abs=0.03)


def test_broken_correlation_full_relative_and_diagonal_distances():
    # In-distribution: unit variances, correlation ρ = 0.9. OOD: the same with x₂ negated, so the
    # marginals are identical and only the correlation breaks. The diagonal distance sees only
    # marginals: AUROC 1/2. The full distance: along (1, ∓1)/√2, D_in = U² + V² and D_out =
    # aU² + V²/a with a = (1 + ρ)/(1 − ρ) = 19, so AUROC = 1 − E[e^(−D_out/2)] = 1 − √a/(1 + a)
    # = 0.782. The relative score (no closed form) separates better still. Measured over seeds
    # 0-19 (5000 fitted, 2000 per side): diagonal − 0.5 mean 0.003, sd 0.009, max |0.017|;
    # full 0.786 ± 0.010 (0.763-0.804); relative 0.911 ± 0.005 (min 0.896).
    rng = np.random.default_rng(7)
    rho, a = 0.9, 19.0
    chol = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
    g = fit_gaussian(rng.normal(size=(5000, 2)) @ chol.T)
    test_in = rng.normal(size=(2000, 2)) @ chol.T
    out = (rng.normal(size=(2000, 2)) @ chol.T) * np.array([1.0, -1.0])

    def diagonal(v):
        return mahalanobis(v, g) - relative_mahalanobis(v, g)

    assert auroc(diagonal(test_in), diagonal(out)) == pytest.approx(0.5, abs=0.03)
    full = auroc(mahalanobis(test_in, g), mahalanobis(out, g))
    assert full == pytest.approx(1.0 - math.sqrt(a) / (1.0 + a), abs=0.03)
    assert auroc(relative_mahalanobis(test_in, g), relative_mahalanobis(out, g)) > full + 0.05


def test_outlier_exposure_with_many_examples_reaches_the_bayes_auroc():
    # Equal-covariance Gaussians N(0, I₅) vs N(μ, I₅): the optimal score is linear, μ·x, with
    # AUROC Φ(|μ|/√2); a logistic layer on 1000 examples a side learns that direction. Measured
    # over seeds 0-19 (|μ| = 1.5, 2000 per side): |AUROC − Φ(|μ|/√2)| mean 0.004, max 0.014.
    rng = np.random.default_rng(8)
    mu = np.array([1.5, 0.0, 0.0, 0.0, 0.0])
    score = outlier_exposure(rng.normal(size=(1000, 5)), rng.normal(size=(1000, 5)) + mu)
    got = auroc(score(rng.normal(size=(2000, 5))), score(rng.normal(size=(2000, 5)) + mu))
    assert got == pytest.approx(normal_cdf(1.5 / math.sqrt(2)), abs=0.03)


def test_shuffled_labels_score_chance():
    # OOD shifted by 3 in every coordinate (Mahalanobis and exposure separate it perfectly), then
    # the test examples' in/out labels shuffled: every method at every layer near 0.5. Chance sd
    # at 200 a side is √(401/(12·200²)) = 0.029; measured over seeds 0-19, the largest
    # |AUROC − 0.5| of the 9 (method, layer) values: mean 0.049, max 0.106.
    rng = np.random.default_rng(9)
    d = 6
    train_in, test_in = rng.normal(size=(3, 400, d)), rng.normal(size=(3, 200, d))
    test_out, exposure = rng.normal(size=(3, 200, d)) + 3.0, rng.normal(size=(3, 8, d)) + 3.0
    labelled = layer_aurocs(train_in, test_in, test_out, exposure)
    assert min(labelled["mahalanobis"] + labelled["outlier_exposure"]) > 0.99
    pooled = np.concatenate([test_in, test_out], axis=1)
    order = rng.permutation(400)
    shuffled = layer_aurocs(train_in, pooled[:, order[:200]], pooled[:, order[200:]], exposure)
    for method, values in shuffled.items():
        assert all(abs(v - 0.5) < 0.15 for v in values), (method, values)
