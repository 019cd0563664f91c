"""Importing Hugging Face checkpoints: logits, greedy continuations, sharded loading, errors.

The reference is transformers on a CPU torch (random small models saved with save_pretrained).
"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hf_fixtures as fx
from configs.common import SHARDING_RULES
from hh.checkpoints import hf_import
from hh.checkpoints.safetensors_dir import CheckpointFormatError, SafetensorsDir
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """variant -> (directory, torch model)."""
    root = tmp_path_factory.mktemp("hf")
    return {v: (root / v, fx.make_hf_model(root / v, v, seed=i)) for i, v in enumerate(fx.VARIANTS)}


def hh_logits(cfg, params, tokens, mask, positions):
    out = TransformerLM(cfg).apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions),
                                   jnp.asarray(mask))
    return np.asarray(out["logits"])


@pytest.mark.parametrize("variant", list(fx.VARIANTS))
def test_logits_match_reference_on_a_padded_batch(saved, variant):
    directory, model = saved[variant]
    cfg, params = hf_import.load_hf_model(directory)
    tokens, mask, positions = fx.padded_batch()
    ref = fx.reference_logits(model, tokens, mask, positions)
    ours = hh_logits(cfg, params, tokens, mask, positions)
    assert np.abs(ref).max() > 1.0          # logits of order one: layout errors would show
    np.testing.assert_allclose(ours[mask == 1], ref[mask == 1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["gpt2-untied", "llama-partial-rotary-factor"])
def test_logits_match_reference_to_float32_precision(saved, variant):
    """An untied GPT-2 head is read from lm_head.weight; a Llama partial_rotary_factor is ignored,
    as transformers' Llama ignores it with the default rope (it rotates all of head_dim).

    atol 5e-6: float32 summation order alone moves the final hidden state by up to ~2e-6 in every
    family, tied ones included, so a near-zero logit can differ by ~1.5e-6 from transformers'.
    """
    directory, model = saved[variant]
    cfg, params = hf_import.load_hf_model(directory)
    tokens, mask, positions = fx.padded_batch()
    ref = fx.reference_logits(model, tokens, mask, positions)
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(hh_logits(cfg, params, tokens, mask, positions)[mask == 1], ref[mask == 1],
                               rtol=1e-5, atol=5e-6)


def test_fields_per_family(saved):
    _, neox = hf_import.imported_fields(saved["neox"][0])
    assert (neox["parallel_residual"], neox["rotary_fraction"], neox["norm"], neox["activation"],
            neox["use_bias"]) == (True, 0.25, "layernorm", "gelu_exact", True)
    _, llama = hf_import.imported_fields(saved["llama-tied-bias-llama3rope"][0])
    assert (llama["n_kv_heads"], llama["tie_embeddings"], llama["rotary_scaling"], llama["norm"],
            llama["rotary_scaling_factor"], llama["rotary_original_max_len"]) == (1, True, "llama3", "rmsnorm", 8.0, 32)
    _, gpt2 = hf_import.imported_fields(saved["gpt2"][0])
    assert (gpt2["position"], gpt2["max_len"], gpt2["tie_embeddings"]) == ("learned", 64, True)
    _, untied = hf_import.imported_fields(saved["gpt2-untied"][0])
    assert untied["tie_embeddings"] is False
    _, partial = hf_import.imported_fields(saved["llama-partial-rotary-factor"][0])
    assert partial["rotary_fraction"] == 1.0


def test_rope_scaling_is_not_a_no_op(saved):
    """The llama3 variant's logits depend on the scaling: dropping it must break the match."""
    import dataclasses
    directory, model = saved["llama-tied-bias-llama3rope"]
    cfg, params = hf_import.load_hf_model(directory)
    tokens, mask, positions = fx.padded_batch()
    ref = fx.reference_logits(model, tokens, mask, positions)
    unscaled = hh_logits(dataclasses.replace(cfg, rotary_scaling="none"), params, tokens, mask, positions)
    assert np.abs(unscaled[mask == 1] - ref[mask == 1]).max() > 1e-3


@pytest.mark.parametrize("variant", ["llama", "neox"])
def test_greedy_continuation_matches_reference(saved, variant):
    directory, model = saved[variant]
    cfg, params = hf_import.load_hf_model(directory)
    prompt = np.random.default_rng(1).integers(3, fx.VOCAB, size=(2, 5))
    n_new = 8
    ref = model.generate(fx.torch.tensor(prompt), max_new_tokens=n_new, do_sample=False,
                         pad_token_id=0, eos_token_id=None).numpy()
    forward = jax.jit(lambda p, t: TransformerLM(cfg).apply({"params": p}, t)["logits"][:, -1])
    tokens, gaps = prompt.astype(np.int32), []
    for _ in range(n_new):
        logits = np.asarray(forward(params, jnp.asarray(tokens)))
        top2 = np.sort(logits, axis=-1)[:, -2:]
        gaps.append(top2[:, 1] - top2[:, 0])
        tokens = np.concatenate([tokens, logits.argmax(-1)[:, None].astype(np.int32)], axis=1)
    decided = np.min(gaps, axis=0) > 1e-3    # ties closer than float32 noise are not compared
    assert decided.any()
    np.testing.assert_array_equal(tokens[decided], ref[decided])


RULES = shd.rules_from_config(SHARDING_RULES)


def _mesh(data, fsdp, tensor):
    return shd.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor}, jax.devices()[:data * fsdp * tensor])


@pytest.mark.parametrize("variant", ["llama", "neox", "gpt2"])
def test_sharded_load_equals_unsharded_load(saved, variant):
    directory, _ = saved[variant]
    _, single = hf_import.load_hf_model(directory, mesh=_mesh(1, 1, 1), rules=RULES)
    cfg, sharded = hf_import.load_hf_model(directory, mesh=_mesh(1, 2, 4), rules=RULES)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), single, sharded)
    kernel = sharded["stack"]["layer_0"]["mlp"]["up"]["kernel"]
    assert kernel.addressable_shards[0].data.shape == (cfg.d_model // 2, cfg.d_ff // 4)


def test_scanned_stack_loads_the_same_weights(saved):
    directory, model = saved["neox"]
    cfg, params = hf_import.load_hf_model(directory, scan_layers=True, mesh=_mesh(1, 2, 4), rules=RULES)
    assert params["stack"]["layers"]["attention"]["query"]["kernel"].shape[0] == cfg.n_layers
    tokens, mask, positions = fx.padded_batch()
    np.testing.assert_allclose(hh_logits(cfg, params, tokens, mask, positions)[mask == 1],
                               fx.reference_logits(model, tokens, mask, positions)[mask == 1], atol=1e-4)


def test_each_device_reads_only_its_slice(saved, monkeypatch):
    """On a (fsdp 2, tensor 4) mesh, a device's read of the LM head is 1/8 of the tensor."""
    directory, _ = saved["llama"]
    reads = []
    original = SafetensorsDir.read

    def recording(self, name, index=()):
        out = original(self, name, index)
        reads.append((name, out.size))
        return out

    monkeypatch.setattr(SafetensorsDir, "read", recording)
    cfg, _ = hf_import.load_hf_model(directory, mesh=_mesh(1, 2, 4), rules=RULES)
    head = [size for name, size in reads if name == "lm_head.weight"]
    assert len(head) == 8 and max(head) == cfg.vocab_size * cfg.d_model // 8


def test_added_tokens_get_mean_rows(saved):
    class Tok:   # the two attributes the loader reads from a tokenizer
        vocab_size, new_token_ids, original_vocab_size = fx.VOCAB + 3, (fx.VOCAB, fx.VOCAB + 1, 5), fx.VOCAB
    directory, _ = saved["llama"]
    cfg, params = hf_import.load_hf_model(directory, tokenizer=Tok())
    source = SafetensorsDir(directory)
    embed = source.read("model.embed_tokens.weight")
    ours = np.asarray(params["embed"]["embedding"])
    assert cfg.vocab_size == fx.VOCAB + 3
    for row in (fx.VOCAB, fx.VOCAB + 1, fx.VOCAB + 2, 5):
        np.testing.assert_allclose(ours[row], embed.mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(ours[6:fx.VOCAB], embed[6:])
    head = np.asarray(params["lm_head"]["kernel"])
    np.testing.assert_allclose(head[:, fx.VOCAB + 2], source.read("lm_head.weight").mean(axis=0), atol=1e-6)


def _edit_config(src, dst, **changes):
    import shutil
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize("changes, message", [
    (dict(model_type="mpt"), "model_type='mpt' is not supported"),
    (dict(hidden_act="relu"), "hidden_act='relu' is not supported"),
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}), "rope_type='yarn'"),
    (dict(num_hidden_layers=3), "model.layers.2.input_layernorm.weight"),
    # transformers' Llama cannot run this (its scaled rope shortens cos/sin, q keeps head_dim)
    (dict(rope_parameters={"rope_type": "linear", "rope_theta": 5000.0, "factor": 2.0,
                           "partial_rotary_factor": 0.5}), "partial_rotary_factor=0.5"),
])
def test_unsupported_or_inconsistent_checkpoints_fail_naming_the_field(saved, tmp_path, changes, message):
    directory = _edit_config(saved["llama"][0], tmp_path / "edited", **changes)
    with pytest.raises(CheckpointFormatError, match=message.replace("(", r"\(").replace("[", r"\[")):
        hf_import.load_hf_model(directory)


def test_missing_weights_name_the_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert not hf_import.is_hf_directory(tmp_path)
    with pytest.raises(CheckpointFormatError, match="PyTorch .bin checkpoints are not read"):
        SafetensorsDir(tmp_path)


def _with_extra_tensors(src, dst, **extra):
    """A copy of the checkpoint `src` whose model.safetensors also holds `extra` (name -> array)."""
    import shutil

    from safetensors.numpy import load_file, save_file
    shutil.copytree(src, dst)
    tensors = {**load_file(dst / "model.safetensors"), **extra}
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


EXTRA = "model.layers.0.mlp.extra_proj.weight"


def test_an_unused_tensor_fails_naming_it(saved, tmp_path):
    directory = _with_extra_tensors(saved["llama"][0], tmp_path / "extra", **{EXTRA: np.ones((4, 4), np.float32)})
    with pytest.raises(CheckpointFormatError, match=re.escape(f"['{EXTRA}']")):
        hf_import.load_hf_model(directory)
    with pytest.raises(CheckpointFormatError, match="extra_proj"):   # a pattern must match the whole name
        hf_import.load_hf_model(directory, allow_unused=("extra_proj",))


def test_unused_tensors_load_when_allowed(saved, tmp_path):
    directory = _with_extra_tensors(saved["llama"][0], tmp_path / "extra", **{EXTRA: np.ones((4, 4), np.float32)})
    _, params = hf_import.load_hf_model(directory, allow_unused=(r"model\.layers\.\d+\.mlp\.extra_proj\.weight",))
    _, reference = hf_import.load_hf_model(saved["llama"][0])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, reference)


def test_a_tied_config_with_a_separate_head_tensor_fails(saved, tmp_path):
    """The untied GPT-2 checkpoint relabelled tied: its lm_head.weight would be dropped, changing logits."""
    directory = _edit_config(saved["gpt2-untied"][0], tmp_path / "relabelled", tie_word_embeddings=True)
    with pytest.raises(CheckpointFormatError, match=re.escape("['lm_head.weight']")):
        hf_import.load_hf_model(directory)


@pytest.mark.parametrize("variant, buffers", [
    ("gpt2", {"transformer.h.0.attn.bias": np.tril(np.ones((1, 1, 64, 64), np.float32)),
              "transformer.h.0.attn.masked_bias": np.array(-1e4, np.float32)}),
    ("llama", {"model.layers.1.self_attn.rotary_emb.inv_freq": np.ones(8, np.float32)}),
])
def test_known_buffers_are_skipped(saved, tmp_path, variant, buffers):
    """Causal-mask and rotary buffers that older transformers saved are not weights."""
    directory = _with_extra_tensors(saved[variant][0], tmp_path / "buffers", **buffers)
    hf_import.load_hf_model(directory)
