"""What each round is measured by (Bai et al. 2022 §4.5, App. B.4, Fig 35):

* the world's exact judge (hh.eval.gold), the crowdworker no model was trained against: the share of
  the round's responses it judges right, helpful prompts by the helpfulness labeler and red-team
  prompts by the harmlessness labeler, and (in the report) the Elo of every round's policy from its
  pairwise preferences;
* the gold labeler's win rate of the round's policy against round 0's on the same held-out prompts
  (soft wins under the labeler's own noise model, σ((g_r − g_0)/T)) and the Elo it implies;
* the PM-predicted Elo: the same comparison judged by the PM the policy was trained against
  (σ(s_r − s_0)); the paper found this naive estimate over-states the crowdworkers' Elo;
* PM accuracy by data source: static held-out comparisons vs fresh comparisons from the round's
  own deployed models (expect lower: distribution shift), and each round's held-out part.
"""

import json

import numpy as np
from etils import epath

from hh.data import dialogue
from hh.data.records import field, jsonl_records
from hh.data.pm_sources import spec_source
from hh.eval.elo import elo_table, fit_elo, pm_soft_wins
from hh.eval.gold import gold_accuracy, gold_report, spec_labeler, world_judge
from hh.trained import LoadedLM
from hh.eval.pm_eval import accuracy
from hh.trained import LoadedPM
from hh.io import atomic_write_text
from hh.online import mix
from hh.serve.export import split_of, to_pair
from hh.serve.labelers import GoldPMLabeler, RuleLabeler, mode_labeler
from hh.serve.models import DeployedModel, DeploymentSpec

STATIC_TEST = ("synthetic-helpful:test", "synthetic-harmless:test")
# Half a win each way added to every pair of models before the Elo fit: when one policy beats the
# other on every prompt (a near-deterministic labeler) the maximum-likelihood Elo is infinite.
WIN_SMOOTHING = 0.5


def smoothed_wins(scores):
    wins = pm_soft_wins(scores)
    return wins + WIN_SMOOTHING * (1.0 - np.eye(len(wins)))


# --- labelers -----------------------------------------------------------------------------------

def load_labeler(config, folders):
    """The gold labeler: the gold PM with the configured Bradley–Terry temperature."""
    return GoldPMLabeler(LoadedPM(folders["gold"]), config.collect.temperature, config.collect.seed)


def rule_labeler(config):
    """The rule labeler (the synthetic world's judge) with the configured noise."""
    return RuleLabeler(config.collect.seed, config.collect.temperature)


def gold_margins(gold, rows) -> np.ndarray:
    """gold(a) − gold(b) of each stored comparison."""
    if not rows:
        return np.zeros(0)
    a, b = gold.scores([r["context"] for r in rows], [r["response_a"] for r in rows],
                       [r["response_b"] for r in rows])
    return np.asarray(a, np.float64) - np.asarray(b, np.float64)


# --- the round's data ---------------------------------------------------------------------------

def export_round(rows, min_strength: int, test_fraction: float):
    """-> (train pairs, held-out pairs, dropped as weak) in the hh-rlhf format, split by
    conversation (hh.serve.export: every turn of a conversation on the same side)."""
    train, test, dropped = [], [], 0
    for row in rows:
        if row["strength"] < min_strength:
            dropped += 1
            continue
        (test if split_of(row["conversation_id"], test_fraction) == "test" else train).append(to_pair(row))
    return train, test, dropped


def split_pairs(pairs) -> list[dict]:
    """hh-rlhf transcripts -> {"prompt","chosen","rejected"} rows (what LoadedPM.scores reads)."""
    out = []
    for p in pairs:
        s = dialogue.split_pair(p["chosen"], p["rejected"])
        out.append({"prompt": s.prompt, "chosen": s.chosen, "rejected": s.rejected})
    return out


def static_test(config) -> list[dict]:
    """The static held-out comparisons: the synthetic test splits, as a PM's eval reads them."""
    rows = []
    for spec in STATIC_TEST:
        source = spec_source(spec, "test", config.pm.data)
        rows += [{k: source[i][k] for k in ("prompt", "chosen", "rejected")} for i in range(len(source))]
    return rows


def pm_accuracy_on(pm, rows) -> dict:
    if not rows:
        return {"accuracy": float("nan"), "pairs": 0}
    chosen, rejected = pm.scores(rows)
    return {"accuracy": accuracy(chosen, rejected), "pairs": len(rows)}


def pm_accuracies(pm, config, folders, r: int) -> dict:
    """A round-r PM's accuracy on the static test set and on each round's held-out comparisons up
    to r (its accuracy on the next round's fresh comparisons is measured by that round's collect)."""
    out = {"static": pm_accuracy_on(pm, static_test(config))}
    for k in range(r + 1):
        held = mix.read_jsonl(folders[f"round{k}/collect"] / mix.HELD_OUT_FILE)
        out[f"round{k}_held_out"] = pm_accuracy_on(pm, split_pairs(held))
    return out


# --- the round's policy -------------------------------------------------------------------------

def eval_prompts(config) -> list[tuple[str, str | None]]:
    """(context, labeler) of the held-out prompts every round's policy answers: the labeler of the
    world that judges the prompt's source ("helpful" / "harmless"), None where it cannot."""
    out = []
    for spec in config.eval.prompts:
        source, labeler = spec_source(spec, "test", config.pm.data), spec_labeler(spec)
        out += [(source[i]["prompt"], labeler) for i in range(min(config.eval.n_prompts, len(source)))]
    return out


def eval_contexts(config) -> list[str]:
    """The held-out prompts every round's policy answers."""
    return [context for context, _ in eval_prompts(config)]


def by_labeler(prompts) -> dict:
    """{labeler: row indices} of eval_prompts' rows the world can judge."""
    out = {}
    for i, (_, labeler) in enumerate(prompts):
        if labeler is not None:
            out.setdefault(labeler, []).append(i)
    return out


def judge_accuracy(prompts, responses) -> dict:
    """{labeler: mean_and_stderr of the exact judge's scores} of responses to eval_prompts' rows."""
    return {labeler: gold_accuracy([prompts[i][0] for i in rows], [responses[i] for i in rows],
                                   world_judge(labeler)[0])
            for labeler, rows in by_labeler(prompts).items()}


def judge_elo(prompts, responses_by_round: list) -> dict:
    """{labeler: hh.eval.gold.gold_report} of every round's responses to the same eval_prompts,
    from the exact judge's pairwise preferences (round 0 anchored at 0)."""
    names = [f"round{r}" for r in range(len(responses_by_round))]
    return {labeler: gold_report(names, [prompts[i][0] for i in rows],
                                 [[responses[i] for i in rows] for responses in responses_by_round],
                                 *world_judge(labeler))
            for labeler, rows in by_labeler(prompts).items()}


def judge_margins(rows) -> np.ndarray:
    """judge(a) − judge(b) of each stored comparison by the world's exact judge (the mode's labeler,
    hh.serve.labelers.mode_labeler; 0 where it cannot judge either side)."""
    score = RuleLabeler.score
    return np.array([score(r["context"], r["response_a"], mode_labeler(r["mode"]))
                     - score(r["context"], r["response_b"], mode_labeler(r["mode"])) for r in rows], np.float64)


def policy_responses(config, policy_dir) -> list[str]:
    """The policy's responses to the held-out prompts (the same keys for every round's policy)."""
    lm = LoadedLM(policy_dir)
    model = DeployedModel(DeploymentSpec("policy", str(policy_dir)), lm, max_new_tokens=config.eval.max_new_tokens,
                          temperature=1.0, rows=config.collect.rows_per_call)
    return [c.text for c in model.sample(eval_contexts(config), config.eval.seed)]


def pairwise_elo(scores_r, scores_0, temperature: float = 1.0) -> dict:
    """Soft win rate of r over 0, mean σ((s_r − s_0)/T), and the Elo difference it implies with the
    Elo fit's standard error (hh.eval.elo; wins smoothed by WIN_SMOOTHING)."""
    scores = np.stack([np.asarray(scores_0, np.float64), np.asarray(scores_r, np.float64)])
    if temperature > 0:
        scores = scores / temperature
    wins = smoothed_wins(scores)
    win_rate = float(np.mean(1.0 / (1.0 + np.exp(-(scores[1] - scores[0])))))
    if np.allclose(scores[0], scores[1]):
        return {"win_rate": 0.5, "elo": 0.0, "stderr": 0.0}
    fit = fit_elo(wins, anchor=0)
    return {"win_rate": win_rate, "elo": float(fit.ratings[1]), "stderr": float(fit.stderr[1])}


def read_responses(path) -> list[str]:
    """The "response" of each row of a responses.jsonl an earlier eval step wrote."""
    return [field(row, "response", str, path, line) for line, row in jsonl_records(path)]


def evaluate_round(config, folders, r: int, folder) -> dict:
    folder = epath.Path(folder)
    prompts = eval_prompts(config)
    contexts = [context for context, _ in prompts]
    responses = policy_responses(config, folders[f"round{r}/ppo"])
    atomic_write_text(folder / "responses.jsonl", "".join(
        json.dumps({"prompt": c, "response": t}) + "\n" for c, t in zip(contexts, responses)))
    base = responses if r == 0 else read_responses(folders["round0/eval"] / "responses.jsonl")
    gold = load_labeler(config, folders)
    pm = LoadedPM(folders[f"round{r}/pm"])
    g_r, g_0 = gold.scores(contexts, responses, base)
    rows = [{"prompt": c, "chosen": a, "rejected": b} for c, a, b in zip(contexts, responses, base)]
    s_r, s_0 = pm.scores(rows)
    gold_vs_0 = pairwise_elo(g_r, g_0, config.collect.temperature)
    pm_vs_0 = pairwise_elo(s_r, s_0, 1.0)
    report = {"round": r, "n_prompts": len(contexts),
              "judge_accuracy": judge_accuracy(prompts, responses),
              "gold_win_rate": gold_vs_0["win_rate"], "gold_elo": gold_vs_0["elo"],
              "gold_elo_stderr": gold_vs_0["stderr"], "gold_mean_score": float(np.mean(g_r)),
              "pm_win_rate": pm_vs_0["win_rate"], "pm_elo": pm_vs_0["elo"], "pm_elo_stderr": pm_vs_0["stderr"],
              "pm_mean_score": float(np.mean(s_r)),
              "gold_scores": [float(x) for x in g_r],
              "pm_accuracy": pm_accuracies(pm, config, folders, r)}
    atomic_write_text(folder / "eval.json", json.dumps(report, indent=2) + "\n")
    return report


def gold_elo_table(evals: list[dict], temperature: float) -> list[dict]:
    """The maximum-likelihood gold Elo of every round's policy from the gold scores of all of them
    on the same prompts (round 0 anchored at 0)."""
    if len(evals) == 1:     # round 0 alone: the anchor
        return [{"model": f"round{evals[0]['round']}", "elo": 0.0, "stderr": 0.0}]
    scores = np.stack([np.asarray(e["gold_scores"], np.float64) for e in evals])
    if temperature > 0:
        scores = scores / temperature
    fit = fit_elo(smoothed_wins(scores), anchor=0)
    return elo_table([f"round{e['round']}" for e in evals], fit)
