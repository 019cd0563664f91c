"""Preference-model pretraining (PMP) sources: raw dumps -> ranked pairs -> comparisons.

Askell et al. 2021 §4.1, App. C.1 (docs/paper-notes.md §4): StackExchange answers, Reddit comment
threads and Wikipedia vandalism reverts become `RankedPair`s (pairs.py); `binarize` turns each into
two GOOD/BAD comparisons in the same {prompt, chosen, rejected, num_turns, tranche} schema as HH.
"""
