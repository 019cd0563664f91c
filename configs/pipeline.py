"""The whole pipeline as one config: `python -m hh.pipeline --config configs/pipeline.py:<preset>
--workdir DIR`.

Each training stage's config is the stage file's own (`configs/lm.py`, `pmp.py`, `pm.py`,
`distill.py`, `ppo.py`) nested under its name, so any field is overridden the usual way:
`--config.ppo.loop.steps=40`, `--config.pm.data.helpful_fraction=0.8`. The pipeline fills in the
links (`init_from`, `reward_model`, the shared tokenizer) itself. The evaluation steps have their own
small sections (`best_of`, `elo`, `ood`, `pm_eval`).

Presets: "tiny" is the main job (`make run`): the tiny model through every stage in under 10 minutes on
two CPU cores. Its stages are shortened (fewer steps, 128-token PM/PPO contexts that fit every
synthetic comparison) but otherwise the stage presets' recipes. "smoke" is the test-suite size;
the paper's sizes take each stage preset unchanged.
"""

import ml_collections

from configs import common, distill, lm, pm, pmp, ppo

TRAINING_STAGES = ("lm", "pmp", "pm", "distill", "ppo")


def lower_half(n_layers: int) -> str:
    """optimizer.frozen for a trunk's embeddings and lower half of its layers (unscanned layers)."""
    return rf"^trunk/(embed|stack/layer_({'|'.join(str(i) for i in range(n_layers // 2))}))/"


# Per preset: overrides of the stage configs (dotted paths under the pipeline config). The tiny
# budget (~9 minutes on 2 cores, see docs/pipeline.md): tokens, not architecture, are cut.
SHORTENED = {
    "tiny": {
        # 256-token LM context: the distillation teacher reads prompt (144) + text (112)
        "lm.loop.steps": 150, "lm.optimizer.warmup_steps": 15, "lm.loop.eval_every": 150,
        "lm.loop.checkpoint_every": 50,
        "lm.data.synthetic_documents": 6000, "lm.data.eval_documents": 200,
        # every synthetic pair fits 128 tokens (longest: 112)
        "pmp.data.seq_len": 128, "pmp.data.train_pairs": 320, "pmp.data.eval_comparisons": 200,
        "pmp.data.eval_sources": ["synthetic-pmp"],
        # ~1,300 pairs, not the paper's ~10^5: 0.15× the LM's LR, not 0.01×, so that 80 steps move
        # the PM at all. Full finetuning, as the paper's: partial finetuning (`optimizer.frozen`,
        # e.g. lower_half(2)) on 3,840 pairs did not pass the capacity benchmark's verdict rule
        # over it (docs/preference-models.md, "Measured: capacity and transfer").
        "pm.data.seq_len": 128, "pm.data.train_pairs": 1280, "pm.data.eval_comparisons": 250,
        "pm.optimizer.learning_rate": 3e-4,
        "distill.data.distill_texts": 480, "distill.data.eval_texts": 64, "distill.loop.steps": 60,
        "distill.loop.checkpoint_every": 60, "distill.data.synthetic_documents": 2000,
        "ppo.data.seq_len": 128, "ppo.data.max_prompt_len": 96, "ppo.train.global_batch_size": 32,
        "ppo.train.eval_batch_size": 32, "ppo.loop.steps": 24, "ppo.loop.checkpoint_every": 12,
        "ppo.optimizer.warmup_steps": 2, "ppo.value_optimizer.warmup_steps": 2,
        "ppo.ppo.minibatches": 2, "ppo.rollout.samples_every": 6,
    },
    "smoke": {
        # distill's smoke shape needs a 128-token SentencePiece LM (tests/conftest.py lm_smoke)
        "lm.data.seq_len": 128, "lm.data.tokenizer": "sentencepiece", "lm.model.vocab_size": 512,
        "lm.data.synthetic_documents": 3000, "lm.loop.steps": 60, "lm.loop.eval_every": 0,
        "lm.loop.checkpoint_every": 60, "lm.optimizer.warmup_steps": 5,
        "pmp.data.train_pairs": 64, "pmp.data.eval_comparisons": 32,
        "pmp.data.eval_sources": ["synthetic-pmp"],
        "pm.data.train_pairs": 160, "pm.data.eval_comparisons": 48,
        "distill.data.distill_texts": 64, "distill.data.eval_texts": 16, "distill.loop.steps": 8,
        "distill.loop.checkpoint_every": 8, "distill.data.synthetic_documents": 500,
        "ppo.loop.steps": 4, "ppo.loop.checkpoint_every": 2, "ppo.rollout.samples_every": 2,
        "ppo.ppo.minibatches": 2,   # 16 responses over 2 minibatches × 8 fake devices (tests)
        "ppo.optimizer.learning_rate": 3e-3, "ppo.value_optimizer.learning_rate": 3e-3,
    },
}

# Per preset: evaluation sizes (prompts, samples, k). The OOD Gaussian needs well over d_model
# fitted prompts: with fewer the covariance is singular and both Mahalanobis scores collapse onto
# its ridge directions (the relative score then ranks exactly as the plain one).
EVAL_SHAPES = {
    "tiny": dict(n_prompts=32, max_new_tokens=32, ks=[1, 4, 16], elo_ks=[4], ood_fit=1024, ood_test=128,
                 n_arithmetic=48, tension_pairs=400),
    "smoke": dict(n_prompts=8, max_new_tokens=16, ks=[1, 4], elo_ks=[4], ood_fit=160, ood_test=24,
                  n_arithmetic=8, tension_pairs=64),
}
PAPER_EVAL = dict(n_prompts=512, max_new_tokens=128, ks=[1, 4, 16, 64], elo_ks=[4, 16, 64],
                  ood_fit=16384, ood_test=1024, n_arithmetic=48, tension_pairs=1000)


def set_path(config, path: str, value):
    """config["a.b.c"] = value for a dotted path (a KeyError names a misspelt field)."""
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if leaf not in node:
        raise KeyError(f"no config field {path!r}")
    node[leaf] = value


def get_config(arg="tiny"):
    preset = arg or "tiny"
    config = ml_collections.ConfigDict()
    config.job = "main"              # hh.pipeline runs this job's steps (hh/pipeline/steps.py)
    config.preset = preset
    config.lm = lm.get_config(preset)
    config.pmp = pmp.get_config(preset)
    config.pm = pm.get_config(preset)
    config.distill = distill.get_config(preset)
    config.ppo = ppo.get_config(preset)
    for path, value in SHORTENED.get(preset, {}).items():
        set_path(config, path, value)
    for name in TRAINING_STAGES[1:]:   # every later stage reads the LM's tokenizer, vocabulary, world
        config[name].model.vocab_size = config.lm.model.vocab_size
        config[name].data.tokenizer = config.lm.data.tokenizer
        config[name].data.world_size = config.lm.data.world_size
    shape = EVAL_SHAPES.get(preset, PAPER_EVAL)

    # PM accuracy and calibration on the PM's own held-out sets (hh.eval.pm_eval).
    config.pm_eval = ml_collections.ConfigDict(dict(test_sources=[], n_bins=10))
    # The helpful-vs-harmless tension (Bai et al. §4.4, §5.1 Fig 19): one PM per helpful fraction,
    # each the main PM's recipe and pair count from the PMP checkpoint, scored beside the main PM on
    # test_sources and on each set's conflicting pairs (where the two labelers disagree). Empty
    # test_sources: `fresh_pairs` unseen pairs of each synthetic tranche about its training
    # entities (rows past any PM's), where the labelers' conflict shows.
    config.tension = ml_collections.ConfigDict(dict(helpful_fractions=[0.0, 1.0], test_sources=[],
                                                    fresh_pairs=shape["tension_pairs"]))
    # room for them past the PM's pairs (the first rows of a larger draw are the same rows)
    config.pm.data.synthetic_comparisons = max(config.pm.data.synthetic_comparisons,
                                               config.pm.data.train_pairs + config.tension.fresh_pairs)
    # Rejection sampling from the PPO run's initial policy (the distilled LM), Bai et al. §2.3.
    config.best_of = ml_collections.ConfigDict(dict(
        policy="distill", ks=list(shape["ks"]), prompts="synthetic-helpful:test",
        n_prompts=shape["n_prompts"], max_new_tokens=shape["max_new_tokens"], seed=0))
    # PM-judged Elo on held-out prompts of every mixture; the first entry is the anchor (0), as
    # Bai et al. Fig. 1 anchor on the context-distilled model. "STAGE" or "STAGE@K" (best of K).
    config.elo = ml_collections.ConfigDict(dict(
        entries=["distill", "lm", "ppo"] + [f"distill@{k}" for k in shape["elo_ks"]],
        prompts=["synthetic-helpful:test", "synthetic-harmless:test"], n_prompts=shape["n_prompts"],
        max_new_tokens=shape["max_new_tokens"], seed=1))
    # The alignment tax (§4.6.1): multiple-choice accuracy of the base LM and the PPO policy on
    # questions about the synthetic world (n_arithmetic < 0: off) plus any hh.eval.mc tasks
    # ("FORMAT:PATH", e.g. "hellaswag:/data/hellaswag_val.jsonl").
    config.alignment_tax = ml_collections.ConfigDict(dict(
        base="lm", policy="ppo", n_arithmetic=shape["n_arithmetic"], tasks=[], shots=0, seed=0))
    # OOD detection of harmful requests (Bai et al. §5.4): in-distribution = helpful prompts,
    # OOD = red-team prompts (every one to be declined, in the benign requests' templates and names);
    # M known OOD examples for outlier exposure, redrawn `exposure_draws` times.
    config.ood = ml_collections.ConfigDict(dict(
        model="lm", pooling="mean", in_source="synthetic-helpful", out_sources=["synthetic-redteam"],
        n_fit=shape["ood_fit"], n_test=shape["ood_test"], exposure_m=10, exposure_draws=5, seed=0,
        manual_dir="", tfds_data_dir=""))   # for hh_rlhf/... out_sources (real red-team prompts)
    return common.with_tuples(config)
