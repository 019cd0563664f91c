"""The findings report: findings.json (every measure, interval, seed value and verdict),
findings.md (one line per finding, then a section each) and one PNG per finding (each criterion's
per-seed values, mean and 95% interval against its threshold)."""

import json
import math

from etils import epath

from hh.findings.verdicts import parse_criterion
from hh.io import atomic_write_text
from hh.plots import pyplot


def _f(v, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def estimate_text(e: dict) -> str:
    return f"{_f(e['mean'])} [{_f(e['lo'])}, {_f(e['hi'])}] (n = {e['n']})"


def plot_finding(fid: str, finding: dict, path) -> None:
    """One panel per criterion: per-seed values (dots), the mean with its 95% interval (bar) and the
    threshold (dashed); the title carries the verdict."""
    plt = pyplot()
    rows = finding["criteria"]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows):
        e = row["estimate"]
        _, op, threshold = parse_criterion(row["rule"])
        ax.scatter([0] * len(e["values"]), e["values"], color="tab:gray", s=14, zorder=3, label="seeds")
        if math.isfinite(e["lo"]):
            ax.errorbar([0.25], [e["mean"]], yerr=[[e["mean"] - e["lo"]], [e["hi"] - e["mean"]]], fmt="o",
                        color="tab:blue", capsize=4, label="mean, 95% CI")
        ax.axhline(threshold, ls="--", color="tab:red", lw=1, label=f"{op} {threshold:g}")
        ax.set_xlim(-0.5, 0.75), ax.set_xticks([])
        ax.set_title(f"{row['measure']}\n{row['outcome']}", fontsize=8)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"{fid}: {finding['verdict']}", fontsize=10)
    fig.tight_layout()
    with epath.Path(path).open("wb") as f:
        fig.savefig(f, dpi=90)
    plt.close(fig)


def markdown(findings: dict, provenance: dict) -> str:
    lines = ["# Findings on the embedded world", "",
             f"Commit {(provenance.get('git_commit') or 'unknown')[:10]}{' (dirty tree)' if provenance.get('git_dirty') else ''}, "
             f"preset `{provenance.get('preset')}`, seeds {provenance.get('seeds')} "
             f"(online loop: {provenance.get('online_seeds')}). Each verdict is computed from the measures by "
             "the rule in configs/findings.py: a criterion is met when its 95% t-interval over seeds lies "
             "wholly on the claimed side of the threshold, failed when wholly on the other side.", "",
             "| | claim | paper | verdict | estimate |", "|---|---|---|---|---|"]
    for fid, f in findings.items():
        first = f["criteria"][0]
        lines.append(f"| {fid} | {f['claim']} | {f['source']} | **{f['verdict']}** | "
                     f"{first['measure']} = {estimate_text(first['estimate'])} |")
    for fid, f in findings.items():
        lines += ["", f"## {fid}: {f['verdict']}", "", f"{f['claim']} ({f['source']}).", "",
                  "| rule | estimate (mean [95% CI]) | per seed | outcome |", "|---|---|---|---|"]
        for row in f["criteria"]:
            values = ", ".join(_f(v) for v in row["estimate"]["values"])
            lines.append(f"| `{row['rule']}` | {estimate_text(row['estimate'])} | {values} | "
                         f"{row['outcome']}{' (' + row['note'] + ')' if 'note' in row else ''} |")
        others = {k: v for k, v in f["per_seed"].items() if k not in {r["measure"] for r in f["criteria"]}}
        for name, values in others.items():
            lines.append(f"| {name} (reported) | | {', '.join(_f(v) for v in values)} | |")
        lines += ["", f"![{fid}]({fid}.png)"]
    return "\n".join(lines) + "\n"


def write_findings(findings: dict, provenance: dict, out) -> epath.Path:
    """Writes findings.json, findings.md and <id>.png under `out`; returns findings.md's path."""
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for fid, finding in findings.items():
        plot_finding(fid, finding, out / f"{fid}.png")
    atomic_write_text(out / "findings.json", json.dumps({"provenance": provenance, "findings": findings},
                                                        indent=2, default=str) + "\n")
    atomic_write_text(out / "findings.md", markdown(findings, provenance))
    return out / "findings.md"
