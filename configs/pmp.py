"""Preference model pretraining (PMP): `python -m hh.main --config configs/pmp.py:<preset>
--workdir DIR --config.init_from=<LM workdir>`.

Askell et al. 2021 §4, App. C.1: binarized ranked pairs, LR 0.1× the LM-pretraining LR (constant),
exactly one epoch, context 1024, batch 512 pairs, (λ, μ) = (1, 1). The default mixture is the
embedded synthetic PMP pairs (hh.data.synthetic.pmp_pairs); StackExchange/Reddit/Wikipedia pairs
from hh.data.pmp plug in as sources.
"""

from configs.pm import base_config


def get_config(arg="tiny"):
    preset = arg or "tiny"
    config = base_config("pmp", preset, lr_factor=0.1, batch="pmp_batch",
                         helpful=["synthetic-pmp"], harmless=[], helpful_fraction=1.0,
                         evals=["synthetic-pmp"])
    return config
