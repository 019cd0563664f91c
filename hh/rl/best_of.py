"""Best-of-k rejection sampling (Bai et al. 2022 §2.3, App. B.6): k responses per
prompt from a policy, each scored by a PM, the best one returned. Its KL from the policy is at most
log k − (k−1)/k (Stiennon et al. 2020 App. G; the paper quotes log k), reported beside the scores.
A caller may pass a gold judge of the chosen samples (the pipeline's best_of step passes the
embedded world's, hh.eval.gold), reported beside their PM score.
`python -m hh.rl.best_of --policy WORKDIR --reward_model PM_WORKDIR --k 1,4,16` compares k's.
"""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.config import ConfigError
from hh.data.pm_data import as_text
from hh.data.pm_sources import spec_source
from hh.data.prompt_data import encode_prompt, left_padded
from hh.data.sources import same_tokenizer
from hh.trained import LoadedLM, LoadedPM   # the CLI's loaders; the library takes loaded models
from hh.io import atomic_write_text
from hh.models.sampling import Samples, generate
from hh.models.transformer import TransformerLM
from hh.rl.logprobs import response_logprobs, response_mask
from hh.rl.rollout import sampling_config
from hh.rl.scoring import pm_scores


def kl_upper_bound(k: int) -> float:
    """KL(best-of-k ‖ policy) ≤ log k − (k−1)/k, with equality when no two samples tie."""
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    return math.log(k) - (k - 1) / k


def repeat_rows(tree, k: int):
    """Each row of every [batch, ...] array repeated k times in place: [batch·k, ...]."""
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), tree)


def pick_rows(samples: Samples, index):
    """From Samples of [batch·k, ...], row `index[i]` of each group of k -> Samples [batch, ...]."""
    def pick(x):
        grouped = x.reshape(index.shape[0], -1, *x.shape[1:])
        return jnp.take_along_axis(grouped, index.reshape(-1, 1, *([1] * (x.ndim - 1))), axis=1)[:, 0]
    return jax.tree.map(pick, samples)


def best_of_k(policy_params, pm_params, prompts, rng, *, model_cfg, pm_model, sampling, k: int):
    """k samples per prompt in ONE batched `generate` call (each prompt prefilled once, its cache
    copied k times), scored by the PM; the best kept.

    prompts: {"tokens","segment_ids","positions"} [b, P] left-padded. Pure and jittable
    (model_cfg, pm_model, sampling and k static). -> {"samples": Samples [b, ...] (the best),
    "score": [b] its PM score, "scores": [b, k] every sample's, "best_index": [b]}.
    """
    prompts = {key: prompts[key] for key in ("tokens", "segment_ids", "positions")}
    many = repeat_rows(prompts, k)
    samples = generate(policy_params, model_cfg, prompts, rng, sampling, samples_per_prompt=k)
    scores = pm_scores(pm_params, pm_model, many, samples).reshape(-1, k)
    best = jnp.argmax(scores, axis=1)
    return {"samples": pick_rows(samples, best), "score": jnp.max(scores, axis=1),
            "scores": scores, "best_index": best}


ROWS_PER_CALL = 128


def prompt_batches(source, tokenizer, max_prompt_len: int, n_prompts: int, batch: int):
    """The first n_prompts prompts of a comparison source, as left-padded [batch, P] dicts (the
    last batch padded with copies of its first row; `real` [batch] marks the real rows)."""
    n = min(n_prompts, len(source))
    for start in range(0, n, batch):
        rows = [encode_prompt(as_text(source[i]["prompt"]), tokenizer, max_prompt_len)
                for i in range(start, min(start + batch, n))]
        real = np.arange(batch) < len(rows)
        rows += [rows[0]] * (batch - len(rows))
        padded = left_padded(rows, max_prompt_len)
        yield {k: padded[k] for k in ("tokens", "segment_ids", "positions")}, real


def prompts_per_call(k: int, n_prompts: int, rows: int = ROWS_PER_CALL) -> int:
    """Prompts per sampling call: about `rows` sampled rows (prompts × k) each, so k = 1 is not
    run 8 rows at a time and k = 16 does not blow up the batch."""
    return max(1, min(n_prompts, rows // k))


def response_texts(samples: Samples, tokenizer, rows) -> list:
    """The decoded content (without the stop sequence / eos) of the sampled `rows` (a bool mask)."""
    tokens, lengths = np.asarray(samples.tokens), np.asarray(samples.lengths - samples.stop_lengths)
    return [tokenizer.decode(tokens[i, :lengths[i]].tolist()) for i in np.flatnonzero(rows)]


def sequence_kl(policy_params, reference_params, prompts, samples: Samples, *, model_cfg, temperature: float):
    """Σ_t [log π(y_t|x, y_<t) − log π_ref(y_t|x, y_<t)] over each sampled response's tokens (eos
    included): the k1 estimate of KL(π ‖ π_ref) per sequence, unbiased over samples y ~ π. Both
    log-probs come from the same training forward (hh.rl.logprobs), π at the sampling temperature
    (the distribution that drew y), π_ref at T = 1. -> [b]."""
    model = TransformerLM(model_cfg)
    mask = response_mask(samples.lengths, samples.tokens.shape[1])
    logp, _ = response_logprobs(policy_params, model, prompts, samples.tokens, mask, temperature)
    ref, _ = response_logprobs(reference_params, model, prompts, samples.tokens, mask, 1.0)
    return jnp.sum((logp - ref) * mask, axis=1)


_jitted_kl = jax.jit(sequence_kl, static_argnames=("model_cfg", "temperature"))


def check_reference(policy, reference):
    """The reference must read the policy's tokens with the policy's architecture."""
    if not same_tokenizer(policy.tokenizer, reference.tokenizer) or policy.model.cfg != reference.model.cfg:
        raise ConfigError(f"the reference {reference.workdir} is not the architecture and tokenizer of "
                          f"the policy {policy.workdir}: a KL between them is undefined here")


def best_samples(policy, pm, k: int, prompt_spec: str, n_prompts: int, max_new_tokens: int,
                 temperature: float = 1.0, batch: int = 0, seed: int = 0, reference=None) -> dict:
    """The best of k samples per prompt of `prompt_spec` (its first n_prompts, in order) ->
    {"prompt": [text], "response": [the best sample's text], "score": [n] its PM score,
    "first_score": [n] the first sample's} (scores float64). The texts are what a gold judge reads
    (hh.eval.gold). The same seed (and k) draws the same keys for every policy. batch: prompts
    per call (0: prompts_per_call). policy: hh.trained.LoadedLM; pm: hh.trained.LoadedPM.
    reference: a LoadedLM; with k = 1, "kl": [n] the sequence_kl of each sample to it."""
    if reference is not None:
        check_reference(policy, reference)
    batch = batch or prompts_per_call(k, n_prompts)
    if not same_tokenizer(policy.tokenizer, pm.tokenizer):
        raise ConfigError(f"the PM {pm.workdir} reads another tokenizer than the policy {policy.workdir}")
    rollout_cfg = ml_collections.ConfigDict(dict(max_new_tokens=max_new_tokens, temperature=temperature))
    sampling = sampling_config(rollout_cfg, policy.tokenizer, policy.model.cfg.vocab_size)
    source = spec_source(prompt_spec, "test", policy.config.data)
    max_prompt_len = policy.seq_len - max_new_tokens
    best, first, responses, kl = [], [], [], []
    for i, (prompts, real) in enumerate(prompt_batches(source, policy.tokenizer, max_prompt_len,
                                                       n_prompts, batch)):
        out = _jitted_best_of(policy.params, pm.params, prompts, jax.random.key(seed * 1000003 + i),
                              model_cfg=policy.model.cfg, pm_model=pm.model, sampling=sampling, k=k)
        best.append(np.asarray(out["score"])[real])
        first.append(np.asarray(out["scores"])[real, 0])
        responses += response_texts(out["samples"], policy.tokenizer, real)
        if reference is not None and k == 1:
            kl.append(np.asarray(_jitted_kl(policy.params, reference.params, prompts, out["samples"],
                                            model_cfg=policy.model.cfg, temperature=float(temperature)))[real])
    result = {"prompt": [as_text(source[i]["prompt"]) for i in range(len(responses))], "response": responses,
              "score": np.concatenate(best).astype(np.float64),
              "first_score": np.concatenate(first).astype(np.float64)}
    if kl:
        result["kl"] = np.concatenate(kl).astype(np.float64)
    return result


_jitted_best_of = jax.jit(best_of_k, static_argnames=("model_cfg", "pm_model", "sampling", "k"))


def evaluate_best_of(policy, pm, ks, prompt_spec: str, n_prompts: int, max_new_tokens: int,
                     temperature: float = 1.0, batch: int = 0, seed: int = 0, gold=None) -> dict:
    """Mean PM score of the best of k samples per prompt for each k, beside the k = 1 mean and
    the KL bound. gold: None or (labeler, judge) with judge(prompts, responses) -> a summary of the
    chosen samples' gold scores (hh.eval.gold.accuracy_judge), kept per k as "gold" beside the PM
    score: the true score of best-of-n, not only the proxy's (Gao et al. 2022)."""
    labeler, judge = gold or (None, None)
    report = {"prompts": prompt_spec, "max_new_tokens": max_new_tokens, "temperature": temperature,
              "policy": str(policy.workdir), "reward_model": str(pm.workdir), "labeler": labeler, "k": {}}
    for k in ks:
        out = best_samples(policy, pm, k, prompt_spec, n_prompts, max_new_tokens, temperature, batch, seed)
        best, first = out["score"], out["first_score"]
        row = {"mean_best_score": float(best.mean()),
               "stderr": float(best.std(ddof=1) / np.sqrt(len(best))) if len(best) > 1 else 0.0,
               "mean_single_score": float(first.mean()),
               "kl_upper_bound": kl_upper_bound(k), "n_prompts": int(len(best))}
        if judge is not None:
            row["gold"] = judge(out["prompt"], out["response"])
        report["k"][str(k)] = row
    return report


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # orbax logs every restore at INFO
    policy, pm = LoadedLM(f.policy), LoadedPM(f.reward_model)
    report = evaluate_best_of(policy, pm, [int(k) for k in f.k], f.prompts, f.n_prompts,
                              f.max_new_tokens, f.temperature, seed=f.seed)
    out = epath.Path(f.out or (epath.Path(f.policy) / "best_of"))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "best_of.json", json.dumps(report, indent=2) + "\n")
    for k, row in report["k"].items():
        print(f"k={k:>3}: best {row['mean_best_score']:+.4f} ± {row['stderr']:.4f}  "
              f"(single {row['mean_single_score']:+.4f}), KL ≤ {row['kl_upper_bound']:.3f} nats")


if __name__ == "__main__":
    flags.DEFINE_string("policy", None, "an hh LM, distill or PPO workdir")
    flags.DEFINE_string("reward_model", None, "an hh PM workdir")
    flags.DEFINE_list("k", ["1", "4", "16"], "samples per prompt")
    flags.DEFINE_string("prompts", "synthetic-helpful:test", "a comparison source spec (hh.data.pm_sources)")
    flags.DEFINE_integer("n_prompts", 64, "prompts to evaluate")
    flags.DEFINE_integer("max_new_tokens", 32, "response length limit")
    flags.DEFINE_float("temperature", 1.0, "sampling temperature")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_string("out", "", "output folder (default <policy>/best_of)")
    flags.mark_flags_as_required(["policy", "reward_model"])
    app.run(main)
