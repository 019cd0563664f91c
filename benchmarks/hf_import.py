"""Load time and peak host memory of importing a random Hugging Face Llama into sharded hh params.

    python benchmarks/hf_import.py --layers 24 --d-model 1024 --heads 16 --kv-heads 4 --d-ff 2816 \
        --vocab 32000 --fsdp 8 --dir /tmp/hf-bench

Two fresh processes: one builds and saves the random model with transformers (torch), one loads
it with `hh.checkpoints.hf_import.load_hf_model` on `--fsdp` fake CPU devices (an fsdp mesh, so
every device holds and reads 1/fsdp of each large weight). Peak RSS of the loader includes its
device buffers, which on the CPU backend are host memory: the overhead is peak minus params bytes.
The last stdout line is one JSON object.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def make(args):
    import torch
    import transformers
    config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.d_ff,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=2048, tie_word_embeddings=False)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(args.dir, max_shard_size="2GB")


def load(args):
    import jax
    import numpy as np
    from configs.common import SHARDING_RULES
    from hh.checkpoints.hf_import import load_hf_model
    from hh.parallel import sharding as shd
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mesh = shd.make_mesh({"data": 1, "fsdp": args.fsdp, "tensor": 1})
    start = time.perf_counter()
    cfg, params = load_hf_model(args.dir, mesh=mesh, rules=shd.rules_from_config(SHARDING_RULES))
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    kib = {k: int(status[k].split()[0]) for k in ("RssAnon", "RssFile") if k in status}
    print(json.dumps(dict(
        params=n, params_gib=round(n * 4 / 2**30, 3), load_s=round(seconds, 2), fsdp=args.fsdp,
        rss_before_load_gib=round(base / 2**20, 3), peak_rss_gib=round(peak / 2**20, 3),
        overhead_gib=round((peak - base) / 2**20 - n * 4 / 2**30, 3),
        # After the load: anonymous memory (device buffers + allocator) vs mapped file pages
        # (the page cache of the safetensors, reclaimable, counted in RSS while mapped).
        rss_anon_gib=round(kib.get("RssAnon", 0) / 2**20, 3), rss_file_gib=round(kib.get("RssFile", 0) / 2**20, 3),
        per_device_gib=round(n * 4 / 2**30 / args.fsdp, 3), jax=jax.__version__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("layers", 24), ("d-model", 1024), ("heads", 16), ("kv-heads", 4),
                          ("d-ff", 2816), ("vocab", 32000), ("fsdp", 8)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--dir", default="/tmp/hf-bench")
    parser.add_argument("--phase", choices=("all", "make", "load"), default="all")
    args = parser.parse_args()
    if args.phase == "make":
        return make(args)
    if args.phase == "load":
        return load(args)
    me = [sys.executable, os.path.abspath(__file__)] + [a for a in sys.argv[1:]]
    if not os.path.exists(os.path.join(args.dir, "config.json")):
        subprocess.run(me + ["--phase", "make"], check=True)
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={args.fsdp}")
    subprocess.run(me + ["--phase", "load"], check=True, env=env)


if __name__ == "__main__":
    main()
