"""PM capacity on the embedded world: held-out accuracy against model size, against the number of
comparisons, and with or without PMP (Askell et al. 2021 §3–4, Fig 5–7; Bai et al. 2022 §3.3).

Every run is the main job's recipe (configs/pipeline.py "tiny": its LM, PMP and PM stage configs),
with only the axis under study changed:

- size: LM pretraining then PM finetuning (no PMP) at each trunk shape of `SIZES`, the same
  documents, tokenizer, steps and pairs for every size;
- comparisons: PMs of the main job's trunk on 1/4×, 1× and 4× the main job's pairs, one epoch each
  (the paper's recipe: more data is also more steps), from the same LMs;
- PMP: at the smallest comparison count, the PM with and without PMP first.

Held-out accuracy is on synthetic-{helpful,harmless}:test, whose entities no PM-training pair
mentions; "seen" is fresh pairs about the training entities. Each cell has `--seeds` seeds (the
LM's and the PM's seed); the JSON has every run, the per-cell mean with a t 95% interval over
seeds, and a log-linear fit accuracy = a + b·log10(non-embedding params) with a bootstrap 95%
interval of b (seeds resampled within each size). A finished workdir resumes at its end, so a
rerun only evaluates.

    python benchmarks/pm_capacity.py --root runs/pm-capacity            # the full grid (~75 min)
    python benchmarks/pm_capacity.py --root runs/pm-capacity --partial --pair_factors 1
                                     # partial finetuning over the same LMs (PMs and PMP only)
    python benchmarks/pm_capacity.py --root runs/pm-capacity --compare \
        runs/pm-capacity/pm_capacity.json runs/pm-capacity/pm_capacity-frozen.json   # the verdict
    python benchmarks/pm_capacity.py --root /tmp/cap --quick            # 2 sizes × 2 seeds, smoke
"""

import argparse
import collections
import json
import os
import time

import numpy as np

from configs import pipeline
from hh import main
from hh.data import synthetic
from hh.data.sources import lm_documents, run_tokenizer
from hh.findings.capacity import non_embedding_params, trunk_shape, with_trunk
from hh.eval import mc
from hh.trained import LoadedLM, LoadedPM

# the trunks of the grid (hh.findings.capacity.with_trunk: heads of 64, 32 below d_model 128, d_ff 4·d)
SIZES = ("d64-l2", "d128-l2", "d256-l2", "d256-l4")
MAIN_SIZE = "d256-l2"          # the main job's tiny trunk
PAIR_FACTORS = (0.25, 1.0, 4.0)
EVAL_PAIRS = 400               # per tranche and split
EVAL_SEED = 7                  # the eval pairs' sampling seed (the PM trains on seed `data.seed`)
PARTIAL_PAIRS = (2000, 3840)     # --partial: PMP and PM pairs (3× the main job's PM pairs)


def trunk(cfg, size: str):
    """The stage config `cfg` at trunk shape `size` (in place); a frozen lower half stays the lower half."""
    shaped = with_trunk(cfg, size).model
    for field in ("d_model", "n_layers", "d_ff", "d_head", "n_heads"):
        cfg.model[field] = shaped[field]
    if cfg.optimizer.frozen:
        cfg.optimizer.frozen = pipeline.lower_half(trunk_shape(size)[1])
    return cfg


def base_config(args):
    c = pipeline.get_config("tiny")
    for stage in ("lm", "pmp", "pm"):
        c[stage].data.world_size = args.world
    if args.quick:
        c.lm.loop.steps, c.lm.loop.eval_every, c.lm.loop.checkpoint_every = 40, 0, 40
        c.lm.data.synthetic_documents, c.lm.optimizer.warmup_steps = 1500, 4
        c.pmp.data.train_pairs = 64
    if args.lm_steps:
        c.lm.loop.steps = c.lm.loop.checkpoint_every = args.lm_steps
        c.lm.loop.eval_every = 0
    for stage in ("lm", "pmp", "pm"):
        c[stage].loop.eval_every = 0
    if args.lm_documents:
        c.lm.data.synthetic_documents = args.lm_documents
    if args.partial:   # trunk() turns the frozen pattern into each size's own lower half
        c.pmp.optimizer.frozen = c.pm.optimizer.frozen = pipeline.lower_half(2)
        c.pmp.data.train_pairs, c.pm.data.train_pairs = PARTIAL_PAIRS
    if args.pm_pairs:
        c.pm.data.train_pairs = args.pm_pairs
    return c


def pm_recipe(c) -> dict:
    """What the JSON records of the PM recipe every size shares."""
    return dict(pairs=c.pm.data.train_pairs, steps=c.pm.loop.steps, epochs=c.pm.train.epochs,
                learning_rate=c.pm.optimizer.learning_rate, frozen=c.pm.optimizer.frozen,
                batch=c.pm.train.global_batch_size)


def workdir_tag(args) -> str:
    """"-<tag>" in PMP/PM workdir and result names: a second PM recipe over the same LMs."""
    return f"-{args.tag}" if args.tag else ""


def tokenizer_dir(c, root) -> str:
    """One SentencePiece model for every run (trained once on the LM documents)."""
    folder = os.path.join(root, "tokenizer")
    data = c.lm.data
    run_tokenizer(data, lm_documents(data)[0], folder)
    return os.path.join(folder, "tokenizer")


def timed(config, workdir, seconds):
    start = time.perf_counter()
    main.run(config, workdir)
    seconds[os.path.basename(workdir)] = round(time.perf_counter() - start, 1)


def train_lm(c, root, size, seed, tokenizer, seconds) -> str:
    cfg = c.lm.copy_and_resolve_references()
    cfg.seed, cfg.data.tokenizer = seed, tokenizer
    trunk(cfg, size)
    workdir = os.path.join(root, f"lm-{size}-s{seed}")
    timed(cfg, workdir, seconds)
    return workdir


def train_pm(c, root, name, size, seed, init_from, pairs, seconds, pmp=False, tag="") -> str:
    if pmp:
        cfg = c.pmp.copy_and_resolve_references()
        cfg.seed, cfg.init_from = seed, init_from
        trunk(cfg, size)
        init_from = os.path.join(root, f"pmp{tag}-{name}")
        timed(cfg, init_from, seconds)
    cfg = c.pm.copy_and_resolve_references()
    cfg.seed, cfg.init_from, cfg.data.train_pairs = seed, init_from, pairs
    cfg.data.synthetic_comparisons = max(cfg.data.synthetic_comparisons, pairs)
    trunk(cfg, size)
    workdir = os.path.join(root, f"pm{tag}-{name}")
    timed(cfg, workdir, seconds)
    return workdir


def eval_rows(world, split):
    return {kind: synthetic.comparisons(kind, EVAL_PAIRS, EVAL_SEED, split, world) for kind in synthetic.KINDS}


def pm_accuracy(workdir, rows_by_split) -> dict:
    """{split: accuracy, split/tranche: …, split/family: …} (ties count half)."""
    pm, out = LoadedPM(workdir), {}
    for split, by_kind in rows_by_split.items():
        every, groups = [], collections.defaultdict(list)
        for kind, rows in by_kind.items():
            chosen, rejected = pm.scores(rows)
            right = (chosen > rejected) + 0.5 * (chosen == rejected)
            every += list(right)
            groups[f"{split}/{kind}"] += list(right)
            for row, r in zip(rows, right):
                groups[f"{split}/{kind}/{row['family']}{'-conflict' if row['conflict'] else ''}"].append(r)
        out[split] = float(np.mean(every))
        out.update({k: float(np.mean(v)) for k, v in sorted(groups.items())})
    return out


def likelihood_accuracy(lm_workdir, rows_by_split) -> dict:
    """{"loglik/<split>": accuracy} of ranking each pair by the LM's log-likelihood of the response
    given the prompt: no PM, no training on pairs. What the LM knows of the entities, read the way
    it was learned (next tokens); the PM must learn to read it at one end-of-context token."""
    scorer, out = mc.Scorer(LoadedLM(lm_workdir)), {}
    for split, by_kind in rows_by_split.items():
        rows = [r for kind_rows in by_kind.values() for r in kind_rows]
        ll = scorer.loglikelihoods([(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")])["sum"]
        chosen, rejected = ll[0::2], ll[1::2]
        out[f"loglik/{split}"] = float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))
    return out


def lm_knowledge(workdir, root, world) -> float:
    """Zero-shot multiple-choice accuracy on the world's facts (no arithmetic items)."""
    path = os.path.join(root, "world_questions.jsonl")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.writelines(json.dumps(q) + "\n" for q in synthetic.world_questions(0, world_size=world))
    result = mc.evaluate_model(LoadedLM(workdir), [mc.parse_task(f"jsonl:{path}")])
    return float(next(iter(result.values()))["accuracy_sum"])


def interval(values) -> dict:
    """mean and a t 95% interval over seeds."""
    from scipy import stats
    v = np.asarray(values, float)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "lo": float(v.mean() - half), "hi": float(v.mean() + half), "n": len(v)}


def loglinear_fit(per_size: dict, rng_seed: int = 0, draws: int = 2000) -> dict:
    """accuracy = a + b·log10(params) by least squares over every run; b's bootstrap 95% interval
    resamples seeds within each size."""
    xs = {size: np.log10(non_embedding_params(size)) for size in per_size}

    def fit(samples):
        x = np.concatenate([[xs[s]] * len(v) for s, v in samples.items()])
        y = np.concatenate([v for v in samples.values()])
        b, a = np.polyfit(x, y, 1)
        return a, b

    a, b = fit({s: np.asarray(v) for s, v in per_size.items()})
    rng = np.random.default_rng(rng_seed)
    slopes = [fit({s: rng.choice(np.asarray(v), len(v)) for s, v in per_size.items()})[1] for _ in range(draws)]
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return {"a": float(a), "b": float(b), "b_lo": float(lo), "b_hi": float(hi)}


def run(args):
    tag = workdir_tag(args)
    root = os.path.abspath(args.root)
    os.makedirs(root, exist_ok=True)
    c = base_config(args)
    tokenizer = tokenizer_dir(c, root)
    sizes = args.sizes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    main_pairs = c.pm.data.train_pairs if not args.quick else 160
    rows = {"test": None, "seen": None}
    rows["test"] = eval_rows(args.world, "test")
    rows["seen"] = {k: synthetic.comparisons(k, EVAL_PAIRS, EVAL_SEED, "train", args.world) for k in synthetic.KINDS}
    seconds, runs = {}, []
    lms = {}
    for size in sizes:
        for seed in seeds:
            lms[size, seed] = train_lm(c, root, size, seed, tokenizer, seconds)
            pm = train_pm(c, root, f"{size}-s{seed}", size, seed, lms[size, seed], main_pairs, seconds,
                          tag=tag)
            runs.append({"axis": "size", "size": size, "params": non_embedding_params(size), "seed": seed,
                         "pairs": main_pairs, "pmp": False, "lm_knowledge": lm_knowledge(lms[size, seed], root, args.world),
                         **likelihood_accuracy(lms[size, seed], rows), **pm_accuracy(pm, rows)})
            print(json.dumps(runs[-1]), flush=True)
    data_size = MAIN_SIZE if MAIN_SIZE in sizes else sizes[-1]
    factors = [] if args.quick else [float(f) for f in args.pair_factors.split(",")]
    for factor in factors:
        pairs = int(main_pairs * factor)
        for seed in seeds:
            if factor == 1.0:
                continue   # the size axis's run
            pm = train_pm(c, root, f"{data_size}-p{pairs}-s{seed}", data_size, seed, lms[data_size, seed], pairs, seconds,
                          tag=tag)
            runs.append({"axis": "pairs", "size": data_size, "params": non_embedding_params(data_size), "seed": seed,
                         "pairs": pairs, "pmp": False, **pm_accuracy(pm, rows)})
            print(json.dumps(runs[-1]), flush=True)
    pmp_pairs = int(main_pairs * min(factors)) if factors else main_pairs
    for seed in seeds:
        pm = train_pm(c, root, f"{data_size}-p{pmp_pairs}-pmp-s{seed}", data_size, seed, lms[data_size, seed],
                      pmp_pairs, seconds, pmp=True, tag=tag)
        runs.append({"axis": "pmp", "size": data_size, "params": non_embedding_params(data_size), "seed": seed,
                     "pairs": pmp_pairs, "pmp": True, **pm_accuracy(pm, rows)})
        print(json.dumps(runs[-1]), flush=True)
    result = summarise(runs, sizes, data_size, main_pairs, pmp_pairs, args, pm_recipe(c))
    result["seconds"] = seconds
    with open(os.path.join(root, f"pm_capacity{tag}.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(result, os.path.join(root, f"pm_capacity{tag}.png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "seconds")}, indent=2))
    return result


def summarise(runs, sizes, data_size, main_pairs, pmp_pairs, args, recipe: dict) -> dict:
    size_runs = [r for r in runs if r["axis"] == "size"]
    by_size = {s: [r for r in size_runs if r["size"] == s] for s in sizes}
    per_size = {s: {"params": non_embedding_params(s),
                    **{m: interval([r[m] for r in rs]) for m in ("test", "seen", "lm_knowledge", "loglik/test")}}
                for s, rs in by_size.items()}
    pairs_axis = collections.defaultdict(list)
    for r in runs:
        if not r["pmp"] and r["size"] == data_size:
            pairs_axis[r["pairs"]].append(r["test"])
    no_pmp = [r["test"] for r in runs if not r["pmp"] and r["size"] == data_size and r["pairs"] == pmp_pairs]
    with_pmp = [r["test"] for r in runs if r["pmp"]]
    return {
        "world": args.world, "seeds": args.seeds, "quick": bool(args.quick), "tag": args.tag,
        "pm_recipe": recipe,
        "recipe": "configs/pipeline.py tiny: LM, PMP and PM stage configs; trunk shape varied",
        "per_size": per_size,
        "fit_test": loglinear_fit({s: [r["test"] for r in rs] for s, rs in by_size.items()}),
        "fit_seen": loglinear_fit({s: [r["seen"] for r in rs] for s, rs in by_size.items()}),
        "per_pairs": {str(p): interval(v) for p, v in sorted(pairs_axis.items())},
        "pmp": {"pairs": pmp_pairs, "with": interval(with_pmp), "without": interval(no_pmp) if no_pmp else None,
                "difference": interval(np.subtract(with_pmp, no_pmp)) if len(no_pmp) == len(with_pmp) else None},
        "runs": runs,
    }


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    ax = axes[0]
    for metric, colour in (("test", "C0"), ("seen", "C1")):
        xs = [v["params"] for v in result["per_size"].values()]
        means = [v[metric]["mean"] for v in result["per_size"].values()]
        err = [[m - v[metric]["lo"] for m, v in zip(means, result["per_size"].values())],
               [v[metric]["hi"] - m for m, v in zip(means, result["per_size"].values())]]
        ax.errorbar(xs, means, yerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3,
                    label=f"{'held-out' if metric == 'test' else 'seen'} entities")
        fit = result[f"fit_{metric}"]
        grid = np.geomspace(min(xs), max(xs), 20)
        ax.plot(grid, fit["a"] + fit["b"] * np.log10(grid), color=colour, alpha=0.6,
                label=f"b = {fit['b']:.3f} [{fit['b_lo']:.3f}, {fit['b_hi']:.3f}]")
    ax.set_xscale("log"), ax.set_xlabel("non-embedding parameters"), ax.set_ylabel("PM accuracy")
    ax.axhline(0.5, color="grey", lw=0.5), ax.legend(fontsize=7), ax.set_title("PM accuracy vs size")
    ax = axes[1]
    for metric, label, colour in (("lm_knowledge", "LM: multiple-choice facts", "C2"),
                                  ("loglik/test", "LM log-likelihood ranks held-out pairs", "C3")):
        cells = [(v["params"], v[metric]) for v in result["per_size"].values() if metric in v]
        ax.errorbar([x for x, _ in cells], [c["mean"] for _, c in cells],
                    yerr=np.nan_to_num([[c["mean"] - c["lo"] for _, c in cells], [c["hi"] - c["mean"] for _, c in cells]]),
                    fmt="o-", color=colour, capsize=3, label=label)
    ax.set_xscale("log"), ax.set_xlabel("non-embedding parameters"), ax.set_ylabel("accuracy")
    ax.legend(fontsize=7), ax.set_title("what the LM knows vs size")
    ax = axes[2]
    main_size = next(r["size"] for r in result["runs"] if r["axis"] == "pmp")
    for metric, label, colour in (("test", "held-out entities", "C0"), ("seen", "seen entities", "C1")):
        by_pairs = collections.defaultdict(list)
        for r in result["runs"]:
            if not r["pmp"] and r["size"] == main_size:
                by_pairs[r["pairs"]].append(r[metric])
        cells = [(p, interval(v)) for p, v in sorted(by_pairs.items())]
        ax.errorbar([p for p, _ in cells], [c["mean"] for _, c in cells],
                    yerr=np.nan_to_num([[c["mean"] - c["lo"] for _, c in cells], [c["hi"] - c["mean"] for _, c in cells]]),
                    fmt="o-", color=colour, capsize=3, label=label)
    ax.set_xscale("log"), ax.minorticks_off()
    ax.set_xticks([p for p, _ in cells], [str(p) for p, _ in cells]), ax.set_xlabel(f"training comparisons ({main_size})")
    ax.set_ylabel("PM accuracy"), ax.legend(fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.5), ax.set_title("PM accuracy vs comparisons")
    ax = axes[3]
    cells = [("no PMP", result["pmp"]["without"]), ("PMP", result["pmp"]["with"])]
    cells = [(n, v) for n, v in cells if v]
    ax.bar([n for n, _ in cells], [v["mean"] for _, v in cells],
           yerr=np.nan_to_num([[v["mean"] - v["lo"] for _, v in cells], [v["hi"] - v["mean"] for _, v in cells]]),
           capsize=4)
    ax.axhline(0.5, color="grey", lw=0.5), ax.set_ylim(0, 1)
    ax.set_title(f"held-out accuracy at {result['pmp']['pairs']} pairs"), ax.set_ylabel("held-out accuracy")
    fig.suptitle(f"PM capacity on the '{result['world']}' world (seeds {result['seeds']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Written before the comparison was run: the main job takes recipe B over recipe A only when the
# paired (same LM and seed) difference of held-out accuracy at MAIN_SIZE, B − A over the seeds of
# the size axis, has a 95% t-interval that lies above 0.
VERDICT_RULE = "adopt B over A iff the 95% t-interval of the paired held-out difference at the main size is > 0"


def compare(path_a: str, path_b: str) -> dict:
    """The verdict of VERDICT_RULE between two grids' JSONs (A, B: e.g. full and partial finetuning)."""
    def held_out(path):
        with open(path) as f:
            runs = json.load(f)["runs"]
        return {r["seed"]: r["test"] for r in runs if r["axis"] == "size" and r["size"] == MAIN_SIZE}
    a, b = held_out(path_a), held_out(path_b)
    seeds = sorted(set(a) & set(b))
    difference = interval([b[s] - a[s] for s in seeds])
    return {"rule": VERDICT_RULE, "a": path_a, "b": path_b, "seeds": seeds,
            "a_mean": float(np.mean([a[s] for s in seeds])), "b_mean": float(np.mean([b[s] for s in seeds])),
            "difference": difference, "adopt_b": bool(difference["lo"] > 0)}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--world", default="tiny", help="data.world_size of every run")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lm_steps", type=int, default=0, help="LM steps (0: the main job's)")
    parser.add_argument("--lm_documents", type=int, default=0,
                        help="LM pretraining documents (0: the main job's); a larger world needs more")
    parser.add_argument("--pm_pairs", type=int, default=0,
                        help="PM pairs at factor 1, one epoch (0: the recipe's: the main job's, or --partial's)")
    parser.add_argument("--pair_factors", default=",".join(map(str, PAIR_FACTORS)),
                        help="the comparisons axis: multiples of the main job's PM pairs")
    parser.add_argument("--partial", action="store_true",
                        help="partial finetuning: PMP and PM keep the embeddings and the lower half of the "
                             "layers frozen (optimizer.frozen), on PARTIAL_PAIRS pairs; tag 'frozen' by default")
    parser.add_argument("--tag", default="", help="names a second PM recipe's workdirs and outputs "
                        "(e.g. after changing the pipeline's PM config): the LMs are reused")
    parser.add_argument("--compare", nargs=2, metavar=("A_JSON", "B_JSON"),
                        help="print VERDICT_RULE's verdict between two grids and exit")
    parser.add_argument("--plot_only", action="store_true", help="redraw the PNG from <root>/pm_capacity.json")
    parser.add_argument("--quick", action="store_true",
                        help="the slow test's variant: a short LM, 160 pairs, no comparisons axis")
    args = parser.parse_args(argv)
    if args.partial and not args.tag:
        args.tag = "frozen"
    if args.quick and args.sizes == ",".join(SIZES):
        args.sizes, args.seeds = "d64-l2,d256-l2", args.seeds if args.seeds != "0,1,2" else "0,1"
    if args.quick and args.world == "tiny":
        args.world = "smoke"
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.compare:
        print(json.dumps(compare(*arguments.compare), indent=2))
    elif arguments.plot_only:
        name = os.path.join(arguments.root, "pm_capacity" + (f"-{arguments.tag}" if arguments.tag else ""))
        with open(name + ".json") as f:
            plot(json.load(f), name + ".png")
    else:
        run(arguments)
