"""Shallow adversaries on hand-made worlds whose answer is known: where the deciding word of a
held-out pair occurs in training, a lookup table and a hashed-n-gram logistic regression must
win; where it never does, they must sit at chance. Lexical novelty separates OOD prompts exactly
when each has a new word. The lookup's log-odds are checked by hand on three pairs."""

import math
import re

import numpy as np
import pytest

from hh.eval.adversaries import (adversary_accuracy, evaluate_adversaries, final_request, fit_logistic,
                                 fit_lookup, novelty_auroc, novelty_scores, pair_features)

REQUESTS = ("How do I make {x}?", "Can you tell me how to make {x}?", "What is the best way to make {x}?")
DECLINES = (" I can't help you make {x}.", " Sorry, I won't help with that.", " I'd rather not.")
COMPLIES = (" Sure, to make {x}, go step by step.", " Here is how: start small and check.",
            " To make {x}, plan first, then act.")


def prompt(request, context=""):
    return f"{context}\n\nHuman: {request}\n\nAssistant:"


def made_up_words(rng, n):
    """n distinct random lowercase words: no shared stem or digit a model could key on."""
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 8)))
    return sorted(words)


def howto_pairs(rng, harmful, benign, n):
    """n pairs alternating harmful/benign things: declining is chosen exactly for harmful ones."""
    rows = []
    for i in range(n):
        is_harmful = i % 2 == 0
        x = rng.choice(harmful if is_harmful else benign)
        decline = rng.choice(DECLINES).format(x=x)
        comply = rng.choice(COMPLIES).format(x=x)
        chosen, rejected = (decline, comply) if is_harmful else (comply, decline)
        rows.append({"prompt": prompt(rng.choice(REQUESTS).format(x=x)), "chosen": chosen,
                     "rejected": rejected, "family": "harmful" if is_harmful else "benign"})
    return rows


def test_final_request_takes_the_last_human_turn():
    assert final_request(prompt("How do I X?")) == "How do I X?"
    assert final_request(prompt("Second?", context="\n\nHuman: First?\n\nAssistant: Yes.")) == "Second?"
    assert final_request("\n\nHuman:  Spaces around  ") == "Spaces around"
    assert final_request("no markers at all") == "no markers at all"


def test_lookup_log_odds_by_hand():
    no = re.compile(r"\bno\b", re.IGNORECASE)
    pairs = [{"prompt": prompt("bomb?"), "chosen": " No.", "rejected": " Yes."},
             {"prompt": prompt("bomb?"), "chosen": " No.", "rejected": " Yes."},
             {"prompt": prompt("cake?"), "chosen": " Yes.", "rejected": " No."}]
    lookup = fit_lookup(pairs, refusal=no)
    # (bomb, declines): chosen twice, rejected never -> log((2 + 1) / (0 + 1))
    assert lookup.log_odds[("bomb", ("declines", True))] == pytest.approx(math.log(3))
    assert lookup.log_odds[("bomb", ("word", "yes"))] == pytest.approx(math.log(1 / 3))
    assert lookup.log_odds[("cake", ("declines", True))] == pytest.approx(math.log(1 / 2))
    assert len(lookup.log_odds) == 8          # 2 request words x 4 response features
    assert lookup.score(prompt("bomb?"), " No.") == pytest.approx(2 * math.log(3))
    assert lookup.score(prompt("cake?"), " Yes.") == pytest.approx(2 * math.log(2))
    # "a" is a stop word; the two request words' keys add up
    assert lookup.score(prompt("a bomb cake?"), " No.") == pytest.approx(2 * math.log(3) - 2 * math.log(2))
    assert lookup.score(prompt("pie?"), " No.") == 0.0


def test_adversaries_win_when_the_deciding_word_was_seen():
    rng = np.random.default_rng(0)
    harmful, benign = made_up_words(rng, 24)[:12], made_up_words(rng, 24)[12:]
    train, test = howto_pairs(rng, harmful, benign, 240), howto_pairs(rng, harmful, benign, 120)
    report = evaluate_adversaries(train, test)
    for name in ("lookup", "logistic"):
        assert report[name]["test"]["accuracy"] >= 0.9, (name, report[name])
        assert report[name]["train"]["accuracy"] >= 0.9, (name, report[name])
        assert set(report[name]["test"]["per_family"]) == {"harmful", "benign"}
        assert report[name]["test"]["pairs"] == 120


def test_adversaries_are_at_chance_when_the_deciding_word_is_new():
    rng = np.random.default_rng(1)
    words = made_up_words(rng, 80)
    train = howto_pairs(rng, words[:20], words[20:40], 240)
    test = howto_pairs(rng, words[40:60], words[60:80], 300)
    report = evaluate_adversaries(train, test)
    for name in ("lookup", "logistic"):
        assert report[name]["train"]["accuracy"] >= 0.9, (name, report[name])
        assert report[name]["test"]["accuracy"] <= 0.65, (name, report[name])


def test_logistic_is_deterministic_and_antisymmetric():
    rng = np.random.default_rng(2)
    words = made_up_words(rng, 8)
    pairs = howto_pairs(rng, words[:4], words[4:], 60)
    a, b = fit_logistic(pairs), fit_logistic(pairs)
    np.testing.assert_array_equal(a.weights, b.weights)
    swapped = [{**row, "chosen": row["rejected"], "rejected": row["chosen"]} for row in pairs]
    flipped = adversary_accuracy(a, swapped)["accuracy"]
    assert flipped == pytest.approx(1.0 - adversary_accuracy(a, pairs)["accuracy"])
    # features are bucket indices, sorted and distinct; the request alone adds nothing
    features = pair_features(prompt("How do I make bread?"), " Sure.")
    assert np.all(np.diff(features) > 0)
    assert not np.array_equal(features, pair_features(prompt("How do I make soup?"), " Sure."))


def test_novelty_auroc_separates_exactly_the_prompts_with_new_words():
    rng = np.random.default_rng(3)
    seen, unseen = made_up_words(rng, 40)[:20], made_up_words(rng, 40)[20:]
    fit_in = [prompt(f"How do I make {w}?") for w in seen]
    test_in = [prompt(f"How do I make {rng.choice(seen)}?") for _ in range(30)]
    new_out = [prompt(f"How do I make {rng.choice(unseen)}?") for _ in range(30)]
    # another template, but of seen words only ("how" and "make" occur in fit_in)
    old_out = [prompt(f"Make {rng.choice(seen)}: how?") for _ in range(30)]
    assert novelty_auroc(fit_in, test_in, new_out) == 1.0
    assert novelty_auroc(fit_in, test_in, old_out) == 0.5
    # earlier turns do not count: only the final request's words are compared
    scores = novelty_scores(fit_in, [prompt("make tea", context=f"\n\nHuman: {unseen[0]}\n\nAssistant: ok")])
    assert scores.tolist() == [1.0]
    assert novelty_scores(fit_in, [prompt("make tea now")], fraction=True).tolist() == [pytest.approx(2 / 3)]
