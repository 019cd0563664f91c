"""`make bench-ppo`: hh and tunix on the same PPO workloads, side by side on this machine.

For each workload (W1, W2, W3, W3m) and repeat, hh (benchmarks/ppo_iteration.py, in .venv) and then tunix
(benchmarks/peers/tunix_ppo.py, in its own venv) run one after the other, each in a fresh process,
so both see the same machine conditions; every JSON line goes to --out. The table: per phase and
in total, the median over repeats of each side's median seconds, the ratio hh / tunix, and each
side's roofline fraction (the roofline of hh's run: the same workload, the same machine).
Absolute times vary between machines (AVX-512 or only AVX2); the ratios are the claim.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ppo_workloads import PHASES  # noqa: E402

SIDES = {"hh": os.path.join(HERE, "ppo_iteration.py"), "tunix": os.path.join(HERE, "peers", "tunix_ppo.py")}


def run_side(python: str, side: str, name: str, iterations: int, override: dict = None) -> dict:
    """One side's JSON row of workload `name` (with fields `override`), run in a fresh process."""
    cmd = [python, SIDES[side], "--workload", name] + (["--iterations", str(iterations)] if iterations else [])
    cmd += ["--override", json.dumps(override)] if override else []
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)            # one CPU device on both sides
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{side} {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(rows, get):
    return statistics.median(get(r) for r in rows)


def work_note(config: dict) -> str:
    """What each side runs of a workload: the forwards and backwards are the same on both (hh's
    update runs θ_old's forwards itself, tunix in its scoring calls); with several minibatches,
    whether the schedules match too (tunix rolls out and trains one minibatch at a time)."""
    note = "equal FLOPs: 4 forwards, 2·K forward+backward"
    if config.get("minibatches", 1) > 1:
        n, rows = config["minibatches"], config["batch"] // config["minibatches"]
        if config.get("schedule") == "per_minibatch":
            note += f"; like for like: both sides {n} × (rollout of {rows}, K steps)"
        else:
            note += f"; schedules differ: hh one rollout of {config['batch']}, tunix {n} × (rollout of {rows}, K steps)"
    return note


def table(rows: list[dict]) -> str:
    """Markdown: per workload, per phase and total, hh s, tunix s, ratio, roofline fractions, and
    on the total row what work both sides do (work_note)."""
    lines = ["| workload | phase | hh s | tunix s | hh / tunix | hh roofline | tunix roofline | work |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted({r["workload"] for r in rows}):
        hh = [r for r in rows if r["workload"] == name and r["side"] == "hh"]
        peer = [r for r in rows if r["workload"] == name and r["side"] == "tunix"]
        if not hh or not peer:
            continue
        roof = {k: median_of(hh, lambda r, k=k: r["roofline"]["phase_roofline_s"][k]) for k in PHASES[:3]}
        roof["total"] = sum(roof.values())
        for phase in (*PHASES, "total"):
            get = ((lambda r: r["iteration_s_median"]) if phase == "total"
                   else (lambda r, p=phase: r["phases_s"][p]))
            a, b = median_of(hh, get), median_of(peer, get)
            ratio = f"{a / b:.2f}" if b > 0 else "–"
            fa = f"{roof[phase] / a:.0%}" if phase in roof and a > 0 else "–"
            fb = f"{roof[phase] / b:.0%}" if phase in roof and b > 0 else "–"
            label = f"**{phase}**" if phase == "total" else phase
            work = work_note(hh[0].get("config", {})) if phase == "total" else ""
            lines.append(f"| {name} | {label} | {a:.4f} | {b:.4f} | {ratio} | {fa} | {fb} | {work} |")
    return "\n".join(lines)


def latest_run(rows: list) -> list:
    """The rows of the last `make bench-ppo` in a file that several runs appended to."""
    last = max(r.get("run_at", "") for r in rows)
    return [r for r in rows if r.get("run_at", "") == last]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tunix_python", default=os.path.join(HERE, "peers", ".venv-tunix", "bin", "python"))
    parser.add_argument("--workloads", default="W1,W2,W3,W3m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=0, help="default: each workload's own")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "ppo_compare.jsonl"))
    parser.add_argument("--table", default="", help="only print the table of the latest run in an --out file")
    args = parser.parse_args(argv)
    if args.table:
        print(table(latest_run([json.loads(line) for line in open(args.table) if line.strip()])))
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    pythons = {"hh": sys.executable, "tunix": args.tunix_python}
    rows, stamp = [], time.strftime("%Y-%m-%dT%H:%M:%S")
    for name in args.workloads.split(","):
        for repeat in range(args.repeats):
            for side in ("hh", "tunix"):
                row = run_side(pythons[side], side, name, args.iterations)
                row.update(repeat=repeat, run_at=stamp)
                rows.append(row)
                print(f"{name} #{repeat + 1} {side:>5}: {row['iteration_s_median']:.4f} s/iteration", flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    cpu = rows[0]["cpu"]
    print(f"\nCPU: {cpu['model']}, {cpu['cores']} cores, SIMD {' '.join(cpu['simd'])}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
