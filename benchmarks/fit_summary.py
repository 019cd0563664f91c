"""The fit table of docs/scale-out.md, generated from benchmarks/fit_table.json.

    python benchmarks/fit_summary.py                      # the markdown table at the paper defaults
    python benchmarks/fit_summary.py --variant ""         # the first table (dense attention, no chunking)

Per preset and stage: the smallest measured v5p slice whose peak phase fits, its mesh, memory per
chip by phase, FLOPs and the implied step time, and the smaller slices measured that do not fit.
A (preset, stage) with no run of the chosen variant falls back to the first table's runs, marked
"(earlier settings)", so the table says which rows were measured at the current defaults.
"""

import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
GiB = 2 ** 30
PRESETS = ("13M", "42M", "197M", "810M", "2.7B", "13B", "52B")
STAGES = {"lm": "LM", "pm": "PM", "ppo": "PPO", "dpo": "DPO"}
# The runs' "variant" that is each stage's paper-preset default (configs/common.py, configs/ppo.py):
# fused attention everywhere, PPO's log-probs in chunks of 32 positions (DPO keeps them whole:
# chunking raises its peak, docs/dpo.md).
DEFAULTS = {"lm": "fused", "pm": "fused", "ppo": "fused+chunk32", "dpo": "fused"}


def runs_of(runs: list, preset: str, stage: str, variant: str) -> list:
    """variant "defaults": the stage's DEFAULTS entry; "": the first table's runs."""
    variant = DEFAULTS[stage] if variant == "defaults" else variant
    chosen = [r for r in runs if r["preset"] == preset and r["stage"] == stage and r.get("variant", "") == variant]
    return list({r["topology"]: r for r in chosen}.values())     # a re-run of a slice replaces the earlier


def phase_cell(run: dict) -> str:
    gib = {k: p["total_bytes"] / GiB for k, p in run["phases"].items()}
    cell = f"{run['peak_bytes'] / GiB:.1f} ({run['peak_phase']})"
    if len(gib) > 1:
        cell += " [" + " / ".join(f"{v:.1f}" for v in gib.values()) + "]"
    return cell


def row(preset: str, stage: str, runs: list, note: str) -> str:
    fitting = sorted((r for r in runs if r["fits"]), key=lambda r: r["chips"])
    if not fitting:
        smallest = max(runs, key=lambda r: r["chips"])
        return (f"| {preset} | {STAGES[stage]}{note} | none measured fits (largest {smallest['topology']}: "
                f"{smallest['peak_bytes'] / GiB:.1f} GiB) | | | | | | | | |")
    best = fitting[0]
    smaller = sorted({r["topology"]: r for r in runs if r["chips"] < best["chips"]}.values(), key=lambda r: r["chips"])
    smaller_cell = "; ".join(f"{r['topology'].split(':')[1]}: {r['peak_bytes'] / GiB:.1f}" for r in smaller) or "—"
    mesh = "/".join(str(best["mesh"][k]) for k in ("data", "fsdp", "tensor"))
    xla = sum(p["xla_flops"] for p in best["phases"].values())
    shape = f"{best['global_batch_size']}{' pairs' if stage == 'dpo' else ''} × {best['seq_len']}"
    return (f"| {preset} | {STAGES[stage]}{note} | **{best['topology'].split(':')[1]}** ({best['chips']}) | {mesh} | "
            f"{shape} | {phase_cell(best)} | {best['model_flops_per_device'] / 1e12:.3g} | {xla / 1e12:.3g} | "
            f"{best['implied_step_s']:.3g} | {smaller_cell} | {best['compile_s']:.0f} |")


def table(runs: list, variant: str) -> str:
    lines = ["| preset | step | smallest v5p slice (chips) | mesh d/f/t | batch × seq | GiB per chip, peak phase "
             "[all phases] | model TFLOP per chip | XLA TFLOP per chip | step s at peak | smaller, not fitting: "
             "GiB per chip | compile s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset in PRESETS:
        for stage in STAGES:
            chosen, note = runs_of(runs, preset, stage, variant), ""
            if not chosen and variant:
                chosen, note = runs_of(runs, preset, stage, ""), " (earlier settings)"
            if chosen:
                lines.append(row(preset, stage, chosen, note))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default=os.path.join(HERE, "fit_table.json"))
    parser.add_argument("--variant", default="defaults",
                        help="the runs' 'variant' field: 'defaults' (each stage's paper default), '' (the first table)")
    args = parser.parse_args(argv)
    print(table(json.load(open(args.table))["runs"], args.variant))


if __name__ == "__main__":
    main()
