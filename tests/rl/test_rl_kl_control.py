"""KL controller: fixed keeps β; adaptive follows Ziegler's proportional rule (hand values)."""

import ml_collections
import numpy as np
import pytest

from hh.rl.kl_control import initial_kl_coef, update_kl_coef


def _cfg(kind):
    return ml_collections.ConfigDict(dict(kind=kind, init_coef=0.1, target=6.0, horizon=10000))


def test_fixed_returns_beta():
    cfg = _cfg("fixed")
    beta = initial_kl_coef(cfg)
    assert float(update_kl_coef(beta, 50.0, 64, cfg)) == pytest.approx(0.1)


def test_adaptive_hand_values():
    cfg = _cfg("adaptive")
    beta = initial_kl_coef(cfg)
    # KL 7.5: error 0.25 clipped to 0.2 -> 0.1·(1 + 0.2·512/10000)
    np.testing.assert_allclose(update_kl_coef(beta, 7.5, 512, cfg), 0.1 * (1 + 0.2 * 0.0512), rtol=1e-6)
    # KL 3: error −0.5 clipped to −0.2
    np.testing.assert_allclose(update_kl_coef(beta, 3.0, 512, cfg), 0.1 * (1 - 0.2 * 0.0512), rtol=1e-6)
    # KL 6.6: error 0.1 (inside the clip)
    np.testing.assert_allclose(update_kl_coef(beta, 6.6, 1000, cfg), 0.1 * (1 + 0.1 * 0.1), rtol=1e-5)


def test_unknown_kind():
    with pytest.raises(ValueError, match="config.kl.kind"):
        initial_kl_coef(_cfg("pid"))
