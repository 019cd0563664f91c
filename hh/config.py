"""Checks a resolved config before anything is compiled; errors name the offending field.

`validate(config, n_devices)` covers what every stage shares (model, mesh, batch, optimizer,
loop). `validate_counts(config)` checks every size and count field of a stage config (and of the
nested online and pipeline configs) before anything runs. Other stage-specific checks live with
their stage.
"""

from hh.parallel.sharding import MESH_AXES, resolve_mesh_shape

CHOICES = {
    "model.norm": ("layernorm", "rmsnorm"),
    "model.activation": ("gelu", "gelu_exact", "swiglu"),
    "model.rotary_scaling": ("none", "linear", "llama3"),
    "model.position": ("rotary", "learned"),
    "model.attention": ("dense", "blockwise", "fused"),
    "model.remat": ("none", "full", "dots"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.param_dtype": ("float32", "bfloat16"),
    "optimizer.schedule": ("cosine", "linear", "constant"),
}


class ConfigError(ValueError):
    """A config field has a bad value; the message names it as `config.<path>`."""


def _get(config, path):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def _require(ok, message):
    if not ok:
        raise ConfigError(message)


def _divides(config, small_path, big_path, small=None, big=None):
    small = _get(config, small_path) if small is None else small
    big = _get(config, big_path) if big is None else big
    _require(big % small == 0, f"config.{big_path}={big} is not divisible by config.{small_path}={small}")


def validate_model(config):
    m = config.model
    for path, allowed in CHOICES.items():
        if path.startswith("model."):
            _require(_get(config, path) in allowed,
                     f"config.{path}={_get(config, path)!r}: choose one of {allowed}")
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "d_head", "d_ff", "max_len",
                  "attention_block"):
        _require(m[field] > 0, f"config.model.{field}={m[field]} must be positive")
    _require(m.n_kv_heads is None or m.n_kv_heads > 0,
             f"config.model.n_kv_heads={m.n_kv_heads} must be positive (or None: n_heads)")
    kv = m.n_kv_heads or m.n_heads
    _require(m.n_heads % kv == 0,
             f"config.model.n_heads={m.n_heads} is not a multiple of config.model.n_kv_heads={kv}")
    _require(0.0 <= m.rotary_fraction <= 1.0,
             f"config.model.rotary_fraction={m.rotary_fraction} must be in [0, 1]")


def validate_mesh(config, n_devices):
    try:
        sizes = dict(zip(MESH_AXES, resolve_mesh_shape(dict(config.mesh), n_devices)))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    m, tensor = config.model, sizes["tensor"]
    kv = m.n_kv_heads or m.n_heads
    for field, value in (("n_heads", m.n_heads), ("n_kv_heads", kv), ("d_ff", m.d_ff),
                         ("vocab_size", m.vocab_size)):
        _require(value % tensor == 0,
                 f"config.model.{field}={value} is not divisible by the tensor axis ({tensor})")
    _require(m.d_model % sizes["fsdp"] == 0,
             f"config.model.d_model={m.d_model} is not divisible by the fsdp axis ({sizes['fsdp']})")
    return sizes


def validate_batch(config, sizes):
    t = config.train
    for path in ("train.global_batch_size", "train.microbatches", "train.eval_batch_size", "data.seq_len"):
        _require(_get(config, path) > 0, f"config.{path}={_get(config, path)} must be positive")
    shards = sizes["data"] * sizes["fsdp"]
    _divides(config, "train.microbatches", "train.global_batch_size")
    micro = t.global_batch_size // t.microbatches
    _require(micro % shards == 0, f"config.train.global_batch_size={t.global_batch_size} / "
             f"microbatches={t.microbatches} = {micro} rows is not divisible by data×fsdp = {shards}")
    _require(t.eval_batch_size % shards == 0,
             f"config.train.eval_batch_size={t.eval_batch_size} is not divisible by data×fsdp = {shards}")
    seq = config.data.seq_len
    chunk = t.get("loss_chunk", 0)
    _require(chunk >= 0 and (chunk == 0 or seq % chunk == 0),
             f"config.train.loss_chunk={chunk} must be 0 or divide config.data.seq_len={seq}")
    _require(seq <= config.model.max_len or config.model.position == "rotary",
             f"config.data.seq_len={seq} exceeds config.model.max_len={config.model.max_len}")
    if config.model.attention in ("blockwise", "fused"):   # fused: splash attention's blocks on TPU
        block = min(config.model.attention_block, seq)
        _require(seq % block == 0, f"config.data.seq_len={seq} is not a multiple of "
                 f"config.model.attention_block={config.model.attention_block}")


def validate_optimizer_and_loop(config):
    o, loop = config.optimizer, config.loop
    _require(o.schedule in CHOICES["optimizer.schedule"],
             f"config.optimizer.schedule={o.schedule!r}: choose one of {CHOICES['optimizer.schedule']}")
    _require(o.learning_rate > 0, f"config.optimizer.learning_rate={o.learning_rate} must be positive")
    _require(0 <= o.warmup_steps <= loop.steps,
             f"config.optimizer.warmup_steps={o.warmup_steps} must be in [0, config.loop.steps={loop.steps}]")
    for field in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        _require(loop[field] > 0, f"config.loop.{field}={loop[field]} must be positive")
    _require(loop.eval_every >= 0, f"config.loop.eval_every={loop.eval_every} must be >= 0 (0: end only)")


def validate(config, n_devices: int) -> dict:
    """Raises ConfigError naming the first bad field; returns the resolved mesh sizes."""
    validate_model(config)
    sizes = validate_mesh(config, n_devices)
    validate_batch(config, sizes)
    validate_optimizer_and_loop(config)
    return sizes


# Size and count fields per stage config, as (must be > 0, must be >= 0). Paths are relative to
# the stage's config; a field a config does not have is skipped. loop.steps is left to `validate`
# (PM configs derive it from -1 after the data is known).
TRAINING_COUNTS = (
    ("train.global_batch_size", "train.microbatches", "train.eval_batch_size", "data.seq_len",
     "data.tokenizer_vocab_size", "loop.log_every", "loop.checkpoint_every", "loop.keep_checkpoints",
     "model.vocab_size", "model.d_model", "model.n_layers", "model.n_heads", "model.d_head",
     "model.d_ff", "model.max_len", "model.attention_block"),
    ("loop.eval_every", "optimizer.warmup_steps", "train.loss_chunk", "sharding.min_partitioned_elements"),
)
STAGE_COUNTS = {
    "lm": (("data.synthetic_documents", "data.eval_documents"), ()),
    "pmp": (("train.epochs", "data.train_pairs", "data.synthetic_comparisons", "data.eval_comparisons"), ()),
    "pm": (("train.epochs", "data.train_pairs", "data.synthetic_comparisons", "data.eval_comparisons"), ()),
    "distill": (("data.distill_texts", "data.eval_texts", "data.synthetic_documents", "distill.text_len",
                 "distill.top_k", "distill.teacher_batch_size", "distill.shard_rows"),
                ("distill.prompt_max_tokens",)),
    "dpo": (("train.epochs", "data.train_pairs", "data.max_prompt_len", "data.max_response_len",
             "dpo.beta", "dpo.tau"), ("dpo.label_smoothing",)),
    "ppo": (("data.max_prompt_len", "rollout.max_new_tokens", "rollout.samples_every", "ppo.epochs",
             "ppo.minibatches", "kl.horizon", "value_optimizer.learning_rate"),
            ("rollout.n_samples", "value_optimizer.warmup_steps")),
}
# A pipeline job's config (a `job` field, no `stage`): its own sections; its stages are nested configs.
JOB_COUNTS = {
    "main": (("best_of.ks", "best_of.n_prompts", "best_of.max_new_tokens", "elo.n_prompts", "elo.max_new_tokens",
              "ood.n_fit", "ood.n_test", "pm_eval.n_bins"),
             ("ood.exposure_m", "ood.exposure_draws", "alignment_tax.shots")),
    # pool.snapshots = 0 would deploy every snapshot (a [-0:] slice); best_of_k 0 or 1: none
    "online": (("rounds", "collect.comparisons", "collect.rows_per_call", "pool.snapshots",
                "pool.max_new_tokens", "mix.train_pairs", "eval.n_prompts", "eval.max_new_tokens"),
               ("pool.best_of_k", "collect.min_strength")),
}
_MISSING = object()


def _lookup(config, path):
    node = config
    for part in path.split("."):
        if not hasattr(node, "keys") or part not in node:
            return _MISSING
        node = node[part]
    return node


def _check_counts(config, prefix, positive, non_negative):
    for paths, wanted in ((positive, "positive"), (non_negative, ">= 0")):
        for path in paths:
            value = _lookup(config, path)
            if value is _MISSING:
                continue
            for v in (value if isinstance(value, (tuple, list)) else (value,)):   # e.g. best_of.ks
                _require(v > 0 if wanted == "positive" else v >= 0, f"{prefix}.{path}={value} must be {wanted}")


def validate_counts(config, prefix="config") -> None:
    """Every size/count field of a stage config must be > 0 (or >= 0); for the online and pipeline
    configs also those of each nested stage section. Cheap: run it before anything is built."""
    stage = config.get("stage")
    if stage is None:
        _check_counts(config, prefix, *JOB_COUNTS.get(config.get("job"), ((), ())))
    else:
        if "train" in config:
            _check_counts(config, prefix, *TRAINING_COUNTS)
        _check_counts(config, prefix, *STAGE_COUNTS.get(stage, ((), ())))
    for key in config.keys():
        section = config[key]
        if hasattr(section, "keys") and "stage" in section:
            validate_counts(section, f"{prefix}.{key}")
