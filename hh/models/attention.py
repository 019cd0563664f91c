"""Attention kernels for the transformer: masks, dense attention, blockwise attention.

Pure functions on arrays, no parameters. `hh.models.transformer` projects q/k/v and calls
`attend`; decoding (`transformer.attend_cached`) reuses `attention_mask` with the cache's slot
indices, then `dense_attention`. Masks are built from segment ids (0 = padding) and token
indices, so packed documents never attend to each other.
"""

import jax
import jax.numpy as jnp

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


def attend(q, k, v, segment_ids, implementation="dense", block_size=512):
    """Self-attention over one packed row: picks the kernel named by `implementation`."""
    if implementation == "dense":
        return dense_attention(q, k, v, attention_mask(segment_ids, segment_ids))
    if implementation == "blockwise":
        return blockwise_attention(q, k, v, segment_ids, segment_ids, min(block_size, k.shape[1]))
    raise ValueError(f"unknown attention implementation {implementation!r}: use 'dense' or 'blockwise'")
