"""Comparisons, RL prompts and red-team prompts about the world, by tranche and split.

Each task family draws its entity from the split's entities only (hh.data.synthetic.facts), so held-out
pairs ask about places, substances, sums and words that no training pair mentions. Within each
tranche the chosen side is a decline exactly as often as the rejected side, a warning too, and wrong
values come from the same pool as right ones: what decides a pair is what is true of its entity.

Helpful tranche (the helpfulness labeler): facts about places, answering requests about safe and
dual-use substances and declining the dangerous ones, warnings where they help, sums, repeating a word.
Harmless tranche (red-teaming, the harmlessness labeler): the same request templates over harmful
(dangerous or dual-use) and safe substances: declining the harmful, answering the safe, and between
two answers the less harmful one (with a warning). Dual-use requests are where the labelers conflict.
"""

import random

from hh.data.synthetic import text as tx
from hh.data.synthetic.judge import gold_preference
from hh.data.synthetic.facts import ATTRIBUTE_VALUES, ATTRIBUTES, DEFAULT_WORLD, check_split, split_of_world

KINDS = ("helpful", "harmless")


def _rng(*parts):
    return random.Random("hh-synthetic/" + "/".join(map(str, parts)))


def _request(rng, target):
    """(question, echo): a request about `target` and how an answer refers back to it."""
    verb = rng.choice(tx.REQUEST_VERBS)
    return rng.choice(tx.TEMPLATES["request"]).format(verb=verb, target=target), tx.you(f"{verb} {target}")


def _request_pair(rng, target, decline_wins):
    question, echo = _request(rng, target)
    no, yes = tx.decline(rng, tx.REQUEST_DECLINES, echo=echo), tx.comply(rng, echo)
    return (question, no, yes) if decline_wins else (question, yes, no)


def _warning_pair(rng, target, warning_wins):
    """Two answers that differ only by a warning at the end."""
    question, echo = _request(rng, target)
    plain = tx.comply(rng, echo)
    warned = plain + rng.choice(tx.WARNINGS)
    return (question, warned, plain) if warning_wins else (question, plain, warned)


def _helpful_request(rng, s):
    """Safe or dual-use substance: answering beats declining; dangerous: declining wins."""
    hazard = rng.choice(("safe", "dual-use")) if rng.random() < 0.5 else "dangerous"
    return _request_pair(rng, rng.choice(s.substances[hazard]).name, hazard == "dangerous")


def _helpful_warning(rng, s):
    """A warning helps on a dual-use substance and misleads on a safe one."""
    hazard = rng.choice(("safe", "dual-use"))
    return _warning_pair(rng, rng.choice(s.substances[hazard]).name, hazard == "dual-use")


def _harmless_request(rng, s):
    """Harmful (dangerous or dual-use) substance: declining wins; safe: answering wins."""
    hazard = rng.choice(("dangerous", "dual-use")) if rng.random() < 0.5 else "safe"
    return _request_pair(rng, rng.choice(s.substances[hazard]).name, hazard != "safe")


def _harmless_warning(rng, s):
    """Two answers: the warned one is the less harmful for a harmful substance, needless for a safe."""
    hazard = rng.choice(("dangerous", "dual-use")) if rng.random() < 0.5 else "safe"
    return _warning_pair(rng, rng.choice(s.substances[hazard]).name, hazard != "safe")


def _fact_question(rng, place):
    attr = rng.choice(ATTRIBUTES)
    return attr, rng.choice(tx.TEMPLATES["fact"]).format(attr=attr, place=place)


def _wrong_value(rng, s, attr, right):
    pool = ATTRIBUTE_VALUES.get(attr) or s.capitals
    return rng.choice([v for v in pool if v != right])


def _fact_qa(rng, s):
    """A known place's fact: the right value beats a wrong one, in one phrasing."""
    place = rng.choice(s.places)
    attr, question = _fact_question(rng, place.name)
    form, right = rng.choice(tx.FACT_ANSWERS), place.fact(attr)
    say = lambda v: " " + form.format(attr=attr, place=place.name, value=v)  # noqa: E731
    return question, say(right), say(_wrong_value(rng, s, attr, right))


def _answer_pair(rng, family, right, wrong, **slots):
    form = rng.choice(tx.ANSWERS[family])
    return " " + form.format(x=right, **slots), " " + form.format(x=wrong, **slots)


def _arithmetic(rng, s):
    """A sum or difference of digits; the wrong answer is off by one or two (no size cue)."""
    op, a, b = rng.choice(s.digit_facts)
    right = a + b if op == "plus" else a - b
    wrong = rng.choice([x for x in (right - 2, right - 1, right + 1, right + 2) if x >= 0])
    question = rng.choice(tx.TEMPLATES["arithmetic"]).format(a=a, b=b, op=op)
    return (question, *_answer_pair(rng, "arithmetic", right, wrong, a=a, b=b, op=op))


def _repeat(rng, s):
    """Say the user's word back; the wrong answer is another held-in-split word."""
    word, other = rng.sample(s.words, 2)
    question = rng.choice(tx.TEMPLATES["repeat"]).format(word=word)
    return (question, *_answer_pair(rng, "repeat", word, other))


FAMILIES = {
    "helpful": {"fact": (_fact_qa, 25), "request": (_helpful_request, 40), "warning": (_helpful_warning, 15),
                "arithmetic": (_arithmetic, 10), "repeat": (_repeat, 10)},
    "harmless": {"request": (_harmless_request, 75), "warning": (_harmless_warning, 25)},
}


def task(rng, kind, s):
    """(family, question, chosen, rejected) of a tranche in a split."""
    names = list(FAMILIES[kind])
    family = rng.choices(names, [FAMILIES[kind][n][1] for n in names])[0]
    return (family, *FAMILIES[kind][family][0](rng, s))


def context_turns(rng, world_size, max_turns=2):
    """Earlier (human, assistant) turns for 25% of dialogues: maybe a greeting, then right answers
    to helpful requests about train entities. Only the final request decides a pair."""
    if rng.random() >= 0.25:
        return []
    train = split_of_world(world_size, "train")
    n_turns, turns = rng.randint(1, max_turns), [rng.choice(tx.GREETINGS)] if rng.random() < 0.5 else []
    while len(turns) < n_turns:
        turns.append(task(rng, "helpful", train)[1:3])
    return turns


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be 'helpful' or 'harmless', got {kind!r}")


def comparisons(kind: str, n: int, seed: int, split: str = "train", world_size=DEFAULT_WORLD) -> list[dict]:
    """n preference pairs of `kind` ('helpful' or 'harmless') about `split`'s entities: prompt,
    chosen, rejected, num_turns, tranche, family, conflict (the other labeler prefers the rejected
    response: the dual-use requests). The prompt ends with '\\n\\nAssistant:'; responses keep their
    leading space. Seeds only pick samples: the same arguments always give the same list."""
    _check_kind(kind)
    check_split(split)
    other = "harmless" if kind == "helpful" else "helpful"
    rng, s, out = _rng("comparisons", kind, split, seed, world_size), split_of_world(world_size, split), []
    for _ in range(n):
        context = context_turns(rng, world_size)
        family, question, good, bad = task(rng, kind, s)
        prompt = tx.render(context, question)
        out.append({"prompt": prompt, "chosen": good, "rejected": bad,
                    "num_turns": len(context) + 1, "tranche": f"synthetic-{kind}", "family": family,
                    "conflict": gold_preference(prompt, good, bad, other) == 0.0})
    return out


def rl_prompts(n: int, seed: int, split: str = "train", world_size=DEFAULT_WORLD) -> list[dict]:
    """n PPO prompts, half helpful and half harmless in expectation: {prompt, kind}."""
    check_split(split)
    rng, s, out = _rng("rl", split, seed, world_size), split_of_world(world_size, split), []
    for _ in range(n):
        kind = rng.choice(KINDS)
        context = context_turns(rng, world_size)
        out.append({"prompt": tx.render(context, task(rng, kind, s)[1]), "kind": kind})
    return out


def redteam_prompts(n: int, seed: int, split: str = "train", world_size=DEFAULT_WORLD) -> list[dict]:
    """n red-team prompts, every one a request the harmlessness labeler wants declined (a dangerous
    or dual-use substance), in the templates and verbs the benign requests use: {prompt}."""
    check_split(split)
    rng, s, out = _rng("redteam", split, seed, world_size), split_of_world(world_size, split), []
    for _ in range(n):
        target = rng.choice(s.substances[rng.choice(("dangerous", "dual-use"))]).name
        question = _request_pair(rng, target, True)[0]
        out.append({"prompt": tx.render(context_turns(rng, world_size), question), "kind": "harmless"})
    return out
