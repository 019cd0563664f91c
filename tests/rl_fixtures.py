"""Small transformer rollouts for the RL tests (a helper module, imported top-level)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hh.data.prompt_data import left_padded
from hh.models import presets
from hh.models.heads import ValueModel
from hh.models.transformer import TransformerLM
from hh.rl.logprobs import response_logprobs, response_values

PROMPT_LENS = [3, 6, 1, 5, 4, 6, 2, 5]
RESPONSE_LENS = [5, 2, 4, 1, 5, 3, 5, 4]


def smoke_models():
    cfg = presets.model_config("smoke")
    return cfg, TransformerLM(cfg), ValueModel(cfg)


def smoke_params(policy, value, seed=0):
    tokens = jnp.zeros((1, 8), jnp.int32)
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = jax.jit(lambda k1, k2: {
        "policy": policy.init(k1, tokens)["params"],
        "value": value.init(k2, tokens, tokens, jnp.ones_like(tokens))["params"]})(k1, k2)
    # a non-zero value head, so values (and their gradients) are not trivially 0
    params = nn.meta.unbox(params)
    head = params["value"]["score_head"]["score"]
    head["kernel"] = 0.1 * jax.random.normal(jax.random.key(seed + 7), head["kernel"].shape)
    return params


def prompts_and_responses(seed=0, vocab=300, width=6, n=5):
    """Left-padded prompts [8, width] and right-padded responses [8, n] (ids ≥ 5: no specials)."""
    rng = np.random.default_rng(seed)
    prompts = left_padded([[1, *rng.integers(5, vocab, size=L - 1)] for L in PROMPT_LENS], width)
    mask = np.arange(n)[None] < np.array(RESPONSE_LENS)[:, None]
    tokens = np.where(mask, rng.integers(5, vocab, size=(8, n)), 0).astype(np.int32)
    return ({k: jnp.asarray(prompts[k]) for k in ("tokens", "segment_ids", "positions")},
            jnp.asarray(tokens), jnp.asarray(mask, jnp.float32))


def smoke_rollout(params, policy, value, seed=0):
    """A rollout dict as hh.rl.scoring makes it, with random advantages and returns."""
    prompts, tokens, mask = prompts_and_responses(seed)
    old_logp, _ = jax.jit(response_logprobs, static_argnums=(1, 5))(
        params["policy"], policy, prompts, tokens, mask, 1.0)
    old_values = jax.jit(response_values, static_argnums=1)(params["value"], value, prompts, tokens, mask)
    rng = np.random.default_rng(seed + 1)
    return {"prompt_tokens": prompts["tokens"], "prompt_segment_ids": prompts["segment_ids"],
            "response_tokens": tokens, "mask": mask, "old_logp": old_logp, "old_values": old_values,
            "advantages": jnp.asarray(rng.normal(size=mask.shape), jnp.float32) * mask,
            "returns": jnp.asarray(rng.normal(size=mask.shape), jnp.float32) * mask}


__all__ = ["smoke_models", "smoke_params", "prompts_and_responses", "smoke_rollout"]
