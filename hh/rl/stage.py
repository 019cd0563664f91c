"""PPO against a preference model as a stage (Bai et al. 2022 §4): `python -m hh.main --config
configs/ppo.py:tiny --workdir DIR --config.init_from=LM_OR_DISTILL --config.reward_model=PM`.

Each loop step is one PPO iteration: generate → score → update, three jitted phases compiled
once. The checkpointed state (hh.rl.ppo.PPOState) holds the policy, value model, both optimizer
states and β; the frozen reference policy and PM are reloaded from their workdirs on resume.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hh.config import ConfigError, validate
from hh.data import sources
from hh.data.prompt_data import prompt_batches
from hh.eval.pm_eval import LoadedPM
from hh.eval.rl_curves import write_reward_curves, write_robustness_curves
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.parallel import sharding as shd
from hh.parallel.distributed import one_at_a_time
from hh.pm.data import spec_source
from hh.pm.model import PreferenceModel, init_params as pm_init_params
from hh.rl import kl_control, rollout as rl_rollout, scoring
from hh.rl.kl import ESTIMATORS
from hh.rl.logprobs import ValueModel
from hh.rl.ppo import bind_loss, init_ppo_state, mean_metrics, ppo_update, ppo_update_scoring_first
from hh.train import init_from, runtime
from hh.train.checkpoint import absolute
from hh.train.loop import Task, train_loop
from hh.train.metrics import truncate_log
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.state import strip_boxes


def validate_ppo(config, n_devices):
    for field in ("init_from", "reward_model"):
        if not config.get(field):
            raise ConfigError(f"config.{field} must name an hh workdir (the {'policy' if field == 'init_from' else 'PM'})")
    if config.robustness and not config.test_reward_model:
        raise ConfigError("config.robustness needs config.test_reward_model (a PM workdir trained on "
                          "the other half of the comparisons)")
    if config.ppo.kl_estimator not in ESTIMATORS:
        raise ConfigError(f"config.ppo.kl_estimator={config.ppo.kl_estimator!r}: use one of {sorted(ESTIMATORS)}")
    if config.kl.kind not in kl_control.KINDS:
        raise ConfigError(f"config.kl.kind={config.kl.kind!r}: use one of {kl_control.KINDS}")
    if config.ppo.epochs < 1 or config.ppo.minibatches < 1:
        raise ConfigError("config.ppo.epochs and config.ppo.minibatches must be >= 1")
    sizes = validate(config, n_devices)
    rows = config.ppo.minibatches * config.train.microbatches * sizes["data"] * sizes["fsdp"]
    if config.train.global_batch_size % rows:
        raise ConfigError(f"config.train.global_batch_size={config.train.global_batch_size} is not "
                          f"divisible by minibatches × microbatches × data × fsdp = {rows}")
    if config.data.seq_len != config.data.max_prompt_len + config.rollout.max_new_tokens:
        raise ConfigError(f"config.data.seq_len={config.data.seq_len} must equal max_prompt_len + "
                          f"rollout.max_new_tokens = {config.data.max_prompt_len + config.rollout.max_new_tokens}")


def workdir_model_config(workdir) -> TransformerConfig:
    return TransformerConfig(**init_from.source_config(workdir)["model"])


def check_same_tokenizer(tokenizer, pm_workdir, field="reward_model"):
    """The PM must read the policy's token ids: same tokenizer (fingerprint where it has one)."""
    pm_data = ml_collections.ConfigDict(init_from.source_config(pm_workdir)["data"])
    if not sources.same_tokenizer(sources.run_tokenizer(pm_data, None, str(absolute(pm_workdir))), tokenizer):
        raise ConfigError(f"config.{field}={pm_workdir!r} uses another tokenizer than config.init_from")


def prompt_source(data_cfg):
    """Prompts of the PM training comparisons (responses stripped) from the source specs."""
    return sources.ConcatSource(spec_source(s, "train", data_cfg) for s in data_cfg.prompt_sources)


def _abstract_with_shardings(boxed, mesh, rules):
    shardings = shd.logical_shardings(boxed, mesh, rules)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            strip_boxes(boxed), shardings)
    return abstract, shardings


def ppo_state_layout(models, optimizers, seq_len, mesh, rules):
    """-> (abstract PPOState carrying shardings, its shardings)."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)

    def boxed_state(rng):
        params = {"policy": models["policy"].init(rng, tokens)["params"],
                  "value": models["value"].init(rng, tokens, tokens, jnp.ones_like(tokens))["params"]}
        return init_ppo_state(params, optimizers, 0.0)
    with runtime.sharding_context(mesh, rules):
        # the key inside the trace, as hh.train.state.state_shardings (AOT for TPU topologies)
        return _abstract_with_shardings(jax.eval_shape(lambda: boxed_state(jax.random.key(0))), mesh, rules)


def _no_fresh():
    raise ConfigError("PPO starts from trained workdirs only (config.init_from, config.reward_model)")


def _pm_abstract(pm_model, mesh, rules):
    pm_boxed = jax.eval_shape(lambda: pm_init_params(pm_model, jax.random.key(0), seq_len=8))
    return _abstract_with_shardings(pm_boxed, mesh, rules)[0]


def frozen_layout(models, abstract_policy, mesh, rules) -> dict:
    """Abstract frozen params carrying shardings: the reference (the policy's layout), the PM and,
    for the robustness study, the test PM."""
    with runtime.sharding_context(mesh, rules):
        layout = {"reference": abstract_policy, "pm": _pm_abstract(models["pm"], mesh, rules)}
        if "test_pm" in models:
            layout["test_pm"] = _pm_abstract(models["test_pm"], mesh, rules)
        return layout


def load_frozen(config, models, abstract_policy, mesh, rules):
    """The frozen reference policy (a second copy of init_from), the PM and, for the robustness
    study, the held-out test PM: no optimizer state."""
    layout = frozen_layout(models, abstract_policy, mesh, rules)
    sources = {"reference": config.init_from, "pm": config.reward_model,
               "test_pm": config.test_reward_model}
    with runtime.sharding_context(mesh, rules):
        return {name: init_from.initial_params(sources[name], abstract, _no_fresh)
                for name, abstract in layout.items()}


def reward_offsets(config, workdir) -> dict:
    """Each PM's mean score on its own held-out comparisons (both responses), the offset
    subtracted before train- and test-PM rewards are compared (Bai et al. 2022 App. B.2).
    Computed once and kept in the workdir, so a resumed run uses the same numbers."""
    path = epath.Path(workdir) / "reward_offsets.json"
    if path.exists():
        return json.loads(path.read_text())
    offsets = {}
    for name, pm_workdir in (("reward", config.reward_model), ("test_reward", config.test_reward_model)):
        pm = LoadedPM(pm_workdir)
        chosen, rejected = zip(*(pm.scores(spec_source(spec, "test", pm.config.data))
                                 for spec in pm.config.data.eval_sources))
        offsets[name] = float(np.mean(np.concatenate([*chosen, *rejected])))
        del pm
    if jax.process_index() == 0:
        path.write_text(json.dumps(offsets, indent=2) + "\n")
    return offsets


def _context(jitted, mesh, rules):
    def call(*args):
        with runtime.sharding_context(mesh, rules):
            return jitted(*args)
    call.jitted = jitted
    return call


def scores_in_update(config) -> bool:
    """Whether the update's first step computes the old log-probs and values (one minibatch, no
    microbatches: that step's forward is at θ_old over the whole rollout; ppo_update_scoring_first)."""
    return config.ppo.minibatches == 1 and config.train.microbatches == 1


def build_phases(config, models, optimizers, schedule, shardings, mesh, rules, tokenizer):
    """The three jitted phases. The rng of iteration t is a function of (seed, t) only.

    With `scores_in_update(config)`, "score" runs the frozen models only (reference log-probs,
    PM reward) and returns the partial rollout, and "update" takes (state, partial) and returns
    the scoring metrics with its own; otherwise "score" is score_rollout and "update" takes
    (state, rollout, kl).
    """
    cfg_r, cfg_p = config.rollout, config.ppo
    sampling = rl_rollout.sampling_config(cfg_r, tokenizer, models["policy"].cfg.vocab_size)
    base = jax.random.key(config.seed)
    batch = config.train.global_batch_size
    updates_per_iteration = cfg_p.epochs * cfg_p.minibatches
    fused = scores_in_update(config)

    def generate(policy_params, prompts, step):
        rng = jax.random.fold_in(jax.random.fold_in(base, step), 0)
        return rl_rollout.generate_responses(policy_params, prompts, rng,
                                             model_cfg=models["policy"].cfg, sampling=sampling)

    fns = scoring.transformer_fns(models["policy"], models["value"], cfg_r.temperature)
    loss = bind_loss(*fns, cfg_p)

    def score(params, frozen, prompts, samples, kl_coef):
        if not fused:
            return scoring.score_rollout(params, frozen, prompts, samples, kl_coef, policy_model=models["policy"],
                                         value_model=models["value"], pm_model=models["pm"], rollout_cfg=cfg_r,
                                         ppo_cfg=cfg_p)
        frozen_scores = scoring.score_frozen(frozen, prompts, samples, policy_model=models["policy"],
                                             pm_model=models["pm"], rollout_cfg=cfg_r)
        return (scoring.partial_rollout(prompts, samples, frozen_scores),
                scoring.per_response(samples, frozen_scores), {})

    def finish(state, new, per_minibatch, kl):
        new = new.replace(kl_coef=kl_control.update_kl_coef(state.kl_coef, kl, batch, config.kl))
        metrics = mean_metrics(per_minibatch)
        metrics["policy_entropy"] = metrics.pop("entropy")
        metrics["loss"] = metrics["policy_loss"] + cfg_p.value_coef * metrics["value_loss"]
        metrics["learning_rate"] = jnp.asarray(schedule(state.step * updates_per_iteration), jnp.float32)
        return new, metrics

    def update(state, rollout, kl):
        rng = jax.random.fold_in(jax.random.fold_in(base, state.step), 1)
        new, per_minibatch = ppo_update(state, rollout, rng, loss_terms=loss, optimizers=optimizers,
                                        epochs=cfg_p.epochs, minibatches=cfg_p.minibatches,
                                        microbatches=config.train.microbatches)
        return finish(state, new, per_minibatch, kl)

    def score_and_update(state, partial):
        rng = jax.random.fold_in(jax.random.fold_in(base, state.step), 1)
        scoring_loss = bind_loss(*fns, cfg_p, complete=scoring.completion(state.kl_coef, cfg_p))
        new, per_step, _, scoring_metrics = ppo_update_scoring_first(
            state, partial, rng, scoring_loss=scoring_loss, loss_terms=loss, optimizers=optimizers,
            epochs=cfg_p.epochs)
        new, metrics = finish(state, new, per_step, scoring_metrics["kl"])
        return new, {**scoring_metrics, **metrics}

    scalar = runtime.replicated(mesh)
    phases = {
        "generate": _context(jax.jit(generate), mesh, rules),
        "score": _context(jax.jit(score), mesh, rules),
        # fixed output shardings: the next iteration's input matches, so it never recompiles
        "update": _context(jax.jit(score_and_update if fused else update, out_shardings=(shardings, scalar),
                                   donate_argnums=0), mesh, rules),
    }
    if "test_pm" in models:   # the robustness study: the same samples, scored by the test PM
        def test_score(test_pm_params, prompts, samples):
            return jnp.mean(scoring.pm_scores(test_pm_params, models["test_pm"], prompts, samples))
        phases["test_score"] = _context(jax.jit(test_score), mesh, rules)
    return phases


class SampleLog:
    """Every `every` iterations, a few decoded (prompt, response, reward) rows to samples.jsonl."""

    def __init__(self, workdir, tokenizer, every: int, n: int):
        self.path = epath.Path(workdir) / "samples.jsonl"
        self.tokenizer, self.every, self.n = tokenizer, every, n

    def truncate_after(self, iteration: int):
        """On resume: drop rows the interrupted run wrote after its last checkpoint."""
        if jax.process_index() == 0:
            truncate_log(self.path, iteration)   # streamed, atomic, a torn last row dropped

    def due(self, iteration: int) -> bool:
        return self.every > 0 and iteration % self.every == 0

    def write(self, iteration, rollout, per_response):
        fetch = lambda x: multihost_utils.process_allgather(x[:self.n], tiled=True)  # noqa: E731
        prompts, tokens = fetch(rollout["prompt_tokens"]), fetch(rollout["response_tokens"])
        score, length = fetch(per_response["score"]), fetch(per_response["length"])
        if jax.process_index() != 0:
            return
        with self.path.open("a") as f:
            for p, t, s, n in zip(prompts, tokens, score, length):
                f.write(json.dumps({"step": iteration, "prompt": self.tokenizer.decode(p),
                                    "response": self.tokenizer.decode(t[:int(n)]),
                                    "reward": float(s)}) + "\n")


def make_train_step(phases, frozen, sample_log, offsets=None, fused=False):
    """The loop's train_step: a Python function calling the jitted phases (no host sync except
    one read of the start step and the periodic samples). offsets: {"reward", "test_reward"}
    held-out means, subtracted into the *_normalised metrics (robustness study). fused: the
    phases of a `scores_in_update` config."""
    counter = {"iteration": None}
    keys = scoring.PARTIAL_KEYS if fused else scoring.ROLLOUT_KEYS

    def train_step(state, prompts):
        if counter["iteration"] is None:
            counter["iteration"] = int(jax.device_get(state.step))   # once: the resume point
            sample_log.truncate_after(counter["iteration"])
        samples = phases["generate"](state.params["policy"], prompts, state.step)
        rollout, per_response, metrics = phases["score"](state.params, frozen, prompts, samples, state.kl_coef)
        if "test_score" in phases:   # independent of "score": never both in flight (multi-host)
            rollout, metrics = one_at_a_time((rollout, metrics))
            metrics["test_reward"] = phases["test_score"](frozen["test_pm"], prompts, samples)
        counter["iteration"] += 1
        if sample_log.due(counter["iteration"]):
            sample_log.write(counter["iteration"], rollout, per_response)
        rollout = {k: rollout[k] for k in keys}
        if fused:
            state, update_metrics = phases["update"](state, rollout)
        else:
            state, update_metrics = phases["update"](state, rollout, metrics["kl"])
        metrics = {**metrics, **update_metrics}
        for name, offset in (offsets or {}).items():
            metrics[f"{name}_normalised"] = metrics[name] - offset
        return state, metrics
    train_step.phases = phases
    return train_step


def build_models(config, pm_cfg, eoc_id, test_pm_cfg=None) -> dict:
    """The four networks of a PPO step: policy (and its frozen reference), value model, PM;
    plus the test PM of the robustness study."""
    models = {"policy": TransformerLM(runtime.model_config(config)), "value": ValueModel(pm_cfg),
              "pm": PreferenceModel(pm_cfg, eoc_id=eoc_id)}
    if test_pm_cfg is not None:
        models["test_pm"] = PreferenceModel(test_pm_cfg, eoc_id=eoc_id)
    return models


def build_optimizers(config):
    """-> ({"policy", "value"}: optax transformations, their schedules), counted in updates."""
    updates = config.loop.steps * config.ppo.epochs * config.ppo.minibatches
    optimizers, schedules = {}, {}
    for name, opt_cfg in (("policy", config.optimizer), ("value", config.value_optimizer)):
        scaled = ml_collections.ConfigDict(opt_cfg.to_dict())
        scaled.warmup_steps = opt_cfg.warmup_steps * config.ppo.epochs * config.ppo.minibatches
        optimizers[name], schedules[name] = make_optimizer(scaled, updates)
    return optimizers, schedules


def build_task(config, mesh, rules, tokenizer, workdir, verbose=True) -> Task:
    test_pm_cfg = workdir_model_config(config.test_reward_model) if config.test_reward_model else None
    models = build_models(config, workdir_model_config(config.reward_model), tokenizer.eoc_id, test_pm_cfg)
    optimizers, schedules = build_optimizers(config)
    abstract, shardings = ppo_state_layout(models, optimizers, config.data.seq_len, mesh, rules)
    if verbose and jax.process_index() == 0:
        print("policy shardings:\n" + shd.sharding_report(abstract.params["policy"], shardings.params["policy"]))
    frozen = load_frozen(config, models, abstract.params["policy"], mesh, rules)
    phases = build_phases(config, models, optimizers, schedules["policy"], shardings, mesh, rules, tokenizer)

    def fresh_state():
        with runtime.sharding_context(mesh, rules):
            params = {"policy": init_from.initial_params(config.init_from, abstract.params["policy"], _no_fresh),
                      "value": init_from.initial_params(config.reward_model, abstract.params["value"], _no_fresh)}
            create = lambda p: init_ppo_state(p, optimizers, kl_control.initial_kl_coef(config.kl))  # noqa: E731
            return jax.jit(create, out_shardings=shardings, donate_argnums=0)(params)

    batch_sh = shd.batch_sharding(mesh, rules)
    batch = config.train.global_batch_size
    batches = prompt_batches(prompt_source(config.data), tokenizer, config.data.max_prompt_len, batch,
                             config.seed, row_range=shd.process_row_range(batch_sh, batch))
    log = SampleLog(workdir, tokenizer, config.rollout.samples_every, config.rollout.n_samples)
    offsets = reward_offsets(config, workdir) if config.test_reward_model else None
    return Task(abstract_state=abstract, init_state=fresh_state,
                train_step=make_train_step(phases, frozen, log, offsets, fused=scores_in_update(config)), train_batches=batches,
                batch_sharding=batch_sh, global_batch_size=batch,
                tokens_per_step=batch * config.data.seq_len)


def train_and_evaluate(config, workdir):
    """Runs PPO in `workdir` (resuming if it holds a checkpoint), then the reward-vs-√KL fit."""
    validate_ppo(config, jax.device_count())
    init_from.resolve_from_source(config)
    mesh, rules = runtime.mesh_and_rules(config)
    tokenizer = init_from.initial_tokenizer(config, None, workdir)
    check_same_tokenizer(tokenizer, config.reward_model)
    if config.test_reward_model:
        check_same_tokenizer(tokenizer, config.test_reward_model, "test_reward_model")
    meta = start_run(workdir, config, mesh)   # refuses a changed config before writing anything
    task = build_task(config, mesh, rules, tokenizer, workdir)
    result = train_loop(task, config.loop, workdir, meta=meta)
    if jax.process_index() == 0:
        # each phase compiles once per run (fixed shapes and shardings): recorded, and tested
        compiles = {k: p.jitted._cache_size() for k, p in task.train_step.phases.items()}
        (epath.Path(workdir) / "phase_compiles.json").write_text(json.dumps(compiles) + "\n")
        if not result.preempted:
            write_reward_curves(workdir, config.curves.fit_fraction)
            if config.test_reward_model:
                write_robustness_curves(workdir, config.curves.fit_fraction)
    return result
