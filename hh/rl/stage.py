"""PPO against a preference model as a stage (Bai et al. 2022 §4): `python -m hh.main --config
configs/ppo.py:tiny --workdir DIR --config.init_from=LM_OR_DISTILL --config.reward_model=PM`.

Each loop step is one PPO iteration: generate → score → update, the three jitted phases of
hh.rl.iteration. The checkpointed state (hh.rl.ppo.PPOState) holds the policy, value model, both
optimizer states and β; the frozen reference policy and PM are reloaded from their workdirs on
resume.
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
from hh.data.pm_sources import spec_source
from hh.data.prompt_data import KINDS, prompt_batches
from hh.io import atomic_write_text
from hh.trained import LoadedPM
from hh.rl.curves import write_reward_curves, write_robustness_curves
from hh.models.heads import PreferenceModel, ValueModel, init_pm_params
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.rl import kl_control
from hh.rl.iteration import build_phases
from hh.rl.kl import ESTIMATORS
from hh.rl.ppo import init_ppo_state
from hh.train import init_from, runtime
from hh.train.loop import LoopHook, Task, train_loop
from hh.train.metrics import truncate_log
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.workdir import read_model_config, read_tokenizer, restore_params


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


def check_same_tokenizer(tokenizer, pm_workdir, field="reward_model"):
    """The PM must read the policy's token ids: same tokenizer (fingerprint where it has one)."""
    if not sources.same_tokenizer(read_tokenizer(pm_workdir), tokenizer):
        raise ConfigError(f"config.{field}={pm_workdir!r} uses another tokenizer than config.init_from")


def prompt_source(data_cfg):
    """Prompts of the PM training comparisons (responses stripped) from the source specs."""
    return sources.ConcatSource(spec_source(s, "train", data_cfg) for s in data_cfg.prompt_sources)


def ppo_state_layout(models, optimizers, seq_len, mesh, rules):
    """-> (abstract PPOState carrying shardings, its shardings)."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)

    def boxed_state(rng):
        params = {"policy": models["policy"].init(rng, tokens)["params"],
                  "value": models["value"].init(rng, tokens, tokens, jnp.ones_like(tokens))["params"]}
        return init_ppo_state(params, optimizers, 0.0)
    abstract = shd.abstract_with_shardings(boxed_state, mesh, rules)
    return abstract, jax.tree.map(lambda a: a.sharding, abstract)


def _no_fresh():
    raise ConfigError("PPO starts from trained workdirs only (config.init_from, config.reward_model)")


def _pm_abstract(pm_model, mesh, rules):
    return shd.abstract_with_shardings(lambda rng: init_pm_params(pm_model, rng, seq_len=8), mesh, rules)


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
    workdirs = {"reference": config.init_from, "pm": config.reward_model,
                "test_pm": config.test_reward_model}
    return {name: restore_params(workdirs[name], abstract)[1] for name, abstract in layout.items()}


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
        atomic_write_text(path, json.dumps(offsets, indent=2) + "\n")   # read back on resume
    return offsets


class SampleLog(LoopHook):
    """Every `every` iterations, a few decoded (prompt, response, reward, kind) rows to samples.jsonl
    (kind: the prompt's helpful/harmless, so a report can have the right gold labeler judge them):
    a loop hook reading the train step's scored rollout at its due steps only."""

    def __init__(self, workdir, tokenizer, every: int, n: int):
        self.path = epath.Path(workdir) / "samples.jsonl"
        self.tokenizer, self.every, self.n = tokenizer, every, n

    def start(self, step: int):
        """Drops the rows an interrupted run wrote after the checkpoint this run starts from."""
        if jax.process_index() == 0:
            truncate_log(self.path, step)   # streamed, atomic, a torn last row dropped

    def after_step(self, step: int, state, scored):
        if self.every > 0 and step % self.every == 0:
            self.write(step, scored)

    def write(self, step: int, scored):
        """scored: the score phase's rollout (hh.rl.scoring.SCORED_KEYS)."""
        fetch = lambda x: multihost_utils.process_allgather(x[:self.n], tiled=True)  # noqa: E731
        prompts, tokens = fetch(scored["prompt_tokens"]), fetch(scored["response_tokens"])
        score, length = fetch(scored["score"]), fetch(scored["lengths"])
        kinds = fetch(scored["kind"]) if "kind" in scored else [None] * len(score)
        if jax.process_index() != 0:
            return
        kind_names = {index: name for name, index in KINDS.items()}
        with self.path.open("a") as f:
            for p, t, s, n, kind in zip(prompts, tokens, score, length, kinds):
                f.write(json.dumps({"step": step, "prompt": self.tokenizer.decode(p),
                                    "response": self.tokenizer.decode(t[:int(n)]),
                                    "reward": float(s),
                                    "kind": None if kind is None else kind_names[int(kind)]}) + "\n")


def make_train_step(phases, frozen, offsets=None):
    """The loop's train_step: (state, prompts) -> (state, metrics, scored rollout), calling the
    jitted phases (hh.rl.iteration.build_phases) with no host sync. offsets: {"reward",
    "test_reward"} held-out means, subtracted into the *_normalised metrics (robustness study)."""
    def train_step(state, prompts):
        samples = phases["generate"](state.params["policy"], prompts, state.step)
        scored, metrics = phases["score"](frozen, prompts, samples)
        state, update_metrics = phases["update"](state, scored)
        metrics = {**metrics, **update_metrics}
        for name, offset in (offsets or {}).items():
            metrics[f"{name}_normalised"] = metrics[name] - offset
        if "kind" in prompts:   # helpful/harmless: which gold labeler judges the logged samples
            scored = {**scored, "kind": prompts["kind"]}
        return state, metrics, scored
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
    test_pm_cfg = read_model_config(config.test_reward_model) if config.test_reward_model else None
    models = build_models(config, read_model_config(config.reward_model), tokenizer.eoc_id, test_pm_cfg)
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
    offsets = reward_offsets(config, workdir) if config.test_reward_model else None
    return Task(abstract_state=abstract, init_state=fresh_state,
                train_step=make_train_step(phases, frozen, offsets), train_batches=batches,
                batch_sharding=batch_sh, global_batch_size=batch,
                tokens_per_step=batch * config.data.seq_len,
                hooks=[SampleLog(workdir, tokenizer, config.rollout.samples_every, config.rollout.n_samples)])


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
        atomic_write_text(epath.Path(workdir) / "phase_compiles.json", json.dumps(compiles) + "\n")
        if not result.preempted:
            write_reward_curves(workdir, config.curves.fit_fraction)
            if config.test_reward_model:
                write_robustness_curves(workdir, config.curves.fit_fraction)
    return result
