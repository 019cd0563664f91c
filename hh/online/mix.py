"""A round's PM training data: the collected comparisons of every round so far mixed with the
static data at configured fractions (Bai et al. 2022 §4.5: "mix with existing data"; Fig 16's
controlled experiment mixes base, RS and online data in equal parts).

The mixture is written as a `local` tranche of the hh_rlhf TFDS builder (`<dir>/local/train.jsonl.gz`),
so the round's PM reads it exactly as it would read released or exported data.
"""

import hashlib

from etils import epath

from hh.data import synthetic
from hh.data.records import field, jsonl_records

ONLINE_FILE = "train.jsonl.gz"   # a collect step's exported training comparisons
HELD_OUT_FILE = "test.jsonl.gz"  # and its held-out ones (never trained on)


def read_jsonl(path) -> list[dict]:
    """The {"chosen", "rejected"} rows of an exported file ([] when there is none); a bad line is
    a DataError naming the file and line."""
    if not epath.Path(path).exists():
        return []
    rows = []
    for line, row in jsonl_records(path, allow_empty=True):
        field(row, "chosen", str, path, line), field(row, "rejected", str, path, line)
        rows.append(row)
    return rows


def static_pairs(n: int, helpful_fraction: float, seed: int) -> list[dict]:
    """The first n static comparisons (synthetic helpful + harmless train) as hh-rlhf transcripts."""
    n_helpful = int(round(helpful_fraction * n))
    rows = (synthetic.comparisons("helpful", n_helpful, seed, "train")
            + synthetic.comparisons("harmless", n - n_helpful, seed, "train"))
    return [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in rows]


def mixture(mix_cfg, online_rounds: list[list[dict]], seed: int = 0) -> tuple[list[dict], dict]:
    """-> (rows, counts): online_fraction × train_pairs from the collected rounds, newest round
    first (all of them when there are fewer), the rest static. online_rounds: oldest first."""
    want_online = int(round(mix_cfg.online_fraction * mix_cfg.train_pairs))
    online, counts = [], {}
    for index in reversed(range(len(online_rounds))):
        take = online_rounds[index][:max(0, want_online - len(online))]
        online += take
        counts[f"round{index}"] = len(take)
    static = static_pairs(mix_cfg.train_pairs - len(online), mix_cfg.static_helpful_fraction, seed)
    counts["static"] = len(static)
    # interleaved, so a PM that stops early has seen every source (the PM's sampler shuffles too)
    rows = static + online
    order = sorted(range(len(rows)), key=lambda i: hash_key(rows[i], seed))
    return [rows[i] for i in order], counts


def hash_key(row: dict, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{row['chosen']}\0{row['rejected']}".encode()).hexdigest()
