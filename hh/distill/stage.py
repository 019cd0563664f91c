"""Context distillation as a stage: `python -m hh.main --config configs/distill.py:tiny --workdir DIR
--config.init_from=<LM workdir>`.

Loads the LM (teacher and student) and its tokenizer through hh.train.init_from, stores the
prompted teacher's top-k targets for the train and held-out texts (hh.distill.teacher), then trains
the student on the 51-category KL in the shared loop. The held-out KL before training is written to
`eval_before.json`; the loop's final eval is the KL after.
"""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hh.config import ConfigError, validate
from hh.data.sampler import BatchSampler, Batches, sequential_batches
from hh.distill import data as distill_data, prompt as hhh_prompt, teacher
from hh.distill.objective import distill_eval_sums, distill_loss_terms
from hh.io import atomic_write_text
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.train import init_from, runtime, step
from hh.train.checkpoint import absolute
from hh.train.loop import Task, evaluate, train_loop
from hh.train.optim import make_optimizer
from hh.train.resume import start_run
from hh.train.state import state_from_params
from hh.train.workdir import latest_step, read_config

TEACHER_DIR = "teacher"
BEFORE_FILE = "eval_before.json"


def validate_distill(config):
    d, t = config.distill, config.train
    if not config.init_from:
        raise ConfigError("config.init_from is empty: context distillation starts the teacher and "
                          "the student from an LM workdir")
    if t.eval_batch_size != t.global_batch_size:   # hh.train.loop.evaluate uses the train batch size
        raise ConfigError(f"config.train.eval_batch_size={t.eval_batch_size} must equal "
                          f"config.train.global_batch_size={t.global_batch_size}")
    for field in ("text_len", "top_k", "teacher_batch_size", "shard_rows"):
        if d[field] <= 0:
            raise ConfigError(f"config.distill.{field}={d[field]} must be positive")
    if d.prompt_max_tokens < 0:
        raise ConfigError(f"config.distill.prompt_max_tokens={d.prompt_max_tokens} must be >= 0 (0: all)")
    if t.loss_chunk and d.text_len % t.loss_chunk:
        raise ConfigError(f"config.train.loss_chunk={t.loss_chunk} does not divide "
                          f"config.distill.text_len={d.text_len}")
    if not 0.0 <= config.data.generic_fraction <= 1.0:
        raise ConfigError(f"config.data.generic_fraction={config.data.generic_fraction} must be in [0, 1]")


def adopt_source_model(config):
    """The student is the teacher's architecture: take the LM workdir's shape fields (the execution
    fields, dtype/remat/mesh, stay as configured) and check the teacher context fits its training."""
    source = read_config(config.init_from)
    for field in init_from.SHAPE_FIELDS:
        if field in source["model"]:
            config.model[field] = source["model"][field]
    trained = source["data"]["seq_len"]
    if config.data.seq_len > trained:
        raise ConfigError(f"config.data.seq_len={config.data.seq_len} (the teacher's prompt + text) "
                          f"exceeds the context {trained} that the init_from LM {config.init_from} "
                          f"was trained on")


def target_key(config, prompt_ids, rows, tokenizer, split) -> dict:
    """What the stored targets depend on; a mismatch with the manifest refuses to reuse them."""
    fingerprint = getattr(tokenizer, "fingerprint", lambda: type(tokenizer).__name__)()
    return {"split": split, "teacher": str(absolute(config.init_from)),
            "teacher_step": latest_step(config.init_from), "tokenizer": fingerprint,
            "prompt": hhh_prompt.prompt_fingerprint(prompt_ids), "prompt_tokens": len(prompt_ids),
            "rows_fingerprint": distill_data.rows_fingerprint(rows), "rows": len(rows["inputs"]),
            "text_len": config.distill.text_len, "k": config.distill.top_k,
            "shard_rows": config.distill.shard_rows,
            "dtypes": {k: np.dtype(v).name for k, v in teacher.ARRAYS.items()}}


def ensure_targets(config, workdir, splits, prompt_ids, tokenizer, model, mesh, rules, params_layout,
                   load_params):
    """Computes the teacher targets of every split's missing shards (none when all are stored);
    the teacher params are loaded only if something is missing. -> {split: StoredTargets}.

    params_layout: the params' shardings; load_params() -> the init_from LM's params, placed."""
    todo = {}
    for split, rows in splits.items():
        directory = epath.Path(workdir) / TEACHER_DIR / split
        teacher.open_manifest(directory, target_key(config, prompt_ids, rows, tokenizer, split))
        missing = teacher.missing_shards(directory, len(rows["inputs"]), config.distill.shard_rows)
        if missing:
            todo[split] = (directory, missing, teacher.teacher_inputs(prompt_ids, rows, tokenizer.bos_id))
    if not todo:
        return {split: teacher.StoredTargets(epath.Path(workdir) / TEACHER_DIR / split) for split in splits}
    step_fn = teacher_step(config, model, len(prompt_ids), mesh, rules, params_layout, load_params())
    for split, (directory, missing, inputs) in todo.items():
        teacher.compute_shards(directory, missing, config.distill.shard_rows, inputs,
                               config.distill.teacher_batch_size, step_fn)
    if jax.process_count() > 1:   # process 0 wrote the shards; the others read them next
        multihost_utils.sync_global_devices("distill teacher targets written")
    return {split: teacher.StoredTargets(epath.Path(workdir) / TEACHER_DIR / split) for split in splits}


def teacher_step(config, model, n_prompt, mesh, rules, params_layout, params):
    """-> f(local numpy teacher inputs of one global batch) -> targets, jitted once, sharded by rows."""
    batch_sh = shd.batch_sharding(mesh, rules)
    size = config.distill.teacher_batch_size
    fn = functools.partial(teacher.teacher_targets, model=model, n_prompt=n_prompt,
                           text_len=config.distill.text_len, k=config.distill.top_k)
    in_sh = {key: shd.row_sharding(batch_sh, 2) for key in ("tokens", "positions", "segment_ids")}
    out_sh = {key: shd.row_sharding(batch_sh, ndim) for key, ndim in teacher.NDIM.items()}
    jitted = runtime.compile_step(fn, mesh, rules, (params_layout, in_sh), out_sh)
    start, stop = shd.process_row_range(batch_sh, size)

    def run(batch):
        local = {key: v[start:stop] for key, v in batch.items()}
        return jitted(params, shd.make_global_batch(local, batch_sh, size))
    return run


def _batch_maker(rows, targets):
    """Example ids -> a student batch with the stored teacher targets; id -1 is an empty eval row."""
    def make(indices):
        valid = indices >= 0
        picked = np.where(valid, indices, 0)
        batch = {k: v[picked] for k, v in rows.items()}
        batch.update(targets.gather(picked))
        batch["loss_mask"] = batch["loss_mask"] * valid[:, None]
        return batch
    return make


def state_layout(config, model, mesh, rules, verbose=True):
    """-> (optimizer, schedule, abstract TrainState, its shardings) of the student."""
    optimizer, schedule = make_optimizer(config.optimizer, config.loop.steps)
    init_fn = lambda rng: model.init(rng, jnp.zeros((1, config.distill.text_len), jnp.int32))["params"]
    abstract, shardings = runtime.sharded_state_layout(init_fn, optimizer, config, mesh, rules, verbose)
    return optimizer, schedule, abstract, shardings


def build_task(config, mesh, rules, model, layout, rows, targets, load_params) -> Task:
    """Everything the loop needs for distillation, sharded on `mesh`; layout from state_layout."""
    optimizer, schedule, abstract, shardings = layout
    text_len, batch_size = config.distill.text_len, config.train.global_batch_size

    batch_sh = shd.batch_sharding(mesh, rules)
    scalar = runtime.replicated(mesh)
    row_range = shd.process_row_range(batch_sh, batch_size)
    make_train = _batch_maker(rows["train"], targets["train"])
    train_batches = Batches(BatchSampler(len(rows["train"]["inputs"]), batch_size, config.seed),
                            make_train, row_range)
    data_sh = shd.row_shardings(batch_sh, train_batches.batch(0))
    terms = functools.partial(distill_loss_terms, model=model, loss_chunk=config.train.loss_chunk)
    train_step = runtime.compile_train_step(config, terms, optimizer, schedule, mesh, rules, shardings, data_sh)
    eval_step = runtime.compile_step(
        functools.partial(distill_eval_sums, model=model, loss_chunk=config.train.loss_chunk),
        mesh, rules, (shardings, data_sh), scalar)
    n_eval = len(rows["eval"]["inputs"])
    make_eval = _batch_maker(rows["eval"], targets["eval"])

    def fresh_state():
        with runtime.sharding_context(mesh, rules):
            return state_from_params(load_params(), optimizer, shardings)

    return Task(
        abstract_state=abstract, init_state=fresh_state, train_step=train_step,
        train_batches=train_batches, batch_sharding=batch_sh, global_batch_size=batch_size,
        tokens_per_step=batch_size * text_len, eval_step=eval_step, eval_summary=distill_summary,
        eval_batches=lambda: sequential_batches(n_eval, batch_size, make_eval, row_range))


def distill_summary(sums) -> dict:
    """Means over target tokens of the eval sums (their "loss" is the KL again, so it is left out)."""
    means = step.means_from_sums({k: float(v) for k, v in sums.items()})
    return {"kl": means["kl"], "top1_agreement": means["top1_agreement"],
            "teacher_top_mass": means["teacher_top_mass"], "tokens": means["count"]}


def with_baseline(task: Task, workdir) -> Task:
    """A fresh start first evaluates the student as initialised (= the unprompted LM): the held-out
    KL before distillation, written to eval_before.json (a resumed run keeps the first one)."""
    def init_and_measure():
        state = task.init_state()
        before = evaluate(task, state)
        print("eval before distillation: " + ", ".join(f"{k}={v:.4g}" for k, v in before.items()), flush=True)
        if jax.process_index() == 0:
            atomic_write_text(epath.Path(workdir) / BEFORE_FILE, json.dumps(before, indent=1))
        return state
    return dataclasses.replace(task, init_state=init_and_measure)


def train_and_evaluate(config, workdir):
    """Runs context distillation in `workdir` (resuming if it holds a checkpoint)."""
    validate_distill(config)
    adopt_source_model(config)
    init_from.resolve_from_source(config)
    sizes = validate(config, jax.device_count())
    if config.distill.teacher_batch_size % (sizes["data"] * sizes["fsdp"]):
        raise ConfigError(f"config.distill.teacher_batch_size={config.distill.teacher_batch_size} is "
                          f"not divisible by data×fsdp = {sizes['data'] * sizes['fsdp']}")
    mesh, rules = runtime.mesh_and_rules(config)
    tokenizer = init_from.initial_tokenizer(config, None, workdir)
    _, prompt_ids = hhh_prompt.load_prompt(config.distill, tokenizer, config.data.seq_len)
    texts = dict(zip(("train", "eval"), distill_data.distillation_texts(config.data)))
    rows = {split: distill_data.text_rows(t, tokenizer, config.distill.text_len) for split, t in texts.items()}
    meta = start_run(workdir, config, mesh)   # refuses a changed config before writing anything
    if jax.process_index() == 0:
        print(f"HHH prompt: {len(prompt_ids)} tokens; texts: {len(texts['train'])} train, "
              f"{len(texts['eval'])} held out, {config.distill.text_len} tokens each", flush=True)
    model = TransformerLM(runtime.model_config(config))
    layout = state_layout(config, model, mesh, rules)
    abstract_params = layout[2].params

    def load_params():
        """The init_from LM's params (the teacher, and the student's start), in the state's shardings."""
        with runtime.sharding_context(mesh, rules):
            return init_from.initial_params(config.init_from, abstract_params, None, model.cfg, tokenizer,
                allow_unused=tuple(config.get("init_from_allow_unused", ())))

    targets = ensure_targets(config, workdir, rows, prompt_ids, tokenizer, model, mesh, rules,
                             layout[3].params, load_params)
    task = with_baseline(build_task(config, mesh, rules, model, layout, rows, targets, load_params), workdir)
    return train_loop(task, config.loop, workdir, meta=meta)
