"""PPO against a preference model: `python -m hh.main --config configs/ppo.py:<preset> --workdir DIR
--config.init_from=<LM or distill workdir> --config.reward_model=<PM workdir>`.

Bai et al. 2022 §4.1 and App. B.1: LR 0.01× the pretraining LR, clip ε = 0.2, γ = 1, no entropy
bonus, K ∈ {1, 2, 4} passes, responses of at most 128 tokens, r_total = r_PM − λ_KL·KL with
λ_KL = 0.001. Fields the paper leaves open (GAE λ, batch, critic, temperature) are marked ours.
"""

import math

import ml_collections

from configs import common
from hh.models import presets

# preset: prompt tokens, new tokens, rollout batch, PPO iterations, tokenizer, LR factor, and how
# many of a logged iteration's responses go to samples.jsonl (the gold judge's sample of the run).
# The CPU presets see ~2,000 samples, not the paper's ~10^5, so their LR factor is 0.05, not 0.01
# (0.25 made the tiny run unstable: KL 40+ nats, entropy collapse; docs/ppo.md).
RUN_SHAPES = {
    "smoke": dict(prompt_len=40, new_tokens=16, batch=16, iterations=12, tokenizer="bytes",
                  samples_every=4, warmup=2, lr_factor=0.05, n_samples=4),
    "tiny": dict(prompt_len=128, new_tokens=32, batch=32, iterations=60, tokenizer="sentencepiece",
                 samples_every=10, warmup=4, lr_factor=0.05, n_samples=32),
}
# Bai et al. App. B.1: 128-token responses; context 1024 as the PM's; 25,000-sample warm-up.
# loss_chunk: every log-prob pass runs the LM head over 32 response positions at a time, so the
# [batch, 128, 65,536] logits never exist at once (hh.rl.logprobs.chunked_token_logprobs).
PAPER_RUN = dict(prompt_len=896, new_tokens=128, batch=512, iterations=1000, tokenizer="sentencepiece",
                 samples_every=50, warmup=math.ceil(25000 / 512), lr_factor=0.01, n_samples=64, loss_chunk=32)


def get_config(arg="tiny"):
    """arg: a preset ("tiny", "13M", …), optionally ",robustness" for the train-PM vs test-PM
    study (Bai et al. §4.2, App. B.1: K = 2, responses of at most 32 tokens, a held-out test PM)."""
    preset, _, variant = (arg or "tiny").partition(",")
    if variant not in ("", "robustness"):
        raise ValueError(f"unknown configs/ppo.py variant {variant!r}: use '<preset>' or '<preset>,robustness'")
    run = dict(RUN_SHAPES.get(preset, PAPER_RUN))
    if variant == "robustness":
        run["prompt_len"] += run["new_tokens"] - min(run["new_tokens"], 32)   # same context
        run["new_tokens"] = min(run["new_tokens"], 32)
    config = ml_collections.ConfigDict()
    config.stage = "ppo"
    config.model_preset = preset
    config.seed = 0
    # A rerun in a workdir that has a checkpoint must use the config that wrote it (hh.train.resume
    # lists the changed fields); True resumes anyway and records the change in provenance.json.
    config.resume_with_changes = False
    # The policy (and the frozen reference) start here: an hh LM or distill workdir (App. B.1:
    # the context-distilled LM). The tokenizer comes from it.
    config.init_from = ""
    # The PM workdir: the frozen reward model AND the value model's initialisation (ours, N+).
    config.reward_model = ""
    # Robustness study (§4.2): a PM trained on the other half of the comparisons scores the same
    # samples; both rewards are logged mean-normalised on each PM's held-out data (App. B.2).
    config.test_reward_model = ""
    config.robustness = variant == "robustness"

    config.data = common.data(run["prompt_len"] + run["new_tokens"], tokenizer=run["tokenizer"])
    # Prompts: the PM training comparisons with responses stripped (Bai et al. §4.1), as
    # hh.data.pm_sources specs, e.g. "hh_rlhf/harmless-base:train[0:2000]", or a FILE.jsonl of generated
    # prompts (hh.rl.prompt_gen: §4.1 also trains on LM-written prompts).
    config.data.prompt_sources = ["synthetic-helpful", "synthetic-harmless"]
    config.data.max_prompt_len = run["prompt_len"]
    config.model = common.model(preset)
    config.model.vocab_size = common.model_vocab(config.data)

    config.rollout = ml_collections.ConfigDict(dict(
        max_new_tokens=run["new_tokens"],   # App. B.1: 128 (32 in the robustness studies)
        temperature=1.0,                    # ours: pure sampling, T = 1 (the paper is silent)
        # Added to the PM score of a response cut at max_new_tokens (no stop marker, no EOS).
        # 0: off, the paper's (silent) default; e.g. −1 is the "EOS trick" (penalise responses that never end).
        truncated_penalty=0.0,
        samples_every=run["samples_every"],  # iterations between samples.jsonl entries
        # responses decoded each time: 4 judged samples give the gold curve a standard error of ~0.25
        n_samples=run["n_samples"],
    ))
    config.ppo = ml_collections.ConfigDict(dict(
        epochs=2 if variant == "robustness" else 1,   # K: 1 (main), 2 (robustness), 4 (online), App. B.1
        minibatches=4,          # ours: optimizer steps per pass over the rollout
        clip_eps=0.2,           # App. B.1
        value_clip_eps=0.2,     # ours, as baselines ppo2 / trlx
        value_coef=1.0,         # separate networks: scales only the critic's gradient
        entropy_coef=0.0,       # App. B.1: no entropy bonus
        gamma=1.0,              # App. B.1
        lam=0.95,               # ours (GAE λ; N, N+ and most peers)
        kl_estimator="k1",      # per-token log-ratio, Stiennon et al.'s; "k2" | "k3"
        whiten_advantages=True,
    ))
    config.kl = ml_collections.ConfigDict(dict(
        kind="fixed",           # §4.1: a fixed λ_KL; "adaptive": Ziegler et al. 2019
        init_coef=0.001,        # §4.1: λ_KL = 0.001
        target=6.0, horizon=10000))   # adaptive only (Ziegler / N defaults)
    config.train = ml_collections.ConfigDict(dict(
        global_batch_size=run["batch"],   # prompts (= responses) per rollout
        microbatches=1, eval_batch_size=run["batch"],
        loss_chunk=run.get("loss_chunk", 0)))   # response positions per LM-head chunk (0: all at once)
    config.loop = common.loop(run["iterations"], log_every=1, eval_every=0,
                              checkpoint_every=max(1, run["iterations"] // 4))
    # App. B.1: 0.01× the pretraining LR, linear warm-up (counted in optimizer updates = iterations
    # × epochs × minibatches; the stage scales `warmup_steps` given in iterations), then constant.
    lr = run["lr_factor"] * presets.learning_rate(preset)
    config.optimizer = common.optimizer(lr, "constant", run["warmup"])
    config.optimizer.weight_decay = 0.0
    config.value_optimizer = common.optimizer(lr, "constant", run["warmup"])
    config.value_optimizer.weight_decay = 0.0
    config.curves = ml_collections.ConfigDict(dict(fit_fraction=0.5))   # early part for the √KL fit
    config.mesh = common.mesh(preset)
    config.sharding = common.sharding()
    return common.with_tuples(config)
