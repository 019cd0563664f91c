"""The PPO robustness study (Bai et al. 2022 §4.2, Fig. 4; App. B.2): split the comparisons 50/50,
train a "train PM" and a "test PM" on the halves, run PPO against the train PM while the test PM
scores the same samples, and plot both (mean-normalised) rewards against sqrt(KL).

`python -m hh.eval.robustness --init_from LM_OR_DISTILL --root DIR --pm_config configs/pm.py:tiny
--ppo_config configs/ppo.py:tiny,robustness` runs the three stages through `hh.main.run` (the
ordinary stage functions) and writes DIR/ppo/robustness.{png,json}, with the gold accuracy of the
logged samples per iteration beside both PMs' rewards. The study is given its two base
configs, like every stage.
"""

import copy
import json

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from hh import main as hh_main
from hh.data.pm_sources import parse_spec, spec_source
from hh.eval.gold import gold_by_step
from hh.rl.curves import write_robustness_curves
from hh.train.metrics import log_rows


def split_specs(specs, data_cfg, half: int):
    """The first (half=0) or second (half=1) half of each comparison source spec's rows, as specs:
    "synthetic-helpful" -> "synthetic-helpful:train[0:2000]" / "synthetic-helpful:train[2000:4000]"."""
    if half not in (0, 1):
        raise ValueError(f"half={half} must be 0 or 1")
    out = []
    for spec in specs:
        name, split, start, _ = parse_spec(spec, "train")
        rows = len(spec_source(spec, "train", data_cfg))
        middle = start + rows // 2
        lo, hi = (start, middle) if half == 0 else (middle, start + rows)
        out.append(f"{name}:{split}[{lo}:{hi}]")
    return out


def pm_configs(pm_config, init_from: str):
    """Two copies of a PM config (configs/pm.py), identical but for which half of every train
    source they read."""
    configs = []
    for half in (0, 1):
        c = copy.deepcopy(pm_config)
        c.init_from = init_from
        c.data.helpful_sources = split_specs(c.data.helpful_sources, c.data, half)
        c.data.harmless_sources = split_specs(c.data.harmless_sources, c.data, half)
        c.data.train_pairs = c.data.train_pairs // 2
        configs.append(c)
    return configs


def run_study(init_from: str, root, pm_config, ppo_config, pm_steps: int = -1, ppo_steps: int = 0,
              ppo_overrides: dict | None = None) -> dict:
    """Trains the train/test PMs (skipped when their workdirs are finished: the loop resumes at
    the end) and the PPO run, then returns the robustness summary. pm_config, ppo_config: the
    base configs (configs/pm.py, configs/ppo.py with its `robustness` option), copied here, not
    changed; ppo_overrides: dotted field names, e.g. {"ppo.minibatches": 2}."""
    root = epath.Path(root)
    train_cfg, test_cfg = pm_configs(pm_config, init_from)
    for name, cfg in (("train_pm", train_cfg), ("test_pm", test_cfg)):
        cfg.loop.steps = pm_steps
        hh_main.run(cfg, str(root / name))
    ppo = copy.deepcopy(ppo_config)
    ppo.init_from, ppo.reward_model = init_from, str(root / "train_pm")
    ppo.test_reward_model = str(root / "test_pm")
    if ppo_steps:
        ppo.loop.steps = ppo_steps
        ppo.loop.checkpoint_every = max(1, ppo_steps // 4)
    ppo.update_from_flattened_dict(ppo_overrides or {})
    hh_main.run(ppo, str(root / "ppo"))
    return write_robustness_curves(root / "ppo", ppo.curves.fit_fraction, gold_curve(root / "ppo"))


def gold_curve(ppo_dir) -> list:
    """The gold accuracy of the PPO run's logged samples per iteration (hh.eval.gold.gold_by_step):
    Bai et al. §4.2 ask whether the test PM's reward is a fair proxy for the true one; on the
    embedded world the true one is known."""
    path = epath.Path(ppo_dir) / "samples.jsonl"
    return gold_by_step([row for _, row in log_rows(path)]) if path.exists() else []


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    summary = run_study(f.init_from, f.root, f.pm_config, f.ppo_config, f.pm_steps, f.ppo_steps)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    flags.DEFINE_string("init_from", None, "an hh LM or distill workdir: the policy and both PMs start here")
    flags.DEFINE_string("root", None, "where train_pm/, test_pm/ and ppo/ go")
    config_flags.DEFINE_config_file("pm_config", "configs/pm.py:tiny", "the PM config both PMs start from")
    config_flags.DEFINE_config_file("ppo_config", "configs/ppo.py:tiny,robustness",
                                    "the PPO config (with the robustness option: a test PM)")
    flags.DEFINE_integer("pm_steps", -1, "PM steps (-1: one epoch over its half)")
    flags.DEFINE_integer("ppo_steps", 0, "PPO iterations (0: the preset's)")
    flags.mark_flags_as_required(["init_from", "root"])
    app.run(main)
