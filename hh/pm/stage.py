"""PMP and PM finetuning as a stage: `python -m hh.main --config configs/pm.py:tiny --workdir DIR`.

Builds the preference model, mesh, sharded state (from `config.init_from`: LM -> PMP -> PM, or
fresh), the jitted step and the pair batches, then hands them to the shared loop. PMP and PM are
the same code with different data and learning rates (Askell et al. 2021 §4; Bai et al. 2022 A.2).
"""

import functools
import math

import flax.linen as nn
import jax

from hh.config import ConfigError, validate
from hh.data import pm_sources
from hh.data.pm_data import pm_batches, pm_eval_batches, truncation_report
from hh.data.sampler import reading_options
from hh.models.heads import PreferenceModel, init_pm_params
from hh.parallel import sharding as shd
from hh.pm.objective import pm_eval_sums, pm_loss_terms, pm_summary
from hh.train import init_from, runtime
from hh.train.loop import Task, train_loop
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.state import state_from_params


def resolve_steps(config, n_pairs: int):
    """loop.steps = -1 means `train.epochs` passes over the training pairs (the paper: one)."""
    if config.loop.steps == -1:
        config.loop.steps = max(1, math.ceil(config.train.epochs * n_pairs / config.train.global_batch_size))
    if config.optimizer.warmup_steps > config.loop.steps:
        config.optimizer.warmup_steps = config.loop.steps


def build_steps(config, mesh, rules, eoc_id, example_batch, verbose=True) -> dict:
    """The model, optimizer, abstract sharded state and jitted steps, without data (hh.tools.fit
    compiles these for a TPU topology). example_batch: a pair batch of any size (its keys and
    ranks give the shardings). -> {"model", "optimizer", "init_fn", "abstract", "shardings",
    "batch_sharding", "pair_shardings", "train_step", "eval_step"}."""
    model = PreferenceModel(runtime.model_config(config), eoc_id=eoc_id)
    optimizer, schedule = make_optimizer(config.optimizer, config.loop.steps)
    init_fn = functools.partial(init_pm_params, model, seq_len=config.data.seq_len)

    abstract, shardings = runtime.sharded_state_layout(init_fn, optimizer, config, mesh, rules, verbose)

    weights = dict(model=model, pm_weight=config.train.pm_weight, lm_weight=config.train.lm_weight,
                   loss_chunk=config.train.loss_chunk)
    batch_sh = shd.batch_sharding(mesh, rules)
    scalar = runtime.replicated(mesh)
    pairs_sh = shd.row_shardings(batch_sh, example_batch)
    train_step = runtime.compile_train_step(config, functools.partial(pm_loss_terms, **weights), optimizer,
                                            schedule, mesh, rules, shardings, pairs_sh)
    eval_step = runtime.compile_step(functools.partial(pm_eval_sums, **weights), mesh, rules,
                                     (shardings, pairs_sh), scalar)
    return dict(model=model, optimizer=optimizer, init_fn=init_fn, abstract=abstract,
                shardings=shardings, batch_sharding=batch_sh, pair_shardings=pairs_sh,
                train_step=train_step, eval_step=eval_step)


def build_task(config, mesh, rules, train_source, eval_source, tokenizer, verbose=True) -> Task:
    """Everything the loop needs for PMP/PM training, sharded on `mesh`."""
    seq, batch_size = config.data.seq_len, config.train.global_batch_size
    batch_sh = shd.batch_sharding(mesh, rules)
    rows = shd.process_row_range(batch_sh, batch_size)
    train_batches = pm_batches(train_source, tokenizer, seq, batch_size, config.seed, row_range=rows,
                               **reading_options(config.data))
    steps = build_steps(config, mesh, rules, tokenizer.eoc_id, train_batches.batch(0), verbose)
    model, optimizer, init_fn = steps["model"], steps["optimizer"], steps["init_fn"]
    abstract, shardings = steps["abstract"], steps["shardings"]
    eval_size = config.train.eval_batch_size
    eval_range = shd.process_row_range(batch_sh, eval_size)

    def fresh_state():
        # Resume precedence: the loop restores this workdir's own checkpoint before calling this.
        with runtime.sharding_context(mesh, rules):
            fresh = lambda: jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings.params)(
                jax.random.key(config.seed))
            params = init_from.initial_params(config.init_from, abstract.params, fresh, model.cfg, tokenizer,
                allow_unused=tuple(config.get("init_from_allow_unused", ())))
            return state_from_params(params, optimizer, shardings)

    return Task(
        abstract_state=abstract, init_state=fresh_state, train_step=steps["train_step"],
        train_batches=train_batches,
        batch_sharding=batch_sh, global_batch_size=batch_size, tokens_per_step=2 * batch_size * seq,
        eval_step=steps["eval_step"], eval_summary=pm_summary,
        eval_batches=lambda: pm_eval_batches(eval_source, tokenizer, seq, eval_size, row_range=eval_range))


def validate_pm(config):
    t = config.train
    if t.pm_weight < 0 or t.lm_weight < 0 or t.pm_weight + t.lm_weight == 0:
        raise ConfigError(f"config.train.pm_weight={t.pm_weight} and config.train.lm_weight="
                          f"{t.lm_weight} must be >= 0 and not both 0")
    if t.eval_batch_size != t.global_batch_size:
        # hh.train.loop.evaluate assembles eval batches at the train batch's global size
        raise ConfigError(f"config.train.eval_batch_size={t.eval_batch_size} must equal "
                          f"config.train.global_batch_size={t.global_batch_size}")
    if t.harmless_weight < 0:
        raise ConfigError(f"config.train.harmless_weight={t.harmless_weight} must be >= 0")


def train_and_evaluate(config, workdir):
    """Runs PMP or PM finetuning in `workdir` (resuming if it holds a checkpoint)."""
    validate_pm(config)
    init_from.resolve_from_source(config)
    train_source = pm_sources.train_source(config.data, config.train)
    eval_source = pm_sources.eval_source(config.data)
    resolve_steps(config, len(train_source))
    validate(config, jax.device_count())
    mesh, rules = runtime.mesh_and_rules(config)
    tokenizer = init_from.initial_tokenizer(config, pm_sources.texts(train_source), workdir)
    meta = start_run(workdir, config, mesh)   # refuses a changed config before writing anything
    if jax.process_index() == 0:
        report = truncation_report(eval_source, tokenizer, config.data.seq_len)
        print(f"eval pairs at seq_len {config.data.seq_len}: {dict(report)}", flush=True)
    task = build_task(config, mesh, rules, train_source, eval_source, tokenizer)
    return train_loop(task, config.loop, workdir, meta=meta)
