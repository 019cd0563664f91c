"""The preference model: the transformer LM trunk plus a scalar score head read at the EOC token.

Askell et al. 2021 §3.1 / App. C.4, Bai et al. 2022 App. A.2: the score is "predicted directly on
top of" an end-of-context token appended to every sample. Params are {"trunk": TransformerLM
params, "score_head": ScalarHead params}, so an LM checkpoint initialises the trunk as it is.
"""

import flax.linen as nn
import jax.numpy as jnp

from hh.models.heads import ScalarHead
from hh.models.transformer import TransformerConfig, TransformerLM


def eoc_positions(tokens, eoc_id: int):
    """tokens [batch, length] -> [batch] index of each row's LAST EOC token.

    Found from the tokens, not from the padding, so left-, right- and un-padded rows all work;
    a row without an EOC (only eval padding rows) reads position 0.
    """
    index = jnp.arange(tokens.shape[1], dtype=jnp.int32)[None, :]
    return jnp.maximum(jnp.max(jnp.where(tokens == eoc_id, index, -1), axis=1), 0)


class PreferenceModel(nn.Module):
    """tokens [batch, length] -> dict(score [batch] float32, final_hidden [batch, length, d]).

    `compute_logits=True` also returns the LM logits (and creates the LM head at init, so the
    trunk's params always match an LM's).
    """
    cfg: TransformerConfig
    eoc_id: int

    @nn.compact
    def __call__(self, tokens, positions=None, segment_ids=None, *, compute_logits=False):
        out = TransformerLM(self.cfg, name="trunk")(tokens, positions, segment_ids,
                                                    compute_logits=compute_logits)
        out["score"] = ScalarHead(name="score_head")(out["final_hidden"],
                                                     eoc_positions(tokens, self.eoc_id))
        return out


def init_params(model: PreferenceModel, rng, seq_len: int):
    """Boxed params (trunk with its LM head, and the score head) for a [1, seq_len] input."""
    return model.init(rng, jnp.zeros((1, seq_len), jnp.int32), compute_logits=True)["params"]
