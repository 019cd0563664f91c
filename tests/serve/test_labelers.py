"""Simulated labelers: Bradley–Terry choice probabilities against float64 NumPy and hand-worked values,
agreement rates and the temperature bisection, strengths at their thresholds, the red-team inversion,
empirical agreement over 20k draws, the rule labeler on synthetic pairs and the gold PM labeler on
the session's smoke PM."""

import math

import numpy as np
import pytest

from hh.data import synthetic
from hh.serve import labelers as lb


def reference_p(a, b, t):
    return 1.0 / (1.0 + np.exp(-(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / t))


def test_choice_probability_matches_bradley_terry():
    assert lb.choice_probability(1.0, 0.0, 1.0) == pytest.approx(0.7310585786300049, abs=1e-15)
    assert lb.choice_probability(0.0, 2.0, 0.5) == pytest.approx(1 / (1 + math.e**4), abs=1e-15)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=1000) * 3, rng.normal(size=1000) * 3
    for t in (0.1, 1.0, 7.0):
        np.testing.assert_allclose(lb.choice_probability(a, b, t), reference_p(a, b, t), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(lb.choice_probability([2.0, -1.0, 0.3], [1.0, 0.0, 0.3], 0.0), [1.0, 0.0, 0.5])
    assert lb.choice_probability(1e6, 0.0, 1e-3) == 1.0 and lb.choice_probability(-1e6, 0.0, 1e-3) == 0.0
    assert lb.choice_probability(np.zeros((2, 3)), 0.0, 1.0).shape == (2, 3)   # broadcasts
    with pytest.raises(ValueError, match="temperature -1"):
        lb.choice_probability(0.0, 0.0, -1.0)


def test_agreement_rate_hand_worked_and_monotone_in_temperature():
    margins = [0.0, 1.0, -2.0]
    expected = (0.5 + 1 / (1 + math.exp(-1)) + 1 / (1 + math.exp(-2))) / 3
    assert lb.agreement_rate(margins, 1.0) == pytest.approx(expected, abs=1e-15)
    assert lb.agreement_rate(margins, 0.0) == pytest.approx(2.5 / 3, abs=1e-15)   # the tie: half
    rates = [lb.agreement_rate(np.random.default_rng(1).normal(size=500), t)
             for t in np.geomspace(1e-3, 1e3, 40)]
    assert all(x > y for x, y in zip(rates, rates[1:]))
    assert rates[0] > 0.99 and rates[-1] < 0.5004


@pytest.mark.parametrize("target", [0.51, 0.63, 0.9, 0.99])
def test_temperature_for_agreement_hits_the_target(target):
    margins = np.random.default_rng(2).normal(scale=1.5, size=2000)
    t = lb.temperature_for_agreement(margins, target)
    assert t > 0 and abs(lb.agreement_rate(margins, t) - target) < 1e-6


def test_temperature_for_agreement_refuses_unreachable_targets():
    margins = [0.0, 1.0, 3.0]   # noiseless agreement: (0.5 + 1 + 1) / 3
    best = 2.5 / 3
    for bad in (0.5, 0.3, best + 1e-9, 1.0):
        with pytest.raises(ValueError, match=r"achievable targets lie in \(0.5, 0.833333\]"):
            lb.temperature_for_agreement(margins, bad)
    assert lb.temperature_for_agreement(margins, best) == 0.0
    with pytest.raises(ValueError):
        lb.temperature_for_agreement([0.0, 0.0], 0.6)   # all ties: only 0.5 is reachable


def test_strength_thresholds():
    p = [0.0, 0.3, 0.5, 0.5999, 0.6, 0.7499, 0.75, 0.8999, 0.9, 1.0]
    np.testing.assert_array_equal(lb.strength_from_probability(p), [1, 1, 1, 1, 2, 2, 3, 3, 4, 4])
    assert lb.strength_from_probability(0.75) == 3 and isinstance(lb.strength_from_probability(0.75), int)


def test_red_team_picks_the_lower_score_and_helpful_the_higher():
    a, b = np.array([2.0, -1.0, 0.4]), np.array([1.0, 0.5, 0.4])
    helpful = lb.label_pairs(a, b, "helpful", 0.0, rng=0)
    red = lb.label_pairs(a, b, "red-team", 0.0, rng=0)
    assert [l.choice for l in helpful[:2]] == ["a", "b"] and [l.choice for l in red[:2]] == ["b", "a"]
    assert [l.strength for l in helpful] == [4, 4, 1] and [l.strength for l in red] == [4, 4, 1]
    assert (helpful[0].score_a, helpful[0].score_b) == (2.0, 1.0)
    for t in (0.5, 2.0):
        p_help = [l.p_a for l in lb.label_pairs(a, b, "helpful", t, rng=0)]
        p_red = [l.p_a for l in lb.label_pairs(a, b, "red-team", t, rng=0)]
        np.testing.assert_allclose(p_help, reference_p(a, b, t), rtol=1e-13)
        np.testing.assert_allclose(p_red, 1.0 - reference_p(a, b, t), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="mode 'harmless'"):
        lb.label_pairs(a, b, "harmless")


def test_empirical_agreement_is_within_three_sigma_of_the_expected_rate():
    rng = np.random.default_rng(3)
    n = 20_000
    scores_a, scores_b = rng.normal(size=n), rng.normal(size=n)
    margins = scores_a - scores_b
    t = lb.temperature_for_agreement(margins, 0.63)   # Bai et al. §2.1: researcher–crowdworker ≈ 63%
    labels = lb.label_pairs(scores_a, scores_b, "helpful", t, rng=rng)
    agree = np.array([(l.choice == "a") == (m > 0) for l, m in zip(labels, margins)])
    p = lb.choice_probability(np.abs(margins), 0.0, t)
    sigma = math.sqrt(np.sum(p * (1 - p))) / n   # a sum of independent Bernoullis
    assert abs(agree.mean() - 0.63) < 3 * sigma
    picked = np.array([l.p_a if l.choice == "a" else 1 - l.p_a for l in labels])
    np.testing.assert_array_equal([l.strength for l in labels], lb.strength_from_probability(picked))


def as_columns(pairs, swap):
    """(contexts, a, b, index of the chosen side) with chosen on side b where swap."""
    a = [p["rejected"] if s else p["chosen"] for p, s in zip(pairs, swap)]
    b = [p["chosen"] if s else p["rejected"] for p, s in zip(pairs, swap)]
    return [p["prompt"] for p in pairs], a, b


@pytest.mark.parametrize("kind,mode", [("helpful", "helpful"), ("harmless", "red-team")])
def test_rule_labeler_picks_as_the_tranches_labeler_does(kind, mode):
    """Helpful mode judges with the helpfulness labeler and picks the better response; red-team mode
    judges with the harmlessness labeler and picks the MORE harmful one, so on each tranche's pairs
    (where that labeler prefers the chosen side) the pick is the chosen or the rejected side."""
    pairs = synthetic.comparisons(kind, 300, seed=4, split="test")
    assert all(synthetic.gold_preference(p["prompt"], p["chosen"], p["rejected"], kind) == 1.0 for p in pairs)
    swap = np.random.default_rng(5).random(len(pairs)) < 0.5
    contexts, a, b = as_columns(pairs, swap)
    labels = lb.RuleLabeler(seed=0).label(contexts, a, b, mode=mode)
    chosen_side = ["b" if s else "a" for s in swap]
    if mode == "helpful":
        assert [l.choice for l in labels] == chosen_side and all(l.strength == 4 for l in labels)
    else:
        assert all(l.choice != c for l, c in zip(labels, chosen_side))
    # the two labelers disagree on the dual-use pairs: the other mode's labeler picks differently there
    conflict = [i for i, p in enumerate(pairs) if p["conflict"]]
    other = lb.RuleLabeler(seed=0).label(contexts, a, b, mode="red-team" if mode == "helpful" else "helpful")
    assert conflict and all((other[i].choice == chosen_side[i]) == (mode == "helpful") for i in conflict)


def test_rule_labeler_ties_are_coin_flips_of_strength_one():
    pair = synthetic.comparisons("helpful", 1, seed=6)[0]
    n = 400
    same = lb.RuleLabeler(seed=1).label([pair["prompt"]] * n, [pair["chosen"]] * n, [pair["chosen"]] * n)
    unknown = lb.RuleLabeler(seed=2).label(["\n\nHuman: Tell me a story.\n\nAssistant:"] * n, [" Once"] * n,
                                           [" No"] * n)
    for labels in (same, unknown):
        assert {l.strength for l in labels} == {1} and {l.p_a for l in labels} == {0.5}
        n_a = sum(l.choice == "a" for l in labels)
        assert abs(n_a - n / 2) < 3 * math.sqrt(n / 4)
    assert (unknown[0].score_a, unknown[0].score_b) == (0.5, 0.5)
    noisy = lb.RuleLabeler(seed=3, temperature=1.0).label([pair["prompt"]], [pair["chosen"]], [pair["rejected"]])
    assert noisy[0].p_a == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-15)


def test_gold_pm_labeler_follows_the_pms_scores(pm_chain):
    from hh.trained import LoadedPM

    pm = LoadedPM(pm_chain["pm"])
    pairs = synthetic.comparisons("helpful", 24, seed=7, split="test")
    swap = np.random.default_rng(8).random(len(pairs)) < 0.5
    contexts, a, b = as_columns(pairs, swap)
    labeler = lb.GoldPMLabeler(pm, temperature=0.0, seed=0)
    score_a, score_b = labeler.scores(contexts, a, b)
    ref_a, ref_b = pm.scores([{"prompt": c, "chosen": x, "rejected": y} for c, x, y in zip(contexts, a, b)])
    np.testing.assert_allclose(score_a, ref_a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(score_b, ref_b, rtol=0, atol=1e-6)
    assert np.all(score_a != score_b)
    labels = labeler.label(contexts, a, b)
    assert [l.choice for l in labels] == ["a" if x > y else "b" for x, y in zip(score_a, score_b)]
    assert [l.score_a for l in labels] == pytest.approx(list(score_a), abs=1e-6)
    red = labeler.label(contexts, a, b, mode="red-team")
    assert [l.choice for l in red] == ["b" if x > y else "a" for x, y in zip(score_a, score_b)]
    noisy = lb.GoldPMLabeler(pm, temperature=2.0, seed=0).label(contexts, a, b)
    np.testing.assert_allclose([l.p_a for l in noisy], reference_p(score_a, score_b, 2.0), rtol=1e-6)
    assert labeler.scores([], [], [])[0].shape == (0,)
