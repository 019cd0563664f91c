"""The embedded default dataset: a procedurally generated world of made-up places and substances,
the HH-style data about it, and the gold judge that knows it.

Every stage's default data until a user points at real data: LM pretraining text (the world's facts),
binarized PMP pairs, helpful and harmless comparisons (the hh-rlhf dialogue format, split into
prompt and responses), RL and red-team prompts, and a multiple-choice test of the world. The split is
by entity, so held-out pairs can only be judged with knowledge from pretraining; the two labelers
conflict on dual-use requests; the judge scores any policy's samples. docs/data.md describes it.

    facts.py        the facts: entities, world sizes, splits by entity
    text.py         templates, response phrasings, parsers
    tranches.py     the helpful and harmless tranches: comparisons, RL and red-team prompts
    documents.py    pretraining documents, PMP pairs, world questions
    judge.py        the gold judge (two labelers)
"""

from hh.data.synthetic.tranches import KINDS, comparisons, redteam_prompts, rl_prompts
from hh.data.synthetic.documents import pmp_pairs, pretraining_documents, ranked_pmp_pairs, world_questions
from hh.data.synthetic.judge import LABELERS, SOURCE_LABELER, gold_preference, gold_score, judge
from hh.data.synthetic.text import is_refusal
from hh.data.synthetic.facts import DEFAULT_WORLD, SPLITS, WORLD_SIZES, split_of_world, world

__all__ = ["KINDS", "LABELERS", "SOURCE_LABELER", "DEFAULT_WORLD", "SPLITS", "WORLD_SIZES", "comparisons",
           "gold_preference", "gold_score", "is_refusal", "judge", "pmp_pairs", "pretraining_documents",
           "ranked_pmp_pairs", "redteam_prompts", "rl_prompts", "split_of_world", "world",
           "world_questions"]
