"""Elo of several policies and best-of-k variants on the same held-out prompts, judged by the PM
(Bai et al. 2022 §2.4, App. B.6 Fig 36: Elo from PM score differences) and, where the embedded
world can judge the prompts, by its gold labelers beside it (§4, Fig. 1: PM-predicted vs
crowdworker Elo, helpfulness and harmlessness separately).

Each entry samples (best of its k) on the same prompts with the same keys; the PM scores every
response; soft wins Σ σ(r_i − r_j) over prompts feed the maximum-likelihood Elo of hh.eval.elo, the
first entry anchored at 0. The same responses go to the world's labeler of each prompt source
(hh.eval.gold): its pairwise preferences give the gold Elo, its scores each entry's gold accuracy.
A PM that PPO hacked shows as a PM Elo far above the gold one.
`python -m hh.eval.policy_elo --policy base=RUN --policy rlhf=PPO_RUN --policy base-bo16=RUN@16
--reward_model PM --out DIR` writes elo.json, elo_samples.jsonl and elo.png.
"""

import dataclasses
import json

import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.eval.elo import elo_table, fit_elo, pm_soft_wins
from hh.eval.gold import gold_report, gold_scores, spec_labeler, world_judge
from hh.io import atomic_write_text
from hh.plots import pyplot
from hh.rl.best_of import best_samples, kl_upper_bound
from hh.train.checkpoint import absolute
from hh.trained import LoadedLM, LoadedPM


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    workdir: str
    k: int = 1


def parse_entry(text: str) -> Entry:
    """"NAME=WORKDIR" or "NAME=WORKDIR@K" (best of K samples by the PM)."""
    name, eq, rest = text.partition("=")
    if not eq or not name or not rest:
        raise ValueError(f"--policy {text!r}: use NAME=WORKDIR or NAME=WORKDIR@K")
    workdir, at, k = rest.rpartition("@") if "@" in rest else (rest, "", "1")
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"--policy {text!r}: K must be a positive integer")
    return Entry(name, workdir, int(k))


def elo_from_scores(names, scores, anchor: int = 0) -> dict:
    """scores: [n_models, n_prompts] PM scores of each entry's response per prompt -> report
    with the Elo table, mean scores and the soft-win matrix."""
    scores = np.asarray(scores, np.float64)
    wins = pm_soft_wins(scores)
    fit = fit_elo(wins, anchor=anchor)
    return {"anchor": names[anchor], "table": elo_table(names, fit),
            "mean_score": {n: float(s.mean()) for n, s in zip(names, scores)},
            "soft_wins": wins.tolist(), "n_prompts": int(scores.shape[1])}


def gold_sections(names, samples, labeler_of=spec_labeler, judge=world_judge) -> dict:
    """The gold judgement of the entries, per labeler, beside the PM's on the same prompts.

    samples: {spec: [per entry (names' order) {"prompt", "response", "score"}]} on the same
    prompts. Specs the world can judge (labeler_of(spec) not None) are pooled by labeler, so
    helpfulness and harmlessness are judged separately (Bai et al. 2022 Fig. 1); other specs get
    no section. -> {labeler: gold_report (Elo table, wins, accuracy) + "pm": the PM-judged Elo
    (elo_from_scores) on those prompts}.
    """
    pooled = {}
    for spec, per_entry in samples.items():
        labeler = labeler_of(spec)
        if labeler is not None:
            pooled.setdefault(labeler, []).append(per_entry)
    sections = {}
    for labeler, groups in pooled.items():
        prompts = [p for group in groups for p in group[0]["prompt"]]
        responses = [[r for group in groups for r in group[i]["response"]] for i in range(len(names))]
        scores = np.stack([np.concatenate([group[i]["score"] for group in groups]) for i in range(len(names))])
        score, prefer = judge(labeler)
        sections[labeler] = {**gold_report(names, prompts, responses, score, prefer),
                             "pm": elo_from_scores(names, scores)}
    return sections


def sample_rows(names, samples, labeler_of=spec_labeler, judge=world_judge) -> list:
    """Every entry's chosen response per prompt, with its PM score and (where the world judges the
    spec) its gold score: the rows of elo_samples.jsonl, for reading what each policy says."""
    rows = []
    for spec, per_entry in samples.items():
        labeler = labeler_of(spec)
        for name, entry in zip(names, per_entry):
            gold = (gold_scores(entry["prompt"], entry["response"], judge(labeler)[0]) if labeler
                    else [None] * len(entry["response"]))
            rows += [{"spec": spec, "entry": name, "prompt": p, "response": r, "pm_score": float(s),
                      "gold_score": g}
                     for p, r, s, g in zip(entry["prompt"], entry["response"], entry["score"], gold)]
    return rows


def kl_section(entries, samples, specs, reference: str) -> dict:
    """Each entry's KL to the reference policy on the prompts: for a sampled policy (k = 1) the
    mean k1 estimate over its samples with its standard error; for best-of-k of the reference
    itself, the analytic log k − (k−1)/k; otherwise unknown (None)."""
    out = {}
    for i, e in enumerate(entries):
        if e.k == 1:
            kl = np.concatenate([samples[spec][i]["kl"] for spec in specs])
            out[e.name] = {"kl": float(kl.mean()), "stderr": float(kl.std(ddof=1) / np.sqrt(len(kl))) if len(kl) > 1
                           else 0.0, "n": int(len(kl)), "how": "sampled: mean of log pi - log pi_ref"}
        elif str(absolute(e.workdir)) == str(absolute(reference)):
            out[e.name] = {"kl": kl_upper_bound(e.k), "stderr": 0.0, "n": 0, "how": "best-of-k bound"}
        else:
            out[e.name] = None
    return out


def policy_elo(entries, pm, prompt_specs, n_prompts: int, max_new_tokens: int, seed: int = 0,
               reference: str | None = None) -> dict:
    """Samples each entry (LoadedLM per distinct workdir) on the first n_prompts of each prompt
    spec (one spec or a list), fits the PM-judged Elo over all of them and, per labeler of the
    world, the gold Elo and gold accuracy ("gold": gold_sections). "samples": sample_rows.
    reference: a policy workdir; each entry's KL to it goes in "kl_to_reference" (kl_section):
    the x axis of a gold-score-against-KL frontier."""
    specs = [prompt_specs] if isinstance(prompt_specs, str) else list(prompt_specs)
    loaded = {}
    for workdir in [e.workdir for e in entries] + ([reference] if reference else []):
        if workdir not in loaded:
            loaded[workdir] = LoadedLM(workdir)
    ref = loaded[reference] if reference else None
    samples = {spec: [best_samples(loaded[e.workdir], pm, e.k, spec, n_prompts, max_new_tokens, seed=seed,
                                   reference=ref) for e in entries] for spec in specs}
    names = [e.name for e in entries]
    scores = np.stack([np.concatenate([samples[spec][i]["score"] for spec in specs])
                       for i in range(len(entries))])
    report = elo_from_scores(names, scores)
    report.update(prompts=specs, reward_model=str(pm.workdir),
                  entries=[dataclasses.asdict(e) for e in entries],
                  gold=gold_sections(names, samples), samples=sample_rows(names, samples))
    if reference:
        report["reference"] = str(reference)
        report["kl_to_reference"] = kl_section(entries, samples, specs, reference)
    return report


def write_elo(report: dict, out) -> None:
    """elo.json (everything but the samples), elo_samples.jsonl and elo.png in folder `out`."""
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {key: value for key, value in report.items() if key != "samples"}
    atomic_write_text(out / "elo.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "elo_samples.jsonl", "".join(json.dumps(row) + "\n" for row in report.get("samples", [])))
    plot_elo(report, out / "elo.png")


def _bars(ax, rows, order, offset, width, label, color):
    by_model = {r["model"]: r for r in rows}
    x = np.arange(len(order)) + offset
    ax.bar(x, [by_model[m]["elo"] for m in order], width, yerr=[by_model[m]["stderr"] for m in order],
           capsize=3, color=color, label=label)


def plot_elo(report: dict, path) -> None:
    """The PM-judged Elo of every entry over all prompts and, per labeler of the world, the gold
    Elo beside the PM's on the same prompts (one panel each)."""
    plt = pyplot()

    gold = report.get("gold", {})
    order = [r["model"] for r in report["table"]]
    fig, axes = plt.subplots(1, 1 + len(gold), figsize=((1.5 + 0.9 * len(order)) * (1 + len(gold)), 3.5),
                             squeeze=False)
    ax = axes[0, 0]
    _bars(ax, report["table"], order, 0.0, 0.8, "PM", "tab:blue")
    ax.set_ylabel(f"Elo (vs {report['anchor']})")
    ax.set_title("PM-judged Elo, all prompts")
    for ax, (labeler, section) in zip(axes[0, 1:], gold.items()):
        _bars(ax, section["pm"]["table"], order, -0.2, 0.4, "PM", "tab:blue")
        _bars(ax, section["table"], order, 0.2, 0.4, "gold", "tab:orange")
        ax.set_title(f"{labeler}: gold vs PM ({section['n_prompts']} prompts)")
        ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(order)), order)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    entries = [parse_entry(p) for p in f.policy]
    report = policy_elo(entries, LoadedPM(f.reward_model), list(f.prompts), f.n_prompts,
                        f.max_new_tokens, f.seed, reference=f.reference or None)
    write_elo(report, f.out)
    for row in report["table"]:
        kl = (report.get("kl_to_reference") or {}).get(row["model"])
        kl_text = f", KL to reference {kl['kl']:.3f} ± {kl['stderr']:.3f} nats" if kl else ""
        print(f"{row['model']:>16}: PM Elo {row['elo']:+7.1f} ± {row['stderr']:.1f}{kl_text}")
    for labeler, section in report["gold"].items():
        for row in section["table"]:
            print(f"{row['model']:>16}: gold {labeler} Elo {row['elo']:+7.1f} ± {row['stderr']:.1f}")


if __name__ == "__main__":
    flags.DEFINE_multi_string("policy", None, "NAME=WORKDIR or NAME=WORKDIR@K (best of K); the first is Elo 0")
    flags.DEFINE_string("reward_model", None, "the judging PM's workdir")
    flags.DEFINE_list("prompts", ["synthetic-helpful:test"], "held-out prompts (source specs)")
    flags.DEFINE_integer("n_prompts", 64, "prompts")
    flags.DEFINE_integer("max_new_tokens", 32, "response length limit")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_string("out", None, "output folder")
    flags.DEFINE_string("reference", "", "a policy workdir: report each entry's KL to it (kl_to_reference)")
    flags.mark_flags_as_required(["policy", "reward_model", "out"])
    app.run(main)
