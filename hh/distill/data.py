"""Distillation text (Askell et al. 2021 App. B.5): about half generic pretraining text, half
dialogues in the Human/Assistant format, as fixed rows of `text_len` next-token pairs. The
student reads [bos] + text; the teacher reads [bos] + HHH prompt + text (hh.distill.teacher).
"""

import hashlib

import numpy as np

from hh.config import ConfigError
from hh.data import sources, synthetic
from hh.data.pm_data import as_text

# Generic text for the eval split comes from another sampling seed of the same generator, minus
# any text that also occurs in the train split (short synthetic facts repeat).
EVAL_SEED_OFFSET = 1000


def generic_texts(n: int, seed: int, world_size=synthetic.DEFAULT_WORLD) -> list[str]:
    """Generic pretraining text: the synthetic world's LM documents (facts and dialogues)."""
    return synthetic.pretraining_documents(n, seed, world_size) if n else []


def dialogue_texts(names, n: int, split: str, data_cfg) -> list[str]:
    """n transcripts, shared evenly across the comparison sources `names`: each pair's prompt plus
    its chosen response (the paper formats StackExchange as a Human/Assistant exchange; the
    synthetic world and HH-RLHF are already in that format)."""
    if not n:
        return []
    if not names:
        raise ConfigError("config.data.dialogue_sources is empty but config.data.generic_fraction < 1")
    per_source = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    out = []
    for name, count in zip(names, per_source):
        source = sources.comparison_source(name, split, data_cfg)
        if len(source) < count:
            raise ConfigError(f"config.data.dialogue_sources: {name!r} ({split}) has {len(source)} "
                             f"pairs, {count} needed")
        out += [as_text(source[i]["prompt"]) + as_text(source[i]["chosen"]) for i in range(count)]
    return out


def mixed(generic, dialogues, seed: int) -> list[str]:
    """The two kinds interleaved by a seeded permutation (fixed row order for the teacher shards)."""
    texts = list(generic) + list(dialogues)
    order = np.random.default_rng([seed, 7]).permutation(len(texts))
    return [texts[i] for i in order]


def split_counts(n: int, generic_fraction: float) -> tuple[int, int]:
    n_generic = int(round(n * generic_fraction))
    return n_generic, n - n_generic


def distillation_texts(data_cfg) -> tuple[list[str], list[str]]:
    """(train texts, held-out eval texts); no eval text occurs in the train texts."""
    train_generic, train_dialogue = split_counts(data_cfg.distill_texts, data_cfg.generic_fraction)
    train = mixed(generic_texts(train_generic, data_cfg.seed, data_cfg.world_size),
                  dialogue_texts(data_cfg.dialogue_sources, train_dialogue, "train", data_cfg),
                  data_cfg.seed)
    eval_generic, eval_dialogue = split_counts(data_cfg.eval_texts, data_cfg.generic_fraction)
    seen = set(train)
    generic = [t for t in generic_texts(eval_generic, data_cfg.seed + EVAL_SEED_OFFSET, data_cfg.world_size) if t not in seen]
    dialogues = [t for t in dialogue_texts(data_cfg.dialogue_sources, eval_dialogue, "test", data_cfg)
                 if t not in seen]
    return train, mixed(generic, dialogues, data_cfg.seed + 1)


def text_rows(texts, tokenizer, text_len: int) -> dict:
    """Texts -> int32/float32 arrays [n, text_len]: inputs [bos] + t[:-1], targets t (the text's
    tokens then eos, cut at text_len), loss_mask on real targets, segment_ids 1 on real inputs."""
    n = len(texts)
    inputs = np.zeros((n, text_len), np.int32)
    targets = np.zeros((n, text_len), np.int32)
    lengths = np.zeros(n, np.int32)
    for i, ids in enumerate(tokenizer.encode_batch(texts)):
        ids = (list(ids) + [tokenizer.eos_id])[:text_len]
        targets[i, :len(ids)] = ids
        inputs[i, 0] = tokenizer.bos_id
        inputs[i, 1:len(ids)] = ids[:-1]
        lengths[i] = len(ids)
    real = np.arange(text_len)[None, :] < lengths[:, None]
    return {"inputs": inputs, "targets": targets, "loss_mask": real.astype(np.float32),
            "segment_ids": real.astype(np.int32),
            "positions": np.broadcast_to(np.arange(text_len, dtype=np.int32), (n, text_len)).copy()}


def rows_fingerprint(rows: dict) -> str:
    """Identifies the student rows in the teacher manifest: stored targets belong to these rows."""
    digest = hashlib.sha256()
    for key in ("inputs", "targets"):
        digest.update(np.ascontiguousarray(rows[key]).tobytes())
    return digest.hexdigest()[:16]
