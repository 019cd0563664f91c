"""The PM reads its score at each row's EOC token: for left-, right- and un-padded rows the score
equals that of the bare sequence, and the same holds on every 8-device mesh layout. Its params
keep the layout checkpoints and the Hugging Face export rely on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import common
from hh.models.heads import PreferenceModel, ValueModel, init_pm_params, last_index
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.parallel import sharding as shd
from hh.train import runtime
from hh.parallel.sharding import strip_boxes

EOC = 3
CFG = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=128, max_len=32)
TOL = dict(rtol=1e-5, atol=1e-6)


def _params(model):
    params = strip_boxes(init_pm_params(model, jax.random.key(0), 16))
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


def _last_index_reference(mask):
    """Plain NumPy: the last index where mask > 0, or 0."""
    return np.array([np.flatnonzero(row > 0)[-1] if np.any(row > 0) else 0 for row in mask])


def test_last_index_matches_numpy_on_random_masks():
    rng = np.random.default_rng(0)
    for dtype in (bool, np.int32, np.float32):
        mask = (rng.random((64, 9)) < rng.random((64, 1))).astype(dtype)   # includes empty rows
        got = last_index(jnp.asarray(mask))
        assert got.dtype == jnp.int32
        np.testing.assert_array_equal(got, _last_index_reference(mask))


def test_eoc_positions_for_every_padding_layout():
    seqs = _sequences()
    for side in ("left", "right"):
        tokens, _, _ = _layout(seqs, 16, side)
        want = [15] * len(seqs) if side == "left" else [len(s) - 1 for s in seqs]
        np.testing.assert_array_equal(last_index(jnp.asarray(tokens) == EOC), want)
    full = np.array([[5, 6, EOC, 7, EOC], [EOC, 4, 4, 4, 4], [4, 4, 4, 4, 4]])
    np.testing.assert_array_equal(last_index(jnp.asarray(full) == EOC), [4, 0, 0])
    np.testing.assert_array_equal(last_index(jnp.asarray(full) == EOC), _last_index_reference(full == EOC))


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
        boxed = jax.eval_shape(lambda r: init_pm_params(model, r, 16), jax.random.key(0))
    shardings = shd.logical_shardings(boxed, mesh, rules)
    placed = jax.device_put(params, shardings)
    batch_sh = shd.batch_sharding(mesh, rules)
    score = runtime.compile_step(lambda p, t, pos, seg: model.apply({"params": p}, t, pos, seg)["score"],
                                 mesh, rules, (shardings, batch_sh, batch_sh, batch_sh),
                                 NamedSharding(mesh, P()))
    got = score(placed, *(jax.device_put(x, batch_sh) for x in inputs))
    np.testing.assert_allclose(got, want, **TOL)


def _param_paths(model, *args, **kwargs):
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs)["params"])
    return {jax.tree_util.keystr(path)
            for path, _ in jax.tree_util.tree_flatten_with_path(strip_boxes(boxed))[0]}


def test_param_trees_keep_the_layout_checkpoints_rely_on():
    """{"trunk": an LM's params, "score_head": {"score": kernel, bias}}, the value model the same
    without the LM head: an LM checkpoint starts a PM's trunk, a PM checkpoint a value model, and
    the Hugging Face export/import read these paths."""
    tokens = jnp.zeros((1, 16), jnp.int32)
    lm = {"['trunk']" + p for p in _param_paths(TransformerLM(CFG), tokens)}
    head = {"['score_head']['score']['kernel']", "['score_head']['score']['bias']"}
    assert "['trunk']['lm_head']['kernel']" in lm and len(lm) == 24
    assert _param_paths(PreferenceModel(CFG, eoc_id=EOC), tokens, compute_logits=True) == lm | head
    assert _param_paths(ValueModel(CFG), tokens, tokens, jnp.ones_like(tokens)) == (
        lm - {"['trunk']['lm_head']['kernel']"}) | head
    boxed = jax.eval_shape(lambda: init_pm_params(PreferenceModel(CFG, eoc_id=EOC), jax.random.key(0), 16))
    assert boxed["score_head"]["score"]["kernel"].names == ("embed", None)
    assert boxed["score_head"]["score"]["kernel"].value.shape == (CFG.d_model, 1)
