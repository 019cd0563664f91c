"""`python -m hh.pipeline --config configs/<job>.py:<preset> --workdir DIR [--force STEP,...]
[--until STEP]`, one progress line per step. The config's `job` picks the steps (jobs.py):
configs/pipeline.py the main job (tokenizer → LM → PMP → PM → PM eval → distillation → PPO →
best-of-k → Elo → OOD → report), configs/online.py the iterated online loop. Rerunning skips the
steps that finished with the same config and inputs and resumes an interrupted one from its last
checkpoint.
"""

import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from hh.config import ConfigError
from hh.parallel import distributed
from hh.pipeline.jobs import run_job

config_flags.DEFINE_config_file("config", None, "configs/pipeline.py:<preset> or configs/online.py:<preset>")
flags.DEFINE_string("workdir", None, "one folder per step goes under it; report/report.md at the end")
flags.DEFINE_list("force", [], "steps to rerun from scratch even if they finished (their old "
                  "folders are kept as <step>.stale-<n>)")
flags.DEFINE_string("until", "", "stop after this step")
# a job on a multi-host TPU slice: the same command on every host; only process 0 writes files
distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # orbax and jax log every save at INFO
    distributed.initialize_from_flags()
    start = time.perf_counter()
    try:
        run_job(f.config, f.workdir, f.until, f.force)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"pipeline finished in {time.perf_counter() - start:.0f} s: {f.workdir}/report/report.md"
          if not f.until or f.until == "report" else
          f"pipeline stopped after {f.until} in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    app.run(main)
