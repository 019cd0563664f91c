"""The optimizer every stage uses: AdamW with warmup then cosine/linear/constant, and clipping.

Built from `config.optimizer`; the schedule counts optimizer updates (not microbatches).
"""

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


def make_optimizer(opt_cfg, total_steps: int):
    """-> (optax transformation, schedule). Adam ε and betas come from the config."""
    schedule = learning_rate_schedule(opt_cfg, total_steps)
    chain = []
    if opt_cfg.clip_norm:
        chain.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
    chain.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, mask=decay_mask))
    return optax.chain(*chain), schedule
