"""An independent float64 NumPy re-derivation of `hh.models.transformer.TransformerLM.__call__`.

Written from the definitions (not from the JAX code paths): it imports neither jax nor
hh.models.attention, so a shared bug cannot hide in both. It reads a flax params pytree (plain
nested dicts of arrays, unboxed) and a `TransformerConfig` (only its fields are read).

Conventions it commits to, each of which the tests then check against the real module:
- LayerNorm: (x - mean) / sqrt(var + eps) * scale + bias (biased variance); RMSNorm:
  x / sqrt(mean(x²) + eps) * scale, no bias.
- GELU is the tanh approximation (flax `nn.gelu` = `jax.nn.gelu(approximate=True)`).
- Rotary: GPT-NeoX "rotate half" on the first int(d_head * fraction) // 2 * 2 dims,
  inv_freq = 1 / base^(arange(0, d_rot, 2) / d_rot), angles = position * inv_freq.
- Attention: scores q·k / sqrt(d_head); key j visible from query i iff j <= i (index in the row),
  same segment id, and key segment != 0. Query head h reads KV head h // (n_heads / n_kv_heads).
  A query row with no visible key (a padding position) averages all values uniformly: the
  documented behaviour of hh.models.attention (finite MASK_VALUE, "a uniform softmax").
- Blocks are pre-norm; parallel residual is x + attn(ln1(x)) + mlp(ln2(x)).
- Tied embeddings: logits = final_hidden @ embedding.T; the LM head never has a bias.
"""

import math

import numpy as np


def to_float64(tree):
    """Nested dicts of arrays -> the same dicts of float64 NumPy arrays."""
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {k: to_float64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


# ---------------------------------------------------------------- elementwise pieces


def layer_norm(x, scale, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def rms_norm(x, scale, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * scale


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def linear(p, x):
    """A flax Dense: x @ kernel (+ bias if the params have one)."""
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def norm(p, x, cfg):
    if cfg.norm == "rmsnorm":
        assert "bias" not in p, "RMSNorm has no bias"
        return rms_norm(x, p["scale"], cfg.norm_eps)
    assert cfg.norm == "layernorm", cfg.norm
    return layer_norm(x, p["scale"], p["bias"], cfg.norm_eps)


# ---------------------------------------------------------------- rotary and attention


def rotary(x, positions, fraction, base):
    """x: [b, l, h, d]; positions: [b, l]. Rotates pairs (i, i + d_rot/2) of the first d_rot dims."""
    d = x.shape[-1]
    d_rot = int(d * fraction) // 2 * 2
    if d_rot == 0:
        return x
    half = d_rot // 2
    inv_freq = 1.0 / base ** (np.arange(0, d_rot, 2, dtype=np.float64) / d_rot)   # [half]
    theta = positions[..., None].astype(np.float64) * inv_freq                    # [b, l, half]
    cos, sin = np.cos(theta)[:, :, None, :], np.sin(theta)[:, :, None, :]
    a, b = x[..., :half], x[..., half:d_rot]
    # Each pair (a_i, b_i) turns by theta_i: a' = a cos - b sin, b' = b cos + a sin.
    return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., d_rot:]], axis=-1)


def attention_mask(q_segment_ids, kv_segment_ids):
    """[b, q, k] bool: causal by index in the row, same segment, key not padding."""
    q_seg, kv_seg = np.asarray(q_segment_ids), np.asarray(kv_segment_ids)
    nq, nk = q_seg.shape[1], kv_seg.shape[1]
    out = np.zeros((q_seg.shape[0], nq, nk), bool)
    for b in range(q_seg.shape[0]):
        for i in range(nq):
            for j in range(nk):
                out[b, i, j] = j <= i and q_seg[b, i] == kv_seg[b, j] and kv_seg[b, j] != 0
    return out


def softmax_attention(q, k, v, mask):
    """q: [b, lq, H, d]; k, v: [b, lk, K, d] with H a multiple of K; mask [b, lq, lk] -> [b, lq, H, d]."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, lq, n_heads, d = q.shape
    group = n_heads // k.shape[2]
    out = np.zeros((batch, lq, n_heads, d))
    for b in range(batch):
        for h in range(n_heads):
            kh, vh = k[b, :, h // group], v[b, :, h // group]          # [lk, d]
            scores = q[b, :, h] @ kh.T / math.sqrt(d)                 # [lq, lk]
            for i in range(lq):
                visible = mask[b, i]
                if visible.any():
                    w = np.zeros(scores.shape[1])
                    w[visible] = softmax(scores[i, visible])
                else:  # nothing visible (padding query): uniform over every key
                    w = np.full(scores.shape[1], 1.0 / scores.shape[1])
                out[b, i, h] = w @ vh
    return out


# ---------------------------------------------------------------- the model


def attention_layer(p, x, positions, segment_ids, cfg):
    batch, length, _ = x.shape
    kv_heads = cfg.n_kv_heads or cfg.n_heads
    q = linear(p["query"], x).reshape(batch, length, cfg.n_heads, cfg.d_head)
    k = linear(p["key"], x).reshape(batch, length, kv_heads, cfg.d_head)
    v = linear(p["value"], x).reshape(batch, length, kv_heads, cfg.d_head)
    if cfg.position == "rotary":
        q = rotary(q, positions, cfg.rotary_fraction, cfg.rotary_base)
        k = rotary(k, positions, cfg.rotary_fraction, cfg.rotary_base)
    out = softmax_attention(q, k, v, attention_mask(segment_ids, segment_ids))
    return linear(p["out"], out.reshape(batch, length, cfg.n_heads * cfg.d_head))


def mlp(p, x, cfg):
    if cfg.activation == "gelu":
        h = gelu_tanh(linear(p["up"], x))
    else:
        assert cfg.activation == "swiglu", cfg.activation
        h = silu(linear(p["gate"], x)) * linear(p["up"], x)
    return linear(p["down"], h)


def block(p, x, positions, segment_ids, cfg):
    attn = attention_layer(p["attention"], norm(p["attention_norm"], x, cfg), positions, segment_ids, cfg)
    if cfg.parallel_residual:
        return x + attn + mlp(p["mlp"], norm(p["mlp_norm"], x, cfg), cfg)
    x = x + attn
    return x + mlp(p["mlp"], norm(p["mlp_norm"], x, cfg), cfg)


def layer_params(params, cfg, i):
    """Layer i's params, from an unrolled (stack/layer_i) or a scanned (stack/layers) tree."""
    stack = params["stack"]
    if f"layer_{i}" in stack:
        return stack[f"layer_{i}"]

    def index(tree):
        return {k: index(v) for k, v in tree.items()} if isinstance(tree, dict) else tree[i]

    return index(stack["layers"])


def forward(params, cfg, tokens, positions=None, segment_ids=None):
    """Returns (logits [b, l, vocab], hidden_states [n_layers + 1, b, l, d]), float64.

    hidden_states[0] is the embedding output, hidden_states[i + 1] block i's output (pre final norm).
    """
    params = to_float64(params)
    tokens = np.asarray(tokens)
    if positions is None:
        positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
    if segment_ids is None:
        segment_ids = np.ones_like(tokens)
    positions, segment_ids = np.asarray(positions), np.asarray(segment_ids)

    embedding = params["embed"]["embedding"]
    x = embedding[tokens]
    if cfg.position == "learned":
        x = x + params["position_embed"]["embedding"][positions]
    hidden = [x]
    for i in range(cfg.n_layers):
        x = block(layer_params(params, cfg, i), x, positions, segment_ids, cfg)
        hidden.append(x)
    final = norm(params["final_norm"], x, cfg)
    if cfg.tie_embeddings:
        assert "lm_head" not in params
        logits = final @ embedding.T
    else:
        assert "bias" not in params["lm_head"], "the LM head has no bias"
        logits = final @ params["lm_head"]["kernel"]
    return logits, np.stack(hidden)
