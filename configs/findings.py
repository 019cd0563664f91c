"""The findings job: the paper's claims, measured on the embedded world over several seeds, each with
a verdict computed by a rule written here before the run. `python -m hh.pipeline --config
configs/findings.py:tiny --workdir DIR` (`make findings`); "smoke" is the slow test's variant,
which checks the machinery, not the verdicts.

What runs (hh/pipeline/findings.py), each in its own folder under the workdir, resumable:
  main-s<k>        the main job (configs/pipeline.py) with every training stage's seed set to k:
                   F2 tension, F3 calibration, F6 gold Elo, F7 best-of-k vs PPO, F9 OOD, F10 tax
  capacity         PMs over trunk sizes × seeds and comparison counts, with and without PMP, from
                   LMs of the main job's recipe (the main-s<k> LMs at the main trunk): F1, F11
  robustness-s<k>  a train PM and a test PM on halves of the comparisons, PPO against the train
                   PM from main-s<k>'s LM, gold-judged logged samples: F4, F5
  online-s<k>      the iterated online loop (configs/online.py) at seed k: F8
  frontier-s<k>    PPO, DPO, IPO and best-of-k from main-s<k>'s LM at several strengths, gold
                   accuracy and gold Elo against KL (hh/findings/frontier.py): F12
  findings         findings.json, findings.md and one PNG per finding (hh/findings/)

Seeds change every training stage's `seed` (initialisation and data order); the world, the data
samples and the evaluation prompts stay fixed, so seeds measure training noise.

Verdict rules (`verdicts`): per finding, criteria "<measure> <op> <threshold>" over the per-seed
values of a measure (hh/findings/measures.py names them). A criterion is met when the 95% interval of
the measure lies wholly on the claimed side of the threshold, failed when it lies wholly on the other
side, and undecided otherwise; a finding is "reproduced" when every criterion is met, "not
reproduced" when any fails, else "inconclusive" (hh/findings/verdicts.py). The rules below were
written from the papers' claims before the first run and are not to be tuned after one.
"""

import ml_collections

from configs import common, dpo, online, pipeline, ppo

# id: (the paper's claim, where the paper makes it, the criteria)
VERDICTS = {
    "F1": ("PM accuracy rises log-linearly with model size and with the number of comparisons",
           "Askell et al. 2021 Fig. 6; Bai et al. 2022 Fig. 7, App. A.3",
           ["size_slope > 0", "data_slope > 0"]),
    "F2": ("A PM trained on one tranche is below chance on the other tranche's conflicting pairs, and the "
           "mixture trades the two off",
           "Bai et al. 2022 §5.1, Fig. 19",
           ["helpful_only_on_harmless_conflicts < 0.5", "harmless_only_on_helpful_conflicts < 0.5",
            "mixture_gain_on_helpful_conflicts > 0", "mixture_gain_on_harmless_conflicts > 0"]),
    "F3": ("The mixture PM is well calibrated",
           "Bai et al. 2022 §3.3, Fig. 9",
           ["ece < 0.1"]),
    "F4": ("PM reward is roughly linear in sqrt(KL) early in PPO, and the true reward rises with it",
           "Bai et al. 2022 §4.3, Fig. 4, Fig. 13",
           ["train_pm_early_slope > 0", "train_pm_early_r2 > 0.5", "gold_early_slope > 0"]),
    "F5": ("At high KL the train PM's reward keeps rising while the test PM's and the true reward flatten or "
           "fall",
           "Bai et al. 2022 §4.2, Fig. 4 (robustness)",
           ["train_pm_late_slope > 0", "train_minus_test_late_slope > 0", "gold_late_slope < 0.02"]),
    "F6": ("Gold Elo orders the RLHF policy above the context-distilled model above the plain LM",
           "Bai et al. 2022 Fig. 1",
           ["gold_elo_ppo_minus_distill > 0", "gold_elo_distill_minus_lm > 0"]),
    "F7": ("At equal KL, PPO is at least as good as best-of-k rejection sampling (within 0.05 gold accuracy)",
           "Bai et al. 2022 §4.1, App. B.6, Fig. 36",
           ["gold_ppo_minus_best_of > -0.05"]),
    "F8": ("Iterated online training raises the policy above the static-data (round 0) policy",
           "Bai et al. 2022 §4.5, Fig. 1",
           ["judge_elo_last_minus_first > 0"]),
    "F9": ("Relative Mahalanobis beats Mahalanobis on near-OOD; few-shot outlier exposure raises AUROC; "
           "both beat the lexical-novelty baseline",
           "Bai et al. 2022 §5.4, Fig. 22",
           ["relative_minus_mahalanobis > 0", "exposure_minus_relative > 0", "detector_minus_novelty > 0.05"]),
    "F10": ("RLHF costs small models accuracy on the world's questions (an alignment tax)",
            "Bai et al. 2022 §4.6, Fig. 3",
            ["tax < 0"]),
    "F11": ("PMP improves PM accuracy at small comparison counts",
            "Askell et al. 2021 §5, Fig. 10",
            ["pmp_gain > 0"]),
    # Written before F12's first run. The frontier value of a method is the best gold accuracy
    # (mean of the two labelers) among the initial policy and the method's runs whose KL to the
    # initial policy is within frontier.kl_budget nats (hh/findings/measures.py f12).
    "F12": ("At equal KL to the initial policy, DPO reaches a higher gold score than PPO",
            "Rafailov et al. 2023 §6.1, Fig. 2",
            ["frontier_dpo_minus_ppo > 0"]),
}

# The main PM's data fields that decide which comparisons it trains on: F12's DPO and IPO copy them.
PM_PAIR_FIELDS = ("helpful_sources", "harmless_sources", "helpful_fraction", "train_pairs", "world_size",
                  "synthetic_comparisons", "source", "seed", "tokenizer")

# Per preset: seeds per multi-seed experiment, the capacity grid, and the robustness study's PPO.
SHAPES = {
    "tiny": dict(seeds=[0, 1, 2], online_seeds=[0, 1, 2], capacity_seeds=[0, 1, 2], sizes=["d64-l2", "d128-l2", "d256-l2"],
                 pair_factors=[0.25, 1.0, 4.0], robustness_ppo_steps=40, eval_pairs=400,
                 frontier=dict(ppo_kl_coefs=[0.001, 0.01, 0.1], dpo_betas=[0.03, 0.1, 0.3], ipo_taus=[0.03, 0.1, 0.3],
                               best_of_ks=[4, 16], n_prompts=64)),
    # smoke: no online seed (F8 is then "not measured"); tests/pipeline/test_online.py measures F8 on
    # the online loop's own smoke run, so the slow suite does not train the loop a second time
    "smoke": dict(seeds=[0, 1], online_seeds=[], capacity_seeds=[0], sizes=["d32-l2", "d64-l2"], pair_factors=[0.5, 1.0, 2.0],
                  robustness_ppo_steps=4, eval_pairs=32,
                  frontier=dict(ppo_kl_coefs=[0.01], dpo_betas=[0.1], ipo_taus=[0.1], best_of_ks=[2], n_prompts=4)),
}


def get_config(arg="tiny"):
    preset = arg or "tiny"
    if preset not in SHAPES:
        raise ValueError(f"configs/findings.py preset {preset!r}: use one of {sorted(SHAPES)}")
    shape = SHAPES[preset]
    config = ml_collections.ConfigDict()
    config.job = "findings"
    config.preset = preset
    config.seeds = list(shape["seeds"])
    config.main = pipeline.get_config(preset)           # run once per seed
    config.online = online.get_config(preset)           # run once per online seed
    config.online_seeds = list(shape["online_seeds"])
    # The capacity grid (F1, F11): LMs of the main job's LM recipe at each trunk, a PM of the main
    # job's PM recipe from each (no PMP: Askell et al.'s size scans finetune the LM directly), on
    # the main PM's pairs × each factor at the main trunk, and at the smallest factor with PMP first.
    config.capacity = ml_collections.ConfigDict(dict(
        seeds=list(shape["capacity_seeds"]),      # a subset of `seeds`: each reuses that seed's main LM
        sizes=list(shape["sizes"]), pair_factors=list(shape["pair_factors"]), eval_pairs=shape["eval_pairs"],
        eval_seed=7))
    # The robustness study (F4, F5): hh.eval.robustness from each seed's LM, the main PM's recipe
    # split in halves, the PPO preset's robustness variant.
    config.robustness = ml_collections.ConfigDict(dict(
        pm=ml_collections.ConfigDict(config.main.pm.to_dict()),
        ppo=ppo.get_config(f"{preset},robustness"),
        ppo_steps=shape["robustness_ppo_steps"]))
    rb = config.robustness.ppo
    for field in ("seq_len", "max_prompt_len", "world_size", "tokenizer"):
        rb.data[field] = config.main.ppo.data[field]
    rb.model.vocab_size = config.main.ppo.model.vocab_size
    if preset == "smoke":
        for path, value in pipeline.SHORTENED["smoke"].items():
            if path.startswith("ppo."):
                pipeline.set_path(config.robustness, path, value)
    rb.rollout.samples_every = 1 if preset == "smoke" else 5    # gold points on both halves of the run
    # The offline-vs-online comparison (F12): PPO at several fixed λ_KL, DPO at several β, IPO at
    # several τ and best-of-k, all from one initial policy, with the main job's PM as PPO's reward
    # and its training comparisons as DPO's and IPO's data (hh/findings/frontier.py).
    # The initial policy is the seed's LM, not its distilled policy: in this world the distilled
    # policy is at the gold judge's floor (its teacher reads the HHH prompt at in-document
    # distances the LM never trained on, as docs/findings.md measures), and a comparison of
    # methods that all start at the floor would measure nothing.
    shape_frontier = shape["frontier"]
    config.frontier = ml_collections.ConfigDict(dict(
        initial="lm", kl_budget=4.0, prompts=["synthetic-helpful:test", "synthetic-harmless:test"],
        max_new_tokens=config.main.elo.max_new_tokens, eval_seed=0, **shape_frontier))
    config.frontier.ppo = ml_collections.ConfigDict(config.main.ppo.to_dict())
    config.frontier.dpo = dpo.get_config(preset)
    for field in PM_PAIR_FIELDS:      # the PM's comparisons, so DPO, IPO and the PM see the same pairs
        config.frontier.dpo.data[field] = config.main.pm.data[field]
    # The PM's context (prompt + response): this world's dialogues fit in it, and the dpo preset's
    # 256 positions would double the cost of every step with padding. The reference's log-probs are
    # computed once per run (the same losses as per batch: tests/dpo), so a step costs the two
    # policy passes only.
    d = config.frontier.dpo.data
    d.seq_len = config.main.pm.data.seq_len
    d.max_response_len = config.main.ppo.rollout.max_new_tokens
    d.max_prompt_len = d.seq_len - d.max_response_len
    config.frontier.dpo.dpo.reference = "cached"
    config.frontier.dpo.model.vocab_size = config.main.pm.model.vocab_size
    config.verdicts = ml_collections.ConfigDict(
        {fid: ml_collections.ConfigDict(dict(claim=claim, source=source, criteria=list(criteria)))
         for fid, (claim, source, criteria) in VERDICTS.items()})
    return common.with_tuples(config)
