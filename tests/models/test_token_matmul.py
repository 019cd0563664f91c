"""TransformerLM's building blocks that exist for speed: `token_matmul` (the projection's kernel
gradient formed per backend) and `rotary_tables` (cos/sin tabulated at trace time). Each is
checked against a float64 NumPy re-derivation, and the CPU mechanism each relies on is checked in
the compiled HLO, so that a refactor that silently drops it fails here."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from hh.models.transformer import TransformerConfig, TransformerLM, rotary_tables, rotate, token_matmul


def test_token_matmul_value_and_gradients_match_float64():
    rng = np.random.default_rng(0)
    x, w, dy = rng.normal(size=(24, 8)), rng.normal(size=(8, 5)), rng.normal(size=(24, 5))
    y, vjp = jax.vjp(token_matmul, jnp.float32(x), jnp.float32(w))
    dx, dw = vjp(jnp.float32(dy))
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-5, atol=1e-5)
    # jitted, inside a loss, the same as autodiff through a plain product
    loss = lambda f: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), argnums=(0, 1)))
    ours, plain = loss(token_matmul)(x, w), loss(jnp.dot)(x, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _contracting_major_dots(hlo: str) -> list:
    """The compiled dots that contract both operands' leading axis (XLA:CPU runs these on Eigen)."""
    return [l for l in hlo.splitlines() if re.search(r"\bdot\(", l)
            and "lhs_contracting_dims={0}" in l and "rhs_contracting_dims={0}" in l]


def test_on_cpu_the_kernel_gradient_is_a_row_major_product():
    """A 2-layer LM's training gradient compiles with no dot contracting the token axis of both
    operands: each kernel gradient is xᵀ (materialised) times dy. The inputs are committed to the
    host CPU, so the check compiles for XLA:CPU whatever the default backend."""
    cpu = jax.devices("cpu")[0]
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=64, max_len=16)
    model, tokens = TransformerLM(cfg), jax.device_put(jnp.ones((2, 16), jnp.int32), cpu)
    params = jax.device_put(model.init(jax.random.key(0), tokens)["params"], cpu)
    grad = jax.jit(jax.grad(lambda p, t: jnp.sum(model.apply({"params": p}, t)["logits"] ** 2)))
    hlo = grad.lower(params, tokens).compile().as_text()
    assert not _contracting_major_dots(hlo), _contracting_major_dots(hlo)[:2]
    # ... where a plain product's gradient has them (the check can fail)
    plain = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.dot(x, w) ** 2), argnums=1))
    x, w = jax.device_put((jnp.ones((32, 8)), jnp.ones((8, 4))), cpu)
    assert _contracting_major_dots(plain.lower(x, w).compile().as_text())


@pytest.mark.parametrize("scaling", ["none", "linear", "llama3"])
def test_rotary_tables_are_float32_angles_cos_sin_at_every_position(scaling):
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_head=16, d_ff=64, max_len=64,
                            rotary_scaling=scaling, rotary_scaling_factor=4.0, rotary_original_max_len=32)
    positions = np.array([[0, 1, 2, 63], [5, 0, 40, 17]], np.int32)
    cos, sin = rotary_tables(jnp.asarray(positions), cfg)
    assert cos.shape == sin.shape == (2, 4, 1, 16)
    if scaling == "none":     # the float64 reference's frequencies
        inv_freq = 1.0 / cfg.rotary_base ** (np.arange(0, 16, 2) / 16)
        theta = np.concatenate([positions[..., None] * inv_freq] * 2, -1)[:, :, None, :]
        np.testing.assert_allclose(cos, np.cos(theta), atol=2e-5)
        np.testing.assert_allclose(sin, np.sin(theta), atol=2e-5)
    # rotating by the tables is the reference's rotation (pairs (i, i + d_rot/2) turn by theta_i)
    x = np.random.default_rng(1).normal(size=(2, 4, 2, 16))
    if scaling == "none":
        np.testing.assert_allclose(rotate(jnp.float32(x), cos, sin),
                                   ref.rotary(x, positions, 1.0, cfg.rotary_base), atol=2e-5)
    # a position past max_len reads NaN (as a learned position embedding does), never a wrong angle
    cos, _ = rotary_tables(jnp.asarray([[64]], jnp.int32), cfg)
    assert np.isnan(np.asarray(cos)).all()


def test_rotary_tables_reach_past_max_len_to_the_row_or_the_cache():
    """Rotary models are not held to max_len: a row longer than it (the smoke LM trains 128-token
    rows at max_len 64), or a KV cache with more slots, gets its positions' true angles."""
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_head=16, d_ff=64, max_len=8)
    inv_freq = 1.0 / cfg.rotary_base ** (np.arange(0, 16, 2) / 16)
    row = np.arange(20, dtype=np.int32)[None]                       # a 20-token row, max_len 8
    cos, sin = rotary_tables(jnp.asarray(row), cfg)
    theta = np.concatenate([row[..., None] * inv_freq] * 2, -1)[:, :, None, :]
    np.testing.assert_allclose(cos, np.cos(theta), atol=2e-5)
    np.testing.assert_allclose(sin, np.sin(theta), atol=2e-5)
    step = np.array([[30]], np.int32)                               # a decode step, 32 cache slots
    cos, _ = rotary_tables(jnp.asarray(step), cfg, n_positions=32)
    np.testing.assert_allclose(cos[0, 0, 0], np.cos(np.concatenate([30 * inv_freq] * 2)), atol=2e-5)


def test_rotary_tables_none_without_rotated_dims():
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_head=16, d_ff=64, max_len=8)
    positions = jnp.zeros((1, 4), jnp.int32)
    assert rotary_tables(positions, dataclasses.replace(cfg, position="learned")) is None
    assert rotary_tables(positions, dataclasses.replace(cfg, rotary_fraction=0.0)) is None


def test_the_compiled_forward_evaluates_no_cos_or_sin():
    """The tables come from trace time: the compiled forward has no transcendental per head."""
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_head=8, d_ff=64, max_len=16)
    model, tokens = TransformerLM(cfg), jnp.ones((2, 16), jnp.int32)
    params = model.init(jax.random.key(0), tokens)["params"]
    hlo = jax.jit(lambda p: model.apply({"params": p}, tokens)["logits"]).lower(params).compile().as_text()
    assert not re.search(r"\b(cosine|sine)\(", hlo)
