"""OOD detection: AUROC against a brute-force pair count, Mahalanobis against a direct float64
formula, the relative score's meaning on hand-built Gaussians, outlier exposure, and padding-
invariant pooled activations of a smoke transformer."""

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
