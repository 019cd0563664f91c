"""The optimizer every stage uses: AdamW with warmup then cosine/linear/constant, and clipping.

Built from `config.optimizer`; the schedule counts optimizer updates (not microbatches).
`optimizer.frozen` (a regex over parameter paths) keeps the matching parameters at their initial
values: partial finetuning, which keeps pretrained features that full finetuning on a few
entities overwrites (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features";
Lee et al. 2023, "Surgical Fine-Tuning").
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
    """'trunk/stack/layer_0/mlp/up/kernel': the path a `frozen` regex is matched against."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def freeze(pattern: str) -> optax.GradientTransformation:
    """Zero the updates of every parameter whose path matches `pattern` (re.search). Stateless, so
    the optimizer state keeps the params' tree (and shardings); a pattern that matches nothing is
    an error, since it is almost surely a typo."""
    regex = re.compile(pattern)

    def frozen(tree):
        return jax.tree_util.tree_map_with_path(lambda path, _: bool(regex.search(parameter_path(path))), tree)

    def init(params):
        if not any(jax.tree.leaves(frozen(params))):
            raise ValueError(f"config.optimizer.frozen={pattern!r} matches no parameter "
                             f"(paths look like 'trunk/stack/layer_0/mlp/up/kernel')")
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, f: jnp.zeros_like(u) if f else u, updates, frozen(updates)), state

    return optax.GradientTransformation(init, update)


def make_optimizer(opt_cfg, total_steps: int):
    """-> (optax transformation, schedule). Adam ε and betas come from the config."""
    schedule = learning_rate_schedule(opt_cfg, total_steps)
    pattern = opt_cfg.get("frozen", "")
    # frozen gradients are zeroed before clipping (they must not shrink the others' step) and
    # the update after AdamW (its weight decay would still move them)
    chain = [freeze(pattern)] if pattern else []
    if opt_cfg.clip_norm:
        chain.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
    chain.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, mask=decay_mask))
    if pattern:
        chain.append(freeze(pattern))
    return optax.chain(*chain), schedule
