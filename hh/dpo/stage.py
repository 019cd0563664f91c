"""DPO / IPO as a stage: `python -m hh.main --config configs/dpo.py:tiny --workdir DIR
--config.init_from=POLICY`.

The policy (a TransformerLM, trainable) and the reference (a frozen copy of `init_from`) share the
mesh and shardings; the checkpointed state is the policy's TrainState alone, so the result is a
plain policy workdir (best-of-k, Elo, the comparison interface and HF export read it like a PPO or
LM workdir), and the reference is reloaded from `init_from` on resume. The step is the shared
pure `(state, batch) -> (state, metrics)` (hh.train.step with hh.dpo.objective's loss); the
reference's log-probs are added to each batch before it, either by one jitted forward per batch
(`dpo.reference="batch"`) or read from a cache computed once over the whole training set and kept
in the workdir (`"cached"`: no reference forward during training).
"""

import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hh.checkpoints import pipeline as hf_pipeline
from hh.config import ConfigError, validate
from hh.data import pm_sources
from hh.data.dpo_data import dpo_batches, dpo_eval_batches, pass_in_order
from hh.data.sampler import reading_options
from hh.dpo.objective import LOSSES, dpo_eval_sums, dpo_loss_terms, dpo_summary, reference_logprobs
from hh.io import atomic_write_bytes, atomic_write_text
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.pm.stage import resolve_steps
from hh.train import init_from, runtime
from hh.train.checkpoint import absolute
from hh.train.loop import Task, train_loop
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.state import state_from_params
from hh.train.workdir import latest_step

REFERENCES = ("batch", "cached")
CACHE_FILE, CACHE_KEY_FILE = "reference_logprobs.npz", "reference_logprobs.json"


def validate_dpo(config):
    if not config.get("init_from"):
        raise ConfigError("config.init_from must name the policy to start from (an hh LM or distill "
                          "workdir, or a Hugging Face directory): DPO needs a reference policy")
    d = config.dpo
    if d.loss not in LOSSES:
        raise ConfigError(f"config.dpo.loss={d.loss!r}: use one of {LOSSES}")
    if d.reference not in REFERENCES:
        raise ConfigError(f"config.dpo.reference={d.reference!r}: use one of {REFERENCES}")
    if not 0.0 <= d.label_smoothing < 0.5:
        raise ConfigError(f"config.dpo.label_smoothing={d.label_smoothing} must be in [0, 0.5)")
    if config.data.seq_len != config.data.max_prompt_len + config.data.max_response_len:
        raise ConfigError(f"config.data.seq_len={config.data.seq_len} must equal max_prompt_len + "
                          f"max_response_len = {config.data.max_prompt_len + config.data.max_response_len}")
    if config.train.eval_batch_size != config.train.global_batch_size:
        raise ConfigError(f"config.train.eval_batch_size={config.train.eval_batch_size} must equal "
                          f"config.train.global_batch_size={config.train.global_batch_size}")


def loss_options(config) -> dict:
    d = config.dpo
    return dict(loss=d.loss, beta=float(d.beta), label_smoothing=float(d.label_smoothing), tau=float(d.tau),
                chunk=int(config.train.get("loss_chunk", 0)))


def build_steps(config, mesh, rules, example_batch, verbose=True) -> dict:
    """The model, optimizer, abstract sharded state and jitted functions, without data (hh.tools.fit
    compiles these for a TPU topology). example_batch: a DPO batch of any size, with the reference
    fields. -> {"model", "optimizer", "abstract", "shardings", "batch_sharding", "update",
    "reference", "eval"}: update(state, batch), reference(ref_params, batch) -> ref fields,
    eval(state, ref_params, batch) -> sums."""
    model = TransformerLM(runtime.model_config(config))
    optimizer, schedule = make_optimizer(config.optimizer, config.loop.steps)
    width = config.data.seq_len
    init_fn = lambda rng: model.init(rng, jnp.zeros((1, width), jnp.int32))["params"]  # noqa: E731
    abstract, shardings = runtime.sharded_state_layout(init_fn, optimizer, config, mesh, rules, verbose)
    batch_sh = shd.batch_sharding(mesh, rules)
    scalar = runtime.replicated(mesh)
    pairs_sh = shd.row_shardings(batch_sh, example_batch)
    inputs_sh = {k: v for k, v in pairs_sh.items() if not k.startswith("ref_")}
    ref_sh = {k: v for k, v in pairs_sh.items() if k.startswith("ref_")}
    options = loss_options(config)
    update = runtime.compile_train_step(config, functools.partial(dpo_loss_terms, model=model, **options),
                                        optimizer, schedule, mesh, rules, shardings, pairs_sh)
    reference = runtime.compile_step(functools.partial(reference_logprobs, model=model, chunk=options["chunk"]),
                                     mesh, rules,
                                     (shardings.params, inputs_sh), ref_sh)
    eval_fn = runtime.compile_step(
        lambda state, ref_params, batch: dpo_eval_sums(state.params, ref_params, batch, model=model, **options),
        mesh, rules, (shardings, shardings.params, inputs_sh), scalar)
    return dict(model=model, optimizer=optimizer, init_fn=init_fn, abstract=abstract, shardings=shardings,
                batch_sharding=batch_sh, update=update, reference=reference, eval=eval_fn)


def cache_key(config, n_examples: int, tokenizer) -> dict:
    """What cached reference log-probs depend on; any change recomputes them."""
    data = config.data
    hf = hf_pipeline.init_from_hf(config)
    return {"init_from": str(absolute(config.init_from)), "init_step": None if hf else latest_step(config.init_from),
            "tokenizer": getattr(tokenizer, "fingerprint", lambda: type(tokenizer).__name__)(),
            "examples": n_examples, "max_prompt_len": data.max_prompt_len, "max_response_len": data.max_response_len,
            "helpful_sources": list(data.helpful_sources), "harmless_sources": list(data.harmless_sources),
            "helpful_fraction": data.helpful_fraction, "train_pairs": data.train_pairs, "seed": data.seed,
            "world_size": str(data.world_size)}


def reference_cache(config, workdir, source, tokenizer, steps, ref_params) -> dict:
    """{"chosen", "rejected"}: the reference's sequence log-probs of every training pair, computed
    once (one ordered pass, every process its rows) and stored in the workdir; reused on resume."""
    workdir = epath.Path(workdir)
    key = cache_key(config, len(source), tokenizer)
    if (workdir / CACHE_KEY_FILE).exists() and json.loads((workdir / CACHE_KEY_FILE).read_text()) == key:
        with (workdir / CACHE_FILE).open("rb") as f:
            stored = np.load(f)
            return {"chosen": stored["chosen"], "rejected": stored["rejected"]}
    batch_size = config.train.global_batch_size
    rows = shd.process_row_range(steps["batch_sharding"], batch_size)
    out = {"chosen": np.zeros(len(source), np.float32), "rejected": np.zeros(len(source), np.float32)}
    for indices, local in pass_in_order(source, tokenizer, config.data.max_prompt_len,
                                        config.data.max_response_len, batch_size, rows):
        batch = shd.make_global_batch(local, steps["batch_sharding"], batch_size)
        ref = multihost_utils.process_allgather(steps["reference"](ref_params, batch), tiled=True)
        keep = indices >= 0
        for side in out:
            out[side][indices[keep]] = np.asarray(ref[f"ref_{side}_logp"])[keep]
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.savez(buffer, **out)
        atomic_write_bytes(workdir / CACHE_FILE, buffer.getvalue())
        atomic_write_text(workdir / CACHE_KEY_FILE, json.dumps(key, indent=1))   # last: marks it whole
    return out


def build_task(config, mesh, rules, workdir, train_source, eval_source, tokenizer, verbose=True) -> Task:
    """Everything the loop needs for DPO, sharded on `mesh`."""
    batch_size, data = config.train.global_batch_size, config.data
    cached = config.dpo.reference == "cached"
    batch_sh = shd.batch_sharding(mesh, rules)
    rows = shd.process_row_range(batch_sh, batch_size)
    lengths = (data.max_prompt_len, data.max_response_len)
    example = dpo_batches(train_source, tokenizer, *lengths, batch_size, config.seed, rows,
                          reference={"chosen": np.zeros(len(train_source)), "rejected": np.zeros(len(train_source))}
                          ).batch(0)
    steps = build_steps(config, mesh, rules, example, verbose)
    model, optimizer, abstract, shardings = steps["model"], steps["optimizer"], steps["abstract"], steps["shardings"]

    def load_params():
        with runtime.sharding_context(mesh, rules):
            return init_from.initial_params(config.init_from, abstract.params, None, model.cfg, tokenizer,
                                            allow_unused=tuple(config.get("init_from_allow_unused", ())))

    ref_params = load_params()   # frozen: never donated, never updated
    reference = reference_cache(config, workdir, train_source, tokenizer, steps, ref_params) if cached else None
    train_batches = dpo_batches(train_source, tokenizer, *lengths, batch_size, config.seed, rows,
                                reference=reference, **reading_options(data))

    def train_step(state, batch):
        if not cached:   # the reference forward, dispatched before the update (no host round trip)
            batch = {**batch, **steps["reference"](ref_params, batch)}
        return steps["update"](state, batch)

    def fresh_state():
        return state_from_params(load_params(), optimizer, shardings)

    eval_range = shd.process_row_range(batch_sh, batch_size)
    return Task(
        abstract_state=abstract, init_state=fresh_state, train_step=train_step, train_batches=train_batches,
        batch_sharding=batch_sh, global_batch_size=batch_size,
        tokens_per_step=2 * batch_size * data.seq_len,
        eval_step=lambda state, batch: steps["eval"](state, ref_params, batch), eval_summary=dpo_summary,
        eval_batches=lambda: dpo_eval_batches(eval_source, tokenizer, *lengths, batch_size, eval_range))


def train_and_evaluate(config, workdir):
    """Runs DPO / IPO in `workdir` (resuming if it holds a checkpoint)."""
    validate_dpo(config)
    init_from.resolve_from_source(config)
    train_source = pm_sources.train_source(config.data, config.train)
    eval_source = pm_sources.eval_source(config.data)
    resolve_steps(config, len(train_source))
    validate(config, jax.device_count())
    mesh, rules = runtime.mesh_and_rules(config)
    tokenizer = init_from.initial_tokenizer(config, None, workdir)
    meta = start_run(workdir, config, mesh)   # refuses a changed config before writing anything
    task = build_task(config, mesh, rules, workdir, train_source, eval_source, tokenizer)
    return train_loop(task, config.loop, workdir, meta=meta)
