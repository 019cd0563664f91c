"""Offline preference optimisation (DPO / IPO) on the PM's comparisons: `python -m hh.main --config
configs/dpo.py:<preset> --workdir DIR --config.init_from=<LM or distill workdir>`.

The policy and its frozen reference both start from `init_from` (the context-distilled LM, as for
PPO: Bai et al. 2022 App. B.1), and train on the same helpful↔harmless mixture the PM trains on
(hh.data.pm_sources). Neither Bai et al. nor Askell et al. use DPO; its settings follow Rafailov et
al. 2023 (β = 0.1, one or a few epochs, LR below the SFT rate) and Azar et al. 2023 (IPO's τ).
"""

import ml_collections

from configs import common
from configs.pm import RUN_SHAPES as PM_RUN_SHAPES
from hh.models import presets

# preset: prompt tokens, response tokens, batch (pairs), LR factor (× the LM pretraining LR)
RUN_SHAPES = {
    "smoke": dict(prompt_len=40, response_len=24, batch=8, lr_factor=0.05),
    "tiny": dict(prompt_len=160, response_len=96, batch=16, lr_factor=0.05),
}
# The PM's context (1024) split as PPO splits it: 896 prompt + 128 response tokens; batch 64 pairs
# (Rafailov et al. §6: 64); LR 0.01× pretraining (PPO's and the PM's multiple; Bai et al. A.2, B.1).
# The LM head runs unchunked (train.loss_chunk = 0): at 128 response tokens the logits are ~0.3 GiB
# per chip at 52B, and the fit check measured chunks of 32 at +3.4 GiB on the update at 52B (docs/scale-out.md).
PAPER_RUN = dict(prompt_len=896, response_len=128, batch=64, lr_factor=0.01)


def get_config(arg="tiny"):
    """arg: a preset, optionally ",ipo" (the IPO loss) — e.g. "tiny,ipo"."""
    preset, _, variant = (arg or "tiny").partition(",")
    if variant not in ("", "dpo", "ipo"):
        raise ValueError(f"unknown configs/dpo.py variant {variant!r}: use '<preset>' or '<preset>,ipo'")
    run = RUN_SHAPES.get(preset, PAPER_RUN)
    pm_run = PM_RUN_SHAPES.get(preset, {"pairs": 4000, "tokenizer": "sentencepiece"})
    config = ml_collections.ConfigDict()
    config.stage = "dpo"
    config.model_preset = preset
    config.seed = 0
    # A rerun in a workdir that has a checkpoint must use the config that wrote it (hh.train.resume
    # lists the changed fields); True resumes anyway and records the change in provenance.json.
    config.resume_with_changes = False
    # The policy and the frozen reference start here: an hh LM or distill workdir (or a Hugging
    # Face directory). Its model shape and tokenizer are used.
    config.init_from = ""
    config.init_from_allow_unused = ()

    config.data = common.data(run["prompt_len"] + run["response_len"], tokenizer=pm_run["tokenizer"])
    # The PM's comparisons (hh.data.pm_sources specs) and mixture, so DPO and the PM see the same pairs.
    config.data.helpful_sources = ["synthetic-helpful"]
    config.data.harmless_sources = ["synthetic-harmless"]
    config.data.helpful_fraction = 0.5
    config.data.train_pairs = pm_run["pairs"]
    config.data.eval_sources = ["synthetic-helpful:test[0:256]", "synthetic-harmless:test[0:256]"]
    config.data.max_prompt_len = run["prompt_len"]      # left-truncated, as PPO's prompts
    config.data.max_response_len = run["response_len"]  # each response + eos, right-truncated
    config.model = common.model(preset)
    config.model.vocab_size = common.model_vocab(config.data)

    config.dpo = ml_collections.ConfigDict(dict(
        loss=variant or "dpo",    # "dpo" (Rafailov et al. 2023) | "ipo" (Azar et al. 2023)
        beta=0.1,                 # DPO's KL strength (Rafailov et al.: 0.1; 0.5 for dialogue)
        label_smoothing=0.0,      # conservative DPO's ε: the chance a label is flipped
        tau=0.1,                  # IPO's regulariser: h is regressed to 1/(2τ)
        # "batch": the reference's log-probs are computed on the device for each batch (one extra
        # forward); "cached": once for the whole dataset before step 1, stored in the workdir
        reference="batch",
    ))
    config.train = ml_collections.ConfigDict(dict(
        global_batch_size=run["batch"], microbatches=1, eval_batch_size=run["batch"],
        epochs=1.0,             # steps = -1: epochs × pairs / batch (Rafailov et al.: 1–3 epochs)
        loss_chunk=run.get("loss_chunk", 0),   # response positions per LM-head chunk (0: all at once)
        harmless_weight=1.0))  # as the PM's: the harmless pairs' weight in the loss
    config.loop = common.loop(-1, log_every=10, eval_every=0, checkpoint_every=100)
    config.optimizer = common.optimizer(run["lr_factor"] * presets.learning_rate(preset), "constant",
                                        warmup_steps=10)
    config.mesh = common.mesh(preset)
    config.sharding = common.sharding()
    return common.with_tuples(config)


def get_sweep(arg=None):
    """DPO's strength: β from weak to strong regularisation (the KL frontier)."""
    return [{"dpo.beta": b} for b in (0.03, 0.1, 0.3, 1.0)]
