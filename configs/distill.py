"""Context distillation: `python -m hh.main --config configs/distill.py:<preset> --workdir DIR
--config.init_from=<LM workdir>`.

Askell et al. 2021 §2.1, App. B.5 and Bai et al. 2022 App. A.1: the LM with the HHH prompt is the
teacher (top-50 log-probs + a bucket, stored once), the same LM without it the student; batch 32
sequences, LR 0.05× the pretraining LR decayed linearly to zero, ~50% generic text, ~50% dialogues.
`data.seq_len` is the teacher's context (prompt + text): at most the LM's trained context. The
smoke preset needs an LM trained at 128 tokens with SentencePiece (tests/conftest.py `lm_smoke`).
"""

import ml_collections

from configs import common
from hh.models import presets

# preset: teacher context, text tokens per sequence, prompt budget, batch, steps, texts, shard rows
RUN_SHAPES = {
    "smoke": dict(seq_len=128, text_len=48, prompt_tokens=80, batch=8, steps=40, texts=320,
                  eval_texts=64, shard_rows=64),
    "tiny": dict(seq_len=256, text_len=112, prompt_tokens=144, batch=16, steps=150, texts=1600,
                 eval_texts=192, shard_rows=256),
}
# The paper's LM context here is 2048 (configs/lm.py); ~1500 text tokens per sequence (App. B.5);
# 350M tokens at 32 × 1536 = 7,121 steps (Bai et al. App. A.1).
PAPER_RUN = dict(seq_len=2048, text_len=1536, prompt_tokens=512, batch=32, steps=7121, texts=50000,
                 eval_texts=1024, shard_rows=1024, loss_chunk=256)


def get_config(arg="tiny"):
    preset = arg or "tiny"
    run = RUN_SHAPES.get(preset, PAPER_RUN)
    config = ml_collections.ConfigDict()
    config.stage = "distill"
    config.model_preset = preset
    config.seed = 0
    # A rerun in a workdir that has a checkpoint must use the config that wrote it (hh.train.resume
    # lists the changed fields); True resumes anyway and records the change in provenance.json.
    config.resume_with_changes = False
    # The LM workdir both the teacher and the student start from (required). Its model shape and
    # tokenizer are adopted; the result is a plain LM usable as init_from for PMP/PM/PPO.
    config.init_from = ""
    # Regexes of tensors of a Hugging Face init_from that may be left unread (full names, e.g.
    # r"score\.weight"); any other unread tensor is an error, since dropping it changes the model.
    config.init_from_allow_unused = ()

    config.data = common.data(run["seq_len"])
    config.data.generic_fraction = 0.5      # Askell et al. App. B.5: half generic text, half dialogues
    config.data.dialogue_sources = ["synthetic-helpful", "synthetic-harmless"]   # chosen transcripts
    config.data.distill_texts = run["texts"]   # training sequences (teacher targets stored for each)
    config.data.eval_texts = run["eval_texts"]  # held-out sequences (test-split dialogues)
    config.model = common.model(preset)
    config.model.vocab_size = common.model_vocab(config.data)

    config.distill = ml_collections.ConfigDict(dict(
        prompt_file="",                   # "" = hh/distill/hhh_prompt.txt (ours, not Anthropic's)
        prompt_max_tokens=run["prompt_tokens"],   # keeps the preamble + whole dialogues; 0 = all
        text_len=run["text_len"],         # text tokens per sequence (after the prompt)
        top_k=50,                         # Askell et al. App. B.5: top-50 + one bucket = 51 categories
        teacher_batch_size=run["batch"],
        shard_rows=run["shard_rows"],     # rows per stored teacher shard
    ))
    config.train = ml_collections.ConfigDict(dict(
        global_batch_size=run["batch"], microbatches=1, eval_batch_size=run["batch"],
        loss_chunk=run.get("loss_chunk", 0)))
    config.loop = common.loop(run["steps"], log_every=10, eval_every=0, checkpoint_every=50)
    # Bai et al. App. A.1: 0.05 × the pretraining LR, decayed linearly to zero (no warmup stated).
    config.optimizer = common.optimizer(0.05 * presets.learning_rate(preset), "linear", warmup_steps=0)
    config.optimizer.end_lr_factor = 0.0
    config.mesh = common.mesh(preset)
    config.sharding = common.sharding()
    return common.with_tuples(config)
