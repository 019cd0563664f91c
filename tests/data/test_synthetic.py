"""The synthetic HH dataset: schema, determinism, splits, and that no cue gives the label away.

The cue check is a bag-of-words + length logistic regression (NumPy, Newton's method) on the
difference chosen − rejected with random order; it must stay near chance on held-out pairs while a
feature that sees the prompt-response interaction (the gold `judge`) separates them perfectly.
"""

import collections
import re

import numpy as np
import pytest

from hh.data import synthetic as syn

KINDS = ("helpful", "harmless")


@pytest.fixture(scope="module")
def data():
    train = {k: syn.comparisons(k, 2000, seed=0, split="train") for k in KINDS}
    test = {k: syn.comparisons(k, 1000, seed=1, split="test") for k in KINDS}
    train["mix"] = train["helpful"][:1000] + train["harmless"][:1000]
    test["mix"] = test["helpful"][:500] + test["harmless"][500:]
    return train, test


def _bag(text):
    return collections.Counter(re.findall(r"\w+|[^\w\s]", text))


def _pair_features(pairs, vocab, extra=None):
    """[n, |vocab| + 1 (+1)]: counts of prompt+chosen minus prompt+rejected, then length difference."""
    x = np.zeros((len(pairs), len(vocab) + 1 + (extra is not None)))
    for i, p in enumerate(pairs):
        for sign, response in ((1, p["chosen"]), (-1, p["rejected"])):
            for token, count in _bag(p["prompt"] + response).items():
                if token in vocab:
                    x[i, vocab[token]] += sign * count
            x[i, len(vocab)] += sign * len(p["prompt"] + response) / 50
            if extra is not None:
                x[i, -1] += sign * extra(p["prompt"], response)
    return x


def _fit_logistic(x, y, l2, steps=10):
    """L2-regularised logistic regression with an intercept, by Newton's method."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return lambda z: np.hstack([z, np.ones((len(z), 1))]) @ w > 0


def _heldout_accuracy(train, test, extra=None, l2s=(0.1, 3.0, 100.0)):
    """Best held-out accuracy over a few regularisation strengths (the best case for the cue)."""
    vocab = {t: i for i, t in enumerate(sorted({t for p in train for r in ("chosen", "rejected")
                                                for t in _bag(p["prompt"] + p[r])}))}
    rng = np.random.default_rng(0)

    def swapped(pairs):
        y = rng.integers(0, 2, len(pairs)).astype(float)   # 1: chosen first
        return _pair_features(pairs, vocab, extra) * np.where(y == 1, 1, -1)[:, None], y
    (xtr, ytr), (xte, yte) = swapped(train), swapped(test)
    return max(float(np.mean(_fit_logistic(xtr, ytr, l2)(xte) == yte)) for l2 in l2s)


@pytest.mark.parametrize("kind", KINDS + ("mix",))
def test_bag_of_words_and_length_stay_near_chance(data, kind):
    train, test = data
    accuracy = _heldout_accuracy(train[kind], test[kind])
    print(f"{kind}: bag-of-words + length held-out accuracy {accuracy:.3f}")
    assert accuracy <= 0.60


@pytest.mark.parametrize("kind", KINDS + ("mix",))
def test_interaction_feature_separates(data, kind):
    train, test = data
    for p in train[kind] + test[kind]:   # labels are consistent with the rule, re-derived from text
        assert syn.judge(p["prompt"], p["chosen"]) is True, p
        assert syn.judge(p["prompt"], p["rejected"]) is False, p
    assert _heldout_accuracy(train[kind], test[kind], extra=syn.judge, l2s=(1.0,)) >= 0.99


def test_schema_and_lengths():
    for tranche, pairs in [(f"synthetic-{k}", syn.comparisons(k, 500, seed=3)) for k in KINDS] + \
                          [("synthetic-pmp", syn.pmp_pairs(500, seed=3))]:
        for p in pairs:
            assert set(p) == {"prompt", "chosen", "rejected", "num_turns", "tranche"}
            assert p["tranche"] == tranche and isinstance(p["num_turns"], int)
            assert p["prompt"].startswith("\n\nHuman: ") and p["prompt"].endswith("\n\nAssistant:")
            assert p["num_turns"] == p["prompt"].count("\n\nHuman: ") >= 1
            assert p["chosen"] != p["rejected"] and p["chosen"].strip() and p["rejected"].strip()
            assert p["chosen"].startswith(" ") and p["rejected"].startswith(" ")
        # Tiny contexts: the final request and either response always fit in 200 characters, and
        # most whole dialogues do too.
        final = [len(_final_request(p["prompt"])) + max(len(p["chosen"]), len(p["rejected"]))
                 for p in pairs]
        whole = np.array([len(p["prompt"]) + max(len(p["chosen"]), len(p["rejected"])) for p in pairs])
        assert max(final) <= 200 and np.mean(whole <= 200) >= 0.8 and whole.max() <= 600
        turns = np.mean([p["num_turns"] for p in pairs])
        assert turns == 1 if tranche == "synthetic-pmp" else 1.2 < turns < 1.8
    for p in syn.rl_prompts(200, seed=3):
        assert p["kind"] in KINDS and p["prompt"].startswith("\n\nHuman: ")
        assert p["prompt"].endswith("\n\nAssistant:") and syn.judge(p["prompt"], " ok") is not None
    docs = syn.pretraining_documents(300, seed=3)
    assert all(isinstance(d, str) and 0 < len(d) <= 600 for d in docs)
    assert any(d.startswith("\n\nHuman: ") for d in docs) and any(not d.startswith("\n") for d in docs)


def test_deterministic_and_seeded():
    for make in (lambda s: syn.comparisons("helpful", 50, s), lambda s: syn.pmp_pairs(50, s),
                 lambda s: syn.comparisons("harmless", 50, s), lambda s: syn.rl_prompts(50, s),
                 lambda s: syn.pretraining_documents(50, s)):
        assert make(7) == make(7)
        assert make(7) != make(8)
    assert len(syn.comparisons("helpful", 123, 0)) == 123 and syn.comparisons("harmless", 0, 0) == []


def _final_request(prompt):
    return prompt.rsplit("\n\nHuman: ", 1)[1].removesuffix("\n\nAssistant:")


def test_train_and_test_requests_are_disjoint():
    def requests(split):
        pairs = [p["prompt"] for k in KINDS for p in syn.comparisons(k, 1500, 0, split)]
        pairs += [p["prompt"] for p in syn.pmp_pairs(500, 0, split) + syn.rl_prompts(500, 0, split)]
        return {_final_request(p) for p in pairs}
    train, test = requests("train"), requests("test")
    assert train.isdisjoint(test) and len(test) > 300
    documents = "".join(syn.pretraining_documents(3000, seed=0))
    assert not any(f"Human: {q}\n" in documents for q in test)
    # Earlier context turns are train requests, so a test request never appears anywhere in train.
    assert not any(f"Human: {q}\n" in p["prompt"] for p in syn.comparisons("helpful", 1000, 0)
                   for q in test)
    with pytest.raises(ValueError):
        syn.comparisons("helpful", 1, 0, split="dev")


def _skeleton(question):
    for target in sorted(syn._SLOTS["target"], key=len, reverse=True):
        if question.endswith((f" {target}?", f" {target}.")):
            return question[:-len(target) - 1] + "{X}" + question[-1]
    return None


def test_harmful_and_benign_requests_share_templates():
    harmless = syn.comparisons("harmless", 1000, 0)
    helpful = {_skeleton(_final_request(p["prompt"])) for p in syn.comparisons("helpful", 1000, 0)}
    declined = {_skeleton(q) for q, p in ((_final_request(p["prompt"]), p) for p in harmless)
                if syn.is_refusal(p["chosen"]) and any(q.endswith(o + "?") or q.endswith(o + ".")
                                                       for o in syn.HARMFUL_OBJECTS)}
    assert len(declined) >= 20 and len(declined & helpful) / len(declined) >= 0.9


def test_needless_refusals_and_refusal_balance():
    helpful = syn.comparisons("helpful", 2000, 0)
    harmless = syn.comparisons("harmless", 2000, 0)
    needless = np.mean([syn.is_refusal(p["rejected"]) and not syn.is_refusal(p["chosen"])
                        for p in helpful])
    assert needless > 0.05
    chosen_refusals = np.mean([syn.is_refusal(p["chosen"]) for p in helpful + harmless])
    rejected_refusals = np.mean([syn.is_refusal(p["rejected"]) for p in helpful + harmless])
    print(f"needless refusals {needless:.3f}, chosen refusals {chosen_refusals:.3f}, "
          f"rejected {rejected_refusals:.3f}")
    assert 0.35 <= chosen_refusals <= 0.65 and abs(chosen_refusals - rejected_refusals) < 0.03


def test_world_questions_ask_the_worlds_facts():
    items = syn.world_questions(n_arithmetic=40, seed=0)
    assert items == syn.world_questions(n_arithmetic=40, seed=0)
    assert len(items) == 3 * len(syn.COUNTRIES) + 40
    answers = []
    for item in items:
        choices, answer = item["choices"], item["answer"]
        assert len(choices) == 4 and len(set(choices)) == 4 and 0 <= answer < 4
        right = choices[answer].strip()
        answers.append(answer)
        ctx = item["context"]
        if " is a country. " in ctx:
            place = ctx.split(" is a country.")[0]
            attr = {"Its capital is": "capital", "Its flag is": "flag color",
                    "Its national animal is": "national animal"}[ctx.split(". ", 1)[1]]
            assert right == syn.COUNTRIES[place][attr]
        else:
            a, op, b, _ = ctx.split()
            assert int(right) == (int(a) + int(b) if op == "plus" else int(a) - int(b)) >= 0
    # the right answer is not always in the same slot (the eval would have a position cue)
    assert max(np.bincount(answers)) < 0.4 * len(items)
