"""hh: helpful-and-harmless RLHF (Bai et al. 2022) in JAX/Flax.

Stages live in their own packages (hh.lm, ...); shared machinery in hh.models, hh.parallel,
hh.train and hh.data. The entry point is `python -m hh.main`.
"""
