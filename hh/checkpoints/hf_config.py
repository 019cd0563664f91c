"""Hugging Face `config.json` <-> the architecture fields of `TransformerConfig`.

Families: Llama (RMSNorm, SwiGLU, grouped KV heads, rope theta and scaling), GPT-NeoX/Pythia
(parallel residual, partial rotary, LayerNorm with biases, GELU) and GPT-2 (learned positions).
A field the model file cannot express fails with its name, never silently.
"""

import json

from etils import epath

from hh.checkpoints.safetensors_dir import CheckpointFormatError

CONFIG_FILE = "config.json"
FAMILIES = ("llama", "gpt_neox", "gpt2")
# The TransformerConfig fields an imported checkpoint decides; the rest (dtype, remat, scan,
# attention kernel) stay the run's choice.
ARCHITECTURE_FIELDS = (
    "vocab_size", "d_model", "n_layers", "n_heads", "d_head", "d_ff", "n_kv_heads", "max_len", "norm",
    "norm_eps", "activation", "use_bias", "mlp_bias", "tie_embeddings", "position", "rotary_fraction",
    "rotary_base", "rotary_scaling", "rotary_scaling_factor", "rotary_low_freq_factor",
    "rotary_high_freq_factor", "rotary_original_max_len", "parallel_residual")
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def read_hf_config(directory) -> dict:
    path = epath.Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointFormatError(f"{path}: missing (a Hugging Face model directory has a config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointFormatError(f"{path}: not valid JSON ({e})") from None


def family_of(hf: dict, where="config.json") -> str:
    family = hf.get("model_type")
    if family not in FAMILIES:
        raise CheckpointFormatError(f"{where}: model_type={family!r} is not supported; supported: "
                                    f"{list(FAMILIES)} (architectures={hf.get('architectures')})")
    return family


def _require(ok, where, field, value, allowed):
    if not ok:
        raise CheckpointFormatError(f"{where}: {field}={value!r} is not supported (supported: {allowed})")


def _rope(hf: dict, where: str, default_fraction: float) -> dict:
    """rope theta, partial rotary and scaling from either the v5 `rope_parameters` or the v4 keys."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    params = {**scaling, **params}
    theta = params.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
    fraction = params.get("partial_rotary_factor",
                          hf.get("partial_rotary_factor", hf.get("rotary_pct", default_fraction)))
    kind = params.get("rope_type", params.get("type", "default"))
    fields = dict(rotary_base=float(theta), rotary_fraction=float(fraction))
    _require(kind in ("default", "linear", "llama3"), where, "rope_type", kind,
             ["default", "linear", "llama3"])
    if kind == "linear":
        fields.update(rotary_scaling="linear", rotary_scaling_factor=float(params["factor"]))
    elif kind == "llama3":
        fields.update(rotary_scaling="llama3", rotary_scaling_factor=float(params["factor"]),
                      rotary_low_freq_factor=float(params["low_freq_factor"]),
                      rotary_high_freq_factor=float(params["high_freq_factor"]),
                      rotary_original_max_len=int(params["original_max_position_embeddings"]))
    return fields


def _llama_rope(hf, where) -> dict:
    """transformers' Llama rotates all of head_dim: its default rope ignores partial_rotary_factor,
    so hh does too (same logits); its scaled ropes shorten cos/sin but not q/k, which fails to run
    in transformers, so there is no reference to match and the field is refused."""
    fields = _rope(hf, where, 1.0)
    _require(fields["rotary_fraction"] == 1.0 or "rotary_scaling" not in fields, where,
             "partial_rotary_factor", fields["rotary_fraction"],
             "any value with rope_type='default' (ignored, as transformers' Llama does); "
             "1.0 with a scaled rope_type")
    return {**fields, "rotary_fraction": 1.0}


def _llama(hf, where):
    _require(hf.get("hidden_act", "silu") == "silu", where, "hidden_act", hf.get("hidden_act"), ["silu"])
    for field in ("sliding_window",):
        _require(not hf.get(field), where, field, hf.get(field), [None])
    heads = hf["num_attention_heads"]
    d_head = hf.get("head_dim") or hf["hidden_size"] // heads
    bias = bool(hf.get("attention_bias", False))
    return dict(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=heads, d_head=d_head, d_ff=hf["intermediate_size"],
        n_kv_heads=hf.get("num_key_value_heads") or heads, max_len=hf.get("max_position_embeddings", 2048),
        norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)), activation="swiglu",
        use_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), position="rotary",
        parallel_residual=False, **_llama_rope(hf, where))


def _gpt_neox(hf, where):
    act = hf.get("hidden_act", "gelu")
    _require(act == "gelu" or act in _GELU_TANH, where, "hidden_act", act, ["gelu", *_GELU_TANH])
    heads = hf["num_attention_heads"]
    return dict(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=heads, d_head=hf["hidden_size"] // heads, d_ff=hf["intermediate_size"],
        n_kv_heads=heads, max_len=hf.get("max_position_embeddings", 2048), norm="layernorm",
        norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
        activation="gelu_exact" if act == "gelu" else "gelu",
        use_bias=bool(hf.get("attention_bias", True)), mlp_bias=True,   # NeoX's MLP always has biases
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), position="rotary",
        parallel_residual=bool(hf.get("use_parallel_residual", True)), **_rope(hf, where, 0.25))


def _gpt2(hf, where):
    act = hf.get("activation_function", "gelu_new")
    _require(act in _GELU_TANH, where, "activation_function", act, list(_GELU_TANH))
    _require(hf.get("scale_attn_weights", True), where, "scale_attn_weights",
             hf.get("scale_attn_weights"), [True])
    _require(not hf.get("scale_attn_by_inverse_layer_idx", False), where,
             "scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx"), [False])
    d, heads = hf["n_embd"], hf["n_head"]
    return dict(
        vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["n_layer"], n_heads=heads,
        d_head=d // heads, d_ff=hf.get("n_inner") or 4 * d, n_kv_heads=heads, max_len=hf["n_positions"],
        norm="layernorm", norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), activation="gelu",
        use_bias=True, mlp_bias=True, tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        position="learned", rotary_fraction=0.0,
        parallel_residual=False)


def architecture_from_hf(hf: dict, where="config.json") -> tuple[str, dict]:
    """-> (family, TransformerConfig architecture fields) for a Hugging Face config dict."""
    family = family_of(hf, where)
    try:
        fields = {"llama": _llama, "gpt_neox": _gpt_neox, "gpt2": _gpt2}[family](hf, where)
    except KeyError as e:
        raise CheckpointFormatError(f"{where}: required field {e.args[0]!r} is missing "
                                    f"(model_type={family})") from None
    defaults = dict(rotary_scaling="none", rotary_scaling_factor=1.0, rotary_low_freq_factor=1.0,
                    rotary_high_freq_factor=4.0, rotary_original_max_len=8192)
    return family, {**defaults, **fields}


def export_family(cfg) -> str:
    """The Hugging Face family that expresses an hh architecture exactly."""
    if cfg.position == "learned":
        return "gpt2"
    return "llama" if cfg.norm == "rmsnorm" else "gpt_neox"


def _unsupported(cfg, family, why):
    raise CheckpointFormatError(f"cannot export as {family}: {why}")


def hf_config_from(cfg, family: str, special_ids: dict) -> dict:
    """The config.json for an hh architecture `cfg` exported as `family` (see `export_family`)."""
    rope = {"rope_theta": cfg.rotary_base, "rope_type": "default"}
    if cfg.rotary_scaling == "linear":
        rope.update(rope_type="linear", factor=cfg.rotary_scaling_factor)
    elif cfg.rotary_scaling == "llama3":
        rope.update(rope_type="llama3", factor=cfg.rotary_scaling_factor,
                    low_freq_factor=cfg.rotary_low_freq_factor, high_freq_factor=cfg.rotary_high_freq_factor,
                    original_max_position_embeddings=cfg.rotary_original_max_len)
    mlp_bias = cfg.use_bias if cfg.mlp_bias is None else cfg.mlp_bias
    common = dict(vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_embeddings, **special_ids)
    if family == "llama":
        if cfg.activation != "swiglu" or cfg.parallel_residual or cfg.rotary_fraction != 1.0:
            _unsupported(cfg, family, "Llama needs SwiGLU, sequential residual and full rotary")
        return dict(
            architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, head_dim=cfg.d_head,
            num_key_value_heads=cfg.kv_heads, intermediate_size=cfg.d_ff, hidden_act="silu",
            max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.norm_eps, attention_bias=cfg.use_bias,
            mlp_bias=mlp_bias, rope_theta=cfg.rotary_base, rope_scaling=None if len(rope) == 2 else rope,
            **common)
    if cfg.activation == "swiglu" or cfg.kv_heads != cfg.n_heads or cfg.d_head * cfg.n_heads != cfg.d_model:
        _unsupported(cfg, family, "it needs a GELU MLP, one KV head per head and d_head·n_heads = d_model")
    if family == "gpt_neox":
        return dict(
            architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, intermediate_size=cfg.d_ff,
            hidden_act="gelu" if cfg.activation == "gelu_exact" else "gelu_new",
            max_position_embeddings=cfg.max_len, layer_norm_eps=cfg.norm_eps,
            attention_bias=cfg.use_bias, use_parallel_residual=cfg.parallel_residual,
            rotary_pct=cfg.rotary_fraction, rotary_emb_base=cfg.rotary_base,
            rope_scaling=None if len(rope) == 2 else rope, **common)
    if cfg.parallel_residual or cfg.activation != "gelu":
        _unsupported(cfg, family, "GPT-2 needs tanh GELU and a sequential residual")
    return dict(
        architectures=["GPT2LMHeadModel"], model_type="gpt2", n_embd=cfg.d_model, n_layer=cfg.n_layers,
        n_head=cfg.n_heads, n_inner=cfg.d_ff, n_positions=cfg.max_len, activation_function="gelu_new",
        layer_norm_epsilon=cfg.norm_eps, **common)
