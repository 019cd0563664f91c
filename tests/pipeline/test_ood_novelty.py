"""The OOD step's lexical-novelty baseline (Bai et al. 2022 §5.4): one AUROC per OOD set."""

import ml_collections

from configs import pipeline as pipeline_config
from hh.pipeline.steps import novelty_aurocs


def test_novelty_aurocs_one_auroc_per_ood_set():
    config = pipeline_config.get_config("smoke")
    c = ml_collections.ConfigDict(config.ood.to_dict())
    c.n_fit, c.n_test = 32, 8
    result = novelty_aurocs(c, config.lm.data)
    assert set(result) == set(config.ood.out_sources)
    assert all(0.0 <= value <= 1.0 for value in result.values())
