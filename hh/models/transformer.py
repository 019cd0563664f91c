"""The decoder-only transformer LM used by every stage (LM, PMP/PM backbone, policy, value).

Reads top to bottom: config, rotary, attention, MLP, block, stack, LM. Defaults are the paper's
family (pre-LayerNorm, GELU, d_ff = 4·d_model, rotary; Askell et al. 2021 App. A). Variants needed
to import public checkpoints (RMSNorm, SwiGLU, KV heads, biases, tied embeddings, rotary fraction,
parallel residual, learned positions) are fields of `TransformerConfig`, not forks.
Every parameter and activation carries logical axis names; `hh.parallel` maps them to the mesh.
Decoding passes a KV cache (`hh.models.kv_cache`) through the same modules and gets it back.
"""

import dataclasses
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hh.models import attention

# Logical axis names (mapped to mesh axes by the rules table in the config).
BATCH, LENGTH, EMBED, HEADS, KV_HEADS, MLP, VOCAB, LAYERS = (
    "batch", "length", "embed", "heads", "kv_heads", "mlp", "vocab", "layers")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Architecture of one model. Frozen so it can be a (hashable) module attribute."""
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_ff: int
    n_kv_heads: Optional[int] = None      # None: multi-head (= n_heads); 1: multi-query
    max_len: int = 8192
    norm: str = "layernorm"               # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    activation: str = "gelu"              # "gelu" (tanh approx., GPT-2) | "gelu_exact" (erf, NeoX) | "swiglu"
    use_bias: bool = False                # biases in the attention (and by default MLP) projections
    mlp_bias: Optional[bool] = None       # None: same as use_bias (Llama can set them apart)
    tie_embeddings: bool = False
    position: str = "rotary"              # "rotary" | "learned"
    rotary_fraction: float = 1.0          # share of d_head that is rotated (GPT-NeoX uses 0.25)
    rotary_base: float = 10000.0
    # Long-context frequency rescaling of imported models: "none" | "linear" (positions / factor) |
    # "llama3" (low frequencies / factor, high kept, a smooth band between; Llama 3.1).
    rotary_scaling: str = "none"
    rotary_scaling_factor: float = 1.0
    rotary_low_freq_factor: float = 1.0
    rotary_high_freq_factor: float = 4.0
    rotary_original_max_len: int = 8192
    parallel_residual: bool = False       # GPT-NeoX/GPT-J: x + attn(ln1(x)) + mlp(ln2(x))
    dtype: str = "float32"                # compute dtype; params stay param_dtype
    param_dtype: str = "float32"
    attention: str = "dense"              # "dense" | "blockwise" | "fused" (the backend's kernel)
    attention_block: int = 512
    remat: str = "none"                   # "none" | "full" | "dots" (save matmul outputs)
    scan_layers: bool = False             # nn.scan over the stack: one compiled block
    init_std: float = 0.02

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def weights_dtype(self):
        return jnp.dtype(self.param_dtype)


class TokenDense(nn.Dense):
    """nn.Dense over the last axis with the leading axes flattened to one token axis first (same
    params): the weight gradient is then a plain 2-D matmul, with no transposed copy of the
    activations on XLA's CPU backend (see docs/performance.md); a free bitcast elsewhere. The
    product is `token_matmul`, whose kernel gradient XLA:CPU runs as a row-major matmul."""

    def __call__(self, inputs):
        lead = inputs.shape[:-1]
        out = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return out.reshape(*lead, out.shape[-1])


def _weight_gradient(x, dy, precision):
    """x [tokens, in], dy [tokens, out] -> the kernel's gradient [in, out]: xᵀ·dy."""
    return jax.lax.dot_general(x, dy, (((0,), (0,)), ((), ())), precision=precision)


def _weight_gradient_cpu(x, dy, precision):
    # XLA:CPU runs a product that contracts both operands' leading axis on Eigen, slower in a
    # training step than the YNNPACK fusions it gives every row-major product. Transposing x first
    # (the barrier keeps XLA from folding the transpose back into the product) makes this one
    # row-major too: 2.5% of a PPO update on 2 cores.
    x_t = jax.lax.optimization_barrier(x.T)
    return jax.lax.dot_general(x_t, dy, (((1,), (0,)), ((), ())), precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def token_matmul(x, w, precision=None):
    """x [tokens, in] @ w [in, out], with the kernel's gradient formed per backend (see
    `_weight_gradient_cpu`); every other backend gets autodiff's own product."""
    return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())), precision=precision)


def _token_matmul_fwd(x, w, precision):
    return token_matmul(x, w, precision), (x, w)


def _token_matmul_bwd(precision, residuals, dy):
    x, w = residuals
    dx = jax.lax.dot_general(dy, w, (((1,), (1,)), ((), ())), precision=precision)
    dw = jax.lax.platform_dependent(x, dy, cpu=functools.partial(_weight_gradient_cpu, precision=precision),
                                    default=functools.partial(_weight_gradient, precision=precision))
    return dx.astype(x.dtype), dw.astype(w.dtype)


token_matmul.defvjp(_token_matmul_fwd, _token_matmul_bwd)


def _token_dot_general(x, w, dimension_numbers, precision=None):
    """nn.Dense's dot_general for TokenDense's 2-D inputs: `token_matmul`."""
    if dimension_numbers != (((1,), (0,)), ((), ())):
        raise ValueError(f"TokenDense multiplies [tokens, in] by [in, out], got {dimension_numbers}")
    return token_matmul(x, w, precision)


def _dense(features, axes, cfg, name, use_bias=None):
    """A 2-D kernel with logical axis names (2-D kernels shard cleanly; reshape outside)."""
    return TokenDense(
        features, dot_general=_token_dot_general, use_bias=cfg.use_bias if use_bias is None else use_bias, name=name, dtype=cfg.compute_dtype, param_dtype=cfg.weights_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]))


def _norm(cfg, name):
    """LayerNorm (with bias, as in GPT-2/NeoX) or RMSNorm (no bias, as in Llama)."""
    common = dict(epsilon=cfg.norm_eps, dtype=cfg.compute_dtype, param_dtype=cfg.weights_dtype,
                  name=name, scale_init=nn.with_logical_partitioning(nn.initializers.ones, (EMBED,)))
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(**common)
    if cfg.norm == "layernorm":
        return nn.LayerNorm(
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (EMBED,)), **common)
    raise ValueError(f"unknown norm {cfg.norm!r}: use 'layernorm' or 'rmsnorm'")


def rotary_frequencies(d_rot: int, cfg: TransformerConfig) -> np.ndarray:
    """Inverse frequencies [d_rot / 2] (float32, as the reference implementations compute them) of
    the rotary embedding, with the config's rescaling."""
    inv_freq = (1.0 / (np.float32(cfg.rotary_base) ** (np.arange(0, d_rot, 2, dtype=np.float32) / d_rot))
                ).astype(np.float32)
    factor = np.float32(cfg.rotary_scaling_factor)
    if cfg.rotary_scaling == "linear":
        return (inv_freq / factor).astype(np.float32)
    if cfg.rotary_scaling == "llama3":
        # Wavelengths longer than original_max_len / low_freq_factor are slowed by `factor`,
        # shorter than original_max_len / high_freq_factor kept, and the band between interpolated.
        wavelength = np.float32(2 * np.pi) / inv_freq
        low_wavelength = cfg.rotary_original_max_len / cfg.rotary_low_freq_factor
        high_wavelength = cfg.rotary_original_max_len / cfg.rotary_high_freq_factor
        smooth = ((cfg.rotary_original_max_len / wavelength - cfg.rotary_low_freq_factor)
                  / (cfg.rotary_high_freq_factor - cfg.rotary_low_freq_factor))
        band = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = np.where(wavelength > low_wavelength, inv_freq / factor, inv_freq)
        in_band = (wavelength >= high_wavelength) & (wavelength <= low_wavelength)
        return np.where(in_band, band, scaled).astype(np.float32)
    if cfg.rotary_scaling != "none":
        raise ValueError(f"unknown rotary_scaling {cfg.rotary_scaling!r}: use 'none', 'linear' or 'llama3'")
    return inv_freq


def rotary_tables(positions, cfg: TransformerConfig, n_positions: int = 0):
    """The (cos, sin) tables [batch, length, 1, d_rot] that a `cfg` model's layers rotate their
    queries and keys by, or None (learned positions, or no rotated dims).

    positions: [batch, length] (restart per packed document), each below
    max(cfg.max_len, n_positions, length): the caller passes the slots a position can reach (a
    row's length, a KV cache's size); a position past them reads NaN, as a learned position
    embedding does. The angles are float32 position × frequency, as the reference
    implementations compute them; their cos and sin are tabulated at trace time and gathered
    here. Computed in the layers instead, XLA:CPU fuses both transcendentals into each rotation
    and evaluates them once per head, forward and backward: 4% of a PPO update on 2 cores.
    """
    d_rot = int(cfg.d_head * cfg.rotary_fraction) // 2 * 2
    if cfg.position != "rotary" or d_rot == 0:
        return None
    n = max(cfg.max_len, n_positions, positions.shape[-1])
    angles = np.arange(n, dtype=np.float32)[:, None] * rotary_frequencies(d_rot, cfg)
    angles = np.concatenate([angles, angles], -1)                           # [n, d_rot]
    return tuple(jnp.take(table, positions, axis=0)[:, :, None, :]
                 for table in (np.cos(angles), np.sin(angles)))


def rotate(x, cos, sin):
    """Rotate the first d_rot = cos.shape[-1] dims of each head (GPT-NeoX "rotate half").

    x: [batch, length, heads, d_head]; cos, sin: [batch, length, 1, d_rot] from `rotary_tables`.
    """
    d_rot = cos.shape[-1]
    # Upcast at each use, not once up front: a shared float32 copy is what the backward would keep
    # (+0.9 GiB per chip for the bf16 52B PM on v5p:2x2x4).
    x_rot, x_pass = x[..., :d_rot], x[..., d_rot:]
    x1, x2 = jnp.split(x_rot.astype(jnp.float32), 2, axis=-1)
    rotated = x_rot.astype(jnp.float32) * cos + jnp.concatenate([-x2, x1], -1) * sin
    return jnp.concatenate([rotated.astype(x.dtype), x_pass], axis=-1)


# Logical axes of one layer's cached keys / values [batch, kv_heads, max_len, d_head]. Heads before
# slots, so the decode step's QK and AV products read the cache as it lies, with no per-step copy
# (see docs/performance.md).
CACHE_AXES = (BATCH, KV_HEADS, LENGTH, None)


def attend_cached(q, k, v, segment_ids, layer_cache, cache_index, kv_segment_ids):
    """Decoding: write this call's k, v at cache slots cache_index.. and attend over the whole cache.

    q: [batch, length, heads, d_head]; k, v: [batch, length, kv_heads, d_head]; layer_cache:
    {"k", "v"} [batch, kv_heads, max_len, d_head]; kv_segment_ids: [batch, max_len], already holding
    this call's segment ids (0 = padding or an empty slot). Causality is by absolute slot index.
    Always dense: the [length, max_len] logits are small for a decode step (length 1); blockwise
    attention assumes queries start at slot 0 and kv_len a multiple of the block, which a cache
    does not give.
    """
    new = {name: nn.with_logical_constraint(jax.lax.dynamic_update_slice(
        layer_cache[name], jnp.swapaxes(x, 1, 2).astype(layer_cache[name].dtype), (0, 0, cache_index, 0)),
        CACHE_AXES) for name, x in (("k", k), ("v", v))}
    q_index = jnp.broadcast_to(cache_index + jnp.arange(q.shape[1]), segment_ids.shape)
    mask = attention.attention_mask(segment_ids, kv_segment_ids, q_index)
    return attention.dense_attention(q, new["k"], new["v"], mask, kv_layout="bhkd"), new


class Attention(nn.Module):
    """Self-attention; with `layer_cache` it also returns the cache with this call's keys/values."""
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x, positions, segment_ids, layer_cache=None, cache_index=None, kv_segment_ids=None):
        cfg = self.cfg
        batch, length, _ = x.shape
        q = _dense(cfg.n_heads * cfg.d_head, (EMBED, HEADS), cfg, "query")(x)
        k = _dense(cfg.kv_heads * cfg.d_head, (EMBED, KV_HEADS), cfg, "key")(x)
        v = _dense(cfg.kv_heads * cfg.d_head, (EMBED, KV_HEADS), cfg, "value")(x)
        q = q.reshape(batch, length, cfg.n_heads, cfg.d_head)
        k = k.reshape(batch, length, cfg.kv_heads, cfg.d_head)
        v = v.reshape(batch, length, cfg.kv_heads, cfg.d_head)
        # a position reaches at most the row's length, or the cache's slots when decoding
        rotary = rotary_tables(positions, cfg, 0 if layer_cache is None else layer_cache["k"].shape[2])
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        q = nn.with_logical_constraint(q, (BATCH, LENGTH, HEADS, None))
        if layer_cache is None:
            out = attention.attend(q, k, v, segment_ids, cfg.attention, cfg.attention_block)
        else:
            out, layer_cache = attend_cached(q, k, v, segment_ids, layer_cache, cache_index, kv_segment_ids)
        out = out.reshape(batch, length, cfg.n_heads * cfg.d_head)
        return _dense(cfg.d_model, (HEADS, EMBED), cfg, "out")(out), layer_cache


class Mlp(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        bias = cfg.use_bias if cfg.mlp_bias is None else cfg.mlp_bias
        up = _dense(cfg.d_ff, (EMBED, MLP), cfg, "up", bias)
        if cfg.activation in ("gelu", "gelu_exact"):
            h = nn.gelu(up(x), approximate=cfg.activation == "gelu")
        elif cfg.activation == "swiglu":
            h = nn.silu(_dense(cfg.d_ff, (EMBED, MLP), cfg, "gate", bias)(x)) * up(x)
        else:
            raise ValueError(f"unknown activation {cfg.activation!r}: use 'gelu', 'gelu_exact' or 'swiglu'")
        h = nn.with_logical_constraint(h, (BATCH, LENGTH, MLP))
        return _dense(cfg.d_model, (MLP, EMBED), cfg, "down", bias)(h)


class Block(nn.Module):
    """One pre-norm block. Returns (x, (x, layer_cache)) so that nn.scan can stack per-layer hidden
    states and caches (layer_cache stays None without a cache)."""
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x, positions, segment_ids, layer_cache=None, cache_index=None, kv_segment_ids=None):
        cfg = self.cfg
        attn, layer_cache = Attention(cfg, name="attention")(
            _norm(cfg, "attention_norm")(x), positions, segment_ids, layer_cache, cache_index, kv_segment_ids)
        if cfg.parallel_residual:
            x = x + attn + Mlp(cfg, name="mlp")(_norm(cfg, "mlp_norm")(x))
        else:
            x = x + attn
            x = x + Mlp(cfg, name="mlp")(_norm(cfg, "mlp_norm")(x))
        x = nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED))
        return x, (x, layer_cache)


_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _block_class(cfg):
    if cfg.remat == "none":
        return Block
    if cfg.remat not in _REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {cfg.remat!r}: use 'none', 'full' or 'dots'")
    return nn.remat(Block, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)


class Stack(nn.Module):
    """The n_layers blocks, as a Python loop or as one nn.scan over stacked weights.

    Returns (x, per-layer hidden states, cache): the cache is scanned with the layers (stacked on a
    leading layers axis) or a {"layer_<i>": ...} dict, as the params are; None without a cache.
    """
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x, positions, segment_ids, cache=None, cache_index=None, kv_segment_ids=None):
        cfg, block = self.cfg, _block_class(self.cfg)
        if cfg.scan_layers:
            scanned = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                              in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast, nn.broadcast),
                              length=cfg.n_layers, metadata_params={nn.PARTITION_NAME: LAYERS})
            x, (per_layer, cache) = scanned(cfg, name="layers")(
                x, positions, segment_ids, cache, cache_index, kv_segment_ids)
            return x, per_layer, cache
        per_layer, new_cache = [], {}
        for i in range(cfg.n_layers):
            name = f"layer_{i}"
            layer_cache = None if cache is None else cache[name]
            x, (_, new_cache[name]) = block(cfg, name=name)(
                x, positions, segment_ids, layer_cache, cache_index, kv_segment_ids)
            per_layer.append(x)
        return x, jnp.stack(per_layer), None if cache is None else new_cache


class TransformerLM(nn.Module):
    """tokens [batch, length] -> dict(logits [b, l, vocab], final_hidden [b, l, d], hidden_states).

    positions default to 0..length-1 and segment_ids to all ones (one unpadded document per row).
    `hidden_states` ([n_layers + 1, b, l, d]: the embeddings, then each block's output, before the
    final norm) is returned only when asked for; `compute_logits=False` skips the LM head
    (scalar-head models that do not mix in the LM loss); `logits_range=(start, stop)` (static ints)
    computes the logits of positions start..stop-1 only (PPO's log-probs need the response's).
    Decoding: `cache` (from `hh.models.kv_cache.init_cache`) and `cache_index` (int scalar, the slot
    of tokens[:, 0]) make this call write its keys/values at slots cache_index.. and attend to every
    slot written so far; the updated cache comes back as out["cache"].
    """
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, tokens, positions=None, segment_ids=None, *, cache=None, cache_index=None,
                 return_hidden_states=False, compute_logits=True, logits_range=None):
        cfg = self.cfg
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        if segment_ids is None:
            segment_ids = jnp.ones_like(tokens)
        embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.compute_dtype, param_dtype=cfg.weights_dtype,
                         embedding_init=nn.with_logical_partitioning(
                             nn.initializers.normal(cfg.init_std), (VOCAB, EMBED)), name="embed")
        x = embed(tokens)
        if cfg.position == "learned":
            x = x + nn.Embed(cfg.max_len, cfg.d_model, dtype=cfg.compute_dtype, param_dtype=cfg.weights_dtype,
                             embedding_init=nn.with_logical_partitioning(
                                 nn.initializers.normal(cfg.init_std), (None, EMBED)),
                             name="position_embed")(positions)
        x = nn.with_logical_constraint(x.astype(cfg.compute_dtype), (BATCH, LENGTH, EMBED))
        embedded = x
        kv_segment_ids = layers_cache = None
        if cache is not None:
            cache_index = jnp.asarray(cache_index, jnp.int32)
            kv_segment_ids = jax.lax.dynamic_update_slice(
                cache["segment_ids"], segment_ids.astype(cache["segment_ids"].dtype), (0, cache_index))
            layers_cache = cache["layers"]
        x, per_layer, layers_cache = Stack(cfg, name="stack")(
            x, positions, segment_ids, layers_cache, cache_index, kv_segment_ids)
        final_hidden = _norm(cfg, "final_norm")(x)
        out = {"final_hidden": final_hidden}
        if cache is not None:
            out["cache"] = {"segment_ids": kv_segment_ids, "layers": layers_cache}
        if compute_logits:
            head_input = final_hidden if logits_range is None else final_hidden[:, slice(*logits_range)]
            if cfg.tie_embeddings:
                logits = embed.attend(head_input)
            else:
                logits = _dense(cfg.vocab_size, (EMBED, VOCAB), cfg, "lm_head", use_bias=False)(head_input)
            out["logits"] = nn.with_logical_constraint(logits, (BATCH, LENGTH, VOCAB))
        if return_hidden_states:
            out["hidden_states"] = jnp.concatenate([embedded[None], per_layer], axis=0)
        return out


def unembedding(params, cfg: TransformerConfig):
    """The LM head's [d_model, vocab] matrix from TransformerLM params (tied or separate)."""
    if cfg.tie_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]
