"""Stage setup that every stage shares: mesh and rules from the config, the model config, and
jitting a step with explicit shardings, donation and the logical-axis context.
"""

import functools

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from hh.models.transformer import TransformerConfig
from hh.parallel import sharding as shd
from hh.parallel.sharding import sharding_context  # noqa: F401  (re-exported: stages use runtime.)
from hh.train import step
from hh.train.state import state_shardings


def model_config(config) -> TransformerConfig:
    return TransformerConfig(**config.model.to_dict())


def mesh_and_rules(config, devices=None):
    return shd.make_mesh(dict(config.mesh), devices), shd.rules_from_config(config.sharding.rules)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def compile_step(fn, mesh, rules, in_shardings, out_shardings, donate_argnums=()):
    """jax.jit with shardings and donation; every call runs inside the sharding context.

    Compiles once per input shape (the loop feeds fixed shapes, so once per run).
    """
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=donate_argnums)

    @functools.wraps(fn)
    def call(*args):
        with sharding_context(mesh, rules):
            return jitted(*args)

    call.jitted = jitted
    return call


def compile_train_step(config, loss_terms, optimizer, schedule, mesh, rules, state_shardings, batch_shardings):
    """A stage's jitted hh.train.step.train_step: the config's microbatches and frozen parameters
    (config.optimizer.frozen: no backward into them), the state donated and kept in its shardings."""
    fn = functools.partial(step.train_step, loss_terms=loss_terms, optimizer=optimizer, schedule=schedule,
                           n_micro=config.train.microbatches, frozen=config.optimizer.get("frozen", ""))
    return compile_step(fn, mesh, rules, (state_shardings, batch_shardings), (state_shardings, replicated(mesh)),
                        donate_argnums=(0,))


def sharded_state_layout(init_params, optimizer, config, mesh, rules, verbose=True):
    """-> (abstract TrainState, its shardings) for a stage, after printing the per-parameter
    sharding report (process 0) and checking that large weights really are partitioned."""
    with sharding_context(mesh, rules):
        abstract, shardings = state_shardings(init_params, optimizer, mesh, rules)
    if verbose and jax.process_index() == 0:
        print("parameter shardings:\n" + shd.sharding_report(abstract.params, shardings.params))
    shd.assert_partitioned(shardings.params, abstract.params, config.sharding.min_partitioned_elements, mesh)
    return abstract, shardings
