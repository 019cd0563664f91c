"""hh.models.attention against the float64 NumPy softmax attention of tests/numpy_reference.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from hh.models import attention

BATCH, LENGTH, HEADS, D_HEAD = 3, 8, 4, 8
# Row 0: two documents then padding; row 1: padding in the middle; row 2: one whole document.
SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 0, 0],
                     [1, 1, 0, 0, 2, 2, 2, 0],
                     [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)
REAL = SEGMENTS != 0


def qkv(kv_heads, seed=0, scale=1.5):
    """Random q, k, v. scale 1.5 gives |scores| of several units: peaked, non-uniform softmax."""
    rng = np.random.default_rng(seed)
    q = scale * rng.standard_normal((BATCH, LENGTH, HEADS, D_HEAD))
    k = scale * rng.standard_normal((BATCH, LENGTH, kv_heads, D_HEAD))
    v = rng.standard_normal((BATCH, LENGTH, kv_heads, D_HEAD))
    return tuple(np.asarray(x, np.float32) for x in (q, k, v))


def test_attention_mask_matches_reference():
    seg = jnp.asarray(SEGMENTS)
    got = np.asarray(attention.attention_mask(seg, seg))
    np.testing.assert_array_equal(got, ref.attention_mask(SEGMENTS, SEGMENTS))
    # explicit indices (decoding: 3 new queries at row indices 5..7 against all 8 keys)
    q_index = jnp.broadcast_to(jnp.arange(5, 8), (BATCH, 3))
    got = np.asarray(attention.attention_mask(seg[:, 5:], seg, q_index=q_index))
    np.testing.assert_array_equal(got, ref.attention_mask(SEGMENTS, SEGMENTS)[:, 5:])


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_dense_attention_matches_reference(kv_heads):
    q, k, v = qkv(kv_heads)
    mask = attention.attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS))
    got = np.asarray(attention.dense_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask))
    want = ref.softmax_attention(q, k, v, ref.attention_mask(SEGMENTS, SEGMENTS))
    assert got.shape == (BATCH, LENGTH, HEADS, D_HEAD) and got.dtype == np.float32
    # float32 vs float64 on O(1) outputs: measured max |diff| ~5e-7; 1e-5 (as in
    # test_transformer) leaves a ~20x margin, far below a wrong scale or mask (errors > 1e-2).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # sensitivity: the output is not near a plain average of the visible values
    mean_v = ref.softmax_attention(0 * q, k, v, ref.attention_mask(SEGMENTS, SEGMENTS))
    assert np.abs(want - mean_v)[REAL].max() > 0.1


@pytest.mark.parametrize("block,kv_heads", [(1, 4), (2, 4), (4, 4), (8, 4), (2, 1), (4, 2)])
def test_blockwise_equals_dense(block, kv_heads):
    q, k, v = (jnp.asarray(x) for x in qkv(kv_heads, seed=block))
    seg = jnp.asarray(SEGMENTS)
    dense = attention.dense_attention(q, k, v, attention.attention_mask(seg, seg))
    blockwise = attention.blockwise_attention(q, k, v, seg, seg, block)
    assert blockwise.shape == dense.shape and blockwise.dtype == dense.dtype
    # Same float32 math in a different order (online softmax): measured max |diff| ~6e-7.
    np.testing.assert_allclose(np.asarray(blockwise), np.asarray(dense), rtol=1e-5, atol=1e-6)
    # also through `attend` (which clamps the block to the length)
    via_attend = attention.attend(q, k, v, seg, "blockwise", block)
    np.testing.assert_allclose(np.asarray(via_attend), np.asarray(blockwise), rtol=0, atol=1e-7)


def test_attend_clamps_block_to_length_and_dense_path():
    q, k, v = (jnp.asarray(x) for x in qkv(2, seed=7))
    seg = jnp.asarray(SEGMENTS)
    dense = attention.attend(q, k, v, seg, "dense")
    want = ref.softmax_attention(*qkv(2, seed=7), ref.attention_mask(SEGMENTS, SEGMENTS))
    np.testing.assert_allclose(np.asarray(dense), want, rtol=1e-5, atol=1e-5)
    big_block = attention.attend(q, k, v, seg, "blockwise", 512)   # 512 > length 8
    np.testing.assert_allclose(np.asarray(big_block), np.asarray(dense), rtol=1e-5, atol=1e-6)


def test_blockwise_gradients_equal_dense():
    """The online softmax starts from row_max = -inf: its gradients must still be finite and
    equal to dense attention's."""
    q, k, v = (jnp.asarray(x) for x in qkv(2, seed=3))
    seg = jnp.asarray(SEGMENTS)
    w = jnp.asarray(np.random.default_rng(9).standard_normal((BATCH, LENGTH, HEADS, D_HEAD)),
                    jnp.float32) * jnp.asarray(REAL, jnp.float32)[:, :, None, None]

    def loss(fn):
        return jax.grad(lambda q, k, v: (fn(q, k, v) * w).sum(), argnums=(0, 1, 2))(q, k, v)

    dense = loss(lambda q, k, v: attention.attend(q, k, v, seg, "dense"))
    blockwise = loss(lambda q, k, v: attention.attend(q, k, v, seg, "blockwise", 2))
    for g_dense, g_block in zip(dense, blockwise):
        assert np.isfinite(np.asarray(g_block)).all()
        np.testing.assert_allclose(np.asarray(g_block), np.asarray(g_dense), rtol=1e-5, atol=1e-5)
    assert max(float(jnp.abs(g).max()) for g in dense) > 0.1


@pytest.mark.parametrize("implementation", ["dense", "blockwise", "fused"])
def test_fully_padded_row_is_finite(implementation):
    q, k, v = (jnp.asarray(x) for x in qkv(2, seed=5))
    seg = np.array(SEGMENTS)
    seg[2] = 0                                            # a row of pure padding
    out = np.asarray(attention.attend(q, k, v, jnp.asarray(seg), implementation, 4))
    assert np.isfinite(out).all()
    # documented behaviour: a fully masked row is a uniform average of the values (no NaN)
    uniform = np.repeat(np.asarray(v[2]).mean(0), HEADS // 2, axis=0)          # [heads, d]
    np.testing.assert_allclose(out[2], np.broadcast_to(uniform, out[2].shape), rtol=1e-5, atol=1e-6)
    # the other rows do not see the padded row
    want = ref.softmax_attention(*qkv(2, seed=5), ref.attention_mask(seg, seg))
    np.testing.assert_allclose(out[:2][REAL[:2]], want[:2][REAL[:2]], rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs_keep_dtype_and_stay_close():
    q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in qkv(4, seed=6))
    seg = jnp.asarray(SEGMENTS)
    want = ref.softmax_attention(*(np.asarray(x, np.float32) for x in (q, k, v)),
                                 ref.attention_mask(SEGMENTS, SEGMENTS))
    for impl in ("dense", "blockwise", "fused"):
        out = attention.attend(q, k, v, seg, impl, 4)
        assert out.dtype == jnp.bfloat16
        # bf16 probabilities/values (8 mantissa bits) on |out| <= ~2: measured max error
        # 0.007-0.012 over 5 seeds; 0.04 is a ~3x margin.
        err = np.abs(np.asarray(out, np.float32) - want)[REAL]
        assert err.max() < 0.04, (impl, err.max())


def test_attend_rejects_unknown_implementation():
    q, k, v = (jnp.asarray(x) for x in qkv(4))
    with pytest.raises(ValueError, match="'flash'"):
        attention.attend(q, k, v, jnp.asarray(SEGMENTS), "flash")


def test_blockwise_rejects_length_not_multiple_of_block():
    q, k, v = (jnp.asarray(x) for x in qkv(4))
    seg = jnp.asarray(SEGMENTS)
    with pytest.raises(ValueError, match="multiple"):
        attention.blockwise_attention(q, k, v, seg, seg, 3)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_fused_attention_matches_reference_and_dense_gradients(kv_heads):
    """"fused" on CPU is jax.nn.dot_product_attention (XLA) with the packed-row mask."""
    assert attention.current_platform() == "cpu" and attention.xla_fused_backend(jnp.bfloat16) == "xla"
    q, k, v = (jnp.asarray(x) for x in qkv(kv_heads, seed=11))
    seg = jnp.asarray(SEGMENTS)
    got = attention.attend(q, k, v, seg, "fused")
    want = ref.softmax_attention(*qkv(kv_heads, seed=11), ref.attention_mask(SEGMENTS, SEGMENTS))
    assert got.shape == (BATCH, LENGTH, HEADS, D_HEAD) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got)[REAL], want[REAL], rtol=1e-5, atol=1e-5)
    w = jnp.asarray(REAL, jnp.float32)[:, :, None, None]
    grads = [jax.grad(lambda q, k, v: (attention.attend(q, k, v, seg, impl) * w).sum(), argnums=(0, 1, 2))(q, k, v)
             for impl in ("dense", "fused")]
    for g_dense, g_fused in zip(*grads):
        np.testing.assert_allclose(np.asarray(g_fused), np.asarray(g_dense), rtol=1e-5, atol=1e-5)


SPLASH_LENGTH = 128     # the splash kernel's smallest block


def splash_case(kv_heads, batch=4, seed=0):
    """q, k, v of length 128 and rows with two documents and padding at different places."""
    rng = np.random.default_rng(seed)
    q = 1.5 * rng.standard_normal((batch, SPLASH_LENGTH, HEADS, D_HEAD))
    k = 1.5 * rng.standard_normal((batch, SPLASH_LENGTH, kv_heads, D_HEAD))
    v = rng.standard_normal((batch, SPLASH_LENGTH, kv_heads, D_HEAD))
    seg = np.zeros((batch, SPLASH_LENGTH), np.int32)
    for row in range(batch):
        a, b = 20 + 17 * row, 90 + 5 * row
        seg[row, :a], seg[row, a:b] = 1, 2
    return tuple(jnp.asarray(x, jnp.float32) for x in (q, k, v)) + (jnp.asarray(seg),)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_splash_attention_equals_dense_on_real_tokens(kv_heads):
    """The TPU kernel, run in Pallas' interpret mode on CPU: values and gradients on every real
    (non-padding) query equal dense attention's."""
    q, k, v, seg = splash_case(kv_heads)
    real = np.asarray(seg) != 0
    dense = attention.attend(q, k, v, seg, "dense")
    splash = attention.splash_attention(q, k, v, seg, block_size=128, interpret=True)
    assert splash.shape == dense.shape and splash.dtype == dense.dtype
    # f32, another summation order (flash-style tiles): measured max |diff| ~1e-6
    np.testing.assert_allclose(np.asarray(splash)[real], np.asarray(dense)[real], rtol=1e-5, atol=2e-6)
    w = jnp.asarray(real, jnp.float32)[:, :, None, None]
    grads = [jax.grad(lambda q, k, v: (fn(q, k, v) * w).sum(), argnums=(0, 1, 2))(q, k, v) for fn in (
        lambda q, k, v: attention.attend(q, k, v, seg, "dense"),
        lambda q, k, v: attention.splash_attention(q, k, v, seg, block_size=128, interpret=True))]
    for g_dense, g_splash in zip(*grads):
        np.testing.assert_allclose(np.asarray(g_splash), np.asarray(g_dense), rtol=1e-4, atol=1e-5)


def test_splash_attention_under_a_mesh_runs_per_shard_and_equals_dense():
    """Inside the (data, fsdp, tensor) mesh the kernel runs under shard_map: batch over data ×
    fsdp, heads over tensor (the rules of configs/common.py), the same values as dense."""
    from configs import common
    from hh.parallel import sharding as shd
    q, k, v, seg = splash_case(kv_heads=2)
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    rules = shd.rules_from_config(common.sharding().rules)
    with shd.sharding_context(mesh, rules):
        sharded = jax.jit(lambda q, k, v, s: attention.splash_attention(q, k, v, s, block_size=128, interpret=True))(
            q, k, v, seg)
    dense = attention.attend(q, k, v, seg, "dense")
    real = np.asarray(seg) != 0
    np.testing.assert_allclose(np.asarray(sharded)[real], np.asarray(dense)[real], rtol=1e-5, atol=2e-6)


def test_splash_partition_gives_heads_the_batch_axes_when_the_batch_does_not_divide():
    from configs import common
    from hh.parallel import sharding as shd
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    rules = shd.rules_from_config(common.sharding().rules)
    with shd.sharding_context(mesh, rules):
        abstract = jax.sharding.get_abstract_mesh()
        assert attention.splash_partition(abstract, 8, 4) == (("data", "fsdp"), ("tensor",))
        assert attention.splash_partition(abstract, 1, 8) == ((), ("data", "fsdp", "tensor"))   # a 1-row microbatch
        assert attention.splash_partition(abstract, 1, 4) == ((), ())                         # 4 heads, 8 devices
        q, k, v, seg = (x[:1] for x in splash_case(kv_heads=2))
        one_row = jax.jit(lambda q, k, v, s: attention.splash_attention(q, k, v, s, block_size=128, interpret=True))(
            q, k, v, seg)
    real = np.asarray(seg) != 0
    dense = attention.attend(q, k, v, seg, "dense")
    np.testing.assert_allclose(np.asarray(one_row)[real], np.asarray(dense)[real], rtol=1e-5, atol=2e-6)
