"""Iterated "online" RLHF (Bai et al. 2022 §4.5, App. B.3–B.4), the online job of hh.pipeline:
`python -m hh.pipeline --config configs/online.py:tiny --workdir DIR`.

Setup: tokenizer → LM → HHH context distillation (the initial policy); the gold LM (twice the LM's
layers, the same documents) → the gold PM (as Gao et al. 2022's gold reward model: a larger model
than the round PMs, trained on comparisons about entities none of theirs mention; the simulated
labeler when `collect.labeler="gold"`, otherwise a second judge beside the world's exact one).
Then per round r:
  collect  deploy the pool (round 0: the distilled LM; later: the previous round's latest PPO
           snapshots plus best-of-k of the distilled LM over the previous PM) and collect
           `collect.comparisons` comparisons through the comparison store, from the simulated
           labeler (`collect.labeler`: the world's labelers with noise, or the gold PM) or from
           people through the interface (`collect.source`);
  data     mix the fresh comparisons with earlier rounds' and the static data (`mix`);
  pm       train a NEW PM from the LM on that mixture;
  ppo      train a NEW policy from the distilled LM against it (K = 4 epochs, as the online runs);
  eval     the round's policy on held-out prompts, scored by the world's exact judge, the gold PM
           and the round's own PM.
The report: the exact judge's accuracy and Elo of each round's policy, the gold PM's win rate and
Elo against round 0's, PM-predicted Elo beside them, and PM accuracy on fresh vs static
comparisons, with two plots. docs/online.md.

Stage sections are the stage files' own configs (override e.g. `--config.ppo.loop.steps=20`); the
loop fills in the links (init_from, reward_model, tokenizer, data files) itself.
"""

import ml_collections

from configs import common, distill, lm, pipeline, pm, ppo
from configs.pipeline import set_path

SETUP_STAGES = ("lm", "gold_lm", "distill", "gold", "pm", "ppo")
# The gold LM (and so the gold PM) has this many times the round LM's layers: the simulated
# labeler is a larger model than the PMs it labels for, as Gao et al. 2022's gold reward model.
GOLD_DEPTH = 2
# Each round's PM trains on its data step's mixture (`mix.train_pairs`), whatever the section says.
SET_BY_THE_LOOP = ("pm.data.train_pairs",)

# Where the loop's budget differs from the main job's shortened stages (configs/pipeline.py), and
# the gold labeler's. The tiny budget: 3 rounds in under 10 minutes on 2 CPU cores (docs/online.md).
LOOP_OVERRIDES = {
    "tiny": {
        "lm.loop.steps": 100, "lm.optimizer.warmup_steps": 10, "lm.loop.eval_every": 100,
        "lm.data.synthetic_documents": 5000,
        "distill.data.distill_texts": 320, "distill.data.eval_texts": 32, "distill.loop.steps": 40,
        "distill.loop.checkpoint_every": 40,
        # the gold labeler: GOLD_DEPTH x the round PMs' layers, trained on 2.5x their comparisons,
        # about the world's gold entities only (disjoint from every round PM's), another seed
        "gold.data.seq_len": 128, "gold.data.train_pairs": 1280, "gold.data.eval_comparisons": 200,
        "gold.optimizer.learning_rate": 3e-4,
        "pm.data.eval_comparisons": 200,
        "ppo.loop.steps": 8, "ppo.loop.checkpoint_every": 4, "ppo.rollout.samples_every": 4,
    },
    "smoke": {
        "lm.data.synthetic_documents": 2000, "lm.loop.steps": 30, "lm.loop.checkpoint_every": 30,
        "lm.optimizer.warmup_steps": 3,
        "distill.data.distill_texts": 32, "distill.data.eval_texts": 8, "distill.loop.steps": 4,
        "distill.loop.checkpoint_every": 4, "distill.data.synthetic_documents": 300,
        "gold.data.train_pairs": 96, "gold.data.eval_comparisons": 32,
        "pm.data.eval_comparisons": 32,
        "ppo.loop.steps": 2, "ppo.loop.checkpoint_every": 1, "ppo.rollout.samples_every": 1,
    },
}


def shortened(preset: str) -> dict:
    """The stage overrides at `preset`: the main job's for the stages the loop shares with it, then
    the loop's own."""
    shared = {path: value for path, value in pipeline.SHORTENED.get(preset, {}).items()
              if path.split(".")[0] in SETUP_STAGES and path not in SET_BY_THE_LOOP}
    return {**shared, **LOOP_OVERRIDES.get(preset, {})}


# Per preset: comparisons per round, PM training pairs per round, eval prompts, response length.
ROUND_SHAPES = {
    "tiny": dict(comparisons=256, train_pairs=512, eval_prompts=64, max_new_tokens=32, temperature=0.5,
                 labeler="rule"),
    # smoke: the gold PM labels (the rule judge would find every smoke sample wrong, tie every pair
    # and keep none); its margins are ~1e-4, so a tiny T gives its labels some strength
    "smoke": dict(comparisons=24, train_pairs=64, eval_prompts=8, max_new_tokens=16, temperature=1e-5,
                  labeler="gold"),
}
# Bai et al.: ~weekly rounds of ~4-5k comparisons (22k online comparisons over ~5 weeks).
PAPER_ROUND = dict(comparisons=4000, train_pairs=100000, eval_prompts=512, max_new_tokens=128, temperature=0.5,
                   labeler="rule")


def get_config(arg="tiny"):
    preset = arg or "tiny"
    config = ml_collections.ConfigDict()
    config.job = "online"            # hh.pipeline runs this job's steps (hh/pipeline/online.py)
    config.preset = preset
    config.rounds = 3
    config.lm = lm.get_config(preset)
    config.distill = distill.get_config(preset)
    config.gold = pm.get_config(preset)       # the simulated labeler's PM
    config.pm = pm.get_config(preset)         # each round's new PM
    config.ppo = ppo.get_config(preset)
    config.ppo.ppo.epochs = 4                 # K = 4 in the paper's online runs (App. B.1)
    for path, value in shortened(preset).items():
        set_path(config, path, value)
    # the gold PM's own, larger LM: the round LM's documents, tokenizer and steps, more layers
    config.gold_lm = ml_collections.ConfigDict(config.lm.to_dict())
    for name in ("gold_lm", "gold"):
        config[name].model.n_layers = GOLD_DEPTH * config.lm.model.n_layers
    for name in SETUP_STAGES[1:]:             # every stage reads the LM's tokenizer and world
        config[name].model.vocab_size = config.lm.model.vocab_size
        config[name].data.tokenizer = config.lm.data.tokenizer
        config[name].data.world_size = config.lm.data.world_size
    # the gold PM learns from the world's gold entities, which no round PM's comparisons mention
    config.gold.data.helpful_sources = ["synthetic-helpful:gold"]
    config.gold.data.harmless_sources = ["synthetic-harmless:gold"]
    config.gold.data.seed = config.pm.data.seed + 1
    shape = ROUND_SHAPES.get(preset, PAPER_ROUND)

    # Where each round's comparisons come from. source: "simulated" (the labeler below, through the
    # store) or "human" (the interface serves the round's pool until `comparisons` are in).
    config.collect = ml_collections.ConfigDict(dict(
        source="simulated",
        comparisons=shape["comparisons"],
        # "rule": the world's labelers (synthetic.judge) with Bradley–Terry noise, the crowdworkers of
        # the embedded world; "gold": the gold PM. On the tiny world the gold PM's noiseless choices
        # agreed with the exact judge on 17-40% of the collected pairs (docs/online.md): it does not
        # transfer to the round's entities, so its labels would mislead the loop.
        labeler=shape["labeler"],
        temperature=shape["temperature"],  # the labeler's noise: P(pick a) = σ((g_a − g_b)/T)
        red_team_fraction=0.5,           # conversations in red-team mode (harmful requests)
        test_fraction=0.2,               # held out per round (by conversation): PM accuracy on fresh data
        min_strength=2,                  # weaker comparisons are dropped (Bai et al. §2.2)
        rows_per_call=64,                # sampling batch of the simulated collection
        seed=0,
        # source = "human": the interface of configs/serve.py on host:port, invite links for these
        host="127.0.0.1", port=8000, labelers=["labeler-1"], poll_s=2.0, max_message_chars=2000,
    ))
    # Which models the pool deploys from round 1 on (Bai et al. §4.5: several snapshots at once).
    config.pool = ml_collections.ConfigDict(dict(
        snapshots=2,                     # the previous round's latest PPO checkpoints
        best_of_k=4,                     # plus the distilled LM, best of k by the previous PM (0: none)
        include_initial=False,           # plus the distilled LM itself
        pairing="random", max_new_tokens=shape["max_new_tokens"], temperature=1.0,
    ))
    # Each round's PM data: train_pairs in all, online_fraction of them from the collected rounds
    # (newest first, all of them when there are fewer), the rest static synthetic comparisons.
    config.mix = ml_collections.ConfigDict(dict(
        train_pairs=shape["train_pairs"], online_fraction=0.5, static_helpful_fraction=0.5))
    # The held-out prompts every round's policy answers (same prompts, same keys).
    config.eval = ml_collections.ConfigDict(dict(
        prompts=["synthetic-helpful:test", "synthetic-harmless:test"], n_prompts=shape["eval_prompts"],
        max_new_tokens=shape["max_new_tokens"], seed=1))
    return common.with_tuples(config)
