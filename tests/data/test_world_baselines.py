"""Baselines that must fail on the embedded world: shallow prompt-aware adversaries fitted on a PM's
own training pairs stay near chance on held-out pairs (about entities no training pair mentions),
while they do learn the training entities (so they are real adversaries, not broken ones); and
lexical novelty does not tell red-team prompts from helpful ones."""

import pytest

from hh.data import synthetic as syn
from hh.eval import adversaries

KINDS = syn.KINDS


@pytest.fixture(scope="module")
def fitted():
    train = [p for k in KINDS for p in syn.comparisons(k, 2000, seed=0, split="train")]
    return adversaries.fit_adversaries(train)


@pytest.mark.parametrize("kind", KINDS)
def test_shallow_adversaries_stay_near_chance_on_held_out_entities(fitted, kind):
    held_out = syn.comparisons(kind, 600, seed=1, split="test")
    same_entities = syn.comparisons(kind, 600, seed=1, split="train")   # fresh samples, seen entities
    for name, adversary in fitted.items():
        test = adversaries.adversary_accuracy(adversary, held_out)["accuracy"]
        seen = adversaries.adversary_accuracy(adversary, same_entities)["accuracy"]
        print(f"{kind} {name}: held-out entities {test:.3f}, training entities {seen:.3f}")
        assert test <= 0.60
        assert seen >= 0.75   # the same adversary does learn what it can look up


def test_lexical_novelty_does_not_find_the_red_team():
    fit = [p["prompt"] for p in syn.comparisons("helpful", 2000, seed=0, split="train")]
    helpful = [p["prompt"] for p in syn.comparisons("helpful", 400, seed=1, split="test")]
    redteam = [p["prompt"] for p in syn.redteam_prompts(400, seed=1, split="test")]
    auroc = adversaries.novelty_auroc(fit, helpful, redteam)
    print(f"novelty AUROC, red-team vs helpful held-out prompts: {auroc:.3f}")
    assert 0.35 <= auroc <= 0.65
