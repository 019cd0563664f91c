"""LM pretraining as a stage: builds the model, mesh, sharded state, steps and data, then hands
them to the shared loop. `python -m hh.main --config configs/lm.py:tiny --workdir DIR`.
"""

import functools

import jax
import jax.numpy as jnp

from hh.checkpoints.pipeline import adopt_imported_architecture, init_from_hf
from hh.config import ConfigError, validate
from hh.data.lm_data import eval_batches, lm_batches
from hh.data.sampler import reading_options
from hh.data.sources import check_vocab, lm_rows
from hh.lm.objective import lm_eval_sums, lm_eval_summary, lm_loss_terms
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.train import init_from, runtime
from hh.train.loop import Task, train_loop
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.state import init_state, state_from_params


def build_steps(config, mesh, rules, verbose=True) -> dict:
    """The model, optimizer, abstract sharded state and jitted steps, without data (hh.tools.fit
    compiles these for a TPU topology): {"model", "optimizer", "init_params", "abstract",
    "shardings", "batch_sharding", "train_step", "eval_step"}."""
    model = TransformerLM(runtime.model_config(config))
    optimizer, schedule = make_optimizer(config.optimizer, config.loop.steps)
    seq = config.data.seq_len

    def init_params(rng):
        return model.init(rng, jnp.zeros((1, seq), jnp.int32))["params"]

    abstract, shardings = runtime.sharded_state_layout(init_params, optimizer, config, mesh, rules, verbose)

    batch_sh = shd.batch_sharding(mesh, rules)
    scalar = runtime.replicated(mesh)
    terms = functools.partial(lm_loss_terms, model=model, z_loss=config.train.z_loss,
                              loss_chunk=config.train.loss_chunk)
    train_step = runtime.compile_train_step(config, terms, optimizer, schedule, mesh, rules, shardings, batch_sh)
    eval_step = runtime.compile_step(
        functools.partial(lm_eval_sums, model=model, loss_chunk=config.train.loss_chunk), mesh, rules,
                                     (shardings, batch_sh), scalar)
    return dict(model=model, optimizer=optimizer, init_params=init_params, abstract=abstract,
                shardings=shardings, batch_sharding=batch_sh, train_step=train_step, eval_step=eval_step)


def build_task(config, mesh, rules, workdir=None, verbose=True) -> Task:
    """Everything the loop needs for LM pretraining, sharded on `mesh`."""
    steps = build_steps(config, mesh, rules, verbose)
    model, optimizer, init_params = steps["model"], steps["optimizer"], steps["init_params"]
    abstract, shardings, batch_sh = steps["abstract"], steps["shardings"], steps["batch_sharding"]
    seq, batch_size = config.data.seq_len, config.train.global_batch_size

    train_rows, eval_rows, tokenizer = lm_rows(config.data, workdir)
    check_vocab(tokenizer, config.model.vocab_size)
    rows = shd.process_row_range(batch_sh, batch_size)
    eval_size = config.train.eval_batch_size
    eval_range = shd.process_row_range(batch_sh, eval_size)

    def fresh_state():
        with runtime.sharding_context(mesh, rules):
            if init_from_hf(config):   # continued pretraining of an imported model
                params = init_from.initial_params(config.init_from, abstract.params, None, model.cfg, tokenizer,
                    allow_unused=tuple(config.get("init_from_allow_unused", ())))
                return state_from_params(params, optimizer, shardings)
            return init_state(init_params, optimizer, shardings, jax.random.key(config.seed))

    return Task(
        abstract_state=abstract, init_state=fresh_state, train_step=steps["train_step"],
        train_batches=lm_batches(train_rows, batch_size, config.seed, row_range=rows,
                                 **reading_options(config.data)),
        batch_sharding=batch_sh, global_batch_size=batch_size, tokens_per_step=batch_size * seq,
        eval_step=steps["eval_step"], eval_summary=lm_eval_summary, eval_batch_size=eval_size,
        eval_batches=lambda: eval_batches(eval_rows, eval_size, row_range=eval_range))


def train_and_evaluate(config, workdir):
    """Runs LM pretraining in `workdir` (resuming if it holds a checkpoint)."""
    if not adopt_imported_architecture(config) and config.get("init_from"):
        raise ConfigError(f"config.init_from={config.init_from!r} is not a Hugging Face directory "
                          f"(config.json with model.safetensors or model.safetensors.index.json)")
    validate(config, jax.device_count())
    mesh, rules = runtime.mesh_and_rules(config)
    meta = start_run(workdir, config, mesh)   # refuses a changed config before writing anything
    task = build_task(config, mesh, rules, workdir)
    return train_loop(task, config.loop, workdir, meta=meta)
