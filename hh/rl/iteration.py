"""One PPO iteration (Bai et al. 2022 §4, App. B.1) as three phases, built here once for the PPO
stage, the fit tool's AOT compile and the benchmarks. Each phase is one jitted function, compiled
once per run (fixed shapes and shardings):

- generate: responses sampled from the policy (hh.rl.rollout);
- score: the frozen models only, in the update's row pieces -> the *scored rollout*
  (hh.rl.scoring.SCORED_KEYS): the reference policy's log-probs, the PM's reward and, for the robustness study, the test PM's mean
  score (metric "test_reward");
- update: in one jit, first the trained networks at θ_old over the whole rollout (the policy's
  `old_logp` and entropy, the value model's `old_values`: one forward per network, in pieces the
  size of a gradient step's rows, gradients stopped), then the KL-penalised rewards and advantages (hh.rl.scoring.complete_rollout), then
  K passes of minibatch steps (hh.rl.ppo.ppo_update) and the next β (hh.rl.kl_control).

The θ_old forward is separate from the first minibatch step's forward for any minibatch count, so
there is one update path; with one minibatch and one pass that is one policy and one critic
forward more than strictly needed (docs/performance.md).

The rng of iteration t is a function of (seed, t) only, so a resumed run draws what the
uninterrupted run drew.
"""

import functools

import jax
import jax.numpy as jnp

from hh.rl import kl_control, rollout as rl_rollout, scoring
from hh.rl.ppo import bind_loss, mean_metrics, ppo_update
from hh.train import runtime
from hh.train.optim import stop_frozen_gradients
from hh.train.step import map_in_pieces

PHASES = ("generate", "score", "update")


def theta_old_outputs(params, rollout, logprob_fn, value_fn, chunks: int = 1):
    """The trained networks before the update, over the whole rollout, gradients stopped.

    params {"policy","value"}; rollout: any dict of [b, ...] arrays with the prompt and response
    keys logprob_fn and value_fn read -> (old_logp, entropy, old_values) [b, N], 0 on padding.
    chunks: the rollout's rows are run in this many equal pieces, one after another (lax.map). The
    update passes its minibatches × microbatches, so no forward holds more activations than a
    gradient step does; on CPU the pieces also stay in cache (W3: 0.33 -> 0.22 s for the two
    networks, docs/performance.md).
    """
    def outputs(batch):
        old_logp, entropy = logprob_fn(params["policy"], batch)
        return old_logp, entropy, value_fn(params["value"], batch)

    return jax.lax.stop_gradient(map_in_pieces(outputs, chunks, rollout))


def update_metrics(per_minibatch: dict, value_coef: float, learning_rate) -> dict:
    """The update's logged metrics: per-minibatch metrics averaged over the update, the policy
    entropy under its own name (the rollout's "entropy" is the θ_old one), the combined loss and
    the policy's learning rate at the update's first step."""
    metrics = mean_metrics(per_minibatch)
    metrics["policy_entropy"] = metrics.pop("entropy")
    metrics["loss"] = metrics["policy_loss"] + value_coef * metrics["value_loss"]
    metrics["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    return metrics


def phase_fns(models: dict, optimizers: dict, *, sampling, rollout_cfg, ppo_cfg, kl_cfg, seed: int,
              lr_schedule, microbatches: int = 1, logprob_chunk: int = 0, frozen_patterns: dict = None) -> dict:
    """The three phases as pure functions (jit them: `build_phases` does, with shardings):

    generate(policy_params, prompts, step) -> Samples [b, N];
    score(frozen, prompts, samples) -> (scored rollout, metrics: {"test_reward"} with a test PM);
    update(state, scored) -> (state with step + 1 and the next β, metrics of the rollout and update).

    models: {"policy","value","pm"} (+ "test_pm"); frozen: {"reference","pm"} (+ "test_pm") params;
    sampling: a hh.models.sampling.SamplingConfig; lr_schedule(update step) -> the policy's rate;
    logprob_chunk: response positions per LM-head chunk in every log-prob pass (0: all at once);
    frozen_patterns: {"policy", "value"}: the optimizers' `frozen` patterns, whose params get no backward.
    """
    base = jax.random.key(seed)
    updates_per_iteration = ppo_cfg.epochs * ppo_cfg.minibatches
    pieces = ppo_cfg.minibatches * microbatches     # rows of one gradient step = rollout / pieces
    logprob_fn, value_fn = scoring.transformer_fns(models["policy"], models["value"], rollout_cfg.temperature,
                                                   logprob_chunk)
    loss = bind_loss(logprob_fn, value_fn, ppo_cfg)
    if frozen_patterns and any(frozen_patterns.values()):
        loss = functools.partial(_loss_of_trained, loss, frozen_patterns)

    def generate(policy_params, prompts, step):
        rng = jax.random.fold_in(jax.random.fold_in(base, step), 0)
        return rl_rollout.generate_responses(policy_params, prompts, rng, model_cfg=models["policy"].cfg,
                                             sampling=sampling)

    def score(frozen, prompts, samples):
        # in the update's row pieces, as theta_old_outputs: no forward holds more than a step's rows
        scored = map_in_pieces(functools.partial(scoring.score_frozen, frozen, policy_model=models["policy"],
                                                 pm_model=models["pm"], rollout_cfg=rollout_cfg,
                                                 logprob_chunk=logprob_chunk), pieces, prompts, samples)
        metrics = {}
        if "test_pm" in models:   # the robustness study: the same samples, scored by the held-out PM
            metrics["test_reward"] = jnp.mean(scoring.pm_scores(frozen["test_pm"], models["test_pm"], prompts,
                                                                samples))
        return scored, metrics

    def update(state, scored):
        rng = jax.random.fold_in(jax.random.fold_in(base, state.step), 1)
        old_logp, entropy, old_values = theta_old_outputs(state.params, scored, logprob_fn, value_fn,
                                                          chunks=pieces)
        rollout, metrics = scoring.complete_rollout(scored, old_logp, entropy, old_values, state.kl_coef, ppo_cfg)
        new, per_minibatch = ppo_update(state, rollout, rng, loss_terms=loss, optimizers=optimizers,
                                        epochs=ppo_cfg.epochs, minibatches=ppo_cfg.minibatches,
                                        microbatches=microbatches)
        batch = scored["response_tokens"].shape[0]
        new = new.replace(kl_coef=kl_control.update_kl_coef(state.kl_coef, metrics["kl"], batch, kl_cfg))
        learning_rate = lr_schedule(state.step * updates_per_iteration)
        return new, {**metrics, **update_metrics(per_minibatch, ppo_cfg.value_coef, learning_rate)}

    return {"generate": generate, "score": score, "update": update}


def _loss_of_trained(loss, patterns, params, batch):
    """The PPO loss with no backward into each network's frozen params."""
    return loss({k: stop_frozen_gradients(p, patterns.get(k, "")) for k, p in params.items()}, batch)


def _in_context(jitted, mesh, rules):
    """Calls `jitted` under the mesh and logical-axis rules; `.jitted` for AOT lowering."""
    def call(*args):
        with runtime.sharding_context(mesh, rules):
            return jitted(*args)
    call.jitted = jitted
    return call


def build_phases(config, models, optimizers, lr_schedule, state_shardings, mesh, rules, tokenizer) -> dict:
    """The PPO stage's three jitted phases (PHASES) for `config` on `mesh`.

    The update donates the state and returns it with the fixed `state_shardings`, so the next
    iteration's input matches and it never recompiles.
    """
    sampling = rl_rollout.sampling_config(config.rollout, tokenizer, models["policy"].cfg.vocab_size)
    fns = phase_fns(models, optimizers, sampling=sampling, rollout_cfg=config.rollout, ppo_cfg=config.ppo,
                    kl_cfg=config.kl, seed=config.seed, lr_schedule=lr_schedule,
                    microbatches=config.train.microbatches, logprob_chunk=config.train.get("loss_chunk", 0),
                    frozen_patterns={"policy": config.optimizer.get("frozen", ""),
                                     "value": config.value_optimizer.get("frozen", "")})
    scalar = runtime.replicated(mesh)
    jitted = {"generate": jax.jit(fns["generate"]), "score": jax.jit(fns["score"]),
              "update": jax.jit(fns["update"], out_shardings=(state_shardings, scalar), donate_argnums=0)}
    return {name: _in_context(jitted[name], mesh, rules) for name in PHASES}
