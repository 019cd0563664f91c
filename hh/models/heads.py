"""Scalar heads on top of the transformer trunk: the preference model and the PPO value model.

Askell et al. 2021 §3.1: "a value head that predicts a single scalar 'score' r on top of the final
token of any given context". `gather_positions` is the one place that reads hidden states at token
positions (EOC tokens for the PM, every response token for the value model), `last_index` the one
place that finds a row's last marked position (the PM's EOC token, a rollout's last real token).

Both models hold params {"trunk": TransformerLM params, "score_head": ScalarHead params}, so an LM
checkpoint initialises a PM's trunk as it is, and a PM checkpoint initialises the value model.
"""

import flax.linen as nn
import jax.numpy as jnp

from hh.models.transformer import EMBED, TransformerConfig, TransformerLM


def last_index(mask):
    """mask [batch, length] (bool, or numbers where > 0 marks) -> int32 [batch] index of each
    row's LAST marked position; 0 for a row with none.

    Found from the marks, not from the padding, so left-, right- and un-padded rows all work.
    """
    index = jnp.arange(mask.shape[1], dtype=jnp.int32)[None, :]
    return jnp.maximum(jnp.max(jnp.where(mask > 0, index, -1), axis=1), 0)


def gather_positions(hidden, positions):
    """hidden: [batch, length, d]; positions: [batch] or [batch, k] -> [batch, d] or [batch, k, d]."""
    squeeze = positions.ndim == 1
    index = positions[:, None] if squeeze else positions
    gathered = jnp.take_along_axis(hidden, index[..., None].astype(jnp.int32), axis=1)
    return gathered[:, 0] if squeeze else gathered


class ScalarHead(nn.Module):
    """hidden [batch, length, d] -> float32 scores read at `positions` ([batch] or [batch, k]).

    With positions=None every position is scored ([batch, length]): the value model's use.
    """
    init_std: float = 0.0  # zero init: a fresh head scores every sample equally

    @nn.compact
    def __call__(self, hidden, positions=None):
        if positions is not None:
            hidden = gather_positions(hidden, positions)
        kernel = nn.with_logical_partitioning(nn.initializers.normal(self.init_std) if self.init_std
                                              else nn.initializers.zeros, (EMBED, None))
        bias = nn.with_logical_partitioning(nn.initializers.zeros, (None,))
        score = nn.Dense(1, kernel_init=kernel, bias_init=bias, dtype=jnp.float32,
                         param_dtype=jnp.float32, name="score")(hidden.astype(jnp.float32))
        return score[..., 0]


class PreferenceModel(nn.Module):
    """tokens [batch, length] -> dict(score [batch] float32, final_hidden [batch, length, d]).

    The score is read at each row's last EOC token (Askell et al. 2021 §3.1 / App. C.4, Bai et
    al. 2022 App. A.2: it is "predicted directly on top of" an end-of-context token appended to
    every sample); a row without an EOC (only eval padding rows) reads position 0.
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
                                                     last_index(tokens == self.eoc_id))
        return out


def init_pm_params(model: PreferenceModel, rng, seq_len: int):
    """Boxed params (trunk with its LM head, and the score head) for a [1, seq_len] input."""
    return model.init(rng, jnp.zeros((1, seq_len), jnp.int32), compute_logits=True)["params"]


class ValueModel(nn.Module):
    """The critic: a transformer trunk plus a ScalarHead scoring EVERY position.

    Params are named as the PreferenceModel's, so a PM checkpoint initialises it (the N+ choice;
    Bai et al. are silent on the critic). No LM head. tokens [b, L] -> values [b, L] float32.
    """
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, tokens, positions, segment_ids):
        hidden = TransformerLM(self.cfg, name="trunk")(tokens, positions, segment_ids,
                                                       compute_logits=False)["final_hidden"]
        return ScalarHead(name="score_head")(hidden)
