"""PM-judged Elo of several policies and best-of-k variants on the same held-out prompts (Bai et
al. 2022 §2.4, App. B.6 Fig 36: Elo from PM score differences).

Each entry samples (best of its k) on the same prompts with the same keys; the PM scores every
response; soft wins Σ σ(r_i − r_j) over prompts feed the maximum-likelihood Elo of hh.eval.elo, the
first entry anchored at 0. `python -m hh.eval.policy_elo --policy base=RUN --policy rlhf=PPO_RUN
--policy base-bo16=RUN@16 --reward_model PM --out DIR` writes elo.json and elo.png.
"""

import dataclasses
import json

import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.eval.elo import elo_table, fit_elo, pm_soft_wins
from hh.io import atomic_write_text
from hh.plots import pyplot
from hh.rl.best_of import best_scores
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


def policy_elo(entries, pm, prompt_specs, n_prompts: int, max_new_tokens: int, seed: int = 0) -> dict:
    """Samples each entry (LoadedLM per distinct workdir) on the first n_prompts of each prompt
    spec (one spec or a list) and fits the PM-judged Elo over all of them."""
    specs = [prompt_specs] if isinstance(prompt_specs, str) else list(prompt_specs)
    loaded, scores = {}, []
    for entry in entries:
        if entry.workdir not in loaded:
            loaded[entry.workdir] = LoadedLM(entry.workdir)
        scores.append(np.concatenate([
            best_scores(loaded[entry.workdir], pm, entry.k, spec, n_prompts, max_new_tokens, seed=seed)[0]
            for spec in specs]))
    report = elo_from_scores([e.name for e in entries], np.stack(scores))
    report.update(prompts=specs, reward_model=str(pm.workdir),
                  entries=[dataclasses.asdict(e) for e in entries])
    return report


def plot_elo(report: dict, path) -> None:
    plt = pyplot()

    rows = report["table"]
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(rows), 3.5))
    ax.bar([r["model"] for r in rows], [r["elo"] for r in rows],
           yerr=[r["stderr"] for r in rows], capsize=4, color="tab:blue")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel(f"PM Elo (vs {report['anchor']})")
    ax.set_title("PM-judged Elo")
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
                        f.max_new_tokens, f.seed)
    out = epath.Path(f.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "elo.json", json.dumps(report, indent=2) + "\n")
    plot_elo(report, out / "elo.png")
    for row in report["table"]:
        print(f"{row['model']:>16}: Elo {row['elo']:+7.1f} ± {row['stderr']:.1f}")


if __name__ == "__main__":
    flags.DEFINE_multi_string("policy", None, "NAME=WORKDIR or NAME=WORKDIR@K (best of K); the first is Elo 0")
    flags.DEFINE_string("reward_model", None, "the judging PM's workdir")
    flags.DEFINE_list("prompts", ["synthetic-helpful:test"], "held-out prompts (source specs)")
    flags.DEFINE_integer("n_prompts", 64, "prompts")
    flags.DEFINE_integer("max_new_tokens", 32, "response length limit")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_string("out", None, "output folder")
    flags.mark_flags_as_required(["policy", "reward_model", "out"])
    app.run(main)
