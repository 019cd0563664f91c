"""PM-judged Elo of policies: entry parsing, the Elo of hand-made score tables (a constant PM gap
d gives 174·d), and the tool on the smoke chain (best-of-4 beside plain sampling, one PNG)."""

import math

import numpy as np
import pytest

from hh.eval.policy_elo import Entry, elo_from_scores, parse_entry, plot_elo, policy_elo


def test_parse_entry():
    assert parse_entry("base=/runs/lm") == Entry("base", "/runs/lm", 1)
    assert parse_entry("bo16=/runs/lm@16") == Entry("bo16", "/runs/lm", 16)
    for bad in ("/runs/lm", "x=", "x=/r@0", "x=/r@k"):
        with pytest.raises(ValueError, match="--policy"):
            parse_entry(bad)


def test_constant_gap_gives_the_174_rule(tmp_path):
    base = np.random.default_rng(0).normal(size=40)
    report = elo_from_scores(["base", "rlhf"], np.stack([base, base + 0.5]))
    table = {r["model"]: r for r in report["table"]}
    assert table["base"]["elo"] == 0.0 and report["anchor"] == "base"
    assert table["rlhf"]["elo"] == pytest.approx(400 / math.log(10) * 0.5, abs=1e-6)
    assert [r["model"] for r in report["table"]] == ["rlhf", "base"]
    plot_elo(report, tmp_path / "elo.png")
    assert (tmp_path / "elo.png").stat().st_size > 1000


@pytest.mark.slow
def test_policy_elo_on_the_smoke_chain(pm_chain):
    from hh.trained import LoadedPM
    entries = [Entry("lm", str(pm_chain["lm"])), Entry("lm-best-of-4", str(pm_chain["lm"]), 4)]
    report = policy_elo(entries, LoadedPM(pm_chain["pm"]), "synthetic-helpful:test", n_prompts=8,
                        max_new_tokens=8, reference=str(pm_chain["lm"]))
    table = {r["model"]: r for r in report["table"]}
    assert table["lm"]["elo"] == 0.0 and report["n_prompts"] == 8
    wins = np.array(report["soft_wins"])
    # the Elo gap has the sign of the soft-win balance, and best-of-4 wins on average
    assert np.sign(table["lm-best-of-4"]["elo"]) == np.sign(wins[1, 0] - wins[0, 1])
    assert report["mean_score"]["lm-best-of-4"] >= report["mean_score"]["lm"] - 1e-3
    # the world's helpful labeler judged the same responses (hh.eval.gold)
    gold = report["gold"]["helpful"]
    assert set(report["gold"]) == {"helpful"} and gold["n_prompts"] == 8
    assert all(acc["n"] + acc["not_judged"] == 8 for acc in gold["accuracy"].values())
    assert len(report["samples"]) == 16 and {r["entry"] for r in report["samples"]} == {"lm", "lm-best-of-4"}
    # KL to the reference: the policy itself samples at 0 nats, its best-of-4 at the bound
    kl = report["kl_to_reference"]
    assert kl["lm"]["kl"] == 0.0 and kl["lm"]["n"] == 8
    assert kl["lm-best-of-4"]["kl"] == pytest.approx(np.log(4) - 3 / 4)
