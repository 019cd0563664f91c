"""The KV cache that `TransformerLM` reads and returns while decoding (used by hh.models.sampling).

A plain pytree, passed in and returned (pure functional): every slot's keys and values per layer,
and the slots' segment ids (0 = padding or not yet written), so the ordinary attention mask handles
left padding. Layers are stacked on a leading axis under `scan_layers`, as their params are.
"""

import jax.numpy as jnp

from hh.models.transformer import BATCH, CACHE_AXES, LAYERS, LENGTH, TransformerConfig


def init_cache(cfg: TransformerConfig, batch: int, max_len: int, dtype=None) -> dict:
    """An empty cache of `max_len` slots: {"segment_ids": int32 [batch, max_len], "layers": ...}.

    "layers" is {"k", "v"} [n_layers, batch, kv_heads, max_len, d_head] under cfg.scan_layers, else
    {"layer_<i>": {"k", "v"} [batch, kv_heads, max_len, d_head]} (heads before slots: see
    transformer.CACHE_AXES). dtype defaults to the compute dtype.
    """
    dtype = cfg.compute_dtype if dtype is None else jnp.dtype(dtype)
    shape = (batch, cfg.kv_heads, max_len, cfg.d_head)
    if cfg.scan_layers:
        shape = (cfg.n_layers, *shape)

    def kv():
        return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

    layers = kv() if cfg.scan_layers else {f"layer_{i}": kv() for i in range(cfg.n_layers)}
    return {"segment_ids": jnp.zeros((batch, max_len), jnp.int32), "layers": layers}


def cache_logical_axes(cfg: TransformerConfig) -> dict:
    """The cache's logical axis names, leaf for leaf (for shardings via hh.parallel.sharding)."""
    axes = (LAYERS, *CACHE_AXES) if cfg.scan_layers else CACHE_AXES
    kv = {"k": axes, "v": axes}
    layers = kv if cfg.scan_layers else {f"layer_{i}": dict(kv) for i in range(cfg.n_layers)}
    return {"segment_ids": (BATCH, LENGTH), "layers": layers}


def repeat_cache(cache: dict, k: int, scan_layers: bool) -> dict:
    """Each row's cache repeated k times in place (rows i·k … i·k + k − 1 are copies of row i): a
    prompt prefilled once serves k samples."""
    kv_axis = 1 if scan_layers else 0
    layers = {name: (jnp.repeat(leaf, k, axis=kv_axis) if not isinstance(leaf, dict)
                     else {kk: jnp.repeat(v, k, axis=kv_axis) for kk, v in leaf.items()})
              for name, leaf in cache["layers"].items()}
    return {"segment_ids": jnp.repeat(cache["segment_ids"], k, axis=0), "layers": layers}
