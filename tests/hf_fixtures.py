"""Small random Hugging Face models and tokenizers, saved with save_pretrained (no downloads).

Shared by the checkpoint import/export tests; transformers and a CPU torch are the reference
(the `hf` test extra).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 96

LLAMA = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=80, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             tie_word_embeddings=False, rope_theta=5000.0, attention_bias=False)
NEOX = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128, rotary_pct=0.25,
            use_parallel_residual=True, tie_word_embeddings=False)
GPT2 = dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
            eos_token_id=2)

VARIANTS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", LLAMA),
    "llama-tied-bias-llama3rope": ("LlamaConfig", "LlamaForCausalLM", {
        **LLAMA, "tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True,
        "num_key_value_heads": 1, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 32}}),
    "neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", NEOX),
    "neox-sequential-tanh": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {
        **NEOX, "use_parallel_residual": False, "hidden_act": "gelu_new", "rotary_pct": 0.5}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", GPT2),
    "gpt2-untied": ("GPT2Config", "GPT2LMHeadModel", {**GPT2, "tie_word_embeddings": False}),
    # transformers' Llama ignores partial_rotary_factor with the default rope (it rotates all of head_dim).
    "llama-partial-rotary-factor": ("LlamaConfig", "LlamaForCausalLM", {**LLAMA, "partial_rotary_factor": 0.5}),
}


def _perturb_norms(model, seed):
    """save_pretrained's random init leaves norms at 1/0; perturb them so a swapped or dropped
    norm weight or bias would show in the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def make_hf_model(directory, variant: str, seed: int = 0, **overrides):
    """Saves a random `variant` model in `directory`; returns the torch model (eval mode)."""
    config_cls, model_cls, fields = VARIANTS[variant]
    fields = {**fields, **overrides}
    torch.manual_seed(seed)
    # A wider init than the default 0.02 gives O(1) logits, so small layout errors show.
    config = getattr(transformers, config_cls)(**{"initializer_range": 0.1, **fields})
    model = getattr(transformers, model_cls)(config)
    _perturb_norms(model, seed)
    model.eval()
    model.save_pretrained(directory)
    return model


def padded_batch(seed=0, batch=3, length=12, vocab=VOCAB):
    """Left-padded, right-padded and full rows: tokens, attention mask, positions (numpy)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab, size=(batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[0, :4] = 0            # left padding
    mask[1, length - 3:] = 0   # right padding
    tokens[mask == 0] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def reference_logits(model, tokens, mask, positions):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long),
                    position_ids=torch.tensor(positions, dtype=torch.long))
    return out.logits.float().numpy()


def make_bpe_tokenizer(directory, extra_text=""):
    """A byte-level BPE tokenizer.json (GPT-NeoX style) trained on a little text, with
    <|endoftext|> as bos/eos and no pad token, plus its tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [SAMPLE_TEXTS[k] for k in SAMPLE_TEXTS] * 20 + [extra_text]
    tok.train_from_iterator(text, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>", "clean_up_tokenization_spaces": False}))
    return tok


SAMPLE_TEXTS = {
    "unicode": "Grüße aus Köln — naïve café, 東京 and emoji 🙂🚀; Ünïcödé ∑∫√.",
    "code": "def f(x):\n    return {'a': [x ** 2 for _ in range(3)]}  # tabs\tand  spaces\n",
    "dialogue": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water and yeast.\n\nHuman: Thanks!",
}
