"""The LM -> PMP -> PM chain, then PM accuracy on REAL harmless-base pairs (Bai et al. 2022 §3).

Trains on a fixed 2,000-pair slice of TFDS hh_rlhf/harmless-base's test split and evaluates on
the remaining 312, reporting accuracy with a 95% Wilson interval vs chance and each stage's wall
time. `python benchmarks/pm_harmless_base.py --preset tiny --seq 256 --root runs/real-tiny`.
"""

import argparse
import json
import math
import os
import time

from configs import lm as lm_config, pm as pm_config, pmp as pmp_config
from hh import main

TRAIN, EVAL = "hh_rlhf/harmless-base:test[0:2000]", "hh_rlhf/harmless-base:test[2000:2312]"


def wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def shape(config, args):
    config.data.seq_len = args.seq
    config.model.dtype = "float32"           # CPU: bfloat16 matmuls are slower, not faster
    config.model.vocab_size = 512            # the run's SentencePiece (512 pieces), not 65,536
    config.train.global_batch_size = config.train.eval_batch_size = args.batch
    config.train.loss_chunk = 0
    return config


def run(args):
    root = os.path.abspath(args.root)
    times, dirs = {}, {s: os.path.join(root, s) for s in ("lm", "pmp", "pm")}
    lm = shape(lm_config.get_config(args.preset), args)
    lm.loop.steps, lm.optimizer.warmup_steps = args.lm_steps, min(30, args.lm_steps // 10)
    lm.loop.eval_every = lm.loop.checkpoint_every = args.lm_steps
    pmp = shape(pmp_config.get_config(args.preset), args)
    pmp.data.train_pairs, pmp.init_from = args.pmp_pairs, dirs["lm"]
    pm = shape(pm_config.get_config(args.preset), args)
    pm.init_from = dirs["pmp"]
    pm.data.helpful_sources, pm.data.harmless_sources = [], [TRAIN]
    pm.data.helpful_fraction, pm.data.train_pairs, pm.data.eval_sources = 0.0, 2000, [EVAL]
    pm.data.manual_dir, pm.data.tfds_data_dir = args.manual_dir, os.path.join(root, "tfds")
    results = {}
    for name, config in (("lm", lm), ("pmp", pmp), ("pm", pm)):
        start = time.perf_counter()
        results[name] = main.run(config, dirs[name]).last_eval
        times[name] = time.perf_counter() - start
        print(f"{name}: {times[name]:.0f} s, eval {results[name]}", flush=True)
    acc, n = results["pm"]["accuracy"], int(results["pm"]["pairs"])
    low, high = wilson(acc * n, n)
    z = (acc - 0.5) / math.sqrt(0.25 / n)
    summary = {"preset": args.preset, "seq_len": args.seq, "batch": args.batch, "eval_pairs": n,
               "accuracy": acc, "wilson_95": [low, high], "z_vs_chance": z,
               "stage_seconds": times, "evals": results,
               "steps": {"lm": lm.loop.steps, "pmp": pmp.loop.steps, "pm": pm.loop.steps}}
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lm_steps", type=int, default=300)
    parser.add_argument("--pmp_pairs", type=int, default=4000)
    parser.add_argument("--manual_dir", default=os.environ.get("HH_RLHF_DIR", "/work/shared/data/hh-rlhf"),
                        help="a local copy of hh-rlhf (default $HH_RLHF_DIR)")
    parser.add_argument("--root", required=True)
    run(parser.parse_args())
