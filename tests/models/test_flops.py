"""Model-FLOPs accounting (hh.train.flops) against hand-worked numbers and the real module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh.models import presets
from hh.models.transformer import TransformerLM
from hh.train.flops import attention_flops_per_token, matmul_params, train_flops_per_token


def test_13m_by_hand():
    cfg = presets.model_config("13M")            # L=4, d=512, 8 heads of 64, d_ff=2048, vocab 2^16
    blocks = 4 * (4 * 512 * 512 + 2 * 512 * 2048)   # q, k, v, out + up, down
    assert blocks == 12 * 4 * 512**2 == 12_582_912
    head = 512 * 65536
    assert matmul_params(cfg) == blocks + head == 46_137_344
    assert attention_flops_per_token(cfg, 1024) == 12 * 4 * 512 * 1024 == 25_165_824
    assert train_flops_per_token(cfg, 1024) == 6 * 46_137_344 + 25_165_824 == 301_989_888
    # A step of batch 4 at seq 1024 is about 1.24 TFLOP.
    assert train_flops_per_token(cfg, 1024) * 4 * 1024 == pytest.approx(1.2369e12, rel=1e-4)


@pytest.mark.parametrize("name", ["smoke", "tiny", "13M", "42M", "197M"])
def test_matches_parameter_counts(name):
    """matmul params = non-embedding params − norm params + the LM head (d·vocab)."""
    cfg = presets.model_config(name)
    non_embedding, total = presets.parameter_counts(cfg)
    d, L = cfg.d_model, cfg.n_layers
    norms = L * 2 * (2 * d) + 2 * d               # two LayerNorms (scale, bias) per block + final
    assert matmul_params(cfg) == non_embedding - norms + d * cfg.vocab_size
    assert total == non_embedding + 2 * d * cfg.vocab_size   # untied: embed + lm_head
    assert non_embedding - norms == 12 * L * d**2


def _kernel_params(cfg):
    """Sum of the real module's 2-D weights, minus the input/position embeddings."""
    shapes = jax.eval_shape(lambda t: TransformerLM(cfg).init(jax.random.key(0), t),
                            jax.ShapeDtypeStruct((1, 8), jnp.int32))["params"]
    n = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes, is_leaf=lambda x: hasattr(x, "shape")):
        names = [getattr(k, "key", str(k)) for k in path]
        value = getattr(leaf, "value", leaf)
        if len(value.shape) == 2 and not {"embed", "position_embed"} & set(names):
            n += int(np.prod(value.shape))
    return n


@pytest.mark.parametrize("overrides", [
    {},
    dict(activation="swiglu", n_kv_heads=1, norm="rmsnorm"),
    dict(use_bias=True, position="learned", n_kv_heads=2),
])
def test_matches_module_kernels(overrides):
    cfg = presets.model_config("smoke", n_heads=4, d_head=16, **overrides)
    assert matmul_params(cfg) == _kernel_params(cfg)


def test_tied_embeddings_still_count_the_unembedding():
    cfg = presets.model_config("smoke", tie_embeddings=True)
    assert matmul_params(cfg) == _kernel_params(cfg) + cfg.d_model * cfg.vocab_size
