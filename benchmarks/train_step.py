"""Train-step throughput and MFU of the LM stage on one device.

    .venv/bin/python benchmarks/train_step.py --preset 13M --seq 1024 [--batch 4] [--steps 3]

In one process: (a) the device's practical peak, the FLOP/s of a large float32 `a @ b`;
(b) the real LM train step (configs/lm.py + hh.lm.stage.build_task: the same jitted step the loop
runs), compiled once, warmed up, then timed; (c) model FLOPs per step from hh.train.flops;
(d) MFU = achieved model FLOP/s / matmul peak. The last stdout line is one JSON object.
`--profile DIR` adds a per-op time breakdown of one traced step. See benchmarks/README.md.
"""

import argparse
import collections
import glob
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

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
                   help="model compute dtype (params stay float32)")
    p.add_argument("--peak-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="dtype of the peak matmul: bfloat16 for a bf16 step on a GPU/TPU, whose bf16 "
                        "peak is many times its float32 one")
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--vocab", type=int, default=None,
                   help="vocabulary size; default: the preset's (2^16 for the paper sizes), not "
                        "configs/lm.py's byte-tokenizer 384")
    p.add_argument("--attention", choices=("dense", "blockwise", "fused"), default=None,
                   help="override config.model.attention")
    p.add_argument("--remat", choices=("none", "full", "dots"), default=None,
                   help="override config.model.remat")
    p.add_argument("--matmul-size", type=int, default=4096, help="side of the square peak matmul")
    p.add_argument("--matmul-runs", type=int, default=10,
                   help="timed runs of the peak matmul (half before, half after the train steps)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="skip (a) and use this peak instead (quick experiments only)")
    p.add_argument("--cost-analysis", action="store_true",
                   help="also print XLA's own FLOP count of the compiled step (a cross-check)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="trace one extra step into DIR and print where its time goes")
    p.add_argument("--profile-top", type=int, default=15, help="ops listed by --profile")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- (a) peak


def _cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MatmulPeak:
    """Median time of a jitted [n, n] @ [n, n] of `dtype` on `device`, sampled in batches.

    Sampling half the runs before and half after the train steps puts the peak and the step
    under similar conditions on a shared machine; the two halves' medians are reported too.
    """

    def __init__(self, device, n, dtype="float32"):
        ka, kb = jax.random.split(jax.random.key(0))
        self.a = jax.device_put(jax.random.normal(ka, (n, n), dtype), device)
        self.b = jax.device_put(jax.random.normal(kb, (n, n), dtype), device)
        self.flops = 2.0 * n**3
        self.matmul = jax.jit(lambda x, y: x @ y)
        for _ in range(2):                                  # compile, then warm caches
            self.matmul(self.a, self.b).block_until_ready()
        self.batches = []
        self.cpu_s = 0.0                                    # process CPU time over all samples

    def sample(self, runs):
        times, cpu = [], _cpu_s()
        for _ in range(runs):
            start = time.perf_counter()
            self.matmul(self.a, self.b).block_until_ready()
            times.append(time.perf_counter() - start)
        self.cpu_s += _cpu_s() - cpu
        self.batches.append(times)
        return statistics.median(times)

    @property
    def times(self):
        return [t for batch in self.batches for t in batch]

    def flop_per_s(self):
        return self.flops / statistics.median(self.times)

    def release(self):
        del self.a, self.b


# ----------------------------------------------------------------------------- (b) the step


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


# ----------------------------------------------------------------------------- profile


def _hlo_ops(hlo_text):
    """HLO instruction name -> (shape, is_matmul, is_batched_matmul, op_name metadata)."""
    computations, current = {}, None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if header:
            current = computations.setdefault(header.group(1), [])
        elif current is not None and line.startswith("  "):
            current.append(line)
    dots = {}
    for name, body in computations.items():
        dot_lines = [l for l in body if re.search(r" (dot|convolution)\(", l)]
        if dot_lines:
            dots[name] = dot_lines[0]
    ops = {}
    for body in computations.values():
        for line in body:
            m = re.match(r"^\s*(?:ROOT )?%([\w.\-]+) = (\([^=]*?\)|\S+) ([\w\-]+)\(", line)
            if not m:
                continue
            name, shape, opcode = m.groups()
            called = re.search(r"calls=%([\w.\-]+)", line)
            dot_line = line if opcode in ("dot", "convolution") else (
                dots.get(called.group(1)) if called else None)
            meta = re.search(r'op_name="([^"]*)"', line) or (
                re.search(r'op_name="([^"]*)"', dot_line) if dot_line else None)
            ops[name] = (re.sub(r"\{[^}]*\}", "", shape), dot_line is not None,
                         bool(dot_line and "lhs_batch_dims" in dot_line), meta.group(1) if meta else "")
    return ops


def _category(op):
    _, is_matmul, batched, where = op
    kind = "matmul" if is_matmul else "other"
    if "lm_head" in where:
        part = "LM head"
    elif "/embed/" in where:
        part = "embedding lookup/grad"
    elif batched or re.search(r"attention/(bqhgd|bhgqk|.*softmax|jit\(_where\)|div|reduce|exp)", where):
        part = "attention core (QK, softmax, AV)"
    elif "layer_" in where or "/stack/" in where:
        part = "blocks (qkv/out/mlp, norms, rotary)"
    elif "final_norm" in where:
        part = "final norm"
    elif "jvp(" in where:
        part = "loss (log-softmax, argmax, masks)"
    elif where:
        part = "optimizer/metrics (clip, Adam, norms)"
    else:
        part = "unattributed"
    return part, kind


def profile_step(compiled, run_step, state, directory, top):
    """Traces one step into `directory`; prints time per category and the slowest ops."""
    ops = _hlo_ops(compiled.as_text())
    with jax.profiler.trace(directory):
        state, metrics = run_step(state)
        jax.block_until_ready((state, metrics))
    files = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    data = jax.profiler.ProfileData.from_file(files[-1])
    per_op, wall = collections.Counter(), 0
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in ops:
                    per_op[event.name] += event.duration_ns
                elif event.name.startswith("ThunkExecutor::Execute (wait"):
                    wall += event.duration_ns
    total = sum(per_op.values())
    if not total:
        print("    profile: no HLO op events found in the trace (non-CPU backend?)")
        return state, metrics
    by_part = collections.defaultdict(collections.Counter)
    for name, ns in per_op.items():
        part, kind = _category(ops[name])
        by_part[part][kind] += ns
    print(f"    profile of one step ({directory}): {total / 1e9:.2f} s summed over ops"
          + (f", {wall / 1e9:.2f} s wall in the executable" if wall else "")
          + " (Eigen `dot` ops run asynchronously on CPU: their traced time is a lower bound)")
    for part, kinds in sorted(by_part.items(), key=lambda kv: -sum(kv[1].values())):
        ns = sum(kinds.values())
        print(f"      {ns / 1e6:8.0f} ms {ns / total:6.1%}  {part:40s} matmul "
              f"{kinds['matmul'] / 1e6:6.0f} ms, other {kinds['other'] / 1e6:6.0f} ms")
    print("    slowest ops:")
    for name, ns in per_op.most_common(top):
        shape, _, _, where = ops[name]
        where = re.sub(r"^jit\(train_step\)/", "", where)
        print(f"      {ns / 1e6:8.1f} ms  {name:30s} {shape:26s} {where[-72:]}")
    return state, metrics


# ----------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device_name(device)}; using 1 of {jax.device_count()} "
          f"devices; load average {os.getloadavg()[0]:.2f}", flush=True)

    # (a) practical peak, first half.
    peak_probe = None
    if args.peak_gflops is None:
        peak_probe = MatmulPeak(device, args.matmul_size, args.peak_dtype)
        before = peak_probe.sample(max(1, (args.matmul_runs + 1) // 2))

    # (b) the project's LM train step, built as the LM stage builds it.
    config = bench_config(args)
    validate(config, 1)
    mesh = shd.make_mesh(dict(config.mesh), [device])
    rules = shd.rules_from_config(config.sharding.rules)
    task = build_task(config, mesh, rules, verbose=False)
    cfg = runtime.model_config(config)
    non_embedding, params_total = presets.parameter_counts(cfg)
    n_matmul = matmul_params(cfg)

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
          f"{n_matmul:,} in matmuls", flush=True)
    print(f"    compile: {compile_s:.1f} s (trace+lower {lower_s:.1f} s)", flush=True)
    memory = compiled.memory_analysis()
    if memory is not None and getattr(memory, "temp_size_in_bytes", None):
        fresh = " (on CPU: allocated afresh by every step)" if device.platform == "cpu" else ""
        print(f"    XLA buffers: {memory.temp_size_in_bytes / 2**30:.2f} GiB temporaries per "
              f"step{fresh}, {memory.argument_size_in_bytes / 2**30:.2f} GiB state+batch", flush=True)

    def run_step(state):
        with runtime.sharding_context(mesh, rules):
            return compiled(state, batch)

    metrics = None
    for _ in range(args.warmup):
        state, metrics = run_step(state)
    jax.block_until_ready((state, metrics))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = run_step(state)
    jax.block_until_ready((state, metrics))
    step_s = (time.perf_counter() - start) / args.steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    loss = float(metrics["loss"])
    tokens = args.batch * args.seq
    tokens_per_s = tokens / step_s
    print(f"    step: {step_s:.3f} s (mean of {args.steps} after {args.warmup} warmup), "
          f"{tokens_per_s:,.0f} tokens/s, loss {loss:.3f}", flush=True)
    user = (after.ru_utime - usage.ru_utime) / args.steps
    system = (after.ru_stime - usage.ru_stime) / args.steps
    cpu_share = (user + system) / (step_s * (os.cpu_count() or 1))
    print(f"    per step: user {user:.2f} s + sys {system:.2f} s CPU ({cpu_share:.0%} of "
          f"{os.cpu_count()} cores), {(after.ru_minflt - usage.ru_minflt) / args.steps:,.0f} minor "
          f"page faults; load average {os.getloadavg()[0]:.2f}", flush=True)

    # (a) practical peak, second half.
    if peak_probe is not None:
        after_peak = peak_probe.sample(max(1, args.matmul_runs // 2))
        peak = peak_probe.flop_per_s()
        times = peak_probe.times
        print(f"(a) {args.peak_dtype} matmul {args.matmul_size}³: median {statistics.median(times) * 1e3:.1f} ms "
              f"of {len(times)} (before the steps {before * 1e3:.1f} ms, after "
              f"{after_peak * 1e3:.1f} ms; min {min(times) * 1e3:.1f}) -> "
              f"{peak / 1e9:.1f} GFLOP/s", flush=True)
        if max(before, after_peak) > 1.25 * min(before, after_peak):
            print("    WARNING: the peak moved by more than 25% during the run: the machine is "
                  "shared or throttling, so the MFU below is unreliable", flush=True)
        peak_probe.release()
    else:
        peak = args.peak_gflops * 1e9
        print(f"(a) matmul peak: not measured, using --peak-gflops {args.peak_gflops}", flush=True)

    # (c) model FLOPs, (d) MFU.
    flops_per_step = train_flops_per_token(cfg, args.seq) * tokens
    achieved = flops_per_step / step_s
    mfu = achieved / peak
    print(f"(c) model FLOPs/step: {flops_per_step / 1e12:.4f} TFLOP = {tokens} tokens × "
          f"(6 × {n_matmul:,} + attention {attention_flops_per_token(cfg, args.seq):,.0f})",
          flush=True)
    if args.cost_analysis:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = (cost or {}).get("flops")
        if xla_flops:
            print(f"    XLA cost analysis: {xla_flops / 1e12:.4f} TFLOP/step "
                  f"({xla_flops / flops_per_step:.3f}× the model count)", flush=True)
    print(f"(d) achieved {achieved / 1e9:.1f} GFLOP/s of {peak / 1e9:.1f} GFLOP/s matmul peak: "
          f"MFU {mfu:.1%}", flush=True)
    if peak_probe is not None and peak_probe.cpu_s > 0 and user + system > 0:
        # FLOPs per CPU-second of this process, step vs matmul: other jobs on a shared machine
        # stretch wall time but (spin-waits aside) not the CPU time a computation needs.
        step_rate = flops_per_step / (user + system)
        matmul_rate = peak_probe.flops * len(peak_probe.times) / peak_probe.cpu_s
        print(f"    per CPU-second: step {step_rate / 1e9:.1f}, matmul {matmul_rate / 1e9:.1f} "
              f"GFLOP/cpu-s -> {step_rate / matmul_rate:.1%} (a cross-check that depends less on "
              f"other jobs sharing the machine)", flush=True)

    if args.profile:
        state, metrics = profile_step(compiled, run_step, state, args.profile, args.profile_top)

    result = dict(
        preset=args.preset, seq=args.seq, batch=args.batch, dtype=args.dtype, peak_dtype=args.peak_dtype,
        attention=cfg.attention,
        params_total=params_total, matmul_params=n_matmul,
        tokens_per_s=round(tokens_per_s, 1), step_s=round(step_s, 4), compile_s=round(compile_s, 2),
        model_tflops_per_step=round(flops_per_step / 1e12, 5),
        achieved_gflops=round(achieved / 1e9, 2), matmul_peak_gflops=round(peak / 1e9, 2),
        mfu=round(mfu, 4), jax_version=jax.__version__, device=device_name(device))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
