"""The OOD study driver (hh.eval.ood_study) on the smoke LM: activations, the protocol's splits,
the report and its plot. The maths (Mahalanobis, AUROC, exposure) is tested in test_ood.py."""

import json

import numpy as np
import pytest

from hh.eval import ood_study


@pytest.fixture(scope="module")
def smoke_lm(pm_chain):
    from hh.eval.lm_loader import LoadedLM

    return LoadedLM(pm_chain["lm"])


def test_activations_do_not_depend_on_the_batching(smoke_lm):
    texts = ood_study.prompt_texts("synthetic-helpful", "test", 10, smoke_lm.config.data)
    a = ood_study.activations(smoke_lm, texts, batch=4)     # last batch padded with copies
    b = ood_study.activations(smoke_lm, texts, batch=16)
    assert a.shape == (smoke_lm.model.cfg.n_layers + 1, 10, smoke_lm.model.cfg.d_model)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_study_report(smoke_lm, tmp_path):
    report = ood_study.ood_study(smoke_lm, "synthetic-helpful", ["synthetic-harmless"], n_fit=160,
                                 n_test=24, exposure_m=4, exposure_draws=3)
    layers = report["sets"]["synthetic-harmless"]
    n = smoke_lm.model.cfg.n_layers + 1
    for method in ("mahalanobis", "relative_mahalanobis", "outlier_exposure", "outlier_exposure_std"):
        assert len(layers[method]) == n and all(0.0 <= v <= 1.0 for v in layers[method]), method
    # 160 fitted prompts > d_model = 64: the covariance is not singular, the two scores differ
    assert layers["relative_mahalanobis"] != layers["mahalanobis"]
    best = report["best"]["synthetic-harmless"]["mahalanobis"]
    assert best["auroc"] == max(layers["mahalanobis"]) and layers["mahalanobis"][best["layer"]] == best["auroc"]
    ood_study.write_study(report, tmp_path)
    assert json.loads((tmp_path / "ood.json").read_text())["n_fit"] == 160
    assert (tmp_path / "ood.png").stat().st_size > 1000


def test_exposure_draws_only_from_the_pool():
    rng = np.random.default_rng(0)
    train_in, test_in = rng.normal(size=(1, 200, 3)), rng.normal(size=(1, 50, 3))
    test_out = rng.normal(size=(1, 50, 3)) + np.array([2.0, 0, 0])
    # a pool whose examples sit in the opposite direction: exposure learns the wrong side
    pool = rng.normal(size=(1, 40, 3)) - np.array([4.0, 0, 0])
    draws = ood_study.exposure_aurocs(train_in, test_in, test_out, pool, m=5, draws=3, seed=0)
    assert draws.shape == (3, 1) and np.all(draws < 0.3)
    right = ood_study.exposure_aurocs(train_in, test_in, test_out, pool + np.array([8.0, 0, 0]), m=5,
                                     draws=3, seed=0)
    assert np.all(right > 0.8)


def test_too_few_prompts_is_a_named_error(smoke_lm):
    with pytest.raises(ValueError, match="synthetic-harmless.*needed"):
        ood_study.prompt_texts("synthetic-harmless", "test", 10**6, smoke_lm.config.data)
