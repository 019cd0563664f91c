"""Does a stage's train step fit a TPU slice? Compiles the REAL step ahead of time for a topology,
from a CPU, and reads the compiler's per-chip memory and FLOPs: nothing runs, no data is read.

`python -m hh.tools.fit --config configs/ppo.py:52B --topology v5p:8x8x8 [--mesh data=1,fsdp=-1,
tensor=4] [--config.model.attention=blockwise] [--json fit.json]`. Needs libtpu (`pip install
-e .[tpu]`). The steps are the stages' own (hh.lm.stage.build_steps, hh.pm.stage.build_steps,
hh.rl.iteration.build_phases, hh.dpo.stage.build_steps); PPO compiles its rollout, scoring and update
phases, DPO its reference forward and update (docs/scale-out.md).
"""

import json
import math
import os
import re
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags
from jax.experimental import topologies
from ml_collections import config_flags

from hh.config import ConfigError, validate
from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.dpo_data import dpo_batches
from hh.data.packing import lm_example
from hh.data.pm_data import pm_batches
from hh.data.prompt_data import prompt_batches
from hh.dpo import stage as dpo_stage
from hh.lm import stage as lm_stage
from hh.models import presets
from hh.parallel import sharding as shd
from hh.tools.mesh_choice import propose_mesh
from hh.pm import stage as pm_stage
from hh.rl.iteration import build_phases
from hh.rl.stage import build_models, build_optimizers, frozen_layout, ppo_state_layout, validate_ppo
from hh.train import flops as model_flops
from hh.train import runtime

GiB = 2**30
# generation: (HBM bytes per chip, bf16 peak FLOP/s per chip), as Google's TPU pages state them:
# cloud.google.com/tpu/docs/v4 "32 GiB, 275 teraflops"; /v5e "16 GB, 197 TFLOPs"; /v5p "95GB,
# 459 TFLOPs"; /v6e "32 GB, 918 TFLOPs".
CHIPS = {
    "v4": (32 * GiB, 275e12),
    "v5e": (16e9, 197e12),
    "v5p": (95e9, 459e12),
    "v6e": (32e9, 918e12),
}
# What the compiler lets a program use per device (its RESOURCE_EXHAUSTED message, "exceeds
# available HBM (…G)", libtpu 0.0.42): the fit threshold. v4 topologies list each of a chip's
# two TensorCores as a device, so a v4 device has half a chip's HBM and peak.
HBM_AVAILABLE = {"v4": 15.25 * GiB, "v5e": 15.75 * GiB, "v5p": 95.74 * GiB, "v6e": 31.25 * GiB}


# ----------------------------------------------------------------------------- topology and config


def topology_devices(topology: str):
    """'v5p:2x2x1' -> (generation, chips, the topology's devices). Needs libtpu, not a TPU."""
    # libtpu takes /tmp/libtpu_lockfile unless told otherwise: without this, any other JAX process
    # on the machine (a test, a notebook) that loaded libtpu first makes the fit check fail.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    generation, _, shape = topology.partition(":")
    if generation not in CHIPS or not shape:
        raise ValueError(f"--topology={topology!r}: use GEN:AxB[xC] with GEN one of {sorted(CHIPS)}")
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
    return generation, math.prod(int(d) for d in shape.split("x")), list(desc.devices)


def parse_mesh(spec: str) -> dict:
    """'data=1,fsdp=-1,tensor=4' -> {'data': 1, 'fsdp': -1, 'tensor': 4}."""
    sizes = dict(item.split("=") for item in spec.split(",") if item)
    return {axis: int(size) for axis, size in sizes.items()}


def use_paper_vocab(config):
    """Paper presets get the paper's 2^16 vocabulary (Askell et al. App. A): the configs' default
    is the per-run SentencePiece tokenizer's 512, which a real run replaces with its tokenizer's."""
    if config.model_preset in presets.PAPER_SIZES:
        config.model.vocab_size = presets.PAPER_VOCAB
    return config


class StandInTokenizer(ByteTokenizer):
    """Special ids of the byte tokenizer, vocabulary of the model: the shapes and stop rules a
    real tokenizer gives, without training one."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size


def _validate(config, n_devices):
    if config.stage == "ppo":
        checked = ml_collections.ConfigDict(config.to_dict())
        checked.init_from = checked.reward_model = "(fit check)"   # no workdirs are read
        validate_ppo(checked, n_devices)
    if config.stage in ("pm", "pmp"):
        pm_stage.validate_pm(config)
        pm_stage.resolve_steps(config, config.data.train_pairs)   # one epoch over the configured pairs
    if config.stage == "dpo":
        checked = ml_collections.ConfigDict(config.to_dict())
        checked.init_from = "(fit check)"   # no workdir is read
        dpo_stage.validate_dpo(checked)
        pm_stage.resolve_steps(config, config.data.train_pairs)
    return validate(config, n_devices)


# ----------------------------------------------------------------------------- abstract inputs


def tree_bytes(tree) -> int:
    """Per-device bytes of a tree of ShapeDtypeStructs carrying shardings (none: replicated)."""
    def one(x):
        shape = x.shape if getattr(x, "sharding", None) is None else x.sharding.shard_shape(x.shape)
        return math.prod(shape) * np.dtype(x.dtype).itemsize
    return int(sum(one(x) for x in jax.tree.leaves(tree)))


def abstract_batch(example: dict, batch_sharding, global_batch_size: int) -> dict:
    """One example batch (any row count) -> ShapeDtypeStructs of the global batch, sharded the
    way hh.parallel.sharding.make_global_batch shards the loop's batches."""
    def one(x):
        x = np.asarray(x)
        return jax.ShapeDtypeStruct((global_batch_size, *x.shape[1:]), x.dtype,
                                    sharding=shd.row_sharding(batch_sharding, x.ndim))
    return {k: one(v) for k, v in example.items()}


def _compile(call, mesh, rules, *args) -> dict:
    """Lower and compile one jitted step. A program whose temporaries exceed the device's HBM
    does not compile (RESOURCE_EXHAUSTED): it is kept with the compiler's figure for them."""
    start = time.perf_counter()
    with runtime.sharding_context(mesh, rules):
        lowered = call.jitted.lower(*args)
        try:
            compiled, error = lowered.compile(), None
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            compiled, error = None, str(e).splitlines()[0]
    return {"lowered": lowered, "compiled": compiled, "error": error, "argument_bytes": tree_bytes(args),
            "seconds": time.perf_counter() - start}


def _outputs(phase):
    """A compiled step's outputs as abstract inputs of the next phase."""
    if phase["compiled"] is None:
        return phase["lowered"].out_info
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        phase["compiled"].out_info, phase["compiled"].output_shardings)


# ----------------------------------------------------------------------------- the stages' steps
# Each returns [(phase name, _compile's dict, bytes resident on the device besides the phase's own
# arguments, model FLOPs of the phase over the whole slice)].


def _forward_flops(cfg, tokens, context):
    """Forward matmul FLOPs (hh.train.flops' counting): 2·N per token plus QKᵀ and AV."""
    return tokens * (2 * model_flops.matmul_params(cfg) + model_flops.attention_flops_per_token(cfg, context) / 3)


def lm_phases(config, mesh, rules):
    steps = lm_stage.build_steps(config, mesh, rules, verbose=False)
    seq, batch = config.data.seq_len, config.train.global_batch_size
    zeros = np.zeros((1, seq + 1), np.int32)
    example = lm_example({"tokens": zeros, "segment_ids": zeros + 1, "positions": zeros})
    train = _compile(steps["train_step"], mesh, rules, steps["abstract"],
                     abstract_batch(example, steps["batch_sharding"], batch))
    cfg = steps["model"].cfg
    return [("train", train, 0, model_flops.train_flops_per_token(cfg, seq) * batch * seq)]


def pm_phases(config, mesh, rules):
    seq, batch = config.data.seq_len, config.train.global_batch_size
    tokenizer = StandInTokenizer(config.model.vocab_size)
    example = pm_batches([{"prompt": "", "chosen": "", "rejected": ""}], tokenizer, seq, 1, 0).batch(0)
    steps = pm_stage.build_steps(config, mesh, rules, tokenizer.eoc_id, example, verbose=False)
    train = _compile(steps["train_step"], mesh, rules, steps["abstract"],
                     abstract_batch(example, steps["batch_sharding"], batch))
    cfg = steps["model"].cfg
    # chosen and rejected: two sequences per pair
    return [("train", train, 0, model_flops.train_flops_per_token(cfg, seq) * 2 * batch * seq)]


def ppo_phases(config, mesh, rules):
    """Generate, score and update (hh.rl.iteration), chained through each phase's compiled output
    shardings. Resident all along: the PPO state (policy and value with their optimizer states) and
    the frozen reference and PM; what a phase does not take as an argument is added to its total."""
    seq, batch = config.data.seq_len, config.train.global_batch_size
    tokenizer = StandInTokenizer(config.model.vocab_size)
    models = build_models(config, runtime.model_config(config), tokenizer.eoc_id)   # PM: same preset
    optimizers, schedules = build_optimizers(config)
    state, shardings = ppo_state_layout(models, optimizers, seq, mesh, rules)
    frozen = frozen_layout(models, state.params["policy"], mesh, rules)
    phases = build_phases(config, models, optimizers, schedules["policy"], shardings, mesh, rules, tokenizer)
    example = prompt_batches([{"prompt": ""}], tokenizer, config.data.max_prompt_len, 1, 0).batch(0)
    prompts = abstract_batch(example, shd.batch_sharding(mesh, rules), batch)

    generate = _compile(phases["generate"], mesh, rules, state.params["policy"], prompts, state.step)
    score = _compile(phases["score"], mesh, rules, frozen, prompts, _outputs(generate))
    scored, _ = _outputs(score)
    update = _compile(phases["update"], mesh, rules, state, scored)

    everything = tree_bytes(state) + tree_bytes(frozen) + tree_bytes(prompts)
    cfg, cp, n_new = models["policy"].cfg, config.data.max_prompt_len, config.rollout.max_new_tokens
    flops = {
        # prefill the prompts, then one token per step against the full-length cache
        "generate": _forward_flops(cfg, batch * cp, cp) + _forward_flops(cfg, batch * n_new, seq),
        # the frozen reference and PM forwards over prompt + response
        "score": 2 * _forward_flops(cfg, batch * seq, seq),
        # the policy and value models at θ_old, then K passes of their training steps
        "update": (2 * _forward_flops(cfg, batch * seq, seq)
                   + config.ppo.epochs * 2 * model_flops.train_flops_per_token(cfg, seq) * batch * seq),
    }
    return [
        ("generate", generate,
         everything - tree_bytes((state.params["policy"], prompts, state.step)), flops["generate"]),
        ("score", score, everything - tree_bytes((frozen, prompts)), flops["score"]),
        ("update", update, everything - tree_bytes((state, prompts)), flops["update"]),
    ]


def dpo_phases(config, mesh, rules):
    """The frozen reference's forward, then the policy's update (hh.dpo.stage): the reference params
    stay resident through the update, the policy state through the reference forward."""
    seq, batch = config.data.seq_len, config.train.global_batch_size
    tokenizer = StandInTokenizer(config.model.vocab_size)
    zeros = {"chosen": np.zeros(1), "rejected": np.zeros(1)}
    example = dpo_batches([{"prompt": "", "chosen": "", "rejected": ""}], tokenizer, config.data.max_prompt_len,
                          config.data.max_response_len, 1, 0, reference=zeros).batch(0)
    steps = dpo_stage.build_steps(config, mesh, rules, example, verbose=False)
    pairs = abstract_batch(example, steps["batch_sharding"], batch)
    inputs = {k: v for k, v in pairs.items() if not k.startswith("ref_")}
    state = steps["abstract"]
    reference = _compile(steps["reference"], mesh, rules, state.params, inputs)
    update = _compile(steps["update"], mesh, rules, state, pairs)
    cfg = steps["model"].cfg
    return [
        ("reference", reference, tree_bytes(state), _forward_flops(cfg, 2 * batch * seq, seq)),
        ("update", update, tree_bytes(state.params),
         model_flops.train_flops_per_token(cfg, seq) * 2 * batch * seq),
    ]


BUILDERS = {"lm": lm_phases, "pmp": pm_phases, "pm": pm_phases, "ppo": ppo_phases, "dpo": dpo_phases}


# ----------------------------------------------------------------------------- the report


_TEMPORARIES = re.compile(r"HLO temporaries \(([0-9.]+)G\)")


def _phase_report(phase, resident_other, flops_total, n_devices, peak):
    out = {"resident_other_bytes": int(resident_other)}
    if phase["compiled"] is None:   # did not compile: arguments + the compiler's temporaries
        match = _TEMPORARIES.search(phase["error"])
        out.update(argument_bytes=phase["argument_bytes"], output_bytes=0, alias_bytes=0, code_bytes=0,
                   temp_bytes=int(float(match.group(1)) * GiB) if match else 0, xla_flops=0.0,
                   error=phase["error"])
    else:
        mem, cost = phase["compiled"].memory_analysis(), phase["compiled"].cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out.update(argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                   alias_bytes=int(mem.alias_size_in_bytes), temp_bytes=int(mem.temp_size_in_bytes),
                   code_bytes=int(mem.generated_code_size_in_bytes), xla_flops=float(cost.get("flops", 0.0)))
    out["total_bytes"] = (out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"]
                          + out["temp_bytes"] + out["code_bytes"] + out["resident_other_bytes"])
    out["model_flops"] = float(flops_total) / n_devices
    out["implied_step_s"] = out["model_flops"] / peak
    out["compile_s"] = round(phase["seconds"], 1)
    return out


def fit_report(config, topology: str) -> dict:
    """Compiles `config`'s stage for `topology` (e.g. 'v5p:2x2x1') and reports per-chip memory
    (from compiled.memory_analysis()), FLOPs and whether the peak phase fits the chip's HBM.

    Memory per device: arguments + outputs − donated aliases + temporaries + code, plus (PPO) the
    resident arrays the phase does not take. xla_flops is cost_analysis()'s count per device; XLA
    counts a while loop's body once, so scanned layers, decode steps and PPO minibatches make it an
    undercount. model_flops (hh.train.flops: 6·N + attention per trained token, 2·N + attention
    per forward token; no remat recompute) per device, and implied_step_s = model_flops / peak,
    the step time at 100% MFU.
    """
    if config.stage not in BUILDERS:
        raise ValueError(f"config.stage={config.stage!r}: the fit check knows {sorted(BUILDERS)}")
    generation, chips, devices = topology_devices(topology)
    config, proposed = mesh_for_slice(config, len(devices))
    sizes = _validate(config, len(devices))
    hbm_chip, peak_chip = CHIPS[generation]
    per_chip = len(devices) // chips    # v4 lists both TensorCores of a chip as devices
    hbm, peak = HBM_AVAILABLE[generation], peak_chip / per_chip
    mesh, rules = shd.make_mesh(dict(config.mesh), devices), shd.rules_from_config(config.sharding.rules)
    phases = {name: _phase_report(phase, other, flops, len(devices), peak)
              for name, phase, other, flops in BUILDERS[config.stage](config, mesh, rules)}
    peak_phase = max(phases, key=lambda k: phases[k]["total_bytes"])
    m = config.model
    return {
        "stage": config.stage, "preset": config.model_preset, "topology": topology,
        "generation": generation, "chips": chips, "devices": len(devices), "mesh": sizes,
        "global_batch_size": config.train.global_batch_size, "seq_len": config.data.seq_len,
        "model": {k: m[k] for k in ("vocab_size", "dtype", "param_dtype", "remat", "scan_layers",
                                    "attention", "attention_block")},
        "loss_chunk": config.train.get("loss_chunk", 0),
        "hbm_bytes_per_device": hbm, "hbm_bytes_per_chip_spec": hbm_chip, "peak_flops_per_device": peak,
        "phases": phases, "peak_phase": peak_phase, "peak_bytes": phases[peak_phase]["total_bytes"],
        "fits": phases[peak_phase]["total_bytes"] <= hbm,
        "model_flops_per_device": sum(p["model_flops"] for p in phases.values()),
        "implied_step_s": sum(p["implied_step_s"] for p in phases.values()),
        "compile_s": round(sum(p["compile_s"] for p in phases.values()), 1),
        **({"mesh_proposed": proposed} if proposed else {}),
    }


def mesh_for_slice(config, n_devices: int):
    """(config, None) when config.mesh is valid on n_devices; otherwise (a copy with the mesh
    that hh.tools.mesh_choice proposes, {"config_mesh", "reason", "mesh"}) so that any slice at
    least as large as the smallest fitting one gets an answer instead of a divisibility error.
    Raises the original ConfigError when no mesh of n_devices passes the stage's checks."""
    try:
        _validate(config, n_devices)
        return config, None
    except ConfigError as error:
        mesh = propose_mesh(config, n_devices, _validate)
        if mesh is None:
            raise ConfigError(f"{error}; and no (data, fsdp, tensor) mesh of {n_devices} devices passes the "
                              f"stage's checks") from None
        proposed = ml_collections.ConfigDict(config.to_dict())
        proposed.mesh = ml_collections.ConfigDict(mesh)
        print(f"config.mesh {dict(config.mesh)} does not work on {n_devices} devices ({error}); "
              f"using the proposed mesh {mesh}", file=sys.stderr, flush=True)
        return proposed, {"config_mesh": dict(config.mesh), "reason": str(error), "mesh": mesh}


def format_report(r: dict) -> str:
    g = lambda b: f"{b / GiB:8.2f}"   # noqa: E731
    lines = [f"{r['stage']} {r['preset']} on {r['topology']} ({r['devices']} devices, mesh {r['mesh']}"
             f"{' (proposed: config.mesh does not divide here)' if r.get('mesh_proposed') else ''}), "
             f"batch {r['global_batch_size']} × seq {r['seq_len']}, model {r['model']}",
             f"{'phase':>9} {'args GiB':>9} {'out GiB':>8} {'alias':>8} {'temp GiB':>9} {'other':>8} "
             f"{'total':>8} {'HBM':>8} {'xla TFLOP':>10} {'model TFLOP':>11} {'step s':>8} {'compile s':>9}"]
    for name, p in r["phases"].items():
        lines.append(f"{name:>9} {g(p['argument_bytes']):>9} {g(p['output_bytes'])} {g(p['alias_bytes'])} "
                     f"{g(p['temp_bytes']):>9} {g(p['resident_other_bytes'])} {g(p['total_bytes'])} "
                     f"{g(r['hbm_bytes_per_device'])} {p['xla_flops'] / 1e12:10.3g} "
                     f"{p['model_flops'] / 1e12:11.3g} {p['implied_step_s']:8.3g} {p['compile_s']:9.1f}")
    lines += [f"{name:>9}: did not compile: {p['error']}" for name, p in r["phases"].items() if "error" in p]
    lines.append(f"peak {r['peak_phase']}: {r['peak_bytes'] / GiB:.2f} GiB of {r['hbm_bytes_per_device'] / GiB:.2f}"
                 f" GiB per device -> fits: {'yes' if r['fits'] else 'NO'}; implied step "
                 f"{r['implied_step_s']:.3g} s at {r['peak_flops_per_device'] / 1e12:.0f} TFLOP/s (100% MFU)")
    return "\n".join(lines)


def main(argv):
    del argv
    f = flags.FLAGS
    config = f.config
    if f.mesh:
        config.mesh = ml_collections.ConfigDict(parse_mesh(f.mesh))
    if f.paper_vocab:
        use_paper_vocab(config)
    report = fit_report(config, f.topology)
    print(format_report(report), file=sys.stderr if f.json == "-" else sys.stdout, flush=True)
    if f.json:
        text = json.dumps(report, indent=2) + "\n"
        sys.stdout.write(text) if f.json == "-" else open(f.json, "w").write(text)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "configs/<stage>.py:<preset>")
    flags.DEFINE_string("topology", None, "a TPU topology, e.g. v5p:2x2x1, v5e:4x4, v4:2x2x2")
    flags.DEFINE_string("mesh", "", "override config.mesh, e.g. data=1,fsdp=-1,tensor=4")
    flags.DEFINE_bool("paper_vocab", True, "paper presets use the paper's 65,536-token vocabulary "
                      "(over --config.model.vocab_size; --nopaper_vocab keeps the config's)")
    flags.DEFINE_string("json", "", "also write the report as JSON to this path ('-': stdout)")
    flags.mark_flags_as_required(["config", "topology"])
    app.run(main)
