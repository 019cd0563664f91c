"""The generate phase of a PPO iteration (hh.rl.iteration): responses sampled from the policy for
a prompt batch with hh.models.sampling's KV-cache decoding.
"""

from hh.data.dialogue import HUMAN
from hh.models.sampling import SamplingConfig, generate


def sampling_config(rollout_cfg, tokenizer, model_vocab_size: int) -> SamplingConfig:
    """Pure sampling (top_k 0, top_p 1: the log-probs scored are those of the distribution
    sampled) that stops at the next "\\n\\nHuman:" turn or EOS, never emitting PAD, the PM's
    EOC (the PM's input gets exactly one EOC, ours) or the model's padding ids beyond the
    tokenizer's vocabulary (they decode to nothing)."""
    unused = tuple(range(tokenizer.vocab_size, model_vocab_size))
    return SamplingConfig(
        max_new_tokens=rollout_cfg.max_new_tokens, temperature=rollout_cfg.temperature,
        top_k=0, top_p=1.0, greedy=False, eos_id=tokenizer.eos_id,
        stop_sequences=(tuple(tokenizer.encode(HUMAN)),), pad_id=tokenizer.pad_id,
        banned_ids=(tokenizer.pad_id, tokenizer.eoc_id, *unused))


def generate_responses(policy_params, prompts, rng, *, model_cfg, sampling: SamplingConfig):
    """prompts {"tokens","segment_ids","positions"} [b, P] left-padded -> Samples ([b, N])."""
    prompts = {k: prompts[k] for k in ("tokens", "segment_ids", "positions")}
    return generate(policy_params, model_cfg, prompts, rng, sampling)
