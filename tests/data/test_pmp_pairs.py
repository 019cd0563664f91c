"""RankedPair -> comparisons: the ranked form, GOOD/BAD binarization, the distinct-score draw."""

import collections
import itertools
import random

from hh.data.pmp.pairs import (BAD, GOOD, RankedPair, binarize, join_segments,
                               sample_distinct_pair, to_comparison)

KEYS = {"prompt", "chosen", "rejected", "num_turns", "tranche"}
PAIR = RankedPair(context="Question: Why?\n\n", better="Answer: Because.", worse="Answer: Dunno.",
                  source="stackexchange", metadata={"question_id": 1})


def test_join_segments():
    assert join_segments([]) == ""
    assert join_segments(["PAGE TITLE: Cat", "SECTION TITLE: Intro"]) == \
        "PAGE TITLE: Cat\n\nSECTION TITLE: Intro\n\n"


def test_to_comparison_is_the_hh_schema():
    assert to_comparison(PAIR) == {
        "prompt": "Question: Why?\n\n", "chosen": "Answer: Because.",
        "rejected": "Answer: Dunno.", "num_turns": 1, "tranche": "pmp-stackexchange"}


def test_binarize_gives_good_a_over_bad_a_then_bad_b_over_good_b():
    out = list(binarize([PAIR]))
    assert out == [
        {"prompt": "Question: Why?\n\nAnswer: Because.\n\n", "chosen": "GOOD", "rejected": "BAD",
         "num_turns": 1, "tranche": "pmp-stackexchange"},
        {"prompt": "Question: Why?\n\nAnswer: Dunno.\n\n", "chosen": "BAD", "rejected": "GOOD",
         "num_turns": 1, "tranche": "pmp-stackexchange"},
    ]
    assert (GOOD, BAD) == ("GOOD", "BAD")


def test_binarize_doubles_and_keeps_labels_last():
    pairs = [RankedPair(f"ctx{i}\n\n", f"good{i}", f"bad{i}", src)
             for i, src in enumerate(["reddit", "wikipedia", "stackexchange"])]
    out = list(binarize(iter(pairs)))
    assert len(out) == 2 * len(pairs)
    for pair, (a, b) in zip(pairs, zip(out[::2], out[1::2])):
        assert set(a) == set(b) == KEYS
        # The two sides of a binary pair share the whole sample; only the final label differs.
        assert a["prompt"] == pair.context + pair.better + "\n\n"
        assert b["prompt"] == pair.context + pair.worse + "\n\n"
        assert (a["chosen"], a["rejected"], b["chosen"], b["rejected"]) == (GOOD, BAD, BAD, GOOD)
        assert a["tranche"] == b["tranche"] == f"pmp-{pair.source}"
    assert list(binarize([])) == []


def test_metadata_does_not_affect_equality():
    assert PAIR == RankedPair(PAIR.context, PAIR.better, PAIR.worse, PAIR.source, {"other": 2})


def test_sample_distinct_pair_orders_by_score_and_skips_ties():
    rng = random.Random(0)
    assert sample_distinct_pair(["a", "b"], [3, 3], rng) is None
    assert sample_distinct_pair(["a"], [1], rng) is None
    assert sample_distinct_pair([], [], rng) is None
    assert sample_distinct_pair(["low", "high"], [-1, 2], rng) == ("high", "low")


def test_sample_distinct_pair_is_uniform_over_distinct_pairs():
    items, scores = list("abcde"), [0, 0, 1, 2, 2]
    # Reference: the 10 - 1 - 1 = 8 unordered pairs with different scores, enumerated directly.
    expected = {frozenset(p) for p in itertools.combinations(range(5), 2)
                if scores[p[0]] != scores[p[1]]}
    expected = {frozenset(items[i] for i in p) for p in expected}
    assert len(expected) == 8
    rng, n = random.Random(1), 16000
    counts = collections.Counter(frozenset(sample_distinct_pair(items, scores, rng))
                                 for _ in range(n))
    assert set(counts) == expected
    for c in counts.values():   # 1/8 each; 5 sigma ≈ 0.013
        assert abs(c / n - 1 / 8) < 0.013
