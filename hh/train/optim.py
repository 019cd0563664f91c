"""The optimizer every stage uses: AdamW with warmup then cosine/linear/constant, and clipping.

Built from `config.optimizer`; the schedule counts optimizer updates (not microbatches).
`optimizer.frozen` (a regex over parameter paths) keeps the matching parameters at their initial
values, with no optimizer state and no backward into them (`stop_frozen_gradients`): partial
finetuning, which keeps pretrained features that full finetuning on a few entities overwrites
(Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"; Lee et al. 2023, "Surgical
Fine-Tuning").
"""

import re

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(opt_cfg, total_steps: int):
    """Linear warmup from 0 to `learning_rate`, then decay to `end_lr_factor`× by the last step."""
    peak, warmup = opt_cfg.learning_rate, opt_cfg.warmup_steps
    end = peak * opt_cfg.end_lr_factor
    decay_steps = max(total_steps - warmup, 1)
    if opt_cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt_cfg.end_lr_factor)
    elif opt_cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    elif opt_cfg.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f"config.optimizer.schedule={opt_cfg.schedule!r}: use cosine, linear or constant")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params):
    """Weight decay on matrices only: not on norms' scales, biases or the scalar head's bias."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def parameter_path(path) -> str:
    """'trunk/stack/layer_0/mlp/up/kernel': the path a `frozen` regex is matched against. The same
    for boxed params (nn.Partitioned's `.value`, as the sharded init sees them) and plain ones (as
    the gradients are), so that both get the same labels."""
    keys = tuple(k for k in path if not (isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value"))
    return jax.tree_util.keystr(keys, simple=True, separator="/")


def _frozen_mask(pattern: str, params):
    """A tree of bools over `params`: whether each leaf's path matches `pattern` (re.search)."""
    regex = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(regex.search(parameter_path(path))), params)


def stop_frozen_gradients(params, pattern: str):
    """`params` with jax.lax.stop_gradient on the leaves that `pattern` freezes (none if empty).

    A loss of these params has no backward into frozen ones: no weight gradients for them, and no
    activation gradients below the lowest trained layer (a frozen lower half skips the lower half's
    backward). The optimizer (`frozen_labels`) is what keeps them fixed; this only skips work."""
    if not pattern:
        return params
    return jax.tree.map(lambda p, frozen: jax.lax.stop_gradient(p) if frozen else p, params,
                        _frozen_mask(pattern, params))


def frozen_labels(pattern: str):
    """params -> a tree of "frozen" (path matches `pattern`, re.search) or "trained" per leaf, for
    optax.multi_transform. A pattern that matches nothing is an error, since it is almost surely a
    typo."""
    def labels(params):
        tree = jax.tree.map(lambda frozen: "frozen" if frozen else "trained", _frozen_mask(pattern, params))
        if "frozen" not in jax.tree.leaves(tree):
            raise ValueError(f"config.optimizer.frozen={pattern!r} matches no parameter "
                             f"(paths look like 'trunk/stack/layer_0/mlp/up/kernel')")
        return tree
    return labels


def make_optimizer(opt_cfg, total_steps: int):
    """-> (optax transformation, schedule). Adam ε and betas come from the config."""
    schedule = learning_rate_schedule(opt_cfg, total_steps)
    chain = [optax.clip_by_global_norm(opt_cfg.clip_norm)] if opt_cfg.clip_norm else []
    chain.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, mask=decay_mask))
    optimizer = optax.chain(*chain)
    pattern = opt_cfg.get("frozen", "")
    if pattern:
        # Frozen parameters get a zero update and no AdamW moments (at pod scale the moments of a
        # frozen half would be as large as the half itself); their gradients never reach the
        # trained ones' global-norm clipping, and weight decay never moves them.
        optimizer = optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()},
                                          frozen_labels(pattern))
    return optimizer, schedule
