"""Offline tokenize-and-pack: a corpus -> ArrayRecord shards (hh.data.shards) that training reads
through `config.data.source=array_record:DIR`.

LM rows (the default kind):
  python -m hh.data.prepare --source 'files:corpus/*.jsonl.gz' [--field text] \\
      --tokenizer train --vocab_size 65536 --seq_len 2048 --out DIR [--workers 8]
  --tokenizer: "train" (SentencePiece BPE trained on --tokenizer_sample documents spread over
  the source's files, saved in DIR/tokenizer: the paper's 65,536-token vocabulary is
  --vocab_size 65536), "bytes", or a tokenizer directory (copied into DIR/tokenizer).
Comparisons (PMP dumps, your own comparisons):
  python -m hh.data.prepare --source pmp-stackexchange --manual_dir DUMPS --split train --out DIR
  python -m hh.data.prepare --source 'files:mine/*.jsonl' --kind comparisons --out DIR
Check a directory's shards against its manifest (every byte): --verify DIR

One shard per unit of the source (a file, a range of a TFDS split, a dump file), written by
--workers processes in parallel, with a progress bar of docs/s and tokens/s. A killed prepare
restarts where it stopped: finished shards (those with their sidecar) are kept; the manifest is
written last. Rerunning into a directory prepared with other settings is refused.
"""

import dataclasses
import json
import multiprocessing
import multiprocessing.pool
import shutil
import sys
import time

from absl import app, flags, logging
from etils import epath

from hh.config import ConfigError
from hh.data import shards, text_sources
from hh.data.errors import DataError
from hh.data.packing import pack_stream
from hh.data.pmp import dumps as pmp_dumps

SETTINGS = "prepare.json"
TOKENIZER_DIR = "tokenizer"
ENCODE_BATCH = 64   # documents per tokenizer call


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a shard directory was prepared from; a restart must use the same."""
    source: str
    kind: str
    field: str = "text"
    split: str = "train"
    seq_len: int = 0
    tokenizer: dict = dataclasses.field(default_factory=dict)
    pmp_form: str = "binarized"
    seed: int = 0


# ---- units: what one worker turns into one shard --------------------------------------------------

def lm_units(source: str, split: str, data_dir: str, manual_dir: str) -> list[tuple]:
    """[(label, "text", text_sources.Unit)] of a text source."""
    return [(u.label, "text", u) for u in
            text_sources.units(source, split=split, data_dir=data_dir, manual_dir=manual_dir)]


def comparison_units(source: str, split: str, data_dir: str, manual_dir: str) -> list[tuple]:
    """[(label, reader, unit)]: a PMP dump's files (reader = "stackexchange", …) or a text
    source's files (reader = "text": JSON records of comparisons)."""
    if source in pmp_dumps.SOURCES:
        name = source.removeprefix("pmp-")
        folder = pmp_dumps.source_folder(name, manual_dir)
        return [(str(unit), name, unit) for unit in pmp_dumps.UNITS[name][0](folder)]
    if text_sources.prefix_of(source) in ("files", "tfds"):
        return lm_units(source, split, data_dir, manual_dir)
    raise ConfigError(f"--source {source!r}: comparisons come from {', '.join(pmp_dumps.SOURCES)}, "
                      f"files:GLOB or tfds:NAME")


# ---- worker side ---------------------------------------------------------------------------------

_WORKER = {}


def _init_worker(options: dict, tokenizer, counters):
    _WORKER.update(options=options, tokenizer=tokenizer, counters=counters)


def _count(docs: int, tokens: int):
    counters = _WORKER.get("counters")
    if counters is not None:
        with counters[0].get_lock():
            counters[0].value += docs
            counters[1].value += tokens


def _batched(items, n):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def lm_records(documents, tokenizer, seq_len: int, dtype, counts: dict):
    """Packed-row records of a document stream; counts["documents"/"tokens"/"rows"] kept up."""
    def token_lists():
        for batch in _batched(documents, ENCODE_BATCH):
            encoded = tokenizer.encode_batch(batch)
            n_tokens = sum(len(t) for t in encoded)
            counts["documents"] += len(batch)
            counts["tokens"] += n_tokens
            _count(len(batch), n_tokens)
            yield from encoded
    for block in pack_stream(token_lists(), seq_len, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id):
        for tokens, segment_ids in zip(block["tokens"], block["segment_ids"]):
            counts["rows"] += 1
            yield shards.encode_row(tokens, segment_ids, dtype)


def comparison_records(rows, counts: dict):
    for row in rows:
        counts["documents"] += 1
        _count(1, 0)
        yield json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _comparison_rows(reader: str, unit, options):
    if reader != "text":
        return pmp_dumps.unit_rows(reader, unit, options["split"], options["pmp_form"], options["seed"])
    return text_sources.unit_comparisons(unit, options["data_dir"], options["manual_dir"])


def write_unit(job) -> dict:
    """Worker: one unit -> shard `index` of the output directory; -> its manifest entry."""
    index, (label, reader, unit) = job
    options, tokenizer = _WORKER["options"], _WORKER["tokenizer"]
    counts = {"documents": 0, "tokens": 0, "rows": 0, "unit": label}
    if options["kind"] == "lm_rows":
        docs = text_sources.unit_documents(unit, options["field"], options["data_dir"], options["manual_dir"])
        records = lm_records(docs, tokenizer, options["seq_len"], options["token_dtype"], counts)
    else:
        records = comparison_records(_comparison_rows(reader, unit, options), counts)
    return shards.write_shard(options["out"], index, records, counts)


# ---- the driver ----------------------------------------------------------------------------------

def sample_documents(units, n: int, field: str, data_dir: str, manual_dir: str) -> list[str]:
    """About n documents spread evenly over the units (the first ones of each), for the tokenizer."""
    per_unit = max(1, -(-n // max(len(units), 1)))
    sample = []
    for _, _, unit in units:
        for i, doc in enumerate(text_sources.unit_documents(unit, field, data_dir, manual_dir)):
            if i == per_unit:
                break
            sample.append(doc)
    return sample[:n]


def run_tokenizer(spec: str, out, units, args) -> object:
    """The shards' tokenizer, saved (or kept, on a restart) in out/tokenizer."""
    from hh.data.byte_tokenizer import ByteTokenizer
    from hh.data.tokenizer import SentencePieceTokenizer, load_tokenizer, train_sentencepiece
    saved = out / TOKENIZER_DIR
    if spec == "bytes":
        return ByteTokenizer()
    if spec == "train":
        if (saved / "tokenizer.model").exists():
            return SentencePieceTokenizer.load(saved)
        sample = sample_documents(units, args["tokenizer_sample"], args["field"], args["data_dir"],
                                  args["manual_dir"])
        logging.info("training a %d-piece SentencePiece on %d sampled documents", args["vocab_size"], len(sample))
        tokenizer = train_sentencepiece(sample, args["vocab_size"])
        tokenizer.save(saved)
        return tokenizer
    tokenizer = load_tokenizer(spec)
    if not saved.exists():
        shutil.copytree(str(epath.Path(spec)), str(saved))
    return tokenizer


def finished_entries(out, units) -> dict:
    """{index: the finished shard's entry, or None}; a finished shard made from another unit (the
    glob now matches other files) is an error, not silently mixed in."""
    entries = {}
    for i, (label, _, _) in enumerate(units):
        entry = shards.finished_entry(out, i)
        if entry is not None and entry.get("unit") != label:
            raise ConfigError(f"{out}/{shards.shard_name(i)} was made from {entry.get('unit')!r}, but "
                              f"unit {i} of the source is now {label!r} (its files changed): use a new --out")
        entries[i] = entry
    return entries


def check_settings(out, settings: Settings):
    path = out / SETTINGS
    wanted = dataclasses.asdict(settings)
    if path.exists():
        had = json.loads(path.read_text())
        changed = sorted(k for k in set(had) | set(wanted) if had.get(k) != wanted.get(k))
        if changed:
            raise ConfigError(f"{out} was prepared with other settings ({', '.join(changed)} differ: "
                              f"{ {k: had.get(k) for k in changed} }): use a new --out")
    else:
        shards.write_json_atomic(path, wanted)


def _progress(counters, results, total_units: int, done_units: int):
    """A bar over units, with docs/s and tokens/s from the workers' shared counters."""
    import tqdm
    bar = tqdm.tqdm(total=total_units, initial=done_units, unit="shard", dynamic_ncols=True, mininterval=2.0)
    start = time.perf_counter()
    try:
        while True:
            finished = sum(r.ready() for r in results)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(docs_s=f"{counters[0].value / elapsed:,.0f}",
                            tok_s=f"{counters[1].value / elapsed:,.0f}", refresh=False)
            bar.update(done_units + finished - bar.n)   # redraws at most every mininterval
            if finished == len(results):
                return
            next(r for r in results if not r.ready()).wait(0.5)
    finally:
        bar.close()


def prepare(source: str, out, *, kind="lm_rows", field="text", split="train", data_dir="~/tensorflow_datasets",
            manual_dir="", tokenizer="train", vocab_size=65536, tokenizer_sample=100_000, seq_len=2048,
            workers=1, pmp_form="binarized", seed=0) -> dict:
    """Prepares `source` into shards under `out` (module doc); -> the manifest."""
    out = epath.Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    args = dict(field=field, data_dir=data_dir, manual_dir=manual_dir, vocab_size=vocab_size,
                tokenizer_sample=tokenizer_sample)
    if kind == "lm_rows":
        units = lm_units(source, split, data_dir, manual_dir)
        tok = run_tokenizer(tokenizer, out, units, args)
        identity, dtype = shards.tokenizer_identity(tok), shards.token_dtype(tok.vocab_size)
    elif kind == "comparisons":
        units = comparison_units(source, split, data_dir, manual_dir)
        tok, identity, dtype, seq_len = None, {}, None, 0
    else:
        raise ConfigError(f"--kind={kind!r}: use one of {shards.KINDS}")
    settings = Settings(source, kind, field, split, seq_len, identity, pmp_form, seed)
    check_settings(out, settings)
    entries = finished_entries(out, units)
    jobs = [(i, unit) for i, unit in enumerate(units) if entries[i] is None]
    options = dict(kind=kind, out=str(out), field=field, split=split, seq_len=seq_len, data_dir=data_dir,
                   manual_dir=manual_dir, token_dtype=str(dtype) if dtype else "", pmp_form=pmp_form, seed=seed)
    logging.info("%s: %d units, %d already done", out, len(units), len(units) - len(jobs))
    context = multiprocessing.get_context("spawn")
    counters = (context.Value("q", 0), context.Value("q", 0))
    # One worker runs in this process (a thread: the same code path, no start-up cost).
    pool = (context.Pool(min(workers, len(jobs)), _init_worker, (options, tok, counters)) if workers > 1
            else multiprocessing.pool.ThreadPool(1, _init_worker, (options, tok, counters)))
    with pool:
        results = [pool.apply_async(write_unit, (job,)) for job in jobs]
        _progress(counters, results, len(units), len(units) - len(jobs))
        for (i, _), result in zip(jobs, results):
            entries[i] = result.get()   # re-raises a worker's DataError here
    manifest = {"format": shards.FORMAT, **dataclasses.asdict(settings),
                "shards": [entries[i] for i in range(len(units))]}
    if kind == "lm_rows":
        manifest.update(width=seq_len + 1, token_dtype=str(dtype))
    for key in ("documents", "tokens", "rows", "records", "bytes"):
        manifest[f"total_{key}"] = sum(e.get(key, 0) for e in manifest["shards"])
    shards.write_json_atomic(out / shards.MANIFEST, manifest)
    return manifest


FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags (defined only when run as a program: importing prepare() defines none)."""
    flags.DEFINE_string("source", None, "files:GLOB | tfds:NAME[/CONFIG][:VERSION] | pmp-stackexchange | "
                        "pmp-reddit | pmp-wikipedia")
    flags.DEFINE_string("out", None, "the shard directory to write")
    flags.DEFINE_enum("kind", None, list(shards.KINDS), "lm_rows (default) or comparisons (default for pmp-*)")
    flags.DEFINE_string("field", "text", "the JSON field / TFDS feature holding a document")
    flags.DEFINE_string("split", "train", "TFDS split spec, or the PMP split (train|test)")
    flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS data_dir (local or gs://)")
    flags.DEFINE_string("manual_dir", "", "where the PMP dumps (or a TFDS builder's raw files) are")
    flags.DEFINE_string("tokenizer", "train", "train | bytes | a tokenizer directory")
    flags.DEFINE_integer("vocab_size", 65536, "pieces of a trained tokenizer (the paper: 65,536)")
    flags.DEFINE_integer("tokenizer_sample", 100_000, "documents sampled to train the tokenizer")
    flags.DEFINE_integer("seq_len", 2048, "tokens per training row (rows hold seq_len + 1)")
    flags.DEFINE_integer("workers", 1, "worker processes (one shard each at a time)")
    flags.DEFINE_enum("pmp_form", "binarized", list(pmp_dumps.FORMS), "PMP rows: binarized or ranked")
    flags.DEFINE_integer("seed", 0, "the PMP parsers' draws")
    flags.DEFINE_string("verify", None, "check a shard directory's sha256s against its manifest and exit")


def main(argv):
    del argv
    if FLAGS.verify:
        try:
            problems = shards.verify(FLAGS.verify)
        except DataError as e:
            sys.exit(f"error: {e}")
        for problem in problems:
            print(problem)
        print(f"{FLAGS.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        sys.exit(1 if problems else 0)
    if not FLAGS.source or not FLAGS.out:
        raise app.UsageError("--source and --out are required (or --verify DIR)")
    kind = FLAGS.kind or ("comparisons" if FLAGS.source in pmp_dumps.SOURCES else "lm_rows")
    try:
        manifest = prepare(FLAGS.source, FLAGS.out, kind=kind, field=FLAGS.field, split=FLAGS.split,
                           data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, tokenizer=FLAGS.tokenizer,
                           vocab_size=FLAGS.vocab_size, tokenizer_sample=FLAGS.tokenizer_sample,
                           seq_len=FLAGS.seq_len, workers=FLAGS.workers, pmp_form=FLAGS.pmp_form, seed=FLAGS.seed)
    except (DataError, ConfigError) as e:
        sys.exit(f"error: {e}")
    print(json.dumps({k: v for k, v in manifest.items() if k.startswith("total_")}))


if __name__ == "__main__":
    define_flags()
    app.run(main)
