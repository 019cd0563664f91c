"""report.md: the main job's results in one page, with its plots copied beside it.

Everything is read back from the files the steps wrote (so a report regenerated after a resume
or with some steps skipped says the same): each step's record (wall time, headline numbers), the
PM evaluation, the PPO metrics and samples, best-of-k, Elo and the OOD study. Policies are judged
by the embedded world's gold labelers beside the PM (hh.eval.gold): PPO optimises the PM, so the
PM alone cannot say whether its gains are real.
"""

import datetime
import json
import shutil

from etils import epath

from hh.eval.gold import gold_by_step
from hh.eval.mc import markdown_table
from hh.eval.pm_eval import conflict_accuracy, tranche_of
from hh.io import atomic_write_text
from hh.pipeline.headlines import mean_rows
from hh.pipeline.runner import read_stamp
from hh.train.metrics import log_rows
from hh.train.provenance import code_version

PLOTS = {  # name in the report folder: (step, file)
    "pm_calibration.png": ("pm_eval", "reliability.png"),
    "pm_cross_matrix.png": ("tension", "cross_matrix.png"),
    "reward_vs_sqrt_kl.png": ("ppo", "reward_vs_sqrt_kl.png"),
    "best_of.png": ("best_of", "best_of.png"),
    "elo.png": ("elo", "elo.png"),
    "ood_auroc_by_layer.png": ("ood", "ood.png"),
}


def _json(path):
    path = epath.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _f(v, digits=3):
    if v is None:   # not measured (e.g. no sample the gold labeler could judge)
        return "–"
    if isinstance(v, bool) or isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def copy_plots(folders, out: epath.Path) -> dict:
    copied = {}
    for name, (step, file) in PLOTS.items():
        src = folders[step] / file
        if src.exists():
            shutil.copyfile(str(src), str(out / name))
            copied[name] = True
    return copied


def stage_table(folders) -> list:
    lines = ["| step | wall time | headline |", "|---|---|---|"]
    for name, folder in folders.items():
        stamp = read_stamp(folder) or {}
        if name == "report":
            continue
        summary = stamp.get("summary", {})
        text = ", ".join(f"{k} {_f(v)}" for k, v in summary.items() if not isinstance(v, (dict, list)))
        seconds = stamp.get("seconds")
        lines.append(f"| {name} | {_f(seconds, 0) + ' s' if seconds is not None else '–'} | {text} |")
    return lines


def ppo_samples(folders) -> list:
    """The PPO stage's logged samples (samples.jsonl rows), or none."""
    path = folders["ppo"] / "samples.jsonl"
    return [row for _, row in log_rows(path)] if path.exists() else []


def elo_rows(table) -> dict:
    """{model: {"elo", "stderr"}} of an Elo table."""
    return {row["model"]: {"elo": row["elo"], "stderr": row["stderr"]} for row in table}


def gold_headlines(elo: dict, ppo_by_step: list) -> dict:
    """Per labeler of the world: each entry's gold Elo, the PM-predicted Elo on the same prompts,
    each entry's gold accuracy, and PPO's against the distilled policy's; the gold accuracy of
    PPO's logged samples at its first and last logged iteration (the first ≈ the distilled policy
    PPO starts from), beside their PM reward."""
    gold = elo.get("gold", {})
    return {
        "gold_elo": {labeler: elo_rows(section["table"]) for labeler, section in gold.items()},
        "pm_elo_on_gold_prompts": {labeler: elo_rows(section["pm"]["table"]) for labeler, section in gold.items()},
        "gold_accuracy": {labeler: section["accuracy"] for labeler, section in gold.items()},
        "gold_accuracy_ppo_vs_distill": {
            labeler: {name: section["accuracy"].get(name, {}).get("mean") for name in ("ppo", "distill")}
            for labeler, section in gold.items()},
        "ppo_samples_gold": {"first": ppo_by_step[0], "last": ppo_by_step[-1]} if ppo_by_step else None,
    }


def headlines(folders) -> dict:
    """The headline numbers of a run (headlines.json): PM accuracy, PPO reward gain and KL, Elo
    of the policy vs its initial model, the best OOD AUROC, and the gold judgement of the policies
    beside the PM's (gold_headlines)."""
    pm = _json(folders["pm_eval"] / "pm_eval.json") or {}
    elo = _json(folders["elo"] / "elo.json") or {}
    ood = _json(folders["ood"] / "ood.json") or {}
    table = {row["model"]: row for row in elo.get("table", [])}
    best_ood = max(((spec, method, row) for spec, methods in ood.get("best", {}).items()
                    for method, row in methods.items()), key=lambda t: t[2]["auroc"], default=None)
    ppo = folders["ppo"]
    return {
        "pm_accuracy": pm.get("all", {}).get("accuracy"),
        "pm_ece": pm.get("all", {}).get("calibration", {}).get("ece"),
        "adversary_accuracy": {name: row["test"]["accuracy"]
                               for name, row in (_json(folders["pm_eval"] / "adversaries.json") or {}).items()},
        "tension": tension_headlines(_json(folders["tension"] / "cross_matrix.json")),
        "ppo_reward_first5": mean_rows(ppo, "train/reward", first=5),
        "ppo_reward_last5": mean_rows(ppo, "train/reward", last=5),
        "ppo_kl_last5": mean_rows(ppo, "train/kl", last=5),
        "elo_ppo_vs_initial": table.get("ppo", {}).get("elo"),
        "elo_ppo_stderr": table.get("ppo", {}).get("stderr"),
        "elo_anchor": elo.get("anchor"),
        "best_ood": None if best_ood is None else {"set": best_ood[0], "method": best_ood[1], **best_ood[2]},
        "ood_novelty_auroc": None if best_ood is None else ood.get("novelty_auroc", {}).get(best_ood[0]),
        **gold_headlines(elo, gold_by_step(ppo_samples(folders))),
    }


def tension_headlines(matrix) -> dict | None:
    """Each single-tranche PM's accuracy on the OTHER tranche's conflicting pairs (Bai et al. §4.4:
    below chance), from the tension step's cross matrix: {"helpful_only_on_harmless_conflicts",
    "harmless_only_on_helpful_conflicts"}, None where not measured."""
    if not matrix:
        return None
    return {"helpful_only_on_harmless_conflicts": conflict_accuracy(matrix, 1.0, "harmless"),
            "harmless_only_on_helpful_conflicts": conflict_accuracy(matrix, 0.0, "helpful")}


def tension_section(folders) -> list:
    matrix = _json(folders["tension"] / "cross_matrix.json")
    if not matrix:
        return []
    head = " | ".join(f"{tranche_of(s)}: all | {tranche_of(s)}: conflicting" for s in matrix["test_sets"])
    lines = ["## Helpful vs harmless (Bai et al. §4.4, §5.1)", "",
             "PMs trained on one tranche only (the main PM's recipe and pair count) beside the main PM, on "
             "fresh pairs about the training entities; *conflicting* pairs are the dual-use requests, "
             "where the two labelers disagree. Chance is 0.5.", "",
             f"| PM (helpful fraction) | {head} |", "|---|" + "---|---|" * len(matrix["test_sets"])]
    for fraction, accs, conflicts in zip(matrix["helpful_fraction"], matrix["accuracy"], matrix["conflict_accuracy"]):
        cells = " | ".join(f"{_f(a)} | {_f(c)}" for a, c in zip(accs, conflicts))
        lines.append(f"| {fraction:.2f} | {cells} |")
    return lines + ["", "![cross matrix](pm_cross_matrix.png)", ""]


def pm_section(folders) -> list:
    pm = _json(folders["pm_eval"] / "pm_eval.json")
    if not pm:
        return []
    lines = ["## Preference model (Bai et al. §3)", "",
             "| test set | pairs | accuracy | ECE |", "|---|---|---|---|"]
    for spec, row in pm["sets"].items():
        lines.append(f"| {spec} | {row['pairs']} | {_f(row['accuracy'])} | {_f(row['calibration']['ece'])} |")
    lines.append(f"| all | {pm['all']['pairs']} | {_f(pm['all']['accuracy'])} | {_f(pm['all']['calibration']['ece'])} |")
    adversaries = _json(folders["pm_eval"] / "adversaries.json")
    if adversaries:
        lines += ["", "Shallow adversaries fitted on the PM's own training pairs (hh.eval.adversaries): "
                  "a PM that does no better than these has learned the surface of its pairs, not the world.", "",
                  "| baseline | training pairs | held-out pairs |", "|---|---|---|"]
        lines += [f"| {name} | {_f(row['train']['accuracy'])} | {_f(row['test']['accuracy'])} |"
                  for name, row in adversaries.items()]
    return lines + ["", "Calibration (predicted P(A>B) = σ(Δscore) against observed, binned):", "",
                    "![PM calibration](pm_calibration.png)", ""]


def ppo_section(folders) -> list:
    ppo = folders["ppo"]
    fit = _json(ppo / "reward_vs_sqrt_kl.json") or {}
    lines = ["## PPO against the PM (§4)", "",
             "| | first 5 iterations | last 5 |", "|---|---|---|"]
    for key, label in (("train/reward", "PM reward (mean)"), ("train/kl", "KL per response"),
                       ("train/entropy", "entropy / token"), ("train/response_length", "response length")):
        lines.append(f"| {label} | {_f(mean_rows(ppo, key, first=5))} | {_f(mean_rows(ppo, key, last=5))} |")
    lines += ["", f"Reward vs sqrt(KL), first {_f(fit.get('fit_fraction', 0.5), 1)} of the run: slope "
              f"{_f(fit.get('slope'))} per √nat, r² = {_f(fit.get('r2'))}.", "",
              "![reward vs sqrt(KL)](reward_vs_sqrt_kl.png)", ""]
    samples = ppo_samples(folders)
    by_step = gold_by_step(samples)
    if any(row["gold"]["n"] for row in by_step):
        lines += ["Logged samples judged by the world's labeler of each prompt (helpful/harmless): "
                  "a PM reward that rises while the gold accuracy does not is the PM being hacked.", "",
                  "| iteration | PM reward | gold accuracy | s.e. | judged |", "|---|---|---|---|---|"]
        for row in by_step:
            g = row["gold"]
            lines.append(f"| {row['step']} | {_f(row['reward'])} | {_f(g['mean'])} | {_f(g['se'])} | {g['n']} |")
        lines.append("")
    if samples:
        lines += ["Samples, first and last logged iteration:", ""]
        for row in samples[:2] + samples[-2:]:
            prompt = row["prompt"].strip().replace("\n", " ")[-160:]
            response = row["response"].strip().replace("\n", " ")[:200]
            lines.append(f"- iteration {row['step']}, reward {_f(row['reward'])}: …{prompt} → **{response}**")
        lines.append("")
    return lines


def best_of_section(folders) -> list:
    report = _json(folders["best_of"] / "best_of.json")
    if not report:
        return []
    labeler = report.get("labeler")
    lines = [f"## Best-of-k rejection sampling (§2.3, App. B.6) from `{epath.Path(report['policy']).name}`",
             "", f"Gold: the {labeler} labeler's score of the same best samples (Gao et al. 2022)." if labeler
             else "The prompts' source has no gold labeler.", "",
             "| k | mean best PM score | s.e. | gold score | s.e. | KL bound log k − (k−1)/k |",
             "|---|---|---|---|---|---|"]
    for k, row in sorted(report["k"].items(), key=lambda kv: int(kv[0])):
        gold = row.get("gold", {})
        lines.append(f"| {k} | {_f(row['mean_best_score'])} | {_f(row['stderr'])} | {_f(gold.get('mean', '–'))} | "
                     f"{_f(gold.get('se', '–'))} | {_f(row['kl_upper_bound'])} |")
    return lines + ["", "![best-of-k vs PPO](best_of.png)", ""]


def elo_section(folders) -> list:
    report = _json(folders["elo"] / "elo.json")
    if not report:
        return []
    lines = [f"## PM-judged Elo (§2.4, App. B.5), anchored at `{report['anchor']}`", "",
             f"{report['n_prompts']} held-out prompts ({', '.join(report['prompts'])}); soft wins "
             "σ(r_i − r_j) per prompt; ΔElo = 174·ΔPM.", "",
             "| model | Elo | s.e. | mean PM score |", "|---|---|---|---|"]
    for row in report["table"]:
        lines.append(f"| {row['model']} | {_f(row['elo'], 1)} | {_f(row['stderr'], 1)} | "
                     f"{_f(report['mean_score'][row['model']])} |")
    for labeler, section in report.get("gold", {}).items():
        lines += ["", *gold_elo_table(labeler, section)]
    return lines + ["", "![Elo](elo.png)", ""]


def gold_elo_table(labeler: str, section: dict) -> list:
    """One labeler's gold Elo and gold accuracy of every entry, the PM's Elo on the same prompts beside."""
    pm = {row["model"]: row for row in section["pm"]["table"]}
    lines = [f"### Gold {labeler} Elo (the world's {labeler} labeler; §4, Fig. 1)", "",
             f"{section['n_prompts']} prompts ({section['n_judged']} compared by the labeler); pairwise "
             "gold preferences, one virtual tie per pair; PM-predicted Elo on the same prompts beside.", "",
             "| model | gold Elo | s.e. | PM Elo | s.e. | gold accuracy | s.e. |", "|---|---|---|---|---|---|---|"]
    for row in section["table"]:
        acc = section["accuracy"][row["model"]]
        lines.append(f"| {row['model']} | {_f(row['elo'], 1)} | {_f(row['stderr'], 1)} | "
                     f"{_f(pm[row['model']]['elo'], 1)} | {_f(pm[row['model']]['stderr'], 1)} | "
                     f"{_f(acc['mean'])} | {_f(acc['se'])} |")
    return lines


def alignment_tax_section(folders) -> list:
    result = _json(folders["alignment_tax"] / "alignment_tax.json")
    if not result:
        return []
    return [f"## Alignment tax (§4.6.1): `{epath.Path(result['base']).name}` vs "
            f"`{epath.Path(result['policy']).name}`, {result['shots']}-shot", "",
            "Multiple-choice log-likelihood scoring (hh.eval.mc); `world_questions` asks the facts and "
            "sums of the synthetic world the LM was pretrained on.", "",
            markdown_table(result["rows"], epath.Path(result["base"]).name,
                           epath.Path(result["policy"]).name)]


def ood_section(folders) -> list:
    report = _json(folders["ood"] / "ood.json")
    if not report:
        return []
    lines = [f"## OOD detection of harmful requests (§5.4) on `{epath.Path(report['model']).name}` activations",
             "", f"In-distribution: {report['n_fit']} `{report['in_source']}` prompts (fit) and "
             f"{report['n_test']} held-out; pooling: {report['pooling']}; outlier exposure with "
             f"M = {report['exposure_m']}, mean of {report['exposure_draws']} draws.", "",
             "| OOD set | method | best layer | AUROC |", "|---|---|---|---|"]
    for spec, methods in report["best"].items():
        for method, row in methods.items():
            lines.append(f"| {spec} | {method.replace('_', ' ')} | {row['layer']} | {_f(row['auroc'])} |")
        # the lexical-novelty baseline on the same prompts: what the activations must beat
        if spec in report.get("novelty_auroc", {}):
            lines.append(f"| {spec} | lexical novelty (baseline) | – | {_f(report['novelty_auroc'][spec])} |")
    return lines + ["", "![OOD AUROC by layer](ood_auroc_by_layer.png)", ""]


def gold_headline_lines(heads: dict) -> list:
    """The report's headline bullets of the gold judgement (gold_headlines)."""
    lines = []
    for labeler, rows in heads["gold_elo"].items():
        pm = heads["pm_elo_on_gold_prompts"][labeler]
        text = ", ".join(f"{m} {_f(r['elo'], 1)} ± {_f(r['stderr'], 1)} (PM {_f(pm[m]['elo'], 1)})"
                         for m, r in rows.items())
        lines.append(f"- Gold {labeler} Elo: {text}")
        acc = heads["gold_accuracy_ppo_vs_distill"][labeler]
        lines.append(f"- Gold {labeler} accuracy of PPO samples **{_f(acc['ppo'])}** vs distilled "
                     f"samples {_f(acc['distill'])} (held-out prompts)")
    ppo = heads["ppo_samples_gold"]
    if ppo and ppo["last"]["gold"]["n"]:
        first, last = ppo["first"], ppo["last"]
        lines.append(f"- PPO's logged samples: gold accuracy {_f(first['gold']['mean'])} → "
                     f"**{_f(last['gold']['mean'])}** while PM reward {_f(first['reward'])} → "
                     f"{_f(last['reward'])} (iterations {first['step']} → {last['step']})")
    return lines


def write_report(config, folders, out) -> epath.Path:
    """Writes `<out>/report.md` (+ the plots) and `<out>/headlines.json`; returns the md path."""
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copy_plots(folders, out)
    version = code_version()
    heads = {**headlines(folders), **version}     # the commit the numbers came from, and if it was dirty
    atomic_write_text(out / "headlines.json", json.dumps(heads, indent=2) + "\n")
    total = sum((read_stamp(f) or {}).get("seconds", 0.0) for n, f in folders.items() if n != "report")
    lines = [f"# hh main job: preset `{config.preset}`", "",
             f"Written {datetime.datetime.now().isoformat(timespec='seconds')}, git "
             f"{(version['git_commit'] or 'unknown')[:10]}{' (dirty)' if version['git_dirty'] else ''}; "
             f"steps' wall time {total:.0f} s (a skipped step keeps the time of the run that made it).",
             "", "## Headlines", ""]
    lines += [f"- PM held-out accuracy **{_f(heads['pm_accuracy'])}** (ECE {_f(heads['pm_ece'])})",
              f"- PPO reward {_f(heads['ppo_reward_first5'])} → **{_f(heads['ppo_reward_last5'])}** "
              f"(first → last 5 iterations) at KL {_f(heads['ppo_kl_last5'], 2)} nats",
              f"- Elo of the PPO policy vs `{heads['elo_anchor']}`: **{_f(heads['elo_ppo_vs_initial'], 1)}** "
              f"± {_f(heads['elo_ppo_stderr'], 1)}"]
    tension = heads.get("tension")
    if tension:
        lines.append(f"- Tension: the helpful-only PM ranks **{_f(tension['helpful_only_on_harmless_conflicts'])}** "
                     f"of the harmless tranche's conflicting pairs right, the harmless-only PM "
                     f"**{_f(tension['harmless_only_on_helpful_conflicts'])}** of the helpful tranche's (chance 0.5)")
    lines += gold_headline_lines(heads)
    if heads["best_ood"]:
        b = heads["best_ood"]
        lines.append(f"- Best OOD AUROC **{_f(b['auroc'])}** ({b['method'].replace('_', ' ')}, layer "
                     f"{b['layer']}, {b['set']}); lexical novelty on the same prompts: "
                     f"{_f(heads.get('ood_novelty_auroc'))}")
    lines += ["", "## Steps", ""] + stage_table(folders) + [""]
    for section in (pm_section, tension_section, ppo_section, best_of_section, elo_section, alignment_tax_section,
                    ood_section):
        lines += section(folders)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
