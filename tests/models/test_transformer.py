"""TransformerLM against the independent float64 NumPy reference (tests/numpy_reference.py).

Weights are drawn at init_std=0.2 (not the default 0.02) and the norm scales/biases and Dense
biases are randomised too: with tiny weights every model is near the identity-plus-noise and
different architectures give nearly the same logits, so the comparison would prove little.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from hh.models.heads import ScalarHead, gather_positions
from hh.models.transformer import TransformerConfig, TransformerLM

BASE = TransformerConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=128,
                         max_len=16, init_std=0.2)

# Two packed rows of length 8: row 0 holds two documents then padding (segment 0); row 1 holds
# two documents and no padding. Positions restart at 0 in each document.
SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 0, 0],
                     [1, 1, 1, 1, 1, 2, 2, 2]], np.int32)
POSITIONS = np.array([[0, 1, 2, 0, 1, 2, 0, 0],
                      [0, 1, 2, 3, 4, 0, 1, 2]], np.int32)
TOKENS = np.random.default_rng(0).integers(1, BASE.vocab_size, size=SEGMENTS.shape).astype(np.int32)

# float32 model vs float64 reference. Measured max |diff| on the logits (|logits| up to ~4) is
# 1.3e-6..2.6e-6 across the variants, eager or jitted (hidden states, |h| up to ~12: <= 6e-6).
# rtol = atol = 1e-5 keeps a >= 4x margin for other CPUs/XLA versions; 1e-6 would fail. It is
# still far below real discrepancies: a flipped rotary sign, the erf GELU, a missing norm eps or
# unmasked padding each move the logits by > 1e-5 (all checked by hand against this test).
RTOL = ATOL = 1e-5

VARIANTS = {
    "default": {},
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(activation="swiglu"),
    "kv_heads_2": dict(n_kv_heads=2),
    "kv_heads_1": dict(n_kv_heads=1),
    "bias": dict(use_bias=True),
    "tied": dict(tie_embeddings=True),
    "rotary_quarter": dict(rotary_fraction=0.25),
    "parallel_residual": dict(parallel_residual=True),
    "learned_positions": dict(position="learned"),
    "blockwise": dict(attention="blockwise", attention_block=4),
}


def init_params(cfg, seed=0):
    """Real init (for the tree structure and kernels), unboxed, with norm scales and all biases
    moved off their constant 1 / 0 init so that the test sees them."""
    params = TransformerLM(cfg).init(jax.random.key(seed), jnp.asarray(TOKENS), jnp.asarray(POSITIONS),
                                     jnp.asarray(SEGMENTS))["params"]
    params = nn.meta.unbox(params)
    rng = np.random.default_rng(seed + 1)

    def perturb(path, leaf):
        name = path[-1].key
        if name == "scale":
            return jnp.asarray(1.0 + 0.3 * rng.standard_normal(leaf.shape), leaf.dtype)
        if name == "bias":
            return jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(perturb, params)


def apply(cfg, params, tokens=TOKENS, positions=POSITIONS, segments=SEGMENTS, *, jit=False, **kw):
    # Eager by default: on these tiny [2, 8] shapes op-by-op dispatch (with its per-op compile
    # cache shared by all tests) is several times faster than compiling one program per config.
    # jit=True for one-off shapes/dtypes, where one compile beats compiling each op anew.
    fn = lambda p, t, pos, seg: TransformerLM(cfg).apply({"params": p}, t, pos, seg, **kw)  # noqa: E731
    fn = jax.jit(fn) if jit else fn
    return fn(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(segments))


# ---------------------------------------------------------------- equality with the reference


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_matches_numpy_reference(name):
    cfg = dataclasses.replace(BASE, **VARIANTS[name])
    params = init_params(cfg)
    out = apply(cfg, params, return_hidden_states=True)
    want_logits, want_hidden = ref.forward(params, cfg, TOKENS, POSITIONS, SEGMENTS)

    assert out["logits"].dtype == jnp.float32
    assert out["logits"].shape == (2, 8, cfg.vocab_size)
    assert np.abs(want_logits).max() > 1.0   # the reference is not trivially near zero
    np.testing.assert_allclose(np.asarray(out["logits"]), want_logits, rtol=RTOL, atol=ATOL)
    # hidden states: embeddings, then each block's output (before the final norm)
    hidden = np.asarray(out["hidden_states"])
    assert hidden.shape == (cfg.n_layers + 1, 2, 8, cfg.d_model)
    np.testing.assert_allclose(hidden, want_hidden, rtol=RTOL, atol=ATOL)
    final = ref.norm(ref.to_float64(params["final_norm"]), want_hidden[-1], cfg)
    np.testing.assert_allclose(np.asarray(out["final_hidden"]), final, rtol=RTOL, atol=ATOL)


def test_variants_are_distinguishable():
    """Sensitivity: each variant's reference differs clearly from the default one on the same
    weights where the trees coincide, so the per-variant equality above is not vacuous."""
    params = init_params(BASE)
    base_logits, _ = ref.forward(params, BASE, TOKENS, POSITIONS, SEGMENTS)
    for name in ("rotary_quarter", "parallel_residual", "rmsnorm"):
        cfg = dataclasses.replace(BASE, **VARIANTS[name])
        p = params
        if name == "rmsnorm":   # same tree minus the norm biases
            p = _drop_norm_bias(params)
        logits, _ = ref.forward(p, cfg, TOKENS, POSITIONS, SEGMENTS)
        assert np.abs(logits - base_logits).max() > 100 * ATOL, name
    # and rotary itself matters: stretched positions change the logits (a uniform shift would
    # not: rotary scores depend only on relative positions within a document)
    logits, _ = ref.forward(params, BASE, TOKENS, POSITIONS * 2, SEGMENTS)
    assert np.abs(logits - base_logits).max() > 100 * ATOL


def _drop_norm_bias(tree):
    if not isinstance(tree, dict):
        return tree
    out = {}
    for k, v in tree.items():
        if k.endswith("norm") and isinstance(v, dict):
            out[k] = {"scale": v["scale"]}
        else:
            out[k] = _drop_norm_bias(v)
    return out


def test_default_positions_and_segments():
    """positions=None / segment_ids=None mean arange and one unpadded document per row."""
    params = init_params(BASE)
    got = TransformerLM(BASE).apply({"params": params}, jnp.asarray(TOKENS))["logits"]
    want, _ = ref.forward(params, BASE, TOKENS)
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    assert "hidden_states" not in TransformerLM(BASE).apply({"params": params}, jnp.asarray(TOKENS))


# ---------------------------------------------------------------- scan, remat


def _restack(params, n_layers):
    """stack/layer_i/... -> stack/layers/... with a leading layer axis (the nn.scan layout)."""
    layers = [params["stack"][f"layer_{i}"] for i in range(n_layers)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)
    return {**params, "stack": {"layers": stacked}}


def test_scan_layers_matches_unrolled():
    cfg = dataclasses.replace(BASE, use_bias=True)
    params = init_params(cfg)
    scan_cfg = dataclasses.replace(cfg, scan_layers=True)
    scan_params = _restack(params, cfg.n_layers)
    # the restacked tree is exactly the tree nn.scan builds
    real = nn.meta.unbox(jax.eval_shape(lambda: TransformerLM(scan_cfg).init(
        jax.random.key(0), jnp.asarray(TOKENS)))["params"])
    assert jax.tree_util.tree_structure(real) == jax.tree_util.tree_structure(scan_params)
    assert jax.tree_util.tree_map(lambda x: x.shape, real) == jax.tree_util.tree_map(
        lambda x: x.shape, scan_params)

    unrolled = apply(cfg, params, return_hidden_states=True)
    scanned = apply(scan_cfg, scan_params, return_hidden_states=True)
    # Same math, but the scan body is compiled as one program and the unrolled stack runs op by
    # op, so float32 rounding differs (measured ~1e-6 on |logits| ~ 1): the float32 tolerance.
    np.testing.assert_allclose(np.asarray(scanned["logits"]), np.asarray(unrolled["logits"]),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(scanned["hidden_states"]),
                               np.asarray(unrolled["hidden_states"]), rtol=RTOL, atol=ATOL)
    # and the reference reads the scanned layout the same way
    want, _ = ref.forward(scan_params, cfg, TOKENS, POSITIONS, SEGMENTS)
    np.testing.assert_allclose(np.asarray(scanned["logits"]), want, rtol=RTOL, atol=ATOL)


def _loss_and_grads(cfg, params):
    def loss(params):
        logits = apply(cfg, params)["logits"]
        targets = jnp.roll(jnp.asarray(TOKENS), -1, axis=1)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
        weights = jnp.asarray(SEGMENTS != 0, jnp.float32)
        return (nll * weights).sum() / weights.sum()
    return jax.value_and_grad(loss)(params)


@functools.lru_cache(maxsize=None)
def _reference_grads():
    """Loss and gradients without remat, unrolled layers (computed once for the remat tests)."""
    params = init_params(BASE)
    return params, _loss_and_grads(BASE, params)


@pytest.mark.parametrize("remat,scan", [pytest.param("full", False, marks=pytest.mark.slow), pytest.param("dots", False, marks=pytest.mark.slow), ("full", True)])
def test_remat_gives_same_gradients(remat, scan):
    """remat only changes what is saved for the backward pass, never the gradients. The scanned
    case is compared with the unrolled gradients restacked to the scan layout."""
    params, (loss0, grads0) = _reference_grads()
    cfg = dataclasses.replace(BASE, remat=remat, scan_layers=scan)
    if scan:
        params, grads0 = _restack(params, BASE.n_layers), _restack(grads0, BASE.n_layers)
    loss1, grads1 = _loss_and_grads(cfg, params)
    np.testing.assert_allclose(float(loss1), float(loss0), rtol=1e-6)
    flat0 = jax.tree_util.tree_leaves_with_path(grads0)
    flat1 = jax.tree_util.tree_leaves(grads1)
    assert jax.tree_util.tree_structure(grads0) == jax.tree_util.tree_structure(grads1)
    for (path, g0), g1 in zip(flat0, flat1):
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
    assert max(float(jnp.abs(g).max()) for g in flat1) > 1e-2   # gradients are not trivially 0


def test_unknown_remat_policy_raises():
    cfg = dataclasses.replace(BASE, remat="sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        TransformerLM(cfg).init(jax.random.key(0), jnp.asarray(TOKENS))


# ---------------------------------------------------------------- packing and padding


def test_packed_documents_are_isolated():
    params = init_params(BASE)
    base = np.asarray(apply(BASE, params)["logits"])

    # new tokens for row 0's first document (positions 0..2) and row 1's first (0..4)
    tokens = TOKENS.copy()
    tokens[0, :3] = (tokens[0, :3] + 11) % BASE.vocab_size
    tokens[1, :5] = (tokens[1, :5] + 11) % BASE.vocab_size
    out = np.asarray(apply(BASE, params, tokens=tokens)["logits"])
    np.testing.assert_allclose(out[0, 3:6], base[0, 3:6], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[1, 5:], base[1, 5:], rtol=0, atol=1e-6)
    assert np.abs(out[0, :3] - base[0, :3]).min(axis=-1).max() > 0   # the edit did reach doc 1
    assert np.abs(out[0, :3] - base[0, :3]).max() > 1e-2

    # new tokens in the padding change nothing at real positions
    tokens = TOKENS.copy()
    tokens[0, 6:] = (tokens[0, 6:] + 5) % BASE.vocab_size
    out = np.asarray(apply(BASE, params, tokens=tokens)["logits"])
    np.testing.assert_allclose(out[0, :6], base[0, :6], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[1], base[1], rtol=0, atol=1e-6)


def test_padding_invariance():
    """A document alone == the same document followed by padding, on its real positions."""
    params = init_params(BASE)
    doc = TOKENS[1:2, :5]
    alone = np.asarray(apply(BASE, params, doc, np.arange(5)[None], np.ones((1, 5), np.int32),
                             jit=True)["logits"])[0]
    # row 1 := the document then 3 padding tokens (segment 0); row 0 unchanged
    tokens, positions, segments = TOKENS.copy(), POSITIONS.copy(), SEGMENTS.copy()
    tokens[1] = np.concatenate([doc[0], [7, 7, 7]])
    positions[1] = [0, 1, 2, 3, 4, 0, 0, 0]
    segments[1] = [1, 1, 1, 1, 1, 0, 0, 0]
    padded = np.asarray(apply(BASE, params, tokens, positions, segments)["logits"])
    np.testing.assert_allclose(padded[1, :5], alone, rtol=0, atol=1e-5)
    assert np.isfinite(padded).all()


# ---------------------------------------------------------------- bfloat16


def test_bfloat16_compute_close_to_float32():
    cfg16 = dataclasses.replace(BASE, dtype="bfloat16")
    raw = nn.meta.unbox(jax.eval_shape(lambda: TransformerLM(cfg16).init(
        jax.random.key(0), jnp.asarray(TOKENS))["params"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(raw))   # params stay f32

    params = init_params(BASE)
    out16 = apply(cfg16, params, jit=True, return_hidden_states=True)
    out32 = apply(BASE, params)
    assert out16["logits"].dtype == jnp.bfloat16
    assert out16["hidden_states"].dtype == jnp.bfloat16
    logits16 = np.asarray(out16["logits"], np.float32)
    logits32 = np.asarray(out32["logits"])
    # Measured over 4 weight seeds: max |diff| 0.032-0.040, mean 0.006-0.0074, for |logits| up to
    # ~5 (bf16 keeps 8 mantissa bits, ~0.4% per rounding, through 2 blocks). Bounds of ~3.5x the
    # measured values: loose enough for bf16 rounding, tight enough to fail on a structural bf16
    # bug (a mask, norm or softmax computed wrongly in bf16 gives errors of 0.1..1).
    diff = np.abs(logits16 - logits32)
    assert np.isfinite(logits16).all()
    assert diff.max() < 0.15, diff.max()
    assert diff.mean() < 0.025, diff.mean()
    assert diff.max() > 0   # it really computed in bf16


# ---------------------------------------------------------------- scalar head


def test_gather_positions():
    hidden = np.random.default_rng(3).standard_normal((3, 6, 5)).astype(np.float32)
    pos = np.array([5, 0, 2])
    np.testing.assert_array_equal(np.asarray(gather_positions(jnp.asarray(hidden), jnp.asarray(pos))),
                                  hidden[np.arange(3), pos])
    pos2 = np.array([[1, 5], [0, 0], [4, 2]])
    got = np.asarray(gather_positions(jnp.asarray(hidden), jnp.asarray(pos2)))
    assert got.shape == (3, 2, 5)
    np.testing.assert_array_equal(got, hidden[np.arange(3)[:, None], pos2])


def test_scalar_head_reads_requested_positions():
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal((3, 6, 8)).astype(np.float32)
    head = ScalarHead(init_std=0.5)
    params = nn.meta.unbox(head.init(jax.random.key(1), jnp.asarray(hidden))["params"])
    params = {"score": {"kernel": params["score"]["kernel"],
                        "bias": jnp.asarray(rng.standard_normal(1), jnp.float32)}}
    kernel = np.asarray(params["score"]["kernel"], np.float64)    # [d, 1]
    bias = np.asarray(params["score"]["bias"], np.float64)
    assert np.abs(kernel).max() > 0.1

    def score(h):
        return (h.astype(np.float64) @ kernel + bias)[..., 0]

    for pos in (np.array([5, 0, 3]), np.array([[1, 5], [0, 0], [2, 4]])):
        got = head.apply({"params": params}, jnp.asarray(hidden), jnp.asarray(pos))
        assert got.dtype == jnp.float32
        want = score(hidden[np.arange(3)[:, None], pos] if pos.ndim == 2 else hidden[np.arange(3), pos])
        assert got.shape == want.shape == pos.shape
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    every = head.apply({"params": params}, jnp.asarray(hidden))
    assert every.shape == (3, 6)
    np.testing.assert_allclose(np.asarray(every), score(hidden), rtol=1e-5, atol=1e-5)
    # bf16 hidden states are scored in float32
    got16 = head.apply({"params": params}, jnp.asarray(hidden, jnp.bfloat16), jnp.asarray([1, 2, 3]))
    assert got16.dtype == jnp.float32


def test_scalar_head_zero_init():
    hidden = jnp.asarray(np.random.default_rng(5).standard_normal((2, 4, 8)), jnp.float32)
    head = ScalarHead()
    variables = head.init(jax.random.key(0), hidden, jnp.array([3, 1]))
    params = nn.meta.unbox(variables["params"])
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(params))
    np.testing.assert_array_equal(np.asarray(head.apply(variables, hidden, jnp.array([3, 1]))), 0.0)
    np.testing.assert_array_equal(np.asarray(head.apply(variables, hidden)), np.zeros((2, 4)))
