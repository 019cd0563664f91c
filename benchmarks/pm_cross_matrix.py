"""The helpful-vs-harmless cross matrix from a real mixture sweep (Bai et al. 2022 §5.1, Fig 19).

Trains one PM per helpful fraction (0.0, 0.1, …, 1.0 by default: configs/pm.py's `get_sweep`) at a
fixed total of comparisons, then scores every PM on each test set with `hh.eval.pm_eval.cross_matrix`
(JSON + PNG). Smoke-sized PMs trained from scratch on the synthetic world, so the sweep fits a CPU:
`python benchmarks/pm_cross_matrix.py --root runs/cross-matrix` (about 1–2 min per PM on 2 cores).
"""

import argparse
import json
import os
import time

from configs import pm as pm_config
from hh import main
from hh.eval.pm_eval import cross_matrix

REAL_TEST = "hh_rlhf/harmless-base:test[2000:2312]"


def sweep_config(fraction, args):
    """The smoke PM of tests/pm/test_pm_stage.py's learning test, at one helpful fraction."""
    c = pm_config.get_config("smoke")
    c.data.tokenizer, c.model.vocab_size = "sentencepiece", 512
    c.data.train_pairs, c.data.helpful_fraction = args.pairs, float(fraction)
    # room past the training rows for fresh pairs about the training entities (SEEN_TESTS)
    c.data.synthetic_comparisons = args.pairs + 500
    c.data.manual_dir = args.manual_dir
    c.data.tfds_data_dir = os.path.join(os.path.abspath(args.root), "tfds")
    c.train.global_batch_size = c.train.eval_batch_size = 32
    c.optimizer.learning_rate, c.optimizer.schedule, c.optimizer.warmup_steps = 3e-3, "cosine", 20
    c.loop.steps, c.loop.eval_every = args.steps, 0
    return c


def run(args):
    root = os.path.abspath(args.root)
    fractions = [f["data.helpful_fraction"] for f in pm_config.get_sweep()]
    if args.fractions:
        fractions = [float(f) for f in args.fractions.split(",")]
    workdirs, seconds = [], {}
    for fraction in fractions:
        workdir = os.path.join(root, f"pm-helpful-{fraction:.1f}")
        start = time.perf_counter()
        main.run(sweep_config(fraction, args), workdir)   # a finished workdir resumes at its end
        seconds[f"{fraction:.1f}"] = time.perf_counter() - start
        print(f"helpful fraction {fraction:.1f}: {seconds[f'{fraction:.1f}']:.0f} s", flush=True)
        workdirs.append(workdir)
    # Fresh pairs about the training entities (rows past any mixture's): where the labelers' conflict
    # shows, since a PM trained from scratch knows only the entities its pairs mention; then the
    # held-out entities.
    seen = [f"synthetic-{k}:train[{args.pairs}:{args.pairs + 500}]" for k in ("helpful", "harmless")]
    tests = seen + ["synthetic-helpful", "synthetic-harmless"]
    if args.manual_dir:
        tests.append(REAL_TEST)
    result = cross_matrix(workdirs, tests, os.path.join(root, "cross_matrix"))
    result["seconds_per_pm"] = seconds
    result["recipe"] = {"preset": "smoke", "pairs": args.pairs, "steps": args.steps, "batch": 32}
    with open(os.path.join(root, "cross_matrix", "cross_matrix.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--fractions", default="", help="comma list (default: 0.0, 0.1, …, 1.0)")
    parser.add_argument("--manual_dir", default=os.environ.get("HH_RLHF_DIR", "/work/shared/data/hh-rlhf"),
                        help="a local copy of hh-rlhf (default $HH_RLHF_DIR): adds the real "
                             "harmless-base test pairs as a column ('' to skip)")
    run(parser.parse_args())
