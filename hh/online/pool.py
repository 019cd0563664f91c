"""Which models a round deploys (Bai et al. 2022 §4.5: "several snapshots at once for diversity").

Round 0 deploys the initial policy (the context-distilled LM), as the paper's base data came from
the context-distilled 52B model. Round r > 0 deploys the previous round's latest PPO snapshots and
best-of-k of the distilled LM over the previous round's PM (the rejection-sampling data of §2.3),
optionally the distilled LM itself.
"""

from hh.serve.models import DeploymentSpec, Pool, deployed_models
from hh.train.workdir import checkpoint_steps


def round_specs(pool_cfg, round_index: int, distill_dir, previous_ppo=None) -> list[DeploymentSpec]:
    """The deployments of round `round_index` (names say what each is)."""
    if round_index == 0:
        return [DeploymentSpec("distill", str(distill_dir))]
    specs = [DeploymentSpec(f"ppo{round_index - 1}-step{step}", str(previous_ppo), 1, step)
             for step in checkpoint_steps(previous_ppo)[-pool_cfg.snapshots:]]
    if pool_cfg.best_of_k > 1:
        specs.append(DeploymentSpec(f"distill-bo{pool_cfg.best_of_k}", str(distill_dir), pool_cfg.best_of_k))
    if pool_cfg.include_initial:
        specs.append(DeploymentSpec("distill", str(distill_dir)))
    return specs


def build_pool(specs, pool_cfg, pm=None, rows: int = 64, seed: int = 0, lm_loader=None) -> Pool:
    """The round's Pool (one model deployed: it answers both sides)."""
    models = deployed_models(specs, pm, max_new_tokens=pool_cfg.max_new_tokens,
                             temperature=pool_cfg.temperature, rows=rows, lm_loader=lm_loader)
    return Pool(models, "same" if len(models) == 1 else pool_cfg.pairing, (), seed)
