"""The OOD study driver (hh.eval.ood_study) on the smoke LM: activations, the protocol's splits,
the report and its plot, and the separation it measures: harmful prompts score above helpful ones,
an in-distribution control scores near chance. The maths (Mahalanobis, AUROC, exposure, against
closed forms) is tested in test_ood.py."""

import json

import numpy as np
import pytest

from hh.eval import ood_study
from hh.trained import LoadedLM

HARMFUL = "synthetic-redteam"
# Another format (PMP's "Question: ... Answer: ..." documents): a shift any detector must see.
SHIFTED = "synthetic-pmp"
# Helpful prompts posing as OOD: test rows 250-313 are scored, 314-441 are the exposure pool;
# the in-distribution scored prompts are test rows 0-63, so none is shared.
CONTROL = "synthetic-helpful:test[250:500]"


@pytest.fixture(scope="module")
def smoke_lm(pm_chain):
    return LoadedLM(pm_chain["lm"])


@pytest.fixture(scope="module")
def report(smoke_lm):
    """The study at a size the suite affords: 160 fitted prompts (> d_model = 64, so the
    covariance is not singular) and 64 scored a side."""
    return ood_study.ood_study(smoke_lm, "synthetic-helpful", [HARMFUL, SHIFTED, CONTROL], n_fit=160, n_test=64,
                               exposure_m=4, exposure_draws=3)


def test_activations_do_not_depend_on_the_batching(smoke_lm):
    texts = ood_study.prompt_texts("synthetic-helpful", "test", 10, smoke_lm.config.data)
    a = ood_study.activations(smoke_lm, texts, batch=4)     # last batch padded with copies
    b = ood_study.activations(smoke_lm, texts)              # batch 32, compiled once for the report too
    assert a.shape == (smoke_lm.model.cfg.n_layers + 1, 10, smoke_lm.model.cfg.d_model)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_study_report(smoke_lm, report, tmp_path):
    layers = report["sets"][HARMFUL]
    n = smoke_lm.model.cfg.n_layers + 1
    for method in ("mahalanobis", "relative_mahalanobis", "outlier_exposure", "outlier_exposure_std"):
        assert len(layers[method]) == n and all(0.0 <= v <= 1.0 for v in layers[method]), method
    # a non-singular covariance: the full and the relative scores differ
    assert layers["relative_mahalanobis"] != layers["mahalanobis"]
    best = report["best"][HARMFUL]["mahalanobis"]
    assert best["auroc"] == max(layers["mahalanobis"]) and layers["mahalanobis"][best["layer"]] == best["auroc"]
    ood_study.write_study(report, tmp_path)
    assert json.loads((tmp_path / "ood.json").read_text())["n_fit"] == 160
    assert (tmp_path / "ood.png").stat().st_size > 1000


def test_study_separates_a_shifted_distribution_and_not_a_control(report):
    shifted, control, harmful = report["sets"][SHIFTED], report["sets"][CONTROL], report["sets"][HARMFUL]
    print({name: {m: [round(v, 3) for v in report["sets"][name][m]] for m in ("mahalanobis", "outlier_exposure")}
           for name in (SHIFTED, CONTROL, HARMFUL)})
    for method in ("mahalanobis", "relative_mahalanobis", "outlier_exposure"):
        assert all(abs(v - 0.5) < 0.15 for v in control[method]), (method, control[method])
    assert max(shifted["mahalanobis"]) > max(control["mahalanobis"]) + 0.2
    assert max(shifted["outlier_exposure"]) > max(control["outlier_exposure"]) + 0.2
    # the world's red-team prompts share the helpful requests' templates, verbs and name shapes:
    # only knowledge of the substance tells them apart, which this 20-step LM does not have
    assert max(harmful["mahalanobis"]) < max(shifted["mahalanobis"])


def test_a_split_named_in_the_in_source_is_refused(smoke_lm):
    # "synthetic-helpful:test" would make the scored prompts a subset of the fitted ones
    with pytest.raises(ValueError, match="names a split"):
        ood_study.ood_study(smoke_lm, "synthetic-helpful:test", [HARMFUL], n_fit=160, n_test=64)


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
