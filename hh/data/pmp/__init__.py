"""Preference-model pretraining (PMP) sources: raw dumps -> ranked pairs -> comparisons.

Askell et al. 2021 §4, App. C.1 (PAPER-SPEC §2.3–2.4): StackExchange answers, Reddit comment
threads and Wikipedia vandalism reverts become `RankedPair`s (pairs.py); `binarize` turns each into
two GOOD/BAD comparisons in the same {prompt, chosen, rejected, num_turns, tranche} schema as HH.
"""
