"""PM evaluation on the session chain's PM: the JSON agrees with the stage's own eval and with
NumPy recomputations from the scores; PNGs are written; the cross matrix covers every run."""

import json

import numpy as np
import pytest

from hh.data.pm_sources import spec_source
from hh.eval import pm_eval
from hh.eval.calibration import calibration_bins
from hh.train.metrics import read_metrics


@pytest.fixture(scope="module")
def report(pm_chain, tmp_path_factory):
    out = tmp_path_factory.mktemp("pm_eval")
    pm = pm_eval.LoadedPM(pm_chain["pm"])
    return pm, pm_eval.evaluate_pm(pm_chain["pm"], out_dir=out, pm=pm), out


def test_accuracy_agrees_with_the_stage_eval(report, pm_chain):
    _, rep, out = report
    stage = [r for r in read_metrics(pm_chain["pm"]) if "eval/accuracy" in r][-1]
    assert rep["all"]["pairs"] == stage["eval/pairs"] == 1000
    assert rep["all"]["accuracy"] == pytest.approx(stage["eval/accuracy"], abs=2e-3)
    assert json.loads((out / "pm_eval.json").read_text())["all"]["accuracy"] == rep["all"]["accuracy"]
    for name in ("reliability.png", "reliability_synthetic-helpful.png", "reliability_synthetic-harmless.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_breakdowns_match_numpy_recomputation(report):
    pm, rep, _ = report
    source = spec_source("synthetic-harmless", "test", pm.config.data)
    c, r = pm.scores(source)
    s = rep["sets"]["synthetic-harmless"]
    assert s["accuracy"] == pytest.approx(np.mean((c > r) + 0.5 * (c == r)), abs=1e-12)
    assert s["per_tranche"] == {"synthetic-harmless": {"accuracy": s["accuracy"], "pairs": 500}}
    turns = np.array([source[i]["num_turns"] for i in range(len(source))])
    for turn, v in s["per_turn"].items():
        sel = turns == int(turn)
        assert v["pairs"] == sel.sum()
        assert v["accuracy"] == pytest.approx(np.mean((c[sel] > r[sel]) + 0.5 * (c[sel] == r[sel])))
    families = np.array([source[i]["family"] for i in range(len(source))])
    assert set(s["per_family"]) == set(families) and sum(v["pairs"] for v in s["per_family"].values()) == 500
    for family, v in s["per_family"].items():
        sel = families == family
        assert v["accuracy"] == pytest.approx(np.mean((c[sel] > r[sel]) + 0.5 * (c[sel] == r[sel])))
    conflict = np.array([source[i]["conflict"] for i in range(len(source))])
    assert s["conflict"]["pairs"] == conflict.sum() > 0
    assert s["conflict"]["accuracy"] == pytest.approx(np.mean((c[conflict] > r[conflict]) + 0.5 * (c[conflict] == r[conflict])))
    assert s["calibration"]["ece"] == pytest.approx(calibration_bins(c, r)["ece"], abs=1e-12)


def test_normalised_threshold_accuracy():
    c, r = np.array([2.0, 1.0, -1.0, 0.5]), np.array([1.0, 2.0, 0.5, 0.7])
    cn, rn = pm_eval.normalised(c, r, reference_mean=0.5)
    got = pm_eval.above_threshold_accuracy(cn, rn, thresholds=(-1.0, 0.0))
    # normalised: chosen [1.5, 0.5, -1.5, 0.0], rejected [0.5, 1.5, 0.0, 0.2]
    # above -1: pairs 0, 1, 3 (only pair 0 right); above 0: pairs 0, 1 (pair 3's chosen is 0.0)
    np.testing.assert_allclose(cn, [1.5, 0.5, -1.5, 0.0])
    assert got["-1"] == {"accuracy": pytest.approx(1 / 3), "pairs": 3}
    assert got["0"] == {"accuracy": 0.5, "pairs": 2}


def test_cross_matrix(pm_chain, tmp_path):
    result = pm_eval.cross_matrix([pm_chain["pmp"], pm_chain["pm"]],
                                  ["synthetic-helpful", "synthetic-harmless"], tmp_path)
    assert result["helpful_fraction"] == [0.5, 1.0]
    acc = np.array(result["accuracy"])
    assert acc.shape == (2, 2) and np.all((acc >= 0) & (acc <= 1))
    assert (tmp_path / "cross_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "cross_matrix.json").read_text())["accuracy"] == result["accuracy"]
