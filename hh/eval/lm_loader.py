"""A trained language model (LM, distilled or PPO policy) loaded from its hh workdir for evaluation.

`LoadedLM(workdir)` reads the run's config.json and tokenizer and restores the TransformerLM params
of its latest checkpoint onto the config's mesh: the few-shot NLP evaluations (hh.eval.mc) score
base and policy models through it.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from hh.data import sources
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.train import runtime
from hh.train.checkpoint import Checkpointer, absolute
from hh.train.init_from import LM_STAGES, source_config
from hh.train.state import strip_boxes

# A PPO checkpoint's params are {"policy": <TransformerLM params>, "value": <value model>}.
POLICY_STAGES = ("ppo",)


def abstract_lm_params(model: TransformerLM, seq_len: int, mesh, rules):
    """ShapeDtypeStructs of the model's params carrying their shardings on `mesh` (for restores)."""
    init_fn = functools.partial(model.init, tokens=jnp.zeros((1, seq_len), jnp.int32))
    with runtime.sharding_context(mesh, rules):
        boxed = jax.eval_shape(lambda rng: init_fn(rng)["params"], jax.random.key(0))
    shardings = shd.logical_shardings(boxed, mesh, rules)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        strip_boxes(boxed), shardings)


def check_stage(workdir, stage: str):
    if stage not in LM_STAGES + POLICY_STAGES:
        raise ValueError(f"{workdir} is a {stage!r} run: a language model is one of "
                         f"{LM_STAGES + POLICY_STAGES}")


def restore_lm_params(workdir, stage: str, abstract, step: int | None = None):
    """-> (step, TransformerLM params) of the workdir's checkpoint `step` (default: the latest),
    placed as `abstract` says."""
    check_stage(workdir, stage)
    ckpt = Checkpointer(absolute(workdir) / "checkpoints", keep=10**6, every=1, async_save=False)
    try:
        if step is None:
            step = ckpt.latest_step()
        elif step not in ckpt.all_steps():
            raise FileNotFoundError(f"{workdir} has no checkpoint at step {step} "
                                    f"(it has {sorted(ckpt.all_steps())})")
        if step is None:
            raise FileNotFoundError(f"{workdir} has no checkpoint")
        if stage in POLICY_STAGES:   # partial restore: the value model is never read
            return step, ckpt.restore_params(step, {"policy": abstract})["policy"]
        return step, ckpt.restore_params(step, abstract)
    finally:
        ckpt.close()


class LoadedLM:
    """config, tokenizer, model (TransformerLM), params on `mesh`, step, seq_len and batch_size.
    step: which checkpoint (default: the latest), e.g. an earlier PPO snapshot."""

    def __init__(self, workdir, step: int | None = None):
        self.workdir = absolute(workdir)
        self.config = ml_collections.ConfigDict(source_config(str(self.workdir)))
        self.stage = self.config.stage
        check_stage(self.workdir, self.stage)
        self.tokenizer = sources.run_tokenizer(self.config.data, None, str(self.workdir))
        self.model = TransformerLM(runtime.model_config(self.config))
        self.seq_len = int(self.config.data.seq_len)
        self.mesh, self.rules = runtime.mesh_and_rules(self.config)
        # rounded up to the batch shards of this mesh (it may differ from the training run's)
        train, shards = self.config.train, self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.batch_size = -(-int(train.get("eval_batch_size", train.global_batch_size)) // shards) * shards
        abstract = abstract_lm_params(self.model, self.seq_len, self.mesh, self.rules)
        self.step, self.params = restore_lm_params(self.workdir, self.stage, abstract, step)

    @property
    def name(self) -> str:
        return self.workdir.name
