"""The online loop's report: report.md, online_report.json and two plots (Elo by round, gold and
PM-predicted; PM accuracy by data source), read back from the rounds' collect.json and eval.json."""

import json

import numpy as np
from etils import epath

from hh.io import atomic_write_text
from hh.online.evaluate import eval_prompts, gold_elo_table, judge_elo, read_responses
from hh.plots import pyplot


def _json(path):
    path = epath.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _f(v, digits=3):
    return f"{v:.{digits}f}" if isinstance(v, float) else ("–" if v is None else str(v))


def judge_table(config, folders) -> dict:
    """{labeler: {round name: {"elo", "stderr"}}}: the exact judge's Elo of every round's policy,
    fitted jointly from its pairwise preferences between all rounds' responses to the same prompts."""
    responses = [read_responses(folders[f"round{r}/eval"] / "responses.jsonl") for r in range(config.rounds)]
    return {labeler: {row["model"]: {"elo": row["elo"], "stderr": row["stderr"]} for row in report["table"]}
            for labeler, report in judge_elo(eval_prompts(config), responses).items()}


def rounds_table(config, folders) -> list[dict]:
    """One row per round: what was collected, the PM's accuracies, the policy's exact-judge accuracy
    and Elo, its gold-PM win rate and Elo, and its PM-predicted Elo."""
    evals = [_json(folders[f"round{r}/eval"] / "eval.json") for r in range(config.rounds)]
    collects = [_json(folders[f"round{r}/collect"] / "collect.json") for r in range(config.rounds)]
    joint = {row["model"]: row for row in gold_elo_table(evals, config.collect.temperature)}
    judged = judge_table(config, folders)
    rows = []
    for r, (ev, co) in enumerate(zip(evals, collects)):
        nxt = collects[r + 1] if r + 1 < len(collects) else None
        acc = ev["pm_accuracy"]
        rows.append({
            "round": r, "pool": co["pool"], "comparisons": co["comparisons"], "kept": co["train"] + co["held_out"],
            "labeler_agreement": co.get("agreement_with_gold"),
            "labeler_agreement_with_judge": co.get("agreement_with_judge"),
            "judge_accuracy": ev["judge_accuracy"],
            "judge_elo": {labeler: table[f"round{r}"] for labeler, table in judged.items()},
            "gold_win_rate": ev["gold_win_rate"], "gold_elo": joint[f"round{r}"]["elo"],
            "gold_elo_stderr": joint[f"round{r}"]["stderr"], "pm_predicted_elo": ev["pm_elo"],
            "pm_predicted_elo_stderr": ev["pm_elo_stderr"],
            "pm_static_accuracy": acc["static"]["accuracy"],
            "pm_held_out_accuracy": {k: v["accuracy"] for k, v in acc.items() if k.endswith("held_out")},
            # this round's PM on the NEXT round's comparisons: data from the models it shaped
            "pm_fresh_accuracy": nxt["previous_pm_accuracy"]["fresh"]["accuracy"] if nxt else None,
        })
    return rows


def plot_elo(rows, path) -> None:
    plt = pyplot()

    x = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(x, [r["gold_elo"] for r in rows], yerr=[r["gold_elo_stderr"] for r in rows], marker="o",
                capsize=3, label="gold PM")
    ax.errorbar(x, [r["pm_predicted_elo"] for r in rows], yerr=[r["pm_predicted_elo_stderr"] for r in rows],
                marker="s", capsize=3, label="PM-predicted (the round's own PM)")
    for labeler, marker in (("helpful", "^"), ("harmless", "v")):
        if all(labeler in r["judge_elo"] for r in rows):
            ax.errorbar(x, [r["judge_elo"][labeler]["elo"] for r in rows],
                        yerr=[r["judge_elo"][labeler]["stderr"] for r in rows], marker=marker, capsize=3,
                        ls="--", label=f"exact judge, {labeler}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x)
    ax.set_xlabel("round")
    ax.set_ylabel("Elo vs round 0's policy")
    ax.set_title("Online RLHF: Elo by round")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def plot_accuracy(rows, path) -> None:
    plt = pyplot()

    sources = ["static"] + [f"round{k}_held_out" for k in range(len(rows))] + ["fresh (next round)"]
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(rows), 3.6))
    width = 0.8 / len(sources)
    for j, source in enumerate(sources):
        values = []
        for r in rows:
            if source == "static":
                values.append(r["pm_static_accuracy"])
            elif source.startswith("fresh"):
                values.append(r["pm_fresh_accuracy"])
            else:
                values.append(r["pm_held_out_accuracy"].get(source))
        xs = np.arange(len(rows)) + (j - (len(sources) - 1) / 2) * width
        ax.bar(xs, [np.nan if v is None else v for v in values], width, label=source)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(rows)), [f"PM round {r['round']}" for r in rows])
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("PM accuracy")
    ax.set_title("PM accuracy by data source")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def write_report(config, folders, out, step_seconds: dict) -> epath.Path:
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = rounds_table(config, folders)
    plot_elo(rows, out / "elo_by_round.png")
    plot_accuracy(rows, out / "pm_accuracy_by_source.png")
    atomic_write_text(out / "online_report.json", json.dumps({"rounds": rows}, indent=2) + "\n")
    lines = [f"# Online RLHF: {config.rounds} rounds ({config.preset})", "",
             f"Labeler: {config.collect.source} ({config.collect.labeler}, T = {config.collect.temperature}); "
             f"{config.collect.comparisons} comparisons per round; PM pairs per round {config.mix.train_pairs} "
             f"({config.mix.online_fraction:.0%} collected); PPO K = {config.ppo.ppo.epochs}.", "",
             "Labeler agreement: the share of the stored choices that the gold PM's noiseless preference "
             "and the world's exact judge would make (ties excluded).", "",
             "| round | pool | kept | labeler agreement: noiseless / exact judge | gold win rate vs r0 | gold Elo "
             "| PM-predicted Elo | PM acc. static | PM acc. fresh (next round) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {', '.join(r['pool'])} | {r['kept']} | {_f(r['labeler_agreement'])} / "
                     f"{_f(r['labeler_agreement_with_judge'])} "
                     f"| {_f(r['gold_win_rate'])} | {r['gold_elo']:+.0f} ± {r['gold_elo_stderr']:.0f} "
                     f"| {r['pm_predicted_elo']:+.0f} ± {r['pm_predicted_elo_stderr']:.0f} "
                     f"| {_f(r['pm_static_accuracy'])} | {_f(r['pm_fresh_accuracy'])} |")
    labelers = sorted({k for r in rows for k in r["judge_accuracy"]})
    if labelers:
        lines += ["", "The world's exact judge (the crowdworker no model here was trained against) on the "
                  "same held-out prompts: the share of each round's responses it judges right (± s.e.), "
                  "and the Elo of each round's policy from its pairwise preferences.", "",
                  "| round | " + " | ".join(f"{k} accuracy | {k} Elo" for k in labelers) + " |",
                  "|---|" + "---|---|" * len(labelers)]
        for r in rows:
            cells = []
            for k in labelers:
                a, e = r["judge_accuracy"].get(k, {}), r["judge_elo"].get(k, {})
                cells.append(f"{_f(a.get('mean'))} ± {_f(a.get('se'))} ({a.get('n', 0)})")
                cells.append(f"{e['elo']:+.0f} ± {e['stderr']:.0f}" if e else "–")
            lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    lines += ["", "![Elo by round](elo_by_round.png)", "", "![PM accuracy by source](pm_accuracy_by_source.png)",
              "", "## Steps", "", "| step | wall time |", "|---|---|"]
    for name, seconds in step_seconds.items():
        if seconds is not None:
            lines.append(f"| {name} | {seconds:.0f} s |")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
