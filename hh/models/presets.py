"""The model family: the paper's seven sizes (13M…52B) and small test sizes, in one table.

Askell et al. 2021 App. A, Table 1: d_model = 128·n_layer, d_ff = 4·d_model, vocabulary 2^16,
context 8192; "N parameters" means non-embedding parameters, N ≈ 12·n_layer·d_model².
Run `python -m hh.models.presets` for the table with counts taken from the real module.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hh.models.transformer import TransformerConfig, TransformerLM

PAPER_VOCAB = 65536   # Askell et al. App. A: BPE vocabulary of 2^16
PAPER_CONTEXT = 8192
D_HEAD = 64           # our choice: the paper publishes no head count (docs/paper-notes.md §1)

# name: (n_layers, d_model, LM-pretraining peak learning rate).
# The paper publishes no LM learning rate; ours follow GPT-3's size-to-LR table (Brown et al.
# 2020, Table 2.1), interpolated. Later stages use multiples of it (PMP 0.1×, PM 0.01×, ...).
PAPER_SIZES = {
    "13M": (4, 512, 1e-3),
    "42M": (6, 768, 8e-4),
    "197M": (10, 1280, 6e-4),
    "810M": (16, 2048, 3e-4),
    "2.7B": (24, 3072, 1.6e-4),
    "13B": (40, 5120, 1e-4),
    "52B": (64, 8192, 6e-5),
}

# Test sizes, for CPU runs; they keep the family's shape (d_ff = 4·d_model, pre-LN, rotary).
# vocab 384 = the byte tokenizer's 259 symbols rounded up to a multiple of 128.
TEST_SIZES = {
    "smoke": dict(n_layers=2, d_model=64, n_heads=2, d_head=32, max_len=64, vocab_size=384,
                  learning_rate=3e-3),
    "tiny": dict(n_layers=2, d_model=256, n_heads=4, d_head=64, max_len=256, vocab_size=384,
                 learning_rate=2e-3),
}

# Presets of 810M and up scan their layers and rematerialise by default: a 64-layer
# unrolled compile is slow and large, and unrematerialised activations would not fit.
SCAN_FROM_LAYERS = 16


def preset_names():
    return list(TEST_SIZES) + list(PAPER_SIZES)


def learning_rate(name):
    """The LM-pretraining peak learning rate of a preset."""
    if name in PAPER_SIZES:
        return PAPER_SIZES[name][2]
    return _lookup(name)["learning_rate"]


def _lookup(name):
    if name in TEST_SIZES:
        return TEST_SIZES[name]
    if name not in PAPER_SIZES:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(preset_names())}")
    n_layers, d_model, _ = PAPER_SIZES[name]
    return dict(n_layers=n_layers, d_model=d_model, n_heads=d_model // D_HEAD, d_head=D_HEAD,
                max_len=PAPER_CONTEXT, vocab_size=PAPER_VOCAB)


def model_fields(name):
    """The TransformerConfig fields of a preset, as a plain dict (configs copy it and override)."""
    p = _lookup(name)
    big = p["n_layers"] >= SCAN_FROM_LAYERS
    fields = dataclasses.asdict(TransformerConfig(
        vocab_size=p["vocab_size"], d_model=p["d_model"], n_layers=p["n_layers"],
        n_heads=p["n_heads"], d_head=p["d_head"], d_ff=4 * p["d_model"], max_len=p["max_len"],
        scan_layers=big, remat="full" if big else "none"))
    return fields


def model_config(name, **overrides):
    return TransformerConfig(**{**model_fields(name), **overrides})


def _is_embedding(path):
    names = [getattr(k, "key", str(k)) for k in path]
    return any(n in ("embed", "position_embed", "lm_head") for n in names)


def parameter_counts(cfg: TransformerConfig):
    """(non-embedding, total) parameter counts from the real module, without allocating."""
    model = TransformerLM(cfg)
    tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda t: model.init(jax.random.key(0), t), tokens)["params"]
    leaves = jax.tree_util.tree_leaves_with_path(shapes, is_leaf=lambda x: hasattr(x, "shape"))
    total = non_embedding = 0
    for path, leaf in leaves:
        value = getattr(leaf, "value", leaf)   # unbox nn.Partitioned
        n = int(np.prod(value.shape))
        total += n
        non_embedding += 0 if _is_embedding(path) else n
    return non_embedding, total


def table():
    rows = [f"{'preset':>6} {'layers':>6} {'d_model':>7} {'heads':>5} {'d_ff':>6} {'vocab':>6} "
            f"{'non-emb':>14} {'12·L·d²':>14} {'total':>14} {'LM lr':>8}"]
    for name in preset_names():
        cfg = model_config(name)
        non_emb, total = parameter_counts(cfg)
        rows.append(f"{name:>6} {cfg.n_layers:>6} {cfg.d_model:>7} {cfg.n_heads:>5} {cfg.d_ff:>6} "
                    f"{cfg.vocab_size:>6} {non_emb:>14,} {12 * cfg.n_layers * cfg.d_model**2:>14,} "
                    f"{total:>14,} {learning_rate(name):>8.1e}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
