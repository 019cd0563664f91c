"""Scalar heads on top of the transformer: the preference-model score and the PPO value.

Askell et al. 2021 §3.1: "a value head that predicts a single scalar 'score' r on top of the final
token of any given context". `gather_positions` is the one place that reads hidden states at token
positions (EOC tokens for the PM, every response token for the value model).
"""

import flax.linen as nn
import jax.numpy as jnp

from hh.models.transformer import EMBED


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
