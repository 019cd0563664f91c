"""Train-step throughput and MFU of the LM stage on one device.

    .venv/bin/python benchmarks/train_step.py --preset 13M --seq 1024 [--batch 4] [--steps 3]

In one process: (a) the device's practical peak, the FLOP/s of a large float32 `a @ b`;
(b) the real LM train step (configs/lm.py + hh.lm.stage.build_task, the same jitted step the loop
runs), compiled once, warmed up, then timed; (c) model FLOPs per step from hh.train.flops;
(d) MFU = achieved model FLOP/s / matmul peak. The last stdout line is one JSON object.
See benchmarks/README.md.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from configs import lm as lm_config  # noqa: E402
from hh.config import validate  # noqa: E402
from hh.lm.stage import build_task  # noqa: E402
from hh.models import presets  # noqa: E402
from hh.parallel import sharding as shd  # noqa: E402
from hh.train import runtime  # noqa: E402
from hh.train.flops import attention_flops_per_token, matmul_params, train_flops_per_token  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="13M", help="model preset (configs/lm.py:<preset>)")
    p.add_argument("--seq", type=int, default=1024, help="sequence length")
    p.add_argument("--batch", type=int, default=4, help="global batch size (rows)")
    p.add_argument("--steps", type=int, default=3, help="timed train steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="model compute dtype (params stay float32); the peak is float32")
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--vocab", type=int, default=None,
                   help="vocabulary size; default: the preset's (2^16 for the paper sizes), not "
                        "configs/lm.py's byte-tokenizer 384")
    p.add_argument("--attention", choices=("dense", "blockwise"), default=None,
                   help="override config.model.attention")
    p.add_argument("--remat", choices=("none", "full", "dots"), default=None,
                   help="override config.model.remat")
    p.add_argument("--matmul-size", type=int, default=4096, help="side of the square peak matmul")
    p.add_argument("--matmul-runs", type=int, default=10, help="timed runs of the peak matmul")
    p.add_argument("--skip-peak", action="store_true",
                   help="skip (a); MFU is then reported against --peak-gflops (if given)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="use this peak instead of measuring it (with --skip-peak)")
    p.add_argument("--cost-analysis", action="store_true",
                   help="also print XLA's own FLOP count of the compiled step (a cross-check)")
    return p.parse_args(argv)


def matmul_peak(device, n, runs):
    """Median FLOP/s of a jitted float32 [n, n] @ [n, n] on `device`."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(ka, (n, n), jnp.float32), device)
    b = jax.device_put(jax.random.normal(kb, (n, n), jnp.float32), device)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()                      # compile + warm caches
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return 2.0 * n**3 / median, median, times


def bench_config(args):
    """configs/lm.py:<preset> with the benchmark's shape, dtype and a one-device mesh."""
    config = lm_config.get_config(args.preset)
    config.data.seq_len = args.seq
    config.train.global_batch_size = args.batch
    config.train.eval_batch_size = args.batch
    config.train.microbatches = args.microbatches
    config.model.dtype = args.dtype
    config.model.vocab_size = args.vocab or presets.model_fields(args.preset)["vocab_size"]
    if args.attention:
        config.model.attention = args.attention
    if args.remat:
        config.model.remat = args.remat
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
    return config


def device_name(device):
    cpu = ""
    if device.platform == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            cpu = platform.processor()
        cpu = f" ({cpu}, {os.cpu_count()} cores)"
    kind = device.device_kind if device.device_kind != device.platform else ""
    return f"{device.platform}{':' + kind if kind else ''}{cpu}"


def main(argv=None):
    args = parse_args(argv)
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device_name(device)}; using 1 of {jax.device_count()} devices",
          flush=True)

    # (a) practical peak.
    if args.skip_peak:
        peak = args.peak_gflops * 1e9 if args.peak_gflops else None
        print(f"(a) matmul peak: skipped (using {args.peak_gflops} GFLOP/s)", flush=True)
    else:
        peak, median, times = matmul_peak(device, args.matmul_size, args.matmul_runs)
        print(f"(a) float32 matmul {args.matmul_size}³: median {median * 1e3:.1f} ms "
              f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}) -> "
              f"{peak / 1e9:.1f} GFLOP/s", flush=True)

    # (b) the project's LM train step.
    config = bench_config(args)
    validate(config, 1)
    mesh = shd.make_mesh(dict(config.mesh), [device])
    rules = shd.rules_from_config(config.sharding.rules)
    task = build_task(config, mesh, rules, verbose=False)
    cfg = runtime.model_config(config)
    non_embedding, params_total = presets.parameter_counts(cfg)

    state = task.init_state()
    batch = shd.make_global_batch(next(task.train_batches), task.batch_sharding, args.batch)
    jax.block_until_ready((state, batch))

    start = time.perf_counter()
    with runtime.sharding_context(mesh, rules):
        lowered = task.train_step.jitted.lower(state, batch)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = lower_s + (time.perf_counter() - start)
    print(f"(b) {args.preset}: L={cfg.n_layers} d={cfg.d_model} heads={cfg.n_heads}×{cfg.d_head} "
          f"vocab={cfg.vocab_size} dtype={cfg.dtype} attention={cfg.attention} remat={cfg.remat}; "
          f"batch {args.batch} × seq {args.seq}, {args.microbatches} microbatch(es)", flush=True)
    print(f"    params: {params_total:,} total, {non_embedding:,} non-embedding, "
          f"{matmul_params(cfg):,} in matmuls", flush=True)
    print(f"    compile: {compile_s:.1f} s (trace+lower {lower_s:.1f} s)", flush=True)

    def run_step(state):
        with runtime.sharding_context(mesh, rules):
            return compiled(state, batch)

    for _ in range(args.warmup):
        state, metrics = run_step(state)
    jax.block_until_ready((state, metrics) if args.warmup else state)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = run_step(state)
    jax.block_until_ready((state, metrics))
    step_s = (time.perf_counter() - start) / args.steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_note = (f"per step: user {(after.ru_utime - usage.ru_utime) / args.steps:.2f} s, "
                f"sys {(after.ru_stime - usage.ru_stime) / args.steps:.2f} s CPU, "
                f"{(after.ru_minflt - usage.ru_minflt) / args.steps:,.0f} minor page faults")
    loss = float(metrics["loss"])

    # (c) model FLOPs, (d) MFU.
    tokens = args.batch * args.seq
    flops_per_step = train_flops_per_token(cfg, args.seq) * tokens
    achieved = flops_per_step / step_s
    mfu = achieved / peak if peak else None
    tokens_per_s = tokens / step_s
    print(f"    step: {step_s:.3f} s over {args.steps} steps ({args.warmup} warmup), "
          f"{tokens_per_s:,.0f} tokens/s, loss {loss:.3f}", flush=True)
    print(f"    {cpu_note}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"(c) model FLOPs/step: {flops_per_step / 1e12:.4f} TFLOP = tokens {tokens} × "
          f"(6·{matmul_params(cfg):,} + attention {attention_flops_per_token(cfg, args.seq):,.0f})",
          flush=True)
    if args.cost_analysis:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = (cost or {}).get("flops")
        if xla_flops:
            print(f"    XLA cost analysis: {xla_flops / 1e12:.4f} TFLOP/step "
                  f"({xla_flops / flops_per_step:.3f}× the model count)", flush=True)
    mfu_text = f"{mfu:.1%}" if mfu is not None else "n/a"
    print(f"(d) achieved {achieved / 1e9:.1f} GFLOP/s of "
          f"{peak / 1e9 if peak else float('nan'):.1f} GFLOP/s matmul peak: MFU {mfu_text}",
          flush=True)

    result = dict(
        preset=args.preset, seq=args.seq, batch=args.batch, dtype=args.dtype,
        params_total=params_total, matmul_params=matmul_params(cfg),
        tokens_per_s=round(tokens_per_s, 1), step_s=round(step_s, 4), compile_s=round(compile_s, 2),
        model_tflops_per_step=round(flops_per_step / 1e12, 5),
        achieved_gflops=round(achieved / 1e9, 2),
        matmul_peak_gflops=round(peak / 1e9, 2) if peak else None,
        mfu=round(mfu, 4) if mfu is not None else None,
        jax_version=jax.__version__, device=device_name(device))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
