"""The findings report: findings.json (every measure, interval, seed value and verdict),
findings.md (one line per finding, then a section each) and one PNG per finding (each criterion's
per-seed values, mean and 95% interval against its threshold)."""

import json
import math

from etils import epath

from hh.findings.verdicts import parse_criterion, t_interval
from hh.io import atomic_write_text
from hh.plots import pyplot


def _f(v, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def deciding(finding: dict) -> dict:
    """The criterion that decided the verdict: the first failed one of a finding not reproduced,
    the first undecided one of an inconclusive finding, the first one of a reproduced finding."""
    want = {"not reproduced": "failed", "inconclusive": "undecided"}.get(finding["verdict"])
    return next((r for r in finding["criteria"] if r["outcome"] == want), finding["criteria"][0])


def estimate_text(e: dict) -> str:
    return f"{_f(e['mean'])} [{_f(e['lo'])}, {_f(e['hi'])}] (n = {e['n']})"


def _forest(ax, row) -> None:
    """Per-seed values (dots), the mean with its 95% interval (bar) and the threshold (dashed)."""
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


def _scaling(ax, detail) -> None:
    for seed, d in detail.items():
        runs = d.get("runs", [])
        if not runs:
            continue
        pairs = max(set(r["pairs"] for r in runs), key=[r["pairs"] for r in runs].count)
        points = sorted((r["params"], r["accuracy"]) for r in runs if r["pairs"] == pairs)
        ax.plot(*zip(*points), "o-", ms=4, label=f"seed {seed}, {pairs} pairs")
    ax.set_xscale("log"), ax.set_xlabel("non-embedding parameters"), ax.set_ylabel("held-out accuracy")
    ax.axhline(0.5, ls=":", color="gray"), ax.legend(fontsize=6)


def _curves(ax, detail) -> None:
    twin = ax.twinx()
    for i, (seed, c) in enumerate(detail.items()):
        colour = f"C{i}"
        ax.plot(c["sqrt_kl"], c["train"], "-", color=colour, lw=1, label=f"train PM, seed {seed}")
        ax.plot(c["sqrt_kl"], c["test"], ":", color=colour, lw=1, label=f"test PM, seed {seed}")
        twin.plot([g["sqrt_kl"] for g in c["gold"]], [g["gold"] for g in c["gold"]], "s--", color=colour, ms=3)
    ax.set_xlabel("sqrt(KL)"), ax.set_ylabel("normalised PM reward")
    twin.set_ylabel("gold accuracy (squares)"), twin.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=5)


def _best_of(ax, detail) -> None:
    for i, (seed, d) in enumerate(detail.items()):
        if not d:
            continue
        ax.plot([b["kl"] for b in d["best_of"]], [b["gold"] for b in d["best_of"]], "o-", color=f"C{i}", ms=4,
                label=f"best-of-k, seed {seed}")
        ax.plot([p["kl"] for p in d["ppo"]], [p["gold"] for p in d["ppo"]], "s--", color=f"C{i}", ms=4,
                label=f"PPO, seed {seed}")
    ax.set_xscale("symlog"), ax.set_xlabel("KL to the distilled policy (nats)"), ax.set_ylabel("gold accuracy")
    ax.legend(fontsize=6)


def _rounds(ax, detail) -> None:
    for i, (seed, d) in enumerate(detail.items()):
        for labeler, marker in (("helpful", "o-"), ("harmless", "s--")):
            ax.plot([r[labeler]["elo"] for r in d["judge_elo"]], marker, color=f"C{i}", ms=4,
                    label=f"{labeler}, seed {seed}")
    ax.set_xlabel("round"), ax.set_ylabel("exact-judge Elo"), ax.legend(fontsize=6)


FRONTIER_METHODS = {"ppo": ("PPO (λ_KL)", "s-"), "dpo": ("DPO (β)", "o-"), "ipo": ("IPO (τ)", "^-"),
                    "best_of": ("best-of-k", "D--")}
FRONTIER_COLUMNS = ("kl", "gold", "gold_helpful", "gold_harmless", "gold_elo")


def frontier_summary(detail) -> list:
    """F12's entries over seeds, in the run's order: {"name", "method", "strength", and per column of
    FRONTIER_COLUMNS its t_interval over the seeds that measured it}."""
    by_name = {}
    for d in detail.values():
        for p in d.get("points", []):
            by_name.setdefault(p["name"], []).append(p)
    rows = []
    for name, points in by_name.items():
        row = {k: points[0][k] for k in ("name", "method", "strength")}
        for column in FRONTIER_COLUMNS:
            row[column] = t_interval([p[column] for p in points if p.get(column) is not None])
        rows.append(row)
    return rows


def _frontier(axes, detail) -> None:
    """Gold accuracy and gold Elo against KL to the initial policy, one line per method from the
    initial policy through its strengths (seed means; bars: 95% intervals over seeds)."""
    rows = frontier_summary(detail)
    initial = next((r for r in rows if r["method"] == "initial"), None)
    for ax, column, label in ((axes[0], "gold", "gold accuracy (mean of labelers)"),
                              (axes[1], "gold_elo", "gold Elo (initial = 0)")):
        for i, (method, (name, style)) in enumerate(FRONTIER_METHODS.items()):
            line = ([initial] if initial else []) + sorted(
                (r for r in rows if r["method"] == method and r["kl"]["n"]), key=lambda r: r["kl"]["mean"])
            if len(line) <= (initial is not None):
                continue
            x = [r["kl"]["mean"] for r in line]
            y = [r[column]["mean"] for r in line]
            err = [[max(r[column]["mean"] - r[column]["lo"], 0) if math.isfinite(r[column]["lo"]) else 0 for r in line],
                   [max(r[column]["hi"] - r[column]["mean"], 0) if math.isfinite(r[column]["hi"]) else 0 for r in line]]
            ax.errorbar(x, y, yerr=err, fmt=style, color=f"C{i}", ms=4, capsize=2, lw=1, label=name)
            for r, xi, yi in zip(line, x, y):
                if r["method"] == method:    # each point's strength (λ_KL, β, τ or k) beside it
                    ax.annotate(f"{r['strength']:g}", (xi, yi), textcoords="offset points", xytext=(3, 3),
                                fontsize=5, color=f"C{i}")
        budget = next((d["kl_budget"] for d in detail.values() if d), None)
        if budget is not None:
            ax.axvline(budget, ls=":", color="gray", lw=1)
        ax.set_xscale("symlog", linthresh=1.0), ax.set_xlim(left=-0.1)
        ax.set_xlabel("KL to the initial policy (nats)")
        ax.set_ylabel(label), ax.legend(fontsize=6)


def frontier_table(detail) -> list:
    """F12's table (markdown lines): every entry's KL, gold scores and gold Elo over seeds."""
    lines = ["", "| entry | KL (nats) | gold (mean of labelers) | gold, helpful | gold, harmless | gold Elo |",
             "|---|---|---|---|---|---|"]
    summary = frontier_summary(detail)
    for r in summary:
        lines.append(f"| {r['name']} | " + " | ".join(estimate_text(r[c]).replace(f" (n = {r[c]['n']})", "")
                                                       for c in FRONTIER_COLUMNS) + " |")
    n = max((r["gold"]["n"] for r in summary), default=0)
    lines.append(f"\nMeans over {n} seeds with 95% t-intervals; KL is the k1 estimate over each entry's own "
                 "samples (best-of-k: log k − (k−1)/k).")
    return lines


# the findings whose PNG also shows the data behind the measures: (draw, panels it takes)
DETAIL_PLOTS = {"F1": (_scaling, 1), "F4": (_curves, 1), "F5": (_curves, 1), "F7": (_best_of, 1), "F8": (_rounds, 1),
                "F12": (_frontier, 2)}
# the findings whose section in findings.md also has a table of the data behind the measures
DETAIL_TABLES = {"F12": frontier_table}


def plot_finding(fid: str, finding: dict, path) -> None:
    """One panel per criterion (_forest), and for the findings of DETAIL_PLOTS a first panel with
    their curves; the title carries the verdict."""
    plt = pyplot()
    rows = finding["criteria"]
    draw, n_detail = DETAIL_PLOTS.get(fid, (None, 0)) if finding.get("detail") else (None, 0)
    n = len(rows) + n_detail
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + (1.5 * n_detail), 3.2), squeeze=False)
    panels = list(axes[0])
    if draw is not None:
        detail_axes = [panels.pop(0) for _ in range(n_detail)]
        draw(detail_axes[0] if n_detail == 1 else detail_axes, finding["detail"])
    for ax, row in zip(panels, rows):
        _forest(ax, row)
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
             "| | claim | paper | verdict | the deciding criterion: estimate |", "|---|---|---|---|---|"]
    for fid, f in findings.items():
        row = deciding(f)
        lines.append(f"| {fid} | {f['claim']} | {f['source']} | **{f['verdict']}** | "
                     f"`{row['rule']}`: {estimate_text(row['estimate'])} |")
    failed = {fid: f for fid, f in findings.items() if f["verdict"] == "not reproduced"}
    if failed:
        lines += ["", "## Not reproduced, and the criteria that failed", ""]
        lines += [f"- **{fid}**: " + "; ".join(f"`{r['rule']}` measured {estimate_text(r['estimate'])}"
                                               for r in f["criteria"] if r["outcome"] == "failed")
                  for fid, f in failed.items()]
        lines += ["", "What each failure says about the scale and the world: docs/findings.md."]
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
        if fid in DETAIL_TABLES and f.get("detail"):
            lines += DETAIL_TABLES[fid](f["detail"])
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


def readme_table(report: dict) -> str:
    """The README's "What hh reproduces" table from a findings.json: per finding its claim, the
    paper's figure or section, the verdict and the estimate of the criterion that decided it."""
    p = report["provenance"]
    lines = ["| | claim | paper | verdict | deciding criterion: mean [95% CI] over seeds |", "|---|---|---|---|---|"]
    for fid, f in report["findings"].items():
        row = deciding(f)
        e = row["estimate"]
        lines.append(f"| {fid} | {f['claim']} | {f['source']} | **{f['verdict']}** | "
                     f"`{row['rule']}`: {_f(e['mean'])} [{_f(e['lo'])}, {_f(e['hi'])}] |")
    lines += ["", f"From `make findings` at commit {(p.get('git_commit') or 'unknown')[:10]} (preset `{p['preset']}`, "
                  f"seeds {p['seeds']}; the online loop {p['online_seeds']})."]
    return "\n".join(lines)


def main(argv=None):
    """`python -m hh.findings.report FINDINGS_JSON`: prints the README table of a findings.json."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m hh.findings.report FINDINGS_JSON")
    print(readme_table(json.loads(epath.Path(args[0]).read_text())))


if __name__ == "__main__":
    main()
