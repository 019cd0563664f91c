"""The generic train step: gradient accumulation over microbatches, then one optimizer update.

A stage supplies `loss_terms(params, batch) -> (objective_sum, sums)`, where `sums` holds
"count" (the normaliser, e.g. target tokens) and any metric sums. Gradients are accumulated as sums
and divided by the total count once, so the update is the same for any number of microbatches.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hh.train.optim import stop_frozen_gradients


def split_microbatches(batch, n_micro: int):
    """[batch, ...] -> [n_micro, batch / n_micro, ...] for every array in the dict."""
    def split(x):
        if x.shape[0] % n_micro:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {n_micro} microbatches")
        return x.reshape(n_micro, x.shape[0] // n_micro, *x.shape[1:])
    return jax.tree.map(split, batch)


def map_in_pieces(fn, pieces: int, *trees):
    """fn(*trees) for a row-wise fn (row i of every output depends on row i of the inputs only),
    run on `pieces` equal slices of the rows one after another (lax.map) and joined again: the
    same result with a slice's activations live at a time."""
    if pieces == 1:
        return fn(*trees)
    out = jax.lax.map(lambda args: fn(*args), split_microbatches(trees, pieces))
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)


def accumulated_gradients(loss_terms, params, batch, n_micro: int):
    """-> (gradient of objective_sum / count, sums) with the sums over all microbatches."""
    grad_fn = jax.grad(loss_terms, has_aux=True)
    if n_micro == 1:
        grads, sums = grad_fn(params, batch)
    else:
        micro = split_microbatches(batch, n_micro)

        def body(carry, mb):
            g, s = grad_fn(params, mb)
            return jax.tree.map(jnp.add, carry, (g, s)), None

        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, jax.tree.map(
            lambda x: x[0], micro)))
        (grads, sums), _ = jax.lax.scan(body, zeros, micro)
    count = jnp.maximum(sums["count"], 1.0)
    grads = jax.tree.map(lambda g: g / count, grads)
    return grads, sums


def means_from_sums(sums):
    """{"loss_sum": s, "count": n, ...} -> {"loss": s / n, "count": n, ...} (the one convention).

    Works inside jit on jax arrays and on the host on numpy values or Python floats. The host path
    stays in numpy (jnp would copy to the device and round to float32), so an eval summary that
    passes float(...) sums gets float64 means, which are Python floats and serialise as JSON."""
    count = sums["count"]
    count = jnp.maximum(count, 1.0) if isinstance(count, jax.Array) else np.maximum(count, 1.0)
    return {(k[:-4] if k.endswith("_sum") else k): (v / count if k.endswith("_sum") else v)
            for k, v in sums.items()}


def train_step(state, batch, *, loss_terms, optimizer, schedule, n_micro: int = 1, frozen: str = ""):
    """One update: (state, batch) -> (state, metrics). Pure; jit it with shardings and donation.
    frozen: the optimizer's `frozen` pattern; no backward runs into those params."""
    def loss_of_trained(params, micro):
        return loss_terms(stop_frozen_gradients(params, frozen), micro)
    grads, sums = accumulated_gradients(loss_of_trained, state.params, batch, n_micro)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = means_from_sums(sums)
    metrics["grad_norm"] = optax.global_norm(grads)
    metrics["param_norm"] = optax.global_norm(params)
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics
