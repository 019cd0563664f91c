"""The one entry point: `python -m hh.main --config configs/<stage>.py:<preset> --workdir DIR`.

Override any field with `--config.<path>=<value>` (the config is locked, so a typo fails).
The config's `stage` field picks the stage from `STAGES` (one module per stage).
"""

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from hh.config import ConfigError, validate_counts
from hh.parallel import distributed

STAGES = {
    "lm": "hh.lm.stage",
    "pmp": "hh.pm.stage",
    "pm": "hh.pm.stage",
    "distill": "hh.distill.stage",
    "ppo": "hh.rl.stage",
    "dpo": "hh.dpo.stage",
}


def define_flags():
    """Only when run as the entry point: tools that call `run` (hh.eval.robustness, the pipeline)
    define their own flags, and a required --workdir here would clash with them."""
    config_flags.DEFINE_config_file("config", None, "configs/<stage>.py:<preset>")
    flags.DEFINE_string("workdir", None, "where checkpoints, metrics and config.json go")
    distributed.define_flags()
    flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir):
    """Trains (or resumes) the config's stage in `workdir`; -> the stage's result."""
    if "job" in config:   # configs/pipeline.py, configs/online.py: several stages, each in its own folder
        raise ConfigError(f"config.job={config.job!r} is a pipeline job: run it with `python -m hh.pipeline`")
    if config.get("stage") not in STAGES:
        raise ConfigError(f"config.stage={config.get('stage')!r}: known stages are {sorted(STAGES)}")
    validate_counts(config)   # zero sizes fail here, naming the field, not deep inside a stage
    return importlib.import_module(STAGES[config.stage]).train_and_evaluate(config, workdir)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # orbax and jax log every save at INFO
    f = flags.FLAGS
    distributed.initialize_from_flags()
    try:
        result = run(f.config, f.workdir)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    if getattr(result, "preempted", False):   # saved; the launcher sees the status and resumes
        print(f"preempted at step {result.step}: checkpoint saved in {f.workdir}; rerun the same "
              f"command to resume", file=sys.stderr, flush=True)
        sys.exit(distributed.EXIT_PREEMPTED)


if __name__ == "__main__":
    define_flags()
    app.run(main)
