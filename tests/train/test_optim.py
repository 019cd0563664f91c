"""Learning-rate schedules against hand-computed values; weight-decay mask."""

import ml_collections
import numpy as np
import pytest

from hh.train.optim import decay_mask, learning_rate_schedule


def _cfg(schedule, warmup=10):
    return ml_collections.ConfigDict(dict(learning_rate=1.0, schedule=schedule, warmup_steps=warmup,
                                          end_lr_factor=0.1))


def test_warmup_then_cosine():
    s = learning_rate_schedule(_cfg("cosine"), total_steps=110)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    # halfway through the decay: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    assert float(s(60)) == pytest.approx(0.55, rel=1e-5)
    assert float(s(110)) == pytest.approx(0.1, rel=1e-5)


def test_warmup_then_linear_and_constant():
    lin = learning_rate_schedule(_cfg("linear"), total_steps=110)
    assert float(lin(60)) == pytest.approx(0.55, rel=1e-5)
    assert float(lin(110)) == pytest.approx(0.1, rel=1e-5)
    const = learning_rate_schedule(_cfg("constant", warmup=0), total_steps=110)
    assert float(const(0)) == float(const(1000)) == 1.0


def test_unknown_schedule_names_the_field():
    with pytest.raises(ValueError, match="config.optimizer.schedule"):
        learning_rate_schedule(_cfg("step"), 10)


def test_decay_mask_only_matrices():
    mask = decay_mask({"kernel": np.ones((2, 3)), "bias": np.ones(3), "scale": np.ones(3)})
    assert mask == {"kernel": True, "bias": False, "scale": False}
