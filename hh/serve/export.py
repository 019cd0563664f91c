"""Export the comparison store to the hh-rlhf format: `{"chosen": transcript, "rejected": transcript}`.

store (hh.serve.store) → JSON lines like Anthropic's release (docs/paper-notes.md §3) → the TFDS `local`
tranche (hh.data.tfds.hh_rlhf) → PM training with `data.helpful_sources=["hh_rlhf/local"]`.

`python -m hh.serve.export --workdir DIR --out FILE.jsonl[.gz] [--min_strength 2] [--mode helpful]
[--tag T]`, or `--tranche_dir MANUAL_DIR [--tranche local] [--test_fraction 0.05]` to write
`MANUAL_DIR/local/{train,test}.jsonl.gz` for the builder (pass MANUAL_DIR as data.manual_dir).
"""

import gzip
import hashlib
import json
import os
import sys

from absl import app, flags
from etils import epath

from hh.data import dialogue
from hh.io import atomic_write_bytes
from hh.serve.store import DB_NAME, MODES, Store

# Bai et al. 2022 §2.2: "comparisons weaker than the weakest strength were dropped", i.e. a labeler
# who said "slightly better" (1) expressed no usable preference.
MIN_STRENGTH = 2
SPLITS = ("train", "test")
DROP_REASONS = ("mode", "tag", "weak", "unsplittable")   # checked in this order


def pair_texts(row) -> tuple[str, str]:
    """(chosen, rejected) response of a comparison row, in the released data's convention.

    Helpful: the labeler picked the better response, so the pick is chosen. Red-team: the labeler
    picked the MORE HARMFUL one, which the released harmless data store as "rejected" (docs/paper-notes.md
    §3), so the pick is rejected. An edit never changes the texts: it was written after the choice
    and never compared with the other response; what the labeler compared is what is exported (the
    edit lives on in later turns' contexts, which continue from it).
    """
    picked, other = ((row["response_a"], row["response_b"]) if row["choice"] == "a"
                     else (row["response_b"], row["response_a"]))
    return (other, picked) if row["mode"] == "red-team" else (picked, other)


def to_pair(row) -> dict:
    """{"chosen", "rejected"}: the two full transcripts (context + response) of a comparison."""
    chosen, rejected = pair_texts(row)
    return {"chosen": row["context"] + chosen, "rejected": row["context"] + rejected}


def splits_back(row, pair) -> bool:
    """Whether the pair splits (dialogue.split_pair) into exactly this row's context and responses.

    A response that itself contains "\\n\\nAssistant:" would move the split point, and the PM would
    then train on a different prompt than the labeler saw: such rows are dropped, not exported.
    """
    split = dialogue.split_pair(pair["chosen"], pair["rejected"])
    return (split.prompt == split.rejected_prompt == row["context"]
            and (split.chosen, split.rejected) == pair_texts(row))


def drop_reason(row, min_strength: int, modes, tags) -> str | None:
    """Why a comparison is not exported (one of DROP_REASONS), or None."""
    if modes is not None and row["mode"] not in modes:
        return "mode"
    if tags is not None and row["tag"] not in tags:
        return "tag"
    if row["strength"] < min_strength:
        return "weak"
    if not splits_back(row, to_pair(row)):
        return "unsplittable"
    return None


def select(rows, min_strength: int = MIN_STRENGTH, modes=None, tags=None) -> tuple[list, dict]:
    """(kept comparison rows in the rows' order, {"total", "kept", "dropped_<reason>" for each of
    DROP_REASONS})."""
    for mode in modes or ():
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {list(MODES)}")
    kept, counts = [], {"total": 0, "kept": 0, **{f"dropped_{r}": 0 for r in DROP_REASONS}}
    for row in rows:
        counts["total"] += 1
        reason = drop_reason(row, min_strength, modes, tags)
        if reason is None:
            kept.append(row)
        else:
            counts[f"dropped_{reason}"] += 1
    counts["kept"] = len(kept)
    return kept, counts


def as_store(workdir_or_store) -> Store:
    """The Store itself, or the one of a workdir (or .sqlite path) that must already exist: Store()
    would create an empty one, and a typo would then export nothing without saying why."""
    if isinstance(workdir_or_store, Store):
        return workdir_or_store
    path = epath.Path(workdir_or_store)
    db = path / DB_NAME if path.is_dir() or not path.suffix else path
    if not db.exists():
        raise ValueError(f"no comparison store at {db}")
    return Store(path)


def export_rows(store, min_strength: int = MIN_STRENGTH, modes=None, tags=None) -> list[dict]:
    """The store's comparisons as hh-rlhf rows {"chosen", "rejected"}, in the order recorded;
    strength < min_strength dropped, only `modes` / `tags` (sequences) when given."""
    kept, _ = select(as_store(store).comparisons(), min_strength, modes, tags)
    return [to_pair(row) for row in kept]


def write_jsonl(rows, path) -> int:
    """Writes rows as JSON lines, gzipped if `path` ends with .gz; atomic (a reader sees the old
    file or the new one, never half of one). -> the number of rows."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)   # mtime 0: the same rows give the same bytes (and hash)
    atomic_write_bytes(path, data)
    return len(rows)


def split_of(conversation_id: str, test_fraction: float, seed: int = 0) -> str:
    """"train" or "test" from a hash of the conversation id: every turn of a conversation lands in
    the same split (its comparisons share their context), and re-exports keep old rows in place."""
    digest = hashlib.sha256(f"hh-export/{seed}/{conversation_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:   # 1 would leave nothing to train on
        raise ValueError(f"test_fraction {test_fraction}: use 0 <= f < 1")


def write_tranche(rows, tranche_dir, test_fraction: float, seed: int = 0) -> dict:
    """`tranche_dir/{train,test}.jsonl.gz` from comparison rows -> {split: count}. A split with no
    rows is not written, and an old file of it is removed: the builder would otherwise build it."""
    check_fraction(test_fraction)
    tranche_dir = epath.Path(tranche_dir)
    by_split = {s: [] for s in SPLITS}
    for row in rows:
        by_split[split_of(row["conversation_id"], test_fraction, seed)].append(to_pair(row))
    for split, pairs in by_split.items():
        plain, gz = tranche_dir / f"{split}.jsonl", tranche_dir / f"{split}.jsonl.gz"
        if plain.exists():   # the builder refuses a split with both files
            plain.unlink()
        if pairs:
            write_jsonl(pairs, gz)
        elif gz.exists():
            gz.unlink()
    return {split: len(pairs) for split, pairs in by_split.items()}


def export(workdir_or_store, out=None, min_strength: int = MIN_STRENGTH, modes=None, tags=None,
           tranche_dir=None, tranche: str = "local", test_fraction: float = 0.0, seed: int = 0) -> dict:
    """Writes the selected comparisons to `out` (one JSON-lines file) and/or to the TFDS tranche
    `tranche_dir/<tranche>/{train,test}.jsonl.gz` (tranche_dir is the builder's manual_dir).
    -> counts: total, kept, dropped_<reason>, and per split when a tranche was written."""
    if out is None and tranche_dir is None:
        raise ValueError("nothing to write: give out and/or tranche_dir")
    check_fraction(test_fraction)
    if tranche_dir is not None:
        from hh.data.tfds.hh_rlhf import LOCAL_TRANCHES   # TensorFlow Datasets: only when needed

        if tranche not in LOCAL_TRANCHES:
            raise ValueError(f"tranche {tranche!r}: use one of {list(LOCAL_TRANCHES)}")
    kept, counts = select(as_store(workdir_or_store).comparisons(), min_strength, modes, tags)
    counts["modes"] = sorted({row["mode"] for row in kept})
    if out is not None:
        write_jsonl([to_pair(row) for row in kept], out)
    if tranche_dir is not None:
        counts.update(write_tranche(kept, epath.Path(tranche_dir) / tranche, test_fraction, seed))
    return counts


def summary(counts: dict) -> str:
    """One line: kept of total, dropped as weak (always shown) and for any other reason."""
    dropped = [f"{r} {counts[f'dropped_{r}']}" for r in DROP_REASONS
               if r == "weak" or counts[f"dropped_{r}"]]
    line = f"{counts['kept']} of {counts['total']} comparisons exported; dropped: {', '.join(dropped)}"
    if "train" in counts:
        line += f"; train {counts['train']}, test {counts['test']}"
    return line


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        counts = export(f.workdir, f.out, f.min_strength, f.mode or None, f.tag or None,
                        f.tranche_dir, f.tranche, f.test_fraction, f.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(summary(counts))
    if len(counts["modes"]) > 1 and f.tranche_dir:
        # PM configs weight helpful_sources and harmless_sources apart (Bai et al. §5.1).
        print(f"note: {f.tranche} mixes {' and '.join(counts['modes'])} comparisons; export each "
              "with --mode (red-team into --tranche local-harmless) to keep them apart", file=sys.stderr)
    if counts["kept"] == 0:
        sys.exit(1)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "the interface's workdir (its comparisons.sqlite)")
    flags.DEFINE_string("out", None, "one JSON-lines file of every kept comparison (.gz: gzipped)")
    flags.DEFINE_integer("min_strength", MIN_STRENGTH, "drop comparisons weaker than this (1-4)")
    flags.DEFINE_multi_enum("mode", [], list(MODES), "only these modes (repeatable)")
    flags.DEFINE_multi_string("tag", [], "only these tags (repeatable)")
    flags.DEFINE_string("tranche_dir", None, "write <tranche_dir>/<tranche>/{train,test}.jsonl.gz "
                                             "(the TFDS manual_dir)")
    flags.DEFINE_string("tranche", "local", "the hh_rlhf tranche to write: local or local-harmless")
    flags.DEFINE_float("test_fraction", 0.0, "share of conversations in the test split")
    flags.DEFINE_integer("seed", 0, "salt of the conversation-id hash that assigns splits")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
