"""Attention kernels for the transformer: masks, dense attention, blockwise attention, and the
backends' fused kernels.

Pure functions on arrays, no parameters. `hh.models.transformer` projects q/k/v and calls
`attend`; decoding (`transformer.attend_cached`) reuses `attention_mask` with the cache's slot
indices, then `dense_attention`. Masks are built from segment ids (0 = padding) and token
indices, so packed documents never attend to each other.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

# A large finite negative instead of -inf: a fully masked row (pure padding) then gives a uniform
# softmax instead of NaN, and its output is ignored by every loss mask.
MASK_VALUE = -1e9


def attention_mask(q_segment_ids, kv_segment_ids, q_index=None, kv_index=None):
    """Boolean [batch, q_len, kv_len] mask: causal, same segment, and kv not padding.

    q_index / kv_index: [batch, len] absolute token indices used for causality (default arange);
    they are indices in the packed row, not rotary positions, which restart at each document.
    """
    q_len, kv_len = q_segment_ids.shape[1], kv_segment_ids.shape[1]
    if q_index is None:
        q_index = jnp.broadcast_to(jnp.arange(q_len), q_segment_ids.shape)
    if kv_index is None:
        kv_index = jnp.broadcast_to(jnp.arange(kv_len), kv_segment_ids.shape)
    causal = q_index[:, :, None] >= kv_index[:, None, :]
    same_segment = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    not_padding = (kv_segment_ids != 0)[:, None, :]
    return causal & same_segment & not_padding


def dense_attention(q, k, v, mask, kv_layout="bkhd"):
    """Softmax attention with grouped KV heads.

    q: [batch, q_len, heads, d_head]; k, v: [batch, kv_len, kv_heads, d_head] ("bkhd"), or
    [batch, kv_heads, kv_len, d_head] ("bhkd", the KV cache's layout); mask: [batch, q_len, kv_len]
    bool. Returns [batch, q_len, heads, d_head] in q's dtype. Logits and softmax run in float32
    whatever the compute dtype.
    """
    if kv_layout not in ("bkhd", "bhkd"):
        raise ValueError(f"unknown kv_layout {kv_layout!r}: use 'bkhd' or 'bhkd'")
    batch, q_len, heads, d_head = q.shape
    kv_heads = k.shape[2] if kv_layout == "bkhd" else k.shape[1]
    kv = kv_layout[1:]
    # Scaling q ([q_len, d_head]) is cheaper than scaling the [q_len, kv_len] logits.
    q = q.reshape(batch, q_len, kv_heads, heads // kv_heads, d_head) * (d_head ** -0.5)
    logits = jnp.einsum(f"bqhgd,b{kv}->bhgqk", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None, None], logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum(f"bhgqk,b{kv}->bqhgd", weights, v)
    return out.reshape(batch, q_len, heads, d_head)


def blockwise_attention(q, k, v, q_segment_ids, kv_segment_ids, block_size):
    """Memory-light attention: scans over KV blocks with an online softmax (Rabe & Staats 2021).

    Same contract as `dense_attention` but the [q_len, kv_len] logits are never materialised at
    once: peak memory is [q_len, block_size] per head. kv_len must be a multiple of block_size.
    """
    batch, q_len, heads, d_head = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    if kv_len % block_size:
        raise ValueError(f"kv length {kv_len} is not a multiple of attention block size {block_size}")
    n_blocks = kv_len // block_size
    groups = heads // kv_heads
    q = q.reshape(batch, q_len, kv_heads, groups, d_head) * (d_head ** -0.5)
    q_index = jnp.broadcast_to(jnp.arange(q_len), (batch, q_len))

    def blocks(x):  # [batch, kv_len, ...] -> [n_blocks, batch, block_size, ...]
        return jnp.moveaxis(x.reshape(batch, n_blocks, block_size, *x.shape[2:]), 1, 0)

    kv_index = blocks(jnp.broadcast_to(jnp.arange(kv_len), (batch, kv_len)))
    xs = (blocks(k), blocks(v), blocks(kv_segment_ids), kv_index)

    def step(carry, block):
        out, row_max, row_sum = carry
        k_blk, v_blk, seg_blk, idx_blk = block
        mask = attention_mask(q_segment_ids, seg_blk, q_index, idx_blk)
        logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, k_blk, preferred_element_type=jnp.float32)
        logits = jnp.where(mask[:, None, None], logits, MASK_VALUE)
        new_max = jnp.maximum(row_max, logits.max(axis=-1))
        correction = jnp.exp(row_max - new_max)
        p = jnp.exp(logits - new_max[..., None])
        row_sum = row_sum * correction + p.sum(axis=-1)
        pv = jnp.einsum("bhgqk,bkhd->bhgqd", p.astype(v.dtype), v_blk,
                        preferred_element_type=jnp.float32)
        out = out * correction[..., None] + pv
        return (out, new_max, row_sum), None

    stats_shape = (batch, kv_heads, groups, q_len)
    init = (jnp.zeros((*stats_shape, d_head), jnp.float32),
            jnp.full(stats_shape, -jnp.inf, jnp.float32),
            jnp.zeros(stats_shape, jnp.float32))
    (out, _, row_sum), _ = jax.lax.scan(step, init, xs)
    out = out / row_sum[..., None]
    out = jnp.moveaxis(out, 3, 1)  # [batch, q_len, kv_heads, groups, d_head]
    return out.reshape(batch, q_len, heads, d_head).astype(v.dtype)


def current_platform() -> str:
    """The platform the traced computation is for: the active mesh's (a TPU topology's devices
    when hh.tools.fit compiles ahead of time on a CPU host), else the default backend's."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else getattr(mesh, "abstract_device", None)
    return getattr(device, "platform", None) or jax.default_backend()


def xla_fused_backend(dtype) -> str:
    """jax.nn.dot_product_attention's implementation for this platform: cuDNN's fused kernel on
    GPU for 16-bit inputs (the dtypes it takes), XLA's otherwise."""
    return "cudnn" if current_platform() in ("gpu", "cuda") and jnp.dtype(dtype).itemsize == 2 else "xla"


def dot_product_attention(q, k, v, segment_ids, implementation=None):
    """Self-attention through jax.nn.dot_product_attention with the packed-row mask (causal, same
    segment, kv not padding). Same contract as `dense_attention`; implementation: "xla" | "cudnn"
    (None: xla_fused_backend)."""
    mask = attention_mask(segment_ids, segment_ids)[:, None]           # [batch, 1, q_len, kv_len]
    implementation = implementation or xla_fused_backend(q.dtype)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation).astype(q.dtype)


def _splash_blocks(length: int, block_size: int) -> splash.BlockSizes:
    b = min(block_size, length)
    return splash.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                             block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)


def _splash_local(q, k, v, segment_ids, *, block_size, interpret):
    """Splash attention on one device's shard: q [b, heads, len, d] already scaled, k/v with the
    same heads, segment_ids [b, len]."""
    heads, length = q.shape[1], q.shape[2]
    mask = splash_mask.MultiHeadMask([splash_mask.CausalMask((length, length)) for _ in range(heads)])
    kernel = splash.make_splash_mha(mask, head_shards=1, q_seq_shards=1,
                                    block_sizes=_splash_blocks(length, block_size), interpret=interpret)
    ids = splash.SegmentIds(q=segment_ids, kv=segment_ids)
    return jax.vmap(lambda q1, k1, v1, s1: kernel(q1, k1, v1, segment_ids=s1))(q, k, v, ids)


def splash_attention(q, k, v, segment_ids, block_size=512, interpret=False):
    """TPU: the Pallas splash-attention kernel (causal, segment ids; flash-style tiling, the
    [len, len] logits never in HBM). Same contract as `dense_attention`; len must be a multiple of
    min(block_size, len) and of 128. Inside a mesh (hh.parallel.sharding_context) the kernel runs
    per device under shard_map, batch split as the rules split "batch" and heads as "heads";
    `interpret` runs the kernel's Python semantics (CPU tests).

    A padding query (segment 0) attends to other padding here, where `dense_attention` gives it
    uniform weights; both outputs are ignored by every loss mask and no real query reads them."""
    heads, kv_heads, d_head = q.shape[2], k.shape[2], q.shape[3]
    # [b, len, h, d] -> [b, h, len, d]; grouped KV heads repeated to one per query head
    q = jnp.swapaxes(q * (d_head ** -0.5), 1, 2)
    k, v = (jnp.swapaxes(jnp.repeat(x, heads // kv_heads, axis=2), 1, 2) for x in (k, v))
    local = functools.partial(_splash_local, block_size=block_size, interpret=interpret)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        out = local(q, k, v, segment_ids)
    else:
        batch_axes, head_axes = splash_partition(mesh, q.shape[0], heads)
        qkv = jax.sharding.PartitionSpec(batch_axes or None, head_axes or None, None, None)
        ids = jax.sharding.PartitionSpec(batch_axes or None, None)
        out = jax.shard_map(local, in_specs=(qkv, qkv, qkv, ids), out_specs=qkv, check_vma=False)(
            q, k, v, segment_ids)
    return jnp.swapaxes(out, 1, 2).astype(v.dtype)


def _axes(names) -> tuple:
    return () if names is None else (names,) if isinstance(names, str) else tuple(names)


def splash_partition(mesh, batch: int, heads: int) -> tuple[tuple, tuple]:
    """(mesh axes of the batch dim, mesh axes of the heads dim) for the splash kernel's shard_map:
    the rules' "batch" and "heads" axes, except that a batch the batch axes do not divide (a
    microbatch of one row on an FSDP mesh) gives those axes to the heads, which are independent
    too, and heads the result does not divide stay whole (each device then computes them all)."""
    batch_axes, head_axes = (_axes(a) for a in nn.logical_to_mesh_axes(("batch", "heads")))
    size = lambda axes: math.prod(mesh.shape[a] for a in axes)  # noqa: E731
    if batch % size(batch_axes):
        batch_axes, head_axes = (), batch_axes + head_axes
    if heads % size(head_axes):
        head_axes = ()
    return batch_axes, head_axes


# the splash kernel tiles the sequence in multiples of the TPU's 128 lanes
SPLASH_LANES = 128


def fused_attention(q, k, v, segment_ids, block_size=512):
    """The backend's fused kernel: splash attention on TPU (for lengths it tiles: multiples of 128
    and of the block), jax.nn.dot_product_attention elsewhere (cuDNN's flash attention on GPU for
    bf16/fp16, XLA's on CPU)."""
    length = q.shape[1]
    if current_platform() == "tpu" and length % SPLASH_LANES == 0 and length % min(block_size, length) == 0:
        return splash_attention(q, k, v, segment_ids, block_size)
    # shapes the kernel does not tile (a parameter init's dummy row, a short eval): the same math
    return dot_product_attention(q, k, v, segment_ids)


IMPLEMENTATIONS = ("dense", "blockwise", "fused")


def attend(q, k, v, segment_ids, implementation="dense", block_size=512):
    """Self-attention over one packed row: picks the kernel named by `implementation`."""
    if implementation == "dense":
        return dense_attention(q, k, v, attention_mask(segment_ids, segment_ids))
    if implementation == "blockwise":
        return blockwise_attention(q, k, v, segment_ids, segment_ids, min(block_size, k.shape[1]))
    if implementation == "fused":
        return fused_attention(q, k, v, segment_ids, block_size)
    raise ValueError(f"unknown attention implementation {implementation!r}: use one of {IMPLEMENTATIONS}")
