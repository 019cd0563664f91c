"""Input-pipeline throughput and memory: hh.data.prepare -> ArrayRecord shards -> grain batches.

    .venv/bin/python benchmarks/input_pipeline.py [--quick] [--work_dir /tmp/hh_input_bench] \\
        [--out benchmarks/results/input_pipeline.json]

Measures, on this machine, what one host of the 52B LM run would ask of its input:
(1) the per-host demand: the smallest v5p slice that fits the 52B LM step in benchmarks/fit_table.json,
    global batch × seq_len / hosts / implied step time;
(2) batches from ArrayRecord shards alone (hh.data.lm_data.lm_batches over hh.data.shards.ShardRows,
    only this host's rows of each global batch), for several read_threads / workers settings, in
    tokens/s and as a multiple of (1); the goal is >= 5x;
(3) tokenize + pack of raw .jsonl.gz text in one process (hh.data.prepare.lm_records), and the wall
    time of `prepare` itself with 2 workers;
(4) the peak RSS of a fresh process reading 200 batches spread over a ~100 MB and a ~1 GB corpus:
    reading by index should not grow with the corpus.
The corpus (English-like generated text, benchmarks/input_corpus.py) and its shards are built once
under --work_dir and reused. `--quick` runs the same steps on a few MB in under a minute. See benchmarks/README.md.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from input_corpus import corpus_file, ensure_corpus, text_bytes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIT_TABLE = os.path.join(REPO, "benchmarks", "fit_table.json")
SEQ_LEN = 2048
GLOBAL_BATCH = 256
# (read_threads, workers, cold page cache) of each timed ArrayRecord setting.
SETTINGS = [(1, 0, False), (2, 0, False), (1, 1, False), (1, 2, False), (1, 0, True)]
SIZES = {   # corpus -> (files, documents per file); a document is ~3.8 KB, so a file ~50 MB
    "full": {"small": (2, 13_000), "large": (20, 13_000)},
    "quick": {"small": (2, 300), "large": (4, 300)},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few MB of text, short timings (< 1 min)")
    p.add_argument("--work_dir", default="/tmp/hh_input_bench",
                   help="where the corpus and its shards are built once and reused")
    p.add_argument("--out", default=None, help="the JSON written (default: "
                   "benchmarks/results/input_pipeline.json, or WORK_DIR/quick/input_pipeline.json with --quick)")
    p.add_argument("--seconds", type=float, default=None,
                   help="timed seconds per setting (default 10; 1 with --quick)")
    p.add_argument("--vocab_size", type=int, default=None, help="tokenizer pieces (default 65536; 2048 with --quick)")
    p.add_argument("--tokenizer_sample", type=int, default=20_000, help="documents the tokenizer trains on")
    p.add_argument("--prefetch", type=int, default=2, help="batches read ahead (lm_batches' prefetch)")
    p.add_argument("--rss_batches", type=int, default=200, help="batches read by each memory probe")
    p.add_argument("--_rss_child", nargs=3, metavar=("DIR", "ROWS", "WORKERS"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- (1) demand


def chips_per_host(generation: str, chips: int) -> int:
    """Chips per host (TPU VM) of a slice. v4 and v5p: 4 at every size. v5e and v6e: a slice of up
    to 8 chips is one host (ct5lp-hightpu-8t / ct6e-standard-8t); larger slices are built from
    4-chip hosts (-4t)."""
    if generation in ("v4", "v5p"):
        return 4
    if generation in ("v5e", "v5litepod", "v6e"):
        return chips if chips <= 8 else 4
    raise ValueError(f"unknown TPU generation {generation!r}")


def per_host_demand(path=FIT_TABLE, stage="lm", preset="52B") -> dict:
    """The smallest fitting slice of `preset`'s LM step: hosts, rows and tokens/s per host.

    Several fitting runs on that slice (mesh variants) share the batch and implied step time; all
    are listed, the demand is the largest (shortest step)."""
    runs = [r for r in read_json(path)["runs"]
            if r["stage"] == stage and r["preset"] == preset and r["fits"]]
    if not runs:
        raise SystemExit(f"{path}: no fitting {stage} {preset} run")
    chips = min(r["chips"] for r in runs)
    picked = []
    for r in (r for r in runs if r["chips"] == chips):
        hosts = r["chips"] // chips_per_host(r["generation"], r["chips"])
        step_s = r["phases"]["train"]["implied_step_s"]
        picked.append({
            "topology": r["topology"], "variant": r.get("variant") or "", "mesh": r["mesh"],
            "chips": r["chips"], "hosts": hosts, "global_batch_size": r["global_batch_size"],
            "seq_len": r["seq_len"], "implied_step_s": step_s,
            "rows_per_host": r["global_batch_size"] // hosts,
            "tokens_per_s_per_host": r["global_batch_size"] * r["seq_len"] / hosts / step_s})
    demand = max(picked, key=lambda p: p["tokens_per_s_per_host"])
    return {"runs": picked, "hosts": demand["hosts"], "rows_per_host": demand["rows_per_host"],
            "implied_step_s": demand["implied_step_s"],
            "tokens_per_s_per_host": demand["tokens_per_s_per_host"],
            "host_rule": "v4, v5p: 4 chips per host; v5e, v6e: one host up to 8 chips, else 4 per host"}


# ----------------------------------------------------------------------------- prepare


def read_json(path, default=None):
    if default is not None and not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def run_prepare(name, source, out, tokenizer, vocab_size, tokenizer_sample, timings_path) -> dict:
    """prepare(workers=2) once; its wall time (and tokenizer training time) are kept in
    timings_path, so a rerun reuses the shards and reports the first run's times."""
    from hh.data import prepare
    from hh.data import tokenizer as tokenizer_module
    timings = read_json(timings_path, {})
    manifest_path = os.path.join(out, "manifest.json")
    if name in timings and os.path.exists(manifest_path):
        return {**timings[name], "manifest": read_json(manifest_path), "reused": True}
    resumed = os.path.isdir(out) and any(f.endswith(".json") and f.startswith("shard-") for f in os.listdir(out))
    train_s = []
    original = tokenizer_module.train_sentencepiece

    def timed_train(*args, **kwargs):   # prepare trains inside; time that part on its own
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            train_s.append(time.perf_counter() - start)

    tokenizer_module.train_sentencepiece = timed_train
    try:
        start = time.perf_counter()
        manifest = prepare.prepare(source, out, kind="lm_rows", field="text", tokenizer=tokenizer,
                                   vocab_size=vocab_size, tokenizer_sample=tokenizer_sample,
                                   seq_len=SEQ_LEN, workers=2)
        wall = time.perf_counter() - start
    finally:
        tokenizer_module.train_sentencepiece = original
    entry = {"wall_s": wall, "tokenizer_train_s": train_s[0] if train_s else 0.0,
             "resumed": resumed, "text_bytes": text_bytes(out),
             "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    timings[name] = entry
    with open(timings_path, "w") as f:
        json.dump(timings, f, indent=1)
    return {**entry, "manifest": manifest, "reused": False}


def corpus_summary(prep: dict) -> dict:
    m = prep["manifest"]
    tokenize_s = prep["wall_s"] - prep["tokenizer_train_s"]
    return {"text_bytes": prep["text_bytes"], "documents": m["total_documents"], "tokens": m["total_tokens"],
            "rows": m["total_rows"], "shards": len(m["shards"]), "shard_bytes": m["total_bytes"],
            "bytes_per_token": prep["text_bytes"] / m["total_tokens"],
            "prepare_wall_s": prep["wall_s"], "tokenizer_train_s": prep["tokenizer_train_s"],
            "prepare_tokens_per_s": m["total_tokens"] / tokenize_s,
            "prepare_row_tokens_per_s": m["total_rows"] * SEQ_LEN / tokenize_s,
            "prepare_measured_at": prep["measured_at"], "prepare_reused": prep["reused"],
            "prepare_resumed": prep["resumed"]}


# ----------------------------------------------------------------------------- (2) shards


def machine_busy():
    """(busy, total) jiffies of all CPUs: the whole machine, so worker processes and other jobs count."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def evict_page_cache(directory):
    """Drops the shard files from the page cache (POSIX_FADV_DONTNEED, no root needed)."""
    for name in os.listdir(directory):
        if name.endswith(".array_record"):
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def open_batches(shard_dir, rows_per_host, read_threads, workers, prefetch):
    from hh.data.lm_data import lm_batches
    from hh.data.shards import Shards
    from hh.data.shards import ShardRows
    rows = ShardRows(Shards(shard_dir))
    return lm_batches(rows, GLOBAL_BATCH, seed=0, row_range=(0, rows_per_host),
                      read_threads=read_threads, prefetch=prefetch, workers=workers)


def time_shard_batches(shard_dir, rows_per_host, read_threads, workers, cold, prefetch, seconds) -> dict:
    """Startup (open -> first batch, where worker processes start), a warm-up, then batches for at
    least `seconds`; tokens are the model's input positions (rows × seq_len)."""
    if cold:
        evict_page_cache(shard_dir)
    start = time.perf_counter()
    batches = open_batches(shard_dir, rows_per_host, read_threads, workers, prefetch)
    first = next(batches)
    startup = time.perf_counter() - start
    tokens_per_batch = first["inputs"].size
    assert first["inputs"].shape == (rows_per_host, SEQ_LEN), first["inputs"].shape
    warm_until = time.perf_counter() + min(2.0, seconds / 5)
    while time.perf_counter() < warm_until:   # fills the prefetch buffers: steady state from here
        next(batches)
    n, busy0, cpu0 = 0, machine_busy(), time.process_time()
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        next(batches)
        n += 1
    busy1, cpu = machine_busy(), time.process_time() - cpu0
    start = time.perf_counter()
    batches.close()
    close_s = time.perf_counter() - start
    return {"read_threads": read_threads, "workers": workers, "prefetch": prefetch, "cold_cache": cold,
            "startup_s": startup, "close_s": close_s, "batches": n, "seconds": elapsed,
            "batches_per_s": n / elapsed, "tokens_per_s": n * tokens_per_batch / elapsed,
            "main_process_cores": cpu / elapsed,
            "machine_cores_busy": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * (os.cpu_count() or 1)}


# ----------------------------------------------------------------------------- (3) raw text


def time_raw_text(paths, tokenizer_dir, seconds) -> dict:
    """Documents of .jsonl.gz files, one after the other -> tokenize -> pack -> encoded rows, in
    this process, for about `seconds` (or all the files)."""
    from hh.data import shards, text_sources
    from hh.data.prepare import lm_records
    from hh.data.tokenizer import load_tokenizer
    tokenizer = load_tokenizer(tokenizer_dir)
    counts = {"documents": 0, "tokens": 0, "rows": 0}
    documents = (doc for path in paths for doc in text_sources.file_documents(path, "text"))
    records = lm_records(documents, tokenizer, SEQ_LEN, shards.token_dtype(tokenizer.vocab_size), counts)
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in records:
        if time.perf_counter() - start >= seconds:
            break
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"files": len(paths), "seconds": elapsed, **counts,
            "tokens_per_s": counts["tokens"] / elapsed,             # document tokens encoded
            "row_tokens_per_s": counts["rows"] * SEQ_LEN / elapsed,  # packed rows out (as (2) counts)
            "process_cores": cpu / elapsed}


# ----------------------------------------------------------------------------- (4) memory


def vm_hwm_kb(pid="self") -> int:
    """Peak RSS of a process's address space (VmHWM). Not ru_maxrss: Linux carries a process's
    max RSS across execve, so a child forked from this (large) benchmark process would report the
    parent's RSS at fork."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def rss_child(shard_dir, rows_per_host, workers, n_batches):
    """In a fresh process: RSS after the imports (jax, grain, hh), after reading n_batches, and the
    peak (which includes the imports' own transient peak)."""
    import psutil

    # imported before the baseline is taken: the imports are not the reading's memory
    from hh.data.lm_data import lm_batches  # noqa: F401
    from hh.data.shards import Shards
    me = psutil.Process()
    rss_imports, hwm_imports = me.memory_info().rss, vm_hwm_kb()
    batches = open_batches(shard_dir, rows_per_host, 1, workers, 2)
    for _ in range(n_batches):
        next(batches)
    rss_read = me.memory_info().rss
    children = me.children(recursive=True)
    workers_rss = sum(c.memory_info().rss for c in children)
    workers_hwm = sum(vm_hwm_kb(c.pid) for c in children)
    touched = np.concatenate([batches.sampler.indices(k)[:rows_per_host] for k in range(n_batches)])
    shards_touched = len(set(np.searchsorted(Shards(shard_dir).offsets, touched, side="right").tolist()))
    peak = vm_hwm_kb()
    batches.close()
    print(json.dumps({
        "workers": workers, "batches": n_batches, "peak_rss_kb": peak, "peak_rss_after_imports_kb": hwm_imports,
        "rss_after_imports_kb": rss_imports // 1024, "rss_after_reading_kb": rss_read // 1024,
        "workers_rss_kb": workers_rss // 1024, "workers_peak_rss_kb": workers_hwm,   # summed over workers
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,   # see vm_hwm_kb
        "rows_read": len(touched), "row_index_min": int(touched.min()),
        "row_index_max": int(touched.max()), "shards_touched": shards_touched}))


def measure_rss(shard_dir, rows_per_host, workers, n_batches) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_rss_child", shard_dir, str(rows_per_host), str(workers),
           "--rss_batches", str(n_batches)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"memory probe failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("jax", "grain", "array_record", "sentencepiece", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def git_state() -> dict:
    def run(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    dirty = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(dirty),
            "untracked": run("status", "--porcelain").count("??")}


def cpu_model() -> str:
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return platform.processor()


def mb(n):
    return f"{n / 1e6:,.0f} MB"


def tables(result) -> str:
    demand = result["demand"]["tokens_per_s_per_host"]
    lines = ["| source | settings | startup / close | tokens/s | × per-host demand |", "|---|---|---|---|---|"]
    for r in result["array_record"]:
        setting = f"read_threads={r['read_threads']}, workers={r['workers']}, prefetch={r['prefetch']}"
        setting += ", cold page cache" if r["cold_cache"] else ""
        lines.append(f"| ArrayRecord shards ({result['array_record_corpus']}) | {setting} | "
                     f"{r['startup_s']:.2f} / {r['close_s']:.2f} s | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s'] / demand:,.1f}× |")
    raw = result["raw_text"]
    lines.append(f"| raw .jsonl.gz, tokenize + pack | 1 process ({raw['process_cores']:.1f} cores busy) | – | "
                 f"{raw['row_tokens_per_s']:,.0f} | {raw['row_tokens_per_s'] / demand:,.1f}× |")
    for name, c in result["corpora"].items():
        lines.append(f"| prepare, 2 workers ({name}, {mb(c['text_bytes'])}) | wall {c['prepare_wall_s']:.0f} s "
                     f"(tokenizer {c['tokenizer_train_s']:.0f} s) | – | {c['prepare_row_tokens_per_s']:,.0f} | "
                     f"{c['prepare_row_tokens_per_s'] / demand:,.1f}× |")
    lines += ["", ("| corpus | text | shards | shard bytes | rows | workers | peak RSS | RSS after imports "
                   "-> after reading | workers' peak RSS (sum) |"), "|---|---|---|---|---|---|---|---|---|"]
    for m in result["memory"]:
        c = result["corpora"][m["corpus"]]
        lines.append(f"| {m['corpus']} | {mb(c['text_bytes'])} | {c['shards']} | {mb(c['shard_bytes'])} | "
                     f"{c['rows']:,} | {m['workers']} | {m['peak_rss_kb'] / 1024:,.1f} MiB | "
                     f"{m['rss_after_imports_kb'] / 1024:,.1f} -> {m['rss_after_reading_kb'] / 1024:,.1f} MiB | "
                     f"{m['workers_peak_rss_kb'] / 1024:,.1f} MiB |")
    return "\n".join(lines)


def main(args):
    mode = "quick" if args.quick else "full"
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    vocab = args.vocab_size or (2048 if args.quick else 65536)
    sample = min(args.tokenizer_sample, 400) if args.quick else args.tokenizer_sample
    root = os.path.join(args.work_dir, mode)
    out_path = args.out or (os.path.join(root, "input_pipeline.json") if args.quick
                            else os.path.join(REPO, "benchmarks", "results", "input_pipeline.json"))
    t0 = time.perf_counter()
    load0, git = os.getloadavg(), git_state()   # the code that runs, should a commit land meanwhile

    demand = per_host_demand()
    rows_per_host = demand["rows_per_host"]
    print(f"per-host demand: {demand['tokens_per_s_per_host']:,.0f} tokens/s ({rows_per_host} rows every "
          f"{demand['implied_step_s']:.2f} s, {demand['hosts']} hosts)", flush=True)

    text_dir = os.path.join(root, "text")
    n_large, per_file = SIZES[mode]["large"]
    n_small = SIZES[mode]["small"][0]
    text = ensure_corpus(text_dir, n_large, per_file)
    # the small corpus is the first files of the large one: the same text, 10x less of it
    assert n_small <= 10, "the small corpus' glob names files 0-9"
    sources = {"small": f"files:{text_dir}/part-0000[0-{n_small - 1}].jsonl.gz",
               "large": f"files:{text_dir}/part-*.jsonl.gz"}
    timings = os.path.join(root, "timings.json")
    shard_dirs = {k: os.path.join(root, f"shards-{k}") for k in sources}
    preps = {"small": run_prepare("small", sources["small"], shard_dirs["small"], "train", vocab, sample, timings)}
    tokenizer_dir = os.path.join(shard_dirs["small"], "tokenizer")
    preps["large"] = run_prepare("large", sources["large"], shard_dirs["large"], tokenizer_dir, vocab, sample, timings)
    corpora = {k: corpus_summary(p) for k, p in preps.items()}
    for k, c in corpora.items():
        print(f"{k}: {mb(c['text_bytes'])} text, {c['tokens']:,} tokens, {c['rows']:,} rows, "
              f"{mb(c['shard_bytes'])} of shards; prepare {c['prepare_wall_s']:.1f} s"
              f"{' (reused)' if c['prepare_reused'] else ''}", flush=True)

    array_record = []
    for read_threads, workers, cold in SETTINGS:
        r = time_shard_batches(shard_dirs["large"], rows_per_host, read_threads, workers, cold,
                               args.prefetch, seconds)
        print(f"shards threads={read_threads} workers={workers} cold={cold}: {r['tokens_per_s']:,.0f} tokens/s "
              f"(startup {r['startup_s']:.2f} s)", flush=True)
        array_record.append(r)

    raw = time_raw_text([corpus_file(text_dir, i) for i in range(n_large)], tokenizer_dir, seconds)
    print(f"raw text: {raw['tokens_per_s']:,.0f} document tokens/s, {raw['row_tokens_per_s']:,.0f} row tokens/s",
          flush=True)

    memory = []
    for name in ("small", "large"):
        for workers in (0, 2):
            m = measure_rss(shard_dirs[name], rows_per_host, workers, args.rss_batches)
            memory.append({"corpus": name, **m})
            print(f"memory {name} workers={workers}: peak {m['peak_rss_kb'] / 1024:.1f} MiB", flush=True)

    result = {
        "benchmark": "input_pipeline", "mode": mode, "seq_len": SEQ_LEN, "global_batch_size": GLOBAL_BATCH,
        "vocab_size": vocab, "tokenizer_sample": sample, "demand": demand,
        "text_files": text, "corpora": corpora, "array_record_corpus": "large", "array_record": array_record,
        "raw_text": raw, "memory": memory, "work_dir": args.work_dir,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "loadavg_start": load0,
                    "loadavg_end": os.getloadavg(), **versions()},
        "git": git, "wall_s": time.perf_counter() - t0,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print()
    print(tables(result))
    print(f"\nwrote {out_path} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS._rss_child:
        directory, rows, workers = ARGS._rss_child
        rss_child(directory, int(rows), int(workers), ARGS.rss_batches)
    else:
        main(ARGS)
