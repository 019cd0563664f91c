"""Trained models loaded from their hh workdirs, ready to use: `LoadedLM` (an LM, distilled or PPO
policy: sampling and scoring text) and `LoadedPM` (a preference model: scoring comparisons).

Each reads the run's config.json and tokenizer through hh.train.workdir and restores its params
(the latest checkpoint unless a step is given) onto the mesh of the run's config. The evaluations
(hh.eval), best-of-k and prompt generation (hh.rl), the online rounds and the labeling interface
all load models this way.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hh.data.pm_data import pm_eval_batches
from hh.models.heads import PreferenceModel, init_pm_params
from hh.models.transformer import TransformerLM
from hh.parallel import sharding as shd
from hh.pm.objective import pm_score_step
from hh.train import runtime
from hh.train.checkpoint import absolute
from hh.train.init_from import LM_STAGES
from hh.train.workdir import read_config, read_tokenizer, restore_params

# A PPO checkpoint's params are {"policy": <TransformerLM params>, "value": <value model>}.
POLICY_STAGES = ("ppo",)


def check_stage(workdir, stage: str):
    """ValueError unless the run's params hold a TransformerLM (an LM, distilled or PPO run)."""
    if stage not in LM_STAGES + POLICY_STAGES:
        raise ValueError(f"{workdir} is a {stage!r} run: a language model is one of "
                         f"{LM_STAGES + POLICY_STAGES}")


class LoadedLM:
    """config, tokenizer, model (TransformerLM), params on `mesh`, step, seq_len and batch_size.
    step: which checkpoint (default: the latest), e.g. an earlier PPO snapshot."""

    def __init__(self, workdir, step: int | None = None):
        self.workdir = absolute(workdir)
        self.config = ml_collections.ConfigDict(read_config(self.workdir))
        self.stage = self.config.stage
        check_stage(self.workdir, self.stage)
        self.tokenizer = read_tokenizer(self.workdir, self.config.data.to_dict())
        self.model = TransformerLM(runtime.model_config(self.config))
        self.seq_len = int(self.config.data.seq_len)
        self.mesh, self.rules = runtime.mesh_and_rules(self.config)
        # rounded up to the batch shards of this mesh (it may differ from the training run's)
        train, shards = self.config.train, self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.batch_size = -(-int(train.get("eval_batch_size", train.global_batch_size)) // shards) * shards
        tokens = jnp.zeros((1, self.seq_len), jnp.int32)
        abstract = shd.abstract_with_shardings(lambda rng: self.model.init(rng, tokens)["params"],
                                           self.mesh, self.rules)
        # a PPO run's value model is never read
        subtree = "policy" if self.stage in POLICY_STAGES else None
        self.step, self.params = restore_params(self.workdir, abstract, step, subtree)

    @property
    def name(self) -> str:
        return self.workdir.name


class LoadedPM:
    """A trained PM from its workdir: config, tokenizer, params on the config's mesh, a scorer."""

    def __init__(self, workdir):
        self.workdir = absolute(workdir)
        self.config = ml_collections.ConfigDict(read_config(self.workdir))
        self.tokenizer = read_tokenizer(self.workdir, self.config.data.to_dict())
        self.model = PreferenceModel(runtime.model_config(self.config), eoc_id=self.tokenizer.eoc_id)
        self.mesh, self.rules = runtime.mesh_and_rules(self.config)
        init_fn = functools.partial(init_pm_params, self.model, seq_len=self.config.data.seq_len)
        abstract = shd.abstract_with_shardings(init_fn, self.mesh, self.rules)
        self.step, self.params = restore_params(self.workdir, abstract)
        self.batch_sharding = shd.batch_sharding(self.mesh, self.rules)
        self._scorer = None

    def scores(self, source):
        """-> (chosen [pairs], rejected [pairs]) float64 scores over the whole source, in order."""
        size, seq = self.config.train.eval_batch_size, self.config.data.seq_len
        chosen, rejected = [], []
        for local in pm_eval_batches(source, self.tokenizer, seq, size):
            if self._scorer is None:
                pairs_sh = shd.row_shardings(self.batch_sharding, local)
                self._scorer = runtime.compile_step(
                    functools.partial(pm_score_step, model=self.model), self.mesh, self.rules,
                    (jax.tree.map(lambda a: a.sharding, self.params), pairs_sh),
                    runtime.replicated(self.mesh))
            batch = shd.make_global_batch(local, self.batch_sharding, size)
            c, r = jax.device_get(self._scorer(self.params, batch))
            keep = local["pair_mask"] > 0
            chosen.append(np.asarray(c)[keep])
            rejected.append(np.asarray(r)[keep])
        return np.concatenate(chosen).astype(np.float64), np.concatenate(rejected).astype(np.float64)
