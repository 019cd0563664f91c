"""Log-probs, entropies and values of given response tokens: the one full, padding-invariant
forward that RL scoring and the PPO update share (docs/paper-notes.md §8.1, 8.3, 8.4, 8.8).

A sequence is the LEFT-padded prompt ⊕ the RIGHT-padded response; positions are the exclusive
cumsum of the real-token mask and padding is segment 0, so real tokens' logits do not depend on
padding. Logits are divided by the sampling temperature, as they were when sampling.
"""

import jax
import jax.numpy as jnp

from hh.models.heads import ValueModel
from hh.models.transformer import TransformerLM, unembedding


def response_mask(lengths, width: int):
    """lengths [batch] -> float32 [batch, width], 1 on the first `lengths` tokens."""
    return (jnp.arange(width)[None, :] < lengths[:, None]).astype(jnp.float32)


def sequence_inputs(prompts: dict, response_tokens, response_real):
    """prompts {"tokens","segment_ids"} [b, P] left-padded; response_tokens, response_real [b, N]
    -> {"tokens","segment_ids","positions"} [b, P + N]."""
    real = jnp.concatenate([prompts["segment_ids"] > 0, response_real > 0], axis=1)
    tokens = jnp.concatenate([prompts["tokens"], response_tokens], axis=1)
    positions = jnp.maximum(jnp.cumsum(real, axis=1) - 1, 0).astype(jnp.int32)
    return {"tokens": jnp.where(real, tokens, 0).astype(jnp.int32),
            "segment_ids": real.astype(jnp.int32), "positions": positions}


def token_logprobs(logits, tokens, temperature: float):
    """(log softmax(logits / T) at `tokens`, the entropy of that distribution), float32; one
    log-softmax serves both."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    logp = jnp.take_along_axis(log_p, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return logp, -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def chunked_token_logprobs(hidden, head, tokens, temperature: float, chunk: int):
    """`token_logprobs` of the logits hidden @ head, `chunk` positions at a time under
    jax.checkpoint, so neither pass holds the [b, N, vocab] logits: the forward keeps one chunk's,
    the backward recomputes each chunk's. hidden [b, N, d]; head [d, vocab]; tokens [b, N]; N is
    padded up to a multiple of `chunk` inside."""
    b, n, d = hidden.shape
    pad = -n % chunk
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    tokens = jnp.pad(tokens, ((0, 0), (0, pad)))
    k = (n + pad) // chunk
    h = jnp.moveaxis(hidden.reshape(b, k, chunk, d), 1, 0)
    t = jnp.moveaxis(tokens.reshape(b, k, chunk), 1, 0)

    @jax.checkpoint
    def one_chunk(h_c, t_c):
        logits = jnp.einsum("bcd,dv->bcv", h_c, head.astype(h_c.dtype), preferred_element_type=jnp.float32)
        return token_logprobs(logits, t_c, temperature)

    _, (logp, entropy) = jax.lax.scan(lambda _, xs: (None, one_chunk(*xs)), None, (h, t))
    return tuple(jnp.moveaxis(x, 0, 1).reshape(b, n + pad)[:, :n] for x in (logp, entropy))


def response_logprobs(params, model: TransformerLM, prompts, response_tokens, mask, temperature: float,
                      chunk: int = 0):
    """log π(y_t | x, y_<t) and the policy entropy at each response token.

    params: TransformerLM params; response_tokens, mask [b, N] -> (logp [b, N], entropy [b, N]),
    both 0 on padding. Token t is predicted at the position before it (index P − 1 + t).
    chunk > 0: the LM head runs `chunk` response positions at a time (chunked_token_logprobs), for
    large vocabularies; the values equal the unchunked ones.
    """
    inputs = sequence_inputs(prompts, response_tokens, mask)
    p, n = prompts["tokens"].shape[1], response_tokens.shape[1]
    # the head only where a response token is predicted: the prompt's logits are never read
    out = model.apply({"params": params}, inputs["tokens"], inputs["positions"], inputs["segment_ids"],
                      logits_range=(p - 1, p - 1 + n), compute_logits=not chunk)
    if chunk:
        logp, entropy = chunked_token_logprobs(out["final_hidden"][:, p - 1:p - 1 + n],
                                               unembedding(params, model.cfg), response_tokens, temperature, chunk)
    else:
        logp, entropy = token_logprobs(out["logits"], response_tokens, temperature)
    return logp * mask, entropy * mask


def response_values(params, model: ValueModel, prompts, response_tokens, mask):
    """V(x, y_<t) for each response token t, read at the position BEFORE t (docs/paper-notes.md §8.1):
    -> [b, N], 0 on padding."""
    inputs = sequence_inputs(prompts, response_tokens, mask)
    p = prompts["tokens"].shape[1]
    values = model.apply({"params": params}, inputs["tokens"], inputs["positions"], inputs["segment_ids"])
    return values[:, p - 1:-1] * mask
