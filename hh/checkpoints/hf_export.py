"""hh LM, policy or PM -> a Hugging Face directory that `transformers` loads as it is.

An LM or policy becomes `<Family>ForCausalLM`; a PM becomes `<Family>ForSequenceClassification`
with one label, its `score` the PM head's kernel. transformers scores the last non-pad token,
which is hh's EOC when rows end in <eoc> and pad differs from it. Its head has no bias, so the
PM bias (a constant shift of every score; preference probabilities sigmoid(Δ) are unchanged) is
kept in config.json as `hh_score_bias`. Only process 0 writes.
"""

import json

import flax.linen as nn
import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hh.checkpoints import hf_config, layouts
from hh.checkpoints.safetensors_dir import write_safetensors_dir
from hh.io import atomic_write_text

_CLASS_SUFFIX = {"lm": "ForCausalLM", "pm": "ForSequenceClassification"}
_CLASS_PREFIX = {"llama": "Llama", "gpt_neox": "GPTNeoX", "gpt2": "GPT2"}


def host_array(x) -> np.ndarray:
    """A (possibly multi-host sharded) jax.Array as one numpy array on this host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def unrolled_flat_params(params, cfg) -> dict:
    """{path: numpy array} with a scanned stack ("stack/layers", [n_layers, ...]) split per layer."""
    flat = {}

    def walk(tree, prefix):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) or hasattr(value, "items"):
                walk(value, path + "/")
            else:
                flat[path] = host_array(value)

    walk(params, "")
    out = {}
    for path, value in flat.items():
        if path.startswith("stack/layers/"):
            rest = path[len("stack/layers/"):]
            for i in range(cfg.n_layers):
                out[f"stack/layer_{i}/{rest}"] = value[i]
        else:
            out[path] = value
    return out


def _special_ids(tokenizer) -> dict:
    if tokenizer is None:
        return {}
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}


def export_hf(directory, params, cfg, *, tokenizer=None, kind="lm", score_head=None,
              family=None, dtype="float32", max_shard_bytes=5 * 2**30) -> epath.Path:
    """Writes config.json, safetensors and (if given) the tokenizer into `directory`.

    params: TransformerLM params; kind: "lm" (LM or policy) or "pm" (needs `score_head`, the
    ScalarHead params {"score": {"kernel": [d, 1], "bias": [1]}}); family: default from the
    architecture (`hf_config.export_family`); dtype: of the written tensors.
    """
    if kind not in _CLASS_SUFFIX:
        raise ValueError(f"kind={kind!r}: use 'lm' or 'pm'")
    if kind == "pm" and score_head is None:
        raise ValueError("kind='pm' needs the score head's params (score_head=...)")
    params, score_head = nn.meta.unbox(params), nn.meta.unbox(score_head)
    family = family or hf_config.export_family(cfg)
    config = hf_config.hf_config_from(cfg, family, _special_ids(tokenizer))
    config["architectures"] = [_CLASS_PREFIX[family] + _CLASS_SUFFIX[kind]]
    config["dtype"] = dtype
    flat = unrolled_flat_params(params, cfg)
    tensors = layouts.export_tensors(family, cfg, flat)
    if kind == "pm":
        head = {k: host_array(v) for k, v in score_head["score"].items()}
        tensors = {k: v for k, v in tensors.items() if k not in ("lm_head.weight", "embed_out.weight")}
        tensors["score.weight"] = head["kernel"].T.astype(np.float32)
        config.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0},
                      hh_score_bias=float(head["bias"].reshape(-1)[0]))
    tensors = {k: v.astype(jax.numpy.dtype(dtype)) for k, v in tensors.items()}
    directory = epath.Path(directory)
    if jax.process_index() == 0:
        write_safetensors_dir(directory, tensors, max_shard_bytes)
        atomic_write_text(directory / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        if tokenizer is not None and hasattr(tokenizer, "save") and hasattr(tokenizer, "new_token_ids"):
            tokenizer.save(directory)
    return directory
