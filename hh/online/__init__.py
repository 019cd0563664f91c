"""Iterated online RLHF (Bai et al. 2022 §4.5): rounds of collect → mix → new PM → new policy → evaluate."""
