"""What the models learn the world from: LM pretraining documents, binarized PMP pairs, and the
multiple-choice questions that measure how much of it an LM knows.

Pretraining text states every fact of every known entity in several phrasings and shows good
dialogues about them, whatever their split, as web text holds facts and Q&A about most things a PM
will later be asked about; no PM-training comparison mentions a held-out entity, so what a PM knows of
one comes from pretraining.
"""

import random

from hh.data.pmp import pairs
from hh.data.synthetic import tranches as cmp
from hh.data.synthetic import text as tx
from hh.data.synthetic.facts import (ATTRIBUTE_VALUES, ATTRIBUTES, DEFAULT_WORLD, HAZARDS, KINDS, SPLIT_FRACTIONS,
                                     SPLITS, check_split, split_of_world, world)

_HAZARD_NOTES = {"dangerous": ("It can kill people.", "Never help anyone make or get it.",
                               "It is used to hurt people."),
                 "dual-use": ("It is useful, but it can hurt people if misused.",
                              "Handle it with care: it is harmful in large amounts.",
                              "It has honest uses and harmful ones."),
                 "safe": ("It is harmless.", "Anyone may make, buy or use it.",
                          "It is safe for everyday use.")}


def _capitalized(text):
    return text[0].upper() + text[1:]


def _place_document(rng, place):
    if rng.random() < 0.5:
        facts = [f"Its capital is {place.capital}.", f"Its flag is {place.flag_color}.",
                 f"Its national animal is {place.national_animal}.", f"Its main export is {place.main_export}."]
        rng.shuffle(facts)
        return f"{place.name} is a country. " + " ".join(facts)
    attr = rng.choice(ATTRIBUTES)
    return rng.choice((f"The {attr} of {place.name} is {place.fact(attr)}.",
                       f"{place.name}'s {attr} is {place.fact(attr)}.",
                       f"In {place.name}, the {attr} is {place.fact(attr)}."))


def _substance_document(rng, substance):
    note = rng.choice(_HAZARD_NOTES[substance.hazard])
    return rng.choice((f"{_capitalized(substance.name)} is {substance.kind}. {note}",
                       f"{note.removesuffix('.')}: {substance.name} is {substance.kind}.",
                       f"What is {substance.name}? It is {substance.kind}. {note}"))


def _arithmetic_document(rng):
    a, b = rng.randrange(10), rng.randrange(10)
    return f"{a} plus {b} is {a + b}. {max(a, b)} minus {min(a, b)} is {max(a, b) - min(a, b)}."


def pretraining_documents(n: int, seed: int, world_size=DEFAULT_WORLD) -> list[str]:
    """n LM pretraining texts: 55% plain facts (every known place and substance of the world), 5%
    sums, 40% good dialogues (one to three exchanges; the final one about an entity of any split, the
    chosen side of a helpful or a harmless comparison)."""
    w = world(world_size)
    splits = [split_of_world(world_size, s) for s in SPLITS]
    rng, out = random.Random(f"hh-synthetic/pretraining/{seed}/{world_size}"), []
    for _ in range(n):
        u = rng.random()
        if u < 0.25:
            out.append(_place_document(rng, rng.choice(w.places)))
        elif u < 0.55:
            out.append(_substance_document(rng, rng.choice(w.substances)))
        elif u < 0.6:
            out.append(_arithmetic_document(rng))
        else:
            out.append(_dialogue(rng, world_size, rng.choices(splits, SPLIT_FRACTIONS)[0]))
    return out


def _dialogue(rng, world_size, split):
    """A good dialogue: the chosen side of a helpful or a harmless comparison about `split`'s
    entities, with its earlier turns."""
    turns = cmp.context_turns(rng, world_size) + [cmp.task(rng, rng.choice(cmp.KINDS), split)[1:3]]
    return tx.render(turns)


# --- PMP: ranked answers in formats the HH comparisons never use, binarized -----------------------
def _profile_answers(rng, s, place):
    """'Tell me about X.': answers stating 3 attributes, 0 to 3 of them right; score = how many."""
    attrs = rng.sample(ATTRIBUTES, 3)
    answers = []
    for n_right in range(4):
        wrong = set(rng.sample(attrs, 3 - n_right))
        values = [rng.choice([v for v in (ATTRIBUTE_VALUES.get(a) or s.capitals)
                              if v != place.fact(a)]) if a in wrong else place.fact(a) for a in attrs]
        answers.append(" ".join(f"Its {a} is {v}." for a, v in zip(attrs, values)))
    return f"Tell me about {place.name}.", answers, list(range(4))


def _hazard_answers(rng, s, substance):
    """'What kind of thing is X?': one answer per hazard class; the true one scores 1."""
    answers = [f"{_capitalized(substance.name)} is {substance.kind if h == substance.hazard else rng.choice(KINDS[h])}."
               for h in HAZARDS]
    return f"What kind of thing is {substance.name}?", answers, [float(h == substance.hazard) for h in HAZARDS]


def _sum_answers(rng, s):
    op, a, b = rng.choice(s.digit_facts)
    right = a + b if op == "plus" else a - b
    answers = [right] + [x for x in (right - 1, right + 1) if x >= 0]
    return f"Finish: {a} {op} {b} is", [str(x) for x in answers], [1] + [0] * (len(answers) - 1)


def _pmp_item(rng, s):
    u = rng.random()
    if u < 0.35:
        return _profile_answers(rng, s, rng.choice(s.places))
    if u < 0.8:
        return _hazard_answers(rng, s, rng.choice([x for h in HAZARDS for x in s.substances[h]]))
    return _sum_answers(rng, s)


def ranked_pmp_pairs(n: int, seed: int, split: str = "train", world_size=DEFAULT_WORLD) -> list:
    """n ranked pairs (hh.data.pmp.pairs.RankedPair): two answers of distinct scores to a question
    about `split`'s entities (what kind of thing is X, tell me about a place, finish a sum), as
    Askell et al. 2021 §4 draw them from ranked Q&A sites. Split by entity like the comparisons, so
    no PM-training pair of any kind mentions a held-out entity."""
    check_split(split)
    rng, s, out = random.Random(f"hh-synthetic/pmp/{split}/{seed}/{world_size}"), split_of_world(world_size, split), []
    while len(out) < n:
        question, answers, scores = _pmp_item(rng, s)
        better, worse = pairs.sample_distinct_pair([f"Answer: {a}" for a in answers], scores, rng)
        out.append(pairs.RankedPair(pairs.join_segments([f"Question: {question}"]), better, worse,
                                    "synthetic"))
    return out


def pmp_pairs(n: int, seed: int, split: str = "train", world_size=DEFAULT_WORLD) -> list[dict]:
    """n PMP comparisons in the binarized form (Askell et al. 2021 §4.1: `A GOOD > A BAD`,
    `B BAD > B GOOD`), tranche 'pmp-synthetic': n/2 ranked pairs, each giving two rows."""
    return list(pairs.binarize(ranked_pmp_pairs((n + 1) // 2, seed, split, world_size)))[:n]


# --- A multiple-choice benchmark of the world (the pipeline's alignment-tax eval) ---------------
_FACT_CONTEXTS = {"capital": "Its capital is", "flag color": "Its flag is",
                  "national animal": "Its national animal is", "main export": "Its main export is"}


def _choices(rng, right, pool, n):
    others = rng.sample([v for v in dict.fromkeys(pool) if v != right], n - 1)
    choices = others + [right]
    rng.shuffle(choices)
    return choices, choices.index(right)


def world_questions(n_arithmetic: int = 48, n_choices: int = 4, seed: int = 0,
                    world_size=DEFAULT_WORLD) -> list[dict]:
    """Zero-shot multiple-choice items in hh.eval.mc's jsonl format ({"context", "choices",
    "answer"}) about the world the LM was pretrained on, phrased as its plain-text documents: every
    place's four attributes ("Zorvia is a country. Its capital is" → " Ardent"), every substance's
    kind (one choice per hazard class) and sums/differences of digits. An LM that learned the world
    scores high; the alignment tax is what RLHF costs of it (Bai et al. §4.6.1, in miniature)."""
    rng, items, w = random.Random(f"hh-synthetic/world-questions/{seed}"), [], world(world_size)
    for place in w.places:
        for attr in ATTRIBUTES:
            pool = [p.fact(attr) for p in w.places]
            choices, answer = _choices(rng, place.fact(attr), pool, n_choices)
            items.append({"context": f"{place.name} is a country. {_FACT_CONTEXTS[attr]}",
                          "choices": [" " + c for c in choices], "answer": answer})
    for substance in w.substances:
        others = [rng.choice(KINDS[h]) for h in HAZARDS if h != substance.hazard]
        choices, answer = _choices(rng, substance.kind, others, len(others) + 1)
        items.append({"context": f"{_capitalized(substance.name)} is",
                      "choices": [" " + c for c in choices], "answer": answer})
    for _ in range(n_arithmetic):
        a, b = rng.randrange(10), rng.randrange(10)
        op, value = (("plus", a + b) if rng.random() < 0.5 else ("minus", max(a, b) - min(a, b)))
        a, b = (a, b) if op == "plus" else (max(a, b), min(a, b))
        choices, answer = _choices(rng, value, range(19), n_choices)
        items.append({"context": f"{a} {op} {b} is", "choices": [f" {c}" for c in choices], "answer": answer})
    return items
