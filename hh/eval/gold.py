"""Gold-judged evaluation of policies: the embedded world's own labelers score and compare samples,
so no policy is judged only by the PM it was optimised against.

Bai et al. 2022 (§4, Fig. 1) set the PM-predicted Elo of their policies beside crowdworker Elo,
helpfulness on helpfulness prompts and harmlessness on red-team prompts, separately; Gao et al.
2022 judge best-of-n by the true score beside the proxy's. Here the "crowdworkers" are the world's
labelers (hh.data.synthetic.gold_score / gold_preference).

The functions take the judge as plain callables so tests can pass fakes:
  score(prompt, response) -> float | None     1.0 right, 0.0 wrong, None not judged
  prefer(prompt, a, b)    -> float | None     1.0 a better, 0.0 b better, 0.5 tie, None not judged
"""

import math

import numpy as np

from hh.data import synthetic
from hh.data.pm_sources import parse_spec
from hh.eval.elo import elo_table, fit_elo

# One virtual tied game between every pair of entries (half a win each way): a weak prior that
# keeps the maximum-likelihood Elo finite when an entry wins (or loses) every judged comparison,
# which small gold evaluations of very different policies often produce.
PRIOR_TIES = 1.0


def world_judge(labeler: str):
    """(score, prefer) of one of the world's labelers ("helpful" / "harmless")."""
    def score(prompt, response):
        return synthetic.gold_score(prompt, response, labeler)

    def prefer(prompt, a, b):
        return synthetic.gold_preference(prompt, a, b, labeler)
    return score, prefer


def spec_labeler(spec: str) -> str | None:
    """The labeler that judges the prompts of a comparison source spec ("synthetic-harmless:test"
    -> "harmless"); None for sources the world cannot judge (real hh_rlhf, files)."""
    name = parse_spec(spec, "test")[0]
    return synthetic.SOURCE_LABELER.get(name)


def accuracy_judge(spec: str):
    """For the prompts of a source spec: (labeler, judge) with judge(prompts, responses) ->
    gold_accuracy by that labeler (what hh.rl.best_of.evaluate_best_of takes as `gold`), or None
    when the world cannot judge them."""
    labeler = spec_labeler(spec)
    if labeler is None:
        return None
    score = world_judge(labeler)[0]
    return labeler, lambda prompts, responses: gold_accuracy(prompts, responses, score)


def mean_and_stderr(values) -> dict:
    """{"mean", "se", "n"} of the judged values (None skipped) and "not_judged" (their count).
    mean and se are None when nothing was judged; se is 0 for a single value."""
    judged = np.array([v for v in values if v is not None], np.float64)
    n = int(judged.size)
    mean = float(judged.mean()) if n else None
    se = float(judged.std(ddof=1) / math.sqrt(n)) if n > 1 else (0.0 if n else None)
    return {"mean": mean, "se": se, "n": n, "not_judged": len(values) - n}


def gold_scores(prompts, responses, score) -> list:
    """score(prompt, response) per row of two parallel lists (None where not judged)."""
    return [score(p, r) for p, r in zip(prompts, responses, strict=True)]


def gold_accuracy(prompts, responses, score) -> dict:
    """The mean gold score of responses to prompts, with its standard error (mean_and_stderr)."""
    return mean_and_stderr(gold_scores(prompts, responses, score))


def gold_wins(prompts, responses, prefer):
    """responses: [n_entries][n_prompts] each entry's response per prompt -> (wins [n, n], judged):
    wins[i, j] = Σ over prompts of prefer(prompt, response_i, response_j) (a tie counts half to
    each side); judged = the number of prompts the judge answered for every pair."""
    n = len(responses)
    wins = np.zeros((n, n))
    judged = 0
    for column, prompt in enumerate(prompts):
        answered = True
        for i in range(n):
            for j in range(i + 1, n):
                p = prefer(prompt, responses[i][column], responses[j][column])
                if p is None:
                    answered = False
                    continue
                wins[i, j] += p
                wins[j, i] += 1.0 - p
        judged += answered
    return wins, judged


def gold_elo(names, wins, anchor: int = 0, prior_ties: float = PRIOR_TIES) -> list:
    """The Elo table (hh.eval.elo.elo_table, anchored at names[anchor]) of a gold wins matrix,
    with `prior_ties` virtual tied games added between every pair (PRIOR_TIES). A single entry is
    the anchor itself (Elo 0)."""
    if len(names) == 1:
        return [{"model": names[0], "elo": 0.0, "stderr": 0.0}]
    wins = np.asarray(wins, np.float64) + 0.5 * prior_ties * (1.0 - np.eye(len(names)))
    return elo_table(names, fit_elo(wins, anchor=anchor))


def gold_report(names, prompts, responses, score, prefer, anchor: int = 0) -> dict:
    """One labeler's judgement of several entries on the same prompts.

    responses: [n_entries][n_prompts]. -> {"anchor", "table": gold Elo rows, "wins", "n_prompts",
    "n_judged": prompts the judge compared, "accuracy": {name: mean_and_stderr of gold scores}}.
    """
    wins, judged = gold_wins(prompts, responses, prefer)
    return {"anchor": names[anchor], "table": gold_elo(names, wins, anchor),
            "wins": wins.tolist(), "n_prompts": len(prompts), "n_judged": judged,
            "accuracy": {name: gold_accuracy(prompts, rows, score) for name, rows in zip(names, responses)}}


def gold_by_step(rows, judge=world_judge) -> list:
    """Logged policy samples ({"step", "prompt", "response", "reward", "kind"}, e.g. PPO's
    samples.jsonl) -> per step, in order: {"step", "reward": the mean PM reward, "gold":
    mean_and_stderr of the gold scores}. A row's kind (helpful/harmless) names the labeler that
    judges it; rows without one are counted as not judged."""
    scorers, by_step = {}, {}
    for row in rows:
        kind = row.get("kind")
        if kind is not None and kind not in scorers:
            scorers[kind] = judge(kind)[0]
        gold = scorers[kind](row["prompt"], row["response"]) if kind is not None else None
        by_step.setdefault(row["step"], []).append((row["reward"], gold))
    return [{"step": step, "reward": float(np.mean([r for r, _ in pairs])),
             "gold": mean_and_stderr([g for _, g in pairs])} for step, pairs in sorted(by_step.items())]
