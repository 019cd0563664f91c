"""Gold-judged evaluation with fake judges (no world, no models): the Elo of a judge that always
prefers one entry, ties, accuracy by hand, the per-labeler sections of policy_elo, PPO's logged
samples by iteration, the report's headlines and sections from hand-made step outputs, and the
response texts best-of-k hands the judge."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from hh.data import synthetic
from hh.eval import gold
from hh.eval.policy_elo import elo_from_scores, gold_sections, plot_elo, sample_rows
from hh.models.sampling import Samples
from hh.pipeline import report
from hh.pipeline.plots import plot_best_of
from hh.rl.best_of import response_texts


def prefer_a(prompt, a, b):
    """Prefers the response that starts with "a" (ties otherwise)."""
    return 0.5 if a[0] == b[0] else float(a[0] == "a")


def always_tie(prompt, a, b):
    return 0.5


def score_a(prompt, response):
    """1 for "a…" responses, 0 for "b…", not judged otherwise."""
    return {"a": 1.0, "b": 0.0}.get(response[0])


def fake_judge(labeler):
    return score_a, prefer_a


PROMPTS = [f"prompt {i}" for i in range(6)]


def test_a_judge_that_always_prefers_a_ranks_it_above_b():
    names = ["b", "a"]
    report = gold.gold_report(names, PROMPTS, [["b"] * 6, ["a"] * 6], score_a, prefer_a)
    table = {row["model"]: row for row in report["table"]}
    assert report["anchor"] == "b" and table["b"]["elo"] == 0.0
    assert table["a"]["elo"] > 0 and table["a"]["stderr"] > 0
    assert [row["model"] for row in report["table"]] == ["a", "b"]
    assert report["wins"] == [[0.0, 0.0], [6.0, 0.0]] and report["n_judged"] == 6
    # with one virtual tie the fit is finite: 6.5 wins to 0.5 -> ΔElo = 400·log10(13)
    assert table["a"]["elo"] == pytest.approx(400 * math.log10(13), rel=1e-6)


def test_ties_give_equal_elo():
    responses = [["x"] * 6, ["y"] * 6, ["z"] * 6]
    report = gold.gold_report(["x", "y", "z"], PROMPTS, responses, score_a, always_tie)
    assert all(abs(row["elo"]) < 1e-9 for row in report["table"])
    np.testing.assert_allclose(report["wins"], 3.0 * (1 - np.eye(3)))


def test_a_single_entry_is_its_own_anchor():
    table = gold.gold_elo(["only"], np.zeros((1, 1)))
    assert table == [{"model": "only", "elo": 0.0, "stderr": 0.0}]


def test_unjudged_prompts_add_no_wins():
    def judge_first_half(prompt, a, b):
        return prefer_a(prompt, a, b) if int(prompt.split()[1]) < 3 else None
    wins, judged = gold.gold_wins(PROMPTS, [["a"] * 6, ["b"] * 6], judge_first_half)
    assert judged == 3 and wins.tolist() == [[0.0, 3.0], [0.0, 0.0]]


def test_accuracy_mean_and_stderr_by_hand():
    responses = ["a", "b", "a", "a", "?", "?"]
    acc = gold.gold_accuracy(PROMPTS, responses, score_a)
    # judged: 1, 0, 1, 1 -> mean 0.75; sample sd = sqrt(0.25 * 4 / 3) = 0.5, se = 0.5 / 2
    assert acc == {"mean": 0.75, "se": pytest.approx(0.25), "n": 4, "not_judged": 2}
    assert gold.mean_and_stderr([None]) == {"mean": None, "se": None, "n": 0, "not_judged": 1}
    assert gold.mean_and_stderr([0.5]) == {"mean": 0.5, "se": 0.0, "n": 1, "not_judged": 0}


def test_world_judge_reads_the_world_at_call_time(monkeypatch):
    monkeypatch.setattr(synthetic, "gold_score", lambda p, r, labeler: (p, r, labeler), raising=False)
    monkeypatch.setattr(synthetic, "gold_preference", lambda p, a, b, labeler: (p, a, b, labeler),
                        raising=False)
    score, prefer = gold.world_judge("harmless")
    assert score("q", "r") == ("q", "r", "harmless")
    assert prefer("q", "a", "b") == ("q", "a", "b", "harmless")


def test_spec_labeler(monkeypatch):
    monkeypatch.setattr(synthetic, "SOURCE_LABELER", {"synthetic-helpful": "helpful",
                                                      "synthetic-redteam": "harmless"}, raising=False)
    assert gold.spec_labeler("synthetic-helpful:test") == "helpful"
    assert gold.spec_labeler("synthetic-redteam:test[0:8]") == "harmless"
    assert gold.spec_labeler("hh_rlhf/helpful-base:test") is None
    monkeypatch.setattr(synthetic, "gold_score", lambda p, r, labeler: score_a(p, r), raising=False)
    labeler, judge = gold.accuracy_judge("synthetic-redteam:test")
    assert labeler == "harmless" and judge(PROMPTS[:2], ["a", "b"])["mean"] == 0.5
    assert gold.accuracy_judge("hh_rlhf/helpful-base:test") is None


def entry_samples(responses, scores):
    return {"prompt": PROMPTS[:len(responses)], "response": list(responses), "score": np.array(scores, float)}


def labeler_of(spec):
    return {"synthetic-helpful:test": "helpful", "synthetic-redteam:test": "harmless"}.get(spec)


def test_gold_sections_per_labeler_and_none_for_unjudged_specs(tmp_path):
    names = ["distill", "ppo"]
    # the PM loves ppo's answers; the gold labeler prefers distill's ("a…")
    samples = {"synthetic-helpful:test": [entry_samples("aaab", [0, 0, 0, 0]), entry_samples("bbbb", [2, 2, 2, 2])],
               "synthetic-redteam:test": [entry_samples("aa", [0, 0]), entry_samples("ba", [1, 1])],
               "hh_rlhf/harmless-base:test": [entry_samples("ab", [0, 0]), entry_samples("ab", [0, 0])]}
    sections = gold_sections(names, samples, labeler_of=labeler_of, judge=fake_judge)
    assert set(sections) == {"helpful", "harmless"}   # the real-data spec has no gold section
    helpful = sections["helpful"]
    assert helpful["n_prompts"] == 4 and helpful["accuracy"]["distill"]["mean"] == 0.75
    gold_elo = {row["model"]: row["elo"] for row in helpful["table"]}
    pm_elo = {row["model"]: row["elo"] for row in helpful["pm"]["table"]}
    assert gold_elo["ppo"] < 0 < pm_elo["ppo"]   # the PM is hacked; gold says so
    assert sections["harmless"]["accuracy"]["ppo"] == {"mean": 0.5, "se": 0.5, "n": 2, "not_judged": 0}

    rows = sample_rows(names, samples, labeler_of=labeler_of, judge=fake_judge)
    assert len(rows) == 2 * (4 + 2 + 2)
    real = [r for r in rows if r["spec"].startswith("hh_rlhf")]
    assert all(r["gold_score"] is None for r in real)
    assert rows[0] == {"spec": "synthetic-helpful:test", "entry": "distill", "prompt": "prompt 0",
                       "response": "a", "pm_score": 0.0, "gold_score": 1.0}

    elo = elo_from_scores(names, np.array([[0.0, 0.1], [1.0, 1.1]]))
    elo["gold"] = sections
    plot_elo(elo, tmp_path / "elo.png")
    assert (tmp_path / "elo.png").stat().st_size > 1000


def test_gold_by_step_uses_each_rows_kind():
    rows = [{"step": 2, "prompt": "p", "response": "a", "reward": 1.0, "kind": "helpful"},
            {"step": 2, "prompt": "p", "response": "b", "reward": 3.0, "kind": "harmless"},
            {"step": 1, "prompt": "p", "response": "a", "reward": 0.0, "kind": None}]
    asked = []

    def judge(labeler):
        asked.append(labeler)
        return score_a, prefer_a
    by_step = gold.gold_by_step(rows, judge)
    assert [r["step"] for r in by_step] == [1, 2]
    assert sorted(asked) == ["harmless", "helpful"]
    assert by_step[0]["gold"]["n"] == 0 and by_step[0]["gold"]["not_judged"] == 1
    assert by_step[1]["reward"] == 2.0 and by_step[1]["gold"]["mean"] == 0.5


def test_headlines_set_gold_beside_pm():
    names = ["distill", "ppo"]
    samples = {"synthetic-helpful:test": [entry_samples("aaab", [0, 0, 0, 0]), entry_samples("bbbb", [2, 2, 2, 2])]}
    elo = {"anchor": "distill", "table": [], "gold": gold_sections(names, samples, labeler_of, fake_judge)}
    logged = [{"step": s, "prompt": "p", "response": r, "reward": float(s), "kind": "helpful"}
              for s, r in ((1, "a"), (1, "a"), (9, "b"), (9, "a"))]
    heads = report.gold_headlines(elo, gold.gold_by_step(logged, fake_judge))
    assert heads["gold_accuracy_ppo_vs_distill"] == {"helpful": {"ppo": 0.0, "distill": 0.75}}
    assert heads["gold_elo"]["helpful"]["ppo"]["elo"] < 0 < heads["pm_elo_on_gold_prompts"]["helpful"]["ppo"]["elo"]
    assert heads["ppo_samples_gold"]["first"]["gold"]["mean"] == 1.0
    assert heads["ppo_samples_gold"]["last"]["gold"]["mean"] == 0.5 and heads["ppo_samples_gold"]["last"]["reward"] == 9.0
    lines = report.gold_headline_lines(heads)
    assert any("Gold helpful Elo" in line for line in lines) and any("PPO's logged samples" in line for line in lines)
    json.dumps(heads)   # headlines.json stays plain JSON
    assert report.gold_headlines({}, []) == {"gold_elo": {}, "pm_elo_on_gold_prompts": {}, "gold_accuracy": {},
                                             "gold_accuracy_ppo_vs_distill": {}, "ppo_samples_gold": None}


def test_report_sections_and_best_of_plot_show_gold_beside_pm(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "gold_score", lambda p, r, labeler: score_a(p, r), raising=False)
    folders = {name: tmp_path / name for name in ("elo", "best_of", "ppo")}
    for folder in folders.values():
        folder.mkdir()
    names = ["distill", "ppo"]
    samples = {"synthetic-helpful:test": [entry_samples("aaab", [0, 0, 0, 0]), entry_samples("bbbb", [2, 2, 2, 2])]}
    elo = {**elo_from_scores(names, np.array([[0.0, 0.1], [1.0, 1.1]])), "prompts": list(samples),
           "gold": gold_sections(names, samples, labeler_of, fake_judge)}
    (folders["elo"] / "elo.json").write_text(json.dumps(elo))
    best_of = {"policy": "/runs/distill", "labeler": "helpful", "k": {
        str(k): {"mean_best_score": 0.1 * k, "stderr": 0.01, "mean_single_score": 0.0, "kl_upper_bound": 0.5 * k,
                 "n_prompts": 4, "gold": {"mean": 0.5 - 0.01 * k, "se": 0.1, "n": 4, "not_judged": 0}}
        for k in (1, 4, 16)}}
    (folders["best_of"] / "best_of.json").write_text(json.dumps(best_of))
    (folders["ppo"] / "metrics.jsonl").write_text("")
    (folders["ppo"] / "samples.jsonl").write_text("".join(
        json.dumps({"step": s, "prompt": "p", "response": r, "reward": 1.0, "kind": "helpful"}) + "\n"
        for s, r in ((1, "a"), (5, "b"))))
    text = "\n".join(report.elo_section(folders) + report.best_of_section(folders) + report.ppo_section(folders))
    assert "### Gold helpful Elo" in text and "| distill | 0.0 |" in text
    assert "| 16 | 1.600 | 0.010 | 0.340 | 0.100 |" in text
    assert "| 1 | 1.000 | 1.000 | 0.000 | 1 |" in text and "| 5 | 1.000 | 0.000 | 0.000 | 1 |" in text
    plot_best_of(best_of, folders["ppo"], tmp_path / "best_of.png")
    assert (tmp_path / "best_of.png").stat().st_size > 1000


def test_response_texts_drop_the_stop_sequence_and_unsampled_rows():
    class Digits:
        def decode(self, ids):
            return "".join(map(str, ids))
    tokens = jnp.array([[1, 2, 3, 9], [4, 5, 9, 0], [6, 0, 0, 0]])
    samples = Samples(tokens=tokens, logprobs=tokens * 0.0, lengths=jnp.array([4, 3, 1]),
                      stop_lengths=jnp.array([1, 1, 0]), finished=jnp.array([True, True, False]))
    assert response_texts(samples, Digits(), np.array([True, True, False])) == ["123", "45"]
