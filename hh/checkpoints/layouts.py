"""Where each hh parameter lives in a Hugging Face checkpoint, per family, in both directions.

Tables of (hh path, tensor name, transposed?) cover everything but the packed q/k/v projections of
GPT-NeoX (grouped per head) and GPT-2 (grouped by part), which both directions handle explicitly.
hh paths are those of an unrolled stack ("stack/layer_3/attention/query/kernel").
"""

import numpy as np

from hh.checkpoints.recipes import Slab, packed_qkv_rows
from hh.checkpoints.safetensors_dir import CheckpointFormatError

QKV = ("query", "key", "value")
# Buffers that older transformers versions saved next to the weights; every implementation
# recomputes them, so they are skipped by exact name, never by a loose suffix.
KNOWN_BUFFERS = {
    "gpt2": r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)",     # causal mask, mask fill value
    "gpt_neox": r"gpt_neox\.(layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)|rotary_emb\.inv_freq)",
    "llama": r"model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",   # rope frequencies
}


def prefix_of(family: str, names) -> str:
    """The tensor-name prefix: GPT-2 checkpoints exist both with and without "transformer."."""
    if family == "gpt2":
        return "transformer." if "transformer.wte.weight" in names else ""
    return {"llama": "model.", "gpt_neox": "gpt_neox."}[family]


def _linear(hh, hf, bias, transpose=True):
    rows = [(f"{hh}/kernel", f"{hf}.weight", transpose)]
    return rows + ([(f"{hh}/bias", f"{hf}.bias", False)] if bias else [])


def _norm(hh, hf, with_bias):
    return [(f"{hh}/scale", f"{hf}.weight", False)] + ([(f"{hh}/bias", f"{hf}.bias", False)] if with_bias else [])


def _mlp_bias(cfg):
    return cfg.use_bias if cfg.mlp_bias is None else cfg.mlp_bias


def layer_table(family, cfg, i, prefix):
    """(hh path, tensor, transpose) for layer i, without packed q/k/v."""
    hh, ln_bias, mb = f"stack/layer_{i}", cfg.norm == "layernorm", _mlp_bias(cfg)
    if family == "llama":
        p = f"{prefix}layers.{i}."
        return (_norm(f"{hh}/attention_norm", p + "input_layernorm", ln_bias)
                + [row for name, hf in zip(QKV + ("out",), ("q_proj", "k_proj", "v_proj", "o_proj"))
                   for row in _linear(f"{hh}/attention/{name}", f"{p}self_attn.{hf}", cfg.use_bias)]
                + _norm(f"{hh}/mlp_norm", p + "post_attention_layernorm", ln_bias)
                + [row for name in ("gate", "up", "down")
                   for row in _linear(f"{hh}/mlp/{name}", f"{p}mlp.{name}_proj", mb)])
    if family == "gpt_neox":
        p = f"{prefix}layers.{i}."
        return (_norm(f"{hh}/attention_norm", p + "input_layernorm", True)
                + _linear(f"{hh}/attention/out", p + "attention.dense", cfg.use_bias)
                + _norm(f"{hh}/mlp_norm", p + "post_attention_layernorm", True)
                + _linear(f"{hh}/mlp/up", p + "mlp.dense_h_to_4h", mb)
                + _linear(f"{hh}/mlp/down", p + "mlp.dense_4h_to_h", mb))
    p = f"{prefix}h.{i}."   # GPT-2's Conv1D stores [in, out]: no transpose
    return (_norm(f"{hh}/attention_norm", p + "ln_1", True)
            + _linear(f"{hh}/attention/out", p + "attn.c_proj", cfg.use_bias, transpose=False)
            + _norm(f"{hh}/mlp_norm", p + "ln_2", True)
            + _linear(f"{hh}/mlp/up", p + "mlp.c_fc", mb, transpose=False)
            + _linear(f"{hh}/mlp/down", p + "mlp.c_proj", mb, transpose=False))


def top_table(family, cfg, prefix, names=()):
    """(hh path, tensor, transpose) outside the layers."""
    ln_bias = cfg.norm == "layernorm"
    if family == "llama":
        rows = [("embed/embedding", f"{prefix}embed_tokens.weight", False)] + _norm(
            "final_norm", f"{prefix}norm", ln_bias)
        head = "lm_head.weight"
    elif family == "gpt_neox":
        rows = [("embed/embedding", f"{prefix}embed_in.weight", False)] + _norm(
            "final_norm", f"{prefix}final_layer_norm", True)
        head = "lm_head.weight" if "lm_head.weight" in names else "embed_out.weight"
    else:
        rows = [("embed/embedding", f"{prefix}wte.weight", False),
                ("position_embed/embedding", f"{prefix}wpe.weight", False)] + _norm("final_norm", f"{prefix}ln_f", True)
        head = "lm_head.weight"   # GPT2LMHeadModel's head sits outside "transformer."
    if not cfg.tie_embeddings:
        rows.append(("lm_head/kernel", head, True))
    return rows


def _qkv_rows(family, cfg, part):
    return packed_qkv_rows(part, 3, cfg.n_heads, cfg.d_head, per_head=family == "gpt_neox")


def _qkv_name(family, prefix, i):
    return f"{prefix}layers.{i}.attention.query_key_value" if family == "gpt_neox" else f"{prefix}h.{i}.attn.c_attn"


def import_recipes(family: str, cfg, source) -> dict:
    """hh path -> recipe (a Slab over `source`, a SafetensorsDir) for an unrolled stack."""
    prefix = prefix_of(family, source.names())
    table = top_table(family, cfg, prefix, source.names())
    for i in range(cfg.n_layers):
        table += layer_table(family, cfg, i, prefix)
    recipes = {hh: Slab(source, name, transpose) for hh, name, transpose in table}
    if family in ("gpt_neox", "gpt2"):
        width = cfg.n_heads * cfg.d_head
        for i in range(cfg.n_layers):
            name = _qkv_name(family, prefix, i)
            for part, proj in enumerate(QKV):
                rows = _qkv_rows(family, cfg, part)
                hh = f"stack/layer_{i}/attention/{proj}"
                recipes[f"{hh}/kernel"] = Slab(source, f"{name}.weight", family == "gpt_neox", rows, width)
                if cfg.use_bias:
                    recipes[f"{hh}/bias"] = Slab(source, f"{name}.bias", False, rows, width)
    missing = sorted({r.name for r in recipes.values()} - set(source.names()))
    if missing:
        raise CheckpointFormatError(f"{source.directory}: tensors {missing[:5]} (of {len(missing)} missing) "
                                    f"are needed by this {family} config but absent")
    return recipes


def export_tensors(family: str, cfg, flat_params: dict, prefix=None) -> dict:
    """Hugging Face tensor name -> numpy array, from an unrolled hh params dict ({path: array}).

    Biases the family always has but the hh model lacks are written as zeros (exactly equivalent).
    """
    prefix = prefix_of(family, ()) if prefix is None else prefix
    if family == "gpt2":
        prefix = "transformer."
    tensors = {}
    table = top_table(family, cfg, prefix)
    for i in range(cfg.n_layers):
        table += layer_table(family, cfg, i, prefix)
    for hh, name, transpose in table:
        tensors[name] = flat_params[hh].T if transpose else flat_params[hh]
    if family in ("gpt_neox", "gpt2"):
        for i in range(cfg.n_layers):
            name = _qkv_name(family, prefix, i)
            kernels = [flat_params[f"stack/layer_{i}/attention/{p}/kernel"] for p in QKV]
            biases = [flat_params.get(f"stack/layer_{i}/attention/{p}/bias") for p in QKV]
            biases = [b if b is not None else np.zeros(k.shape[1], k.dtype) for b, k in zip(biases, kernels)]
            weight, bias = _pack_qkv(family, cfg, kernels, biases)
            tensors[f"{name}.weight"] = weight
            if cfg.use_bias or family == "gpt2":   # GPT-2 always has them; NeoX per attention_bias
                tensors[f"{name}.bias"] = bias
    if family in ("gpt_neox", "gpt2"):
        _zero_fill_biases(tensors, family, cfg, prefix)
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _pack_qkv(family, cfg, kernels, biases):
    """Inverse of the import's regrouping: [d_in, 3 · heads · d_head] packed the family's way."""
    d_in, heads, d_head = kernels[0].shape[0], cfg.n_heads, cfg.d_head
    if family == "gpt_neox":   # [out, in] with out = [head, part, d_head]
        w = np.stack([k.reshape(d_in, heads, d_head) for k in kernels], axis=2)   # [in, head, 3, dh]
        b = np.stack([x.reshape(heads, d_head) for x in biases], axis=1)
        return w.reshape(d_in, -1).T, b.reshape(-1)
    return np.concatenate(kernels, axis=1), np.concatenate(biases)             # GPT-2: [in, 3 · d]


def _zero_fill_biases(tensors, family, cfg, prefix):
    """GPT-NeoX's MLP and GPT-2's every projection always carry biases."""
    always = ("mlp.",) if family == "gpt_neox" else ("mlp.", "attn.c_proj")
    for name in list(tensors):
        if name.endswith(".weight") and any(part in name for part in always):
            bias = name[:-len("weight")] + "bias"
            if bias not in tensors:
                w = tensors[name]
                out_dim = w.shape[0] if family == "gpt_neox" else w.shape[1]
                tensors[bias] = np.zeros(out_dim, w.dtype)
