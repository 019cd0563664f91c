"""The train state (step, params, optimizer state) and its sharded creation.

Shapes and logical axis names come from `jax.eval_shape` on the boxed init; the state is then
initialised directly into its shardings (never materialised on one device first).
"""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hh.parallel import sharding as shd


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def _state_from_params(params, optimizer):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def state_shardings(init_params: Callable, optimizer: optax.GradientTransformation, mesh, rules):
    """-> (abstract TrainState of ShapeDtypeStructs carrying shardings, TrainState of shardings).

    init_params(rng) returns boxed params (nn.Partitioned leaves, as `model.init` gives).
    """
    abstract = shd.abstract_with_shardings(lambda rng: _state_from_params(init_params(rng), optimizer),
                                           mesh, rules)
    shardings = jax.tree.map(lambda a: a.sharding, abstract)
    return abstract, shardings


def init_state(init_params: Callable, optimizer, shardings, rng):
    """A fresh TrainState, created inside jit straight into `shardings`."""
    def create(rng):
        return _state_from_params(nn.meta.unbox(init_params(rng)), optimizer)
    return jax.jit(create, out_shardings=shardings)(rng)


def state_from_params(params, optimizer, shardings):
    """A TrainState around given (already sharded) params: fresh optimizer state, step 0.

    For `init_from` (a previous stage or an imported checkpoint); params are donated.
    """
    return jax.jit(lambda p: _state_from_params(p, optimizer), out_shardings=shardings,
                   donate_argnums=0)(params)
