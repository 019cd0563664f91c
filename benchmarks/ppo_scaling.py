"""Cost curves of one hh PPO iteration (docs/performance.md): seconds per iteration and its phase split as
the work grows along three axes, each against the growth the roofline model predicts.

    python benchmarks/ppo_scaling.py                    # all axes: about 7 minutes on 2 cores
    python benchmarks/ppo_scaling.py --axes length --iterations 2
    python benchmarks/ppo_scaling.py --table benchmarks/results/ppo_scaling.jsonl   # the table again

Axes (every other setting as in benchmarks/ppo_workloads.py):
  model   W1, W2, and the `13M` paper preset (hh.models.presets: GELU, LayerNorm, the 2^16 vocabulary)
          at W1's short context (prompt 32, 32 generated);
  length  W2 with 32 → 512 generated tokens;
  batch   W2 with 8 → 64 prompts.

The expected growth of a phase is that of its roofline time (benchmarks/ppo_iteration.py:
analytic FLOPs at the measured matmul peak, and for the rollout the larger of that and the decode
loop's bytes at the measured bandwidth): decode reads every weight once per token (linear in the
generated length) plus the KV cache so far (quadratic, small), scoring and training are linear in
tokens plus quadratic attention. The plot draws each phase's expected curve through its first
measured point, so a phase that grows faster than its work shows as a measured line pulling away.
With --peer (the tunix venv's python; `make bench-ppo-scaling` passes it) google/tunix runs the
same points in a fresh process each (benchmarks/peers/tunix_ppo.py --override): every point but
the 13M preset, whose GELU/LayerNorm model the peer's Llama-3 class cannot express. Its rows have
"side": "tunix"; the table and plots add its total and the ratio hh / tunix along each axis.

--micro_tokens N gives both sides gradient microbatches (and forward pieces) of at most N tokens:
hh's config.train.microbatches, tunix's train_micro_batch_size and compute_logps_micro_batch_size.
The same FLOPs; it bounds the working set, which decides how the time grows on a CPU
(docs/performance.md). Its rows carry "micro_tokens", its plots a _micro<N> suffix.

Writes one JSON line per point to --out, one PNG per axis to --plots, and prints the markdown
table (docs/performance.md).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ppo_compare  # noqa: E402
import ppo_iteration  # noqa: E402
from ppo_workloads import WORKLOADS, workload  # noqa: E402

from hh.models import presets  # noqa: E402

PHASES = ("rollout", "scoring", "train")
AXES = {
    "model": [("W1", {}), ("W2", {}), ("13M", {})],
    "length": [("W2", {"gen_len": n}) for n in (32, 64, 128, 256, 512)],
    "batch": [("W2", {"batch": n}) for n in (8, 16, 32, 64)],
}
SHORT_CONTEXT = {"prompt_len": 32, "gen_len": 32}     # the 13M preset's point


def point(name: str, overrides: dict):
    """-> (workload dict, model config or None for the workload's own) of one point."""
    if name in ("W1", "W2"):
        return {**workload(name), **overrides}, None
    w = {**workload("W1"), **SHORT_CONTEXT, **overrides, "name": name}
    cfg = presets.model_config(name, dtype="float32", param_dtype="float32",
                               max_len=w["prompt_len"] + w["gen_len"] + 1)
    w.update(layers=cfg.n_layers, d_model=cfg.d_model, heads=cfg.n_heads, head_dim=cfg.d_head,
             vocab=cfg.vocab_size)
    return w, cfg


def axis_value(axis: str, row: dict):
    """The x of a point: policy parameters, generated tokens or prompts per batch."""
    if axis == "model":
        return row["params"]["policy"]
    return row["gen_len"] if axis == "length" else row["batch"]


def measure(axes, iterations: int, out: str, peer: str = "", micro_tokens: int = 0) -> list:
    """Runs every point of `axes` (and, with `peer`, tunix at the points it can express), with
    gradient microbatches of at most `micro_tokens` tokens on both sides (0: whole minibatches)."""
    roofs = (ppo_iteration.matmul_peak(), ppo_iteration.memory_bandwidth())
    rows = []
    for axis in axes:
        for name, overrides in AXES[axis]:
            overrides = {**overrides, **({"micro_tokens": micro_tokens} if micro_tokens else {})}
            w, cfg = point(name, overrides)
            row = ppo_iteration.run_workload(w, iterations, cfg=cfg, roofs=roofs)
            sides = [row]
            if peer and name in WORKLOADS:
                sides.append(ppo_compare.run_side(peer, "tunix", name, iterations, overrides))
            for r in sides:
                r.update(axis=axis, gen_len=w["gen_len"], batch=w["batch"], prompt_len=w["prompt_len"],
                         micro_tokens=micro_tokens)
                rows.append(r)
                print(f"{axis:6s} {name:4s} {overrides or ''} {r['side']:>5}: {r['iteration_s_median']:.3f} "
                      "s/iteration " + " ".join(f"{k} {r['phases_s'][k]:.3f}" for k in PHASES), flush=True)
                if out:
                    with open(out, "a") as f:
                        f.write(json.dumps(r) + "\n")
    return rows


def side_rows(rows: list, axis: str, side: str) -> list:
    return [r for r in rows if r.get("axis") == axis and r.get("side", "hh") == side]


def peer_of(row: dict, peers: list):
    """tunix's row at hh row `row`'s point, or None."""
    key = (row["workload"], row["gen_len"], row["batch"])
    return next((p for p in peers if (p["workload"], p["gen_len"], p["batch"]) == key), None)


def growth(before: float, after: float) -> float:
    """How many times longer the later point takes (1.0 = no change; 2.0 after doubling = linear)."""
    return after / before if before > 0 else float("nan")


def label(axis: str, row: dict) -> str:
    if axis == "model":
        return f"{row['workload']} ({row['params']['policy'] / 1e6:.1f} M)"
    return f"{row['workload']}, {axis} {axis_value(axis, row)}"


def table(rows: list) -> str:
    """Per axis and point: measured seconds per phase, and per phase the growth over the previous
    point, measured vs expected (the growth of the phase's roofline time), as factors."""
    lines = []
    for axis in AXES:
        points, peers = side_rows(rows, axis, "hh"), side_rows(rows, axis, "tunix")
        if not points:
            continue
        lines += [f"**{axis}**", "",
                  "| point | rollout s | scoring s | train s | total s | roofline | growth ×, measured / expected: "
                  "rollout · scoring · train | tunix total s | hh / tunix |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for prev, row in zip([None] + points[:-1], points):
            peer = peer_of(row, peers)
            versus = (f"{peer['iteration_s_median']:.3f} | {row['iteration_s_median'] / peer['iteration_s_median']:.2f}"
                      if peer else "– | –")
            cells = [f"{row['phases_s'][k]:.3f}" for k in PHASES]
            factors = "–"
            if prev is not None:
                roof0, roof1 = prev["roofline"]["phase_roofline_s"], row["roofline"]["phase_roofline_s"]
                factors = " · ".join(f"{growth(prev['phases_s'][k], row['phases_s'][k]):.2f} / "
                                     f"{growth(roof0[k], roof1[k]):.2f}" for k in PHASES)
            lines.append(f"| {label(axis, row)} | {' | '.join(cells)} | {row['iteration_s_median']:.3f} | "
                         f"{row['roofline']['iteration_fraction']:.0%} | {factors} | {versus} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list, directory: str, micro_tokens: int = 0) -> list:
    """One PNG per axis. Left: hh's measured seconds per phase (solid), the expected growth
    (dashed) and tunix's total (grey); right: hh / tunix per phase and in total, where tunix ran."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []
    titles = {"model": "policy parameters", "length": "generated tokens", "batch": "prompts per batch"}
    for axis in AXES:
        points, peers = side_rows(rows, axis, "hh"), side_rows(rows, axis, "tunix")
        if len(points) < 2:
            continue
        xs = [axis_value(axis, r) for r in points]
        fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4))
        paired = [(x, r, peer_of(r, peers)) for x, r in zip(xs, points) if peer_of(r, peers)]
        if paired:
            ax.plot([x for x, _, _ in paired], [p["iteration_s_median"] for _, _, p in paired], "s-", color="0.5",
                    label="tunix total")
        for k, color in zip((*PHASES, "total"), ("C0", "C1", "C2", "k")):
            if paired:
                get = ((lambda r: r["iteration_s_median"]) if k == "total" else (lambda r, k=k: r["phases_s"][k]))
                ax_ratio.plot([x for x, _, _ in paired], [get(r) / get(p) for _, r, p in paired], "o-", color=color,
                              label=k)
            measured = [r["iteration_s_median"] if k == "total" else r["phases_s"][k] for r in points]
            roof = [sum(r["roofline"]["phase_roofline_s"].values()) if k == "total"
                    else r["roofline"]["phase_roofline_s"][k] for r in points]
            expected = [measured[0] * v / roof[0] for v in roof]
            ax.plot(xs, measured, "o-", color=color, label=k)
            ax.plot(xs, expected, "--", color=color, alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(titles[axis])
        ax.set_ylabel("seconds per PPO iteration")
        micro = f", microbatches ≤ {micro_tokens} tokens" if micro_tokens else ""
        ax.set_title(f"PPO iteration vs {titles[axis]}{micro} (hh; dashed: expected growth)", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax_ratio.set_xscale("log", base=2)
        ax_ratio.axhline(1.0, color="0.5", lw=0.8)
        ax_ratio.set_xlabel(titles[axis])
        ax_ratio.set_ylabel("hh time / tunix time")
        ax_ratio.set_title("hh / tunix (below 1: hh faster)" if paired else "tunix not run on this axis", fontsize=9)
        if paired:
            ax_ratio.legend(fontsize=8)
        ax_ratio.grid(True, which="both", alpha=0.3)
        suffix = f"_micro{micro_tokens}" if micro_tokens else ""
        path = os.path.join(directory, f"ppo_scaling_{axis}{suffix}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def latest(rows: list, micro_tokens: int = 0) -> list:
    """The last row of each point of a results file that several runs appended to, in AXES order,
    of the runs with `micro_tokens`."""
    rows = [r for r in rows if r.get("micro_tokens", 0) == micro_tokens]
    last = {(r.get("side", "hh"), r["axis"], r["workload"], r["gen_len"], r["batch"]): r for r in rows}
    return sorted(last.values(), key=lambda r: (r.get("side", "hh"), list(AXES).index(r["axis"]),
                                                axis_value(r["axis"], r)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--axes", default=",".join(AXES), help="comma-separated: model,length,batch")
    parser.add_argument("--iterations", type=int, default=3, help="per point; the first (compilation) is excluded")
    parser.add_argument("--out", default="benchmarks/results/ppo_scaling.jsonl", help="appends one JSON line per point")
    parser.add_argument("--plots", default="docs/img/performance")
    parser.add_argument("--table", default="", help="only print the table (and plots) of this JSON-lines file")
    parser.add_argument("--peer", default="", help="the tunix venv's python: run tunix at the same points")
    parser.add_argument("--micro_tokens", type=int, default=0,
                        help="gradient microbatches of at most this many tokens on both sides (0: none)")
    args = parser.parse_args(argv)
    if args.table:
        rows = latest([json.loads(line) for line in open(args.table) if line.strip()], args.micro_tokens)
    else:
        axes = [a for a in args.axes.split(",") if a]
        unknown = sorted(set(axes) - set(AXES))
        if unknown:
            raise SystemExit(f"--axes: unknown {unknown}; use some of {list(AXES)}")
        if args.out:
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        rows = measure(axes, args.iterations, args.out, args.peer, args.micro_tokens)
    for path in plot(rows, args.plots, args.micro_tokens) if args.plots else []:
        print("wrote", path)
    print(table(rows))


if __name__ == "__main__":
    main()
