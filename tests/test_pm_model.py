"""The PM reads its score at each row's EOC token: for left-, right- and un-padded rows the score
equals that of the bare sequence, and the same holds on every 8-device mesh layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import common
from hh.models.transformer import TransformerConfig
from hh.parallel import sharding as shd
from hh.pm.model import PreferenceModel, eoc_positions, init_params
from hh.train import runtime
from hh.train.state import strip_boxes

EOC = 3
CFG = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=128, max_len=32)
TOL = dict(rtol=1e-5, atol=1e-6)


def _params(model):
    params = strip_boxes(init_params(model, jax.random.key(0), 16))
    params["score_head"]["score"]["kernel"] = jax.random.normal(jax.random.key(1), (CFG.d_model, 1))
    return params


def _sequences(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(4, 64, size=int(rng.integers(3, 12)))) + [EOC] for _ in range(n)]


def _layout(seqs, length, side):
    """Rows padded on `side` ("left", "right", or "none" when every row fills the length)."""
    tokens = np.zeros((len(seqs), length), np.int32)
    positions = np.zeros_like(tokens)
    segments = np.zeros_like(tokens)
    for i, s in enumerate(seqs):
        start = length - len(s) if side == "left" else 0
        tokens[i, start:start + len(s)] = s
        positions[i, start:start + len(s)] = np.arange(len(s))
        segments[i, start:start + len(s)] = 1
    return tokens, positions, segments


def _bare_scores(model, params, seqs):
    """Each sequence alone, unpadded (one jitted apply per length: eager dispatch is the slow part)."""
    apply = jax.jit(model.apply)
    return np.array([float(apply({"params": params}, jnp.array([s]))["score"][0]) for s in seqs])


def test_eoc_positions_for_every_padding_layout():
    seqs = _sequences()
    for side in ("left", "right"):
        tokens, _, _ = _layout(seqs, 16, side)
        want = [15] * len(seqs) if side == "left" else [len(s) - 1 for s in seqs]
        np.testing.assert_array_equal(eoc_positions(jnp.asarray(tokens), EOC), want)
    full = np.array([[5, 6, EOC, 7, EOC], [EOC, 4, 4, 4, 4], [4, 4, 4, 4, 4]])
    np.testing.assert_array_equal(eoc_positions(jnp.asarray(full), EOC), [4, 0, 0])


@pytest.mark.parametrize("side", ["left", "right", "none"])
def test_padded_scores_equal_the_bare_sequence(side):
    model = PreferenceModel(CFG, eoc_id=EOC)
    params = _params(model)
    seqs = _sequences()
    if side == "none":
        seqs = [s[-1 - 7:-1] + [EOC] if len(s) >= 8 else [4] * (8 - len(s)) + s for s in seqs]
        length = 8
    else:
        length = 16
    tokens, positions, segments = _layout(seqs, length, side if side != "none" else "right")
    scores = model.apply({"params": params}, tokens, positions, segments)["score"]
    want = _bare_scores(model, params, seqs)
    assert np.std(want) > 1e-2   # the test would be vacuous if every sequence scored the same
    np.testing.assert_allclose(scores, want, **TOL)


@pytest.mark.parametrize("mesh_shape", [dict(data=2, fsdp=2, tensor=2),
                                        dict(data=1, fsdp=4, tensor=2), dict(data=2, fsdp=1, tensor=4)])
def test_scores_are_the_same_on_every_mesh(mesh_shape):
    model = PreferenceModel(CFG, eoc_id=EOC)
    params = _params(model)
    seqs = _sequences(8, seed=1)
    inputs = _layout(seqs, 16, "left")
    want = model.apply({"params": params}, *inputs)["score"]
    mesh = shd.make_mesh(mesh_shape)
    rules = shd.rules_from_config([list(r) for r in common.SHARDING_RULES])
    with runtime.sharding_context(mesh, rules):
        boxed = jax.eval_shape(lambda r: init_params(model, r, 16), jax.random.key(0))
    shardings = shd.logical_shardings(boxed, mesh, rules)
    placed = jax.device_put(params, shardings)
    batch_sh = shd.batch_sharding(mesh, rules)
    score = runtime.compile_step(lambda p, t, pos, seg: model.apply({"params": p}, t, pos, seg)["score"],
                                 mesh, rules, (shardings, batch_sh, batch_sh, batch_sh),
                                 NamedSharding(mesh, P()))
    got = score(placed, *(jax.device_put(x, batch_sh) for x in inputs))
    np.testing.assert_allclose(got, want, **TOL)
