"""The PM capacity benchmark (benchmarks/pm_capacity.py) in its quick form: the smallest world, the
two smallest sizes of the quick grid, one seed. Checks what the JSON holds, and the one ordering that
capacity must show even at this size: the larger LM knows more of the world. The PM's held-out
accuracy is at chance at every size measured (docs/preference-models.md), so its ordering would be a
coin flip, not a test."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


@pytest.mark.slow      # ~2.5 min: two short LMs, three PMs and a PMP run
def test_the_quick_capacity_grid_reports_every_axis_and_the_larger_lm_knows_more(tmp_path):
    import pm_capacity

    result = pm_capacity.run(pm_capacity.parse(["--root", str(tmp_path), "--quick", "--seeds", "0"]))
    small, large = "d64-l2", "d256-l2"
    assert list(result["per_size"]) == [small, large]
    assert result["per_size"][small]["params"] < result["per_size"][large]["params"]
    for cell in result["per_size"].values():
        for metric in ("test", "seen", "lm_knowledge", "loglik/test"):
            assert 0.0 <= cell[metric]["mean"] <= 1.0 and cell[metric]["n"] == 1
    assert {"a", "b", "b_lo", "b_hi"} <= set(result["fit_test"])
    sizes = [r for r in result["runs"] if r["axis"] == "size"]
    assert all({"test/helpful/fact", "seen/harmless/request"} <= set(r) for r in sizes)
    assert result["pmp"]["with"]["n"] == result["pmp"]["without"]["n"] == 1
    on_disk = json.loads((tmp_path / "pm_capacity.json").read_text())
    # (one seed: the intervals are NaN, which never compares equal, so the means are compared)
    assert {s: c["test"]["mean"] for s, c in on_disk["per_size"].items()} == {
        s: c["test"]["mean"] for s, c in result["per_size"].items()}
    assert (tmp_path / "pm_capacity.png").stat().st_size > 0
    # capacity: with the same documents and steps, the larger LM answers more of the world's
    # multiple-choice questions (measured 0.37 vs 0.55 over two seeds)
    assert result["per_size"][large]["lm_knowledge"]["mean"] > result["per_size"][small]["lm_knowledge"]["mean"]
