"""Exporting hh models to Hugging Face directories: transformers loads them and agrees.

LM/policy -> <Family>ForCausalLM; PM -> <Family>ForSequenceClassification (score read at the
last non-pad token, which is hh's EOC).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hf_fixtures as fx
from hh.checkpoints import hf_export, hf_import
from hh.checkpoints.safetensors_dir import INDEX_FILE, CheckpointFormatError
from hh.models.heads import ScalarHead
from hh.models.transformer import TransformerConfig, TransformerLM

transformers = fx.transformers
torch = fx.torch

# The paper's block (pre-LayerNorm, tanh GELU, no biases, full rotary, untied): exported as GPT-NeoX.
PAPER_LIKE = TransformerConfig(vocab_size=fx.VOCAB, d_model=64, n_layers=2, n_heads=4, d_head=16, d_ff=256,
                               max_len=128, init_std=0.1)


def random_params(cfg, seed=0):
    model = TransformerLM(cfg)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 8), jnp.int32))["params"]
    params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                          is_leaf=lambda x: hasattr(x, "unbox"))
    # Norm scales/biases away from 1/0, so a dropped or swapped one would show.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) if x.ndim == 1 else x for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def hh_logits(cfg, params, tokens, mask, positions):
    return np.asarray(TransformerLM(cfg).apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions),
                                               jnp.asarray(mask))["logits"])


@pytest.mark.parametrize("variant", ["llama", "neox", "gpt2", "gpt2-untied", "llama-tied-bias-llama3rope",
                                     "neox-sequential-tanh"])
def test_import_export_round_trip(tmp_path, variant):
    """HF -> hh -> HF: transformers loads the export and gives the original model's logits."""
    model = fx.make_hf_model(tmp_path / "src", variant)
    cfg, params = hf_import.load_hf_model(tmp_path / "src")
    hf_export.export_hf(tmp_path / "out", params, cfg, family="gpt2" if variant.startswith("gpt2") else None)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    tokens, mask, positions = fx.padded_batch()
    np.testing.assert_allclose(fx.reference_logits(reloaded, tokens, mask, positions)[mask == 1],
                               fx.reference_logits(model, tokens, mask, positions)[mask == 1], atol=1e-5)
    _, again = hf_import.load_hf_model(tmp_path / "out")
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, again)


@pytest.mark.parametrize("cfg", [
    PAPER_LIKE,
    dataclasses.replace(PAPER_LIKE, norm="rmsnorm", activation="swiglu", n_kv_heads=2, d_ff=96),
    dataclasses.replace(PAPER_LIKE, position="learned", tie_embeddings=True, use_bias=True, rotary_fraction=0.0),
    dataclasses.replace(PAPER_LIKE, scan_layers=True, parallel_residual=True, activation="gelu_exact"),
], ids=["paper-as-neox", "llama", "gpt2", "scanned-parallel"])
def test_native_hh_models_export_exactly(tmp_path, cfg):
    params = random_params(cfg)
    hf_export.export_hf(tmp_path, params, cfg)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens, mask, positions = fx.padded_batch()
    ours = hh_logits(cfg, params, tokens, mask, positions)
    assert np.abs(ours).max() > 1.0
    np.testing.assert_allclose(fx.reference_logits(reference, tokens, mask, positions)[mask == 1],
                               ours[mask == 1], atol=1e-4)


def test_sharded_safetensors_export(tmp_path):
    params = random_params(PAPER_LIKE)
    hf_export.export_hf(tmp_path, params, PAPER_LIKE, max_shard_bytes=40_000)
    assert (tmp_path / INDEX_FILE).exists() and len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 2
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens, mask, positions = fx.padded_batch()
    np.testing.assert_allclose(fx.reference_logits(reference, tokens, mask, positions)[mask == 1],
                               hh_logits(PAPER_LIKE, params, tokens, mask, positions)[mask == 1], atol=1e-4)


class _Tok:
    bos_id, eos_id, pad_id, eoc_id = 1, 2, 0, 3


@pytest.mark.parametrize("cfg", [PAPER_LIKE, dataclasses.replace(PAPER_LIKE, norm="rmsnorm", activation="swiglu")],
                         ids=["neox", "llama"])
def test_pm_export_scores_at_the_eoc_token(tmp_path, cfg):
    params = random_params(cfg)
    head = nn.meta.unbox(ScalarHead(init_std=0.5).init(jax.random.key(3), jnp.zeros((1, 1, cfg.d_model)))["params"])
    head = jax.tree.map(lambda x: x + 0.3, head)
    hf_export.export_hf(tmp_path, params, cfg, tokenizer=_Tok(), kind="pm", score_head=head)
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    # Right-padded rows ending in <eoc> (id 3), as hh's PM batches are.
    rows = [[1, 10, 11, 12, 3], [1, 20, 21, 22, 23, 24, 25, 3], [1, 30, 3]]
    length = max(map(len, rows))
    tokens = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = r
    mask = (np.arange(length)[None] < np.array([len(r) for r in rows])[:, None]).astype(np.int32)
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    out = TransformerLM(cfg).apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    eoc = mask.sum(1) - 1
    ours = np.asarray(ScalarHead().apply({"params": head}, out["final_hidden"], jnp.asarray(eoc)))
    with torch.no_grad():
        ref = reference(input_ids=torch.tensor(tokens, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()
    bias = reference.config.hh_score_bias
    np.testing.assert_allclose(ref + bias, ours, atol=1e-4)
    assert abs(bias - float(head["score"]["bias"][0])) < 1e-7


def test_unexportable_architectures_fail_clearly(tmp_path):
    cfg = dataclasses.replace(PAPER_LIKE, norm="rmsnorm", activation="gelu")
    with pytest.raises(CheckpointFormatError, match="Llama needs SwiGLU"):
        hf_export.export_hf(tmp_path, random_params(cfg), cfg)


@pytest.mark.parametrize("variant", ["llama", "neox"])
def test_sharded_import_export_round_trip(tmp_path, variant):
    """Loaded onto a (fsdp 2, tensor 4) mesh of the 8 fake devices, scanned, then exported."""
    from configs.common import SHARDING_RULES
    from hh.parallel import sharding as shd
    model = fx.make_hf_model(tmp_path / "src", variant)
    mesh = shd.make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
    rules = shd.rules_from_config(SHARDING_RULES)
    cfg, params = hf_import.load_hf_model(tmp_path / "src", mesh=mesh, rules=rules, scan_layers=True)
    assert not params["stack"]["layers"]["mlp"]["up"]["kernel"].sharding.is_fully_replicated
    hf_export.export_hf(tmp_path / "out", params, cfg)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    tokens, mask, positions = fx.padded_batch()
    np.testing.assert_allclose(fx.reference_logits(reloaded, tokens, mask, positions)[mask == 1],
                               fx.reference_logits(model, tokens, mask, positions)[mask == 1], atol=1e-5)
