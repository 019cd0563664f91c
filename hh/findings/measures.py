"""Per-seed measures of each finding, read from the findings job's workdirs (no training here).

Each `f<n>` takes the findings config and {step name: folder} and returns {"per_seed": {measure:
[one value per seed]}, "seeds": [...], "detail": what the finding's plot and table show}. The
measure names are the ones the verdict rules in configs/findings.py refer to; a value that a run
could not measure is None (and leaves that seed out of the interval).
"""

import json
import math

import numpy as np
from etils import epath

from hh.eval.gold import gold_by_step
from hh.eval.scaling import fit_scaling
from hh.eval.pm_eval import conflict_accuracy
from hh.rl.curves import TEST_NORMALISED, TRAIN_NORMALISED, gold_against_sqrt_kl, linear_fit, series
from hh.train.metrics import log_rows, read_metrics


def read_json(path):
    path = epath.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the findings step reads it, and the step that writes it has not run")
    return json.loads(path.read_text())


def _collect(seeds, measure_one) -> dict:
    """Runs measure_one(seed) -> ({measure: value}, detail) per seed into the finding's dict."""
    per_seed, detail = {}, {}
    for seed in seeds:
        values, detail[seed] = measure_one(seed)
        for name, value in values.items():
            per_seed.setdefault(name, []).append(value)
    return {"per_seed": per_seed, "seeds": list(seeds), "detail": detail}


def _main(folders, seed, *parts):
    return read_json(epath.Path(folders[f"main-s{seed}"]).joinpath(*parts))


# --- F1, F11: the capacity grid --------------------------------------------------------------------

def f1(config, folders) -> dict:
    """Per seed, accuracy = a + b·ln P + c·ln D by least squares over its grid runs without PMP
    (every size at the main pair count, the main trunk at every pair count): b and c."""
    grid = read_json(epath.Path(folders["capacity"]) / "capacity.json")

    def one(seed):
        runs = [r for r in grid["runs"] if r["seed"] == seed and not r["pmp"]]
        try:
            fit = fit_scaling([r["params"] for r in runs], [r["pairs"] for r in runs], [r["accuracy"] for r in runs])
        except ValueError as e:          # too few runs to fit: the seed is left out, and says why
            return {"size_slope": None, "data_slope": None}, {"error": str(e), "runs": runs}
        return {"size_slope": fit["b"], "data_slope": fit["c"]}, {"fit": fit, "runs": runs}
    return _collect(config.capacity.seeds, one)


def f11(config, folders) -> dict:
    """Per seed, at the smallest pair count and the main trunk: accuracy with PMP minus without."""
    grid = read_json(epath.Path(folders["capacity"]) / "capacity.json")

    def one(seed):
        at = [r for r in grid["runs"] if r["seed"] == seed and r["size"] == grid["main_trunk"]]
        with_pmp = [r for r in at if r["pmp"]]
        pairs = with_pmp[0]["pairs"] if with_pmp else None
        without = [r for r in at if not r["pmp"] and r["pairs"] == pairs]
        if not (with_pmp and without):
            return {"pmp_gain": None}, {}
        return ({"pmp_gain": with_pmp[0]["accuracy"] - without[0]["accuracy"]},
                {"pairs": pairs, "with_pmp": with_pmp[0]["accuracy"], "without": without[0]["accuracy"]})
    return _collect(config.capacity.seeds, one)


# --- the main job per seed -------------------------------------------------------------------------

def f2(config, folders) -> dict:
    """From each seed's tension step: the single-tranche PMs on the other tranche's conflicting
    pairs, and how much the 50/50 mixture gains over the PM that never saw each tranche."""
    def one(seed):
        m = _main(folders, seed, "tension", "cross_matrix.json")
        mixture = config.main.pm.data.helpful_fraction
        at = lambda fraction, tranche: conflict_accuracy(m, fraction, tranche)  # noqa: E731
        values = {"helpful_only_on_harmless_conflicts": at(1.0, "harmless"),
                  "harmless_only_on_helpful_conflicts": at(0.0, "helpful"),
                  "mixture_gain_on_helpful_conflicts": _minus(at(mixture, "helpful"), at(0.0, "helpful")),
                  "mixture_gain_on_harmless_conflicts": _minus(at(mixture, "harmless"), at(1.0, "harmless"))}
        rows = {f"{f:.2f}": {t: at(f, t) for t in ("helpful", "harmless")} for f in m["helpful_fraction"]}
        return values, {"conflict_accuracy": rows}
    return _collect(config.seeds, one)


def _minus(a, b):
    return None if a is None or b is None else a - b


def f3(config, folders) -> dict:
    """The main PM's expected calibration error on its held-out pairs, and its reliability bins."""
    def one(seed):
        report = _main(folders, seed, "pm_eval", "pm_eval.json")
        calibration = report["all"]["calibration"]
        return {"ece": calibration["ece"]}, {k: calibration[k] for k in ("predicted", "observed", "counts")}
    return _collect(config.seeds, one)


def f6(config, folders) -> dict:
    """Gold Elo differences (mean over the world's two labelers) from each seed's Elo step, with
    the PM-predicted Elo on the same prompts beside them."""
    def one(seed):
        heads = _main(folders, seed, "report", "headlines.json")
        gold, pm = heads["gold_elo"], heads["pm_elo_on_gold_prompts"]

        def diff(table, a, b):
            return float(np.mean([t[a]["elo"] - t[b]["elo"] for t in table.values()]))
        return ({"gold_elo_ppo_minus_distill": diff(gold, "ppo", "distill"),
                 "gold_elo_distill_minus_lm": diff(gold, "distill", "lm"),
                 "pm_elo_ppo_minus_distill": diff(pm, "ppo", "distill"),
                 "pm_elo_distill_minus_lm": diff(pm, "distill", "lm")},
                {"gold": gold, "pm": pm})
    return _collect(config.seeds, one)


def best_of_kl(k: int) -> float:
    """The analytic KL of best-of-k to its base policy, log k − (k−1)/k nats (Stiennon et al. 2020
    App. G.3; Bai et al. round it to log k)."""
    return math.log(k) - (k - 1) / k


def ppo_gold_by_kl(ppo_dir) -> list:
    """[{"step", "sqrt_kl", "gold", "se", "n"}] of a PPO run's logged samples, gold-judged."""
    ppo_dir = epath.Path(ppo_dir)
    samples = [row for _, row in log_rows(ppo_dir / "samples.jsonl")]
    return gold_against_sqrt_kl(read_metrics(ppo_dir), gold_by_step(samples))


def f7(config, folders) -> dict:
    """Gold accuracy of PPO's logged samples at the logged iteration whose KL is nearest the largest
    k's best-of-k KL, minus that best-of-k's gold accuracy (both from the distilled policy)."""
    def one(seed):
        best_of = _main(folders, seed, "best_of", "best_of.json")
        judged = {int(k): row["gold"]["mean"] for k, row in best_of["k"].items() if "gold" in row}
        ppo = ppo_gold_by_kl(epath.Path(folders[f"main-s{seed}"]) / "ppo")
        if not judged or not ppo:
            return {"gold_ppo_minus_best_of": None}, {}
        k = max(judged)
        kl = best_of_kl(k)
        nearest = min(ppo, key=lambda g: abs(g["sqrt_kl"] ** 2 - kl))
        return ({"gold_ppo_minus_best_of": nearest["gold"] - judged[k]},
                {"best_of": [{"k": kk, "kl": best_of_kl(kk), "gold": v} for kk, v in sorted(judged.items())],
                 "ppo": [{**g, "kl": g["sqrt_kl"] ** 2} for g in ppo], "k": k, "ppo_step": nearest["step"]})
    return _collect(config.seeds, one)


def f9(config, folders) -> dict:
    """From each seed's OOD step (on the first OOD source): relative minus plain Mahalanobis,
    outlier exposure minus relative, and the best detector minus the lexical-novelty baseline."""
    def one(seed):
        report = _main(folders, seed, "ood", "ood.json")
        spec = config.main.ood.out_sources[0]
        best = {method: row["auroc"] for method, row in report["best"][spec].items()}
        novelty = report["novelty_auroc"][spec]
        return ({"relative_minus_mahalanobis": best["relative_mahalanobis"] - best["mahalanobis"],
                 "exposure_minus_relative": _minus(best.get("outlier_exposure"), best["relative_mahalanobis"]),
                 "detector_minus_novelty": max(best.values()) - novelty},
                {"auroc": best, "novelty": novelty})
    return _collect(config.seeds, one)


def f10(config, folders) -> dict:
    """The PPO policy's accuracy on the world's multiple-choice questions minus the LM's."""
    def one(seed):
        rows = _main(folders, seed, "alignment_tax", "alignment_tax.json")["rows"]
        world = [r for r in rows if "world_questions" in r["task"]] or rows
        row = next((r for r in world if r["metric"] == "accuracy_sum"), world[0])
        return {"tax": row["delta"]}, {"base": row["base"], "policy": row["policy"], "metric": row["metric"]}
    return _collect(config.seeds, one)


# --- F4, F5: the robustness study ------------------------------------------------------------------

def _halves(rows, key, fit_fraction):
    """(early x, y), (late x, y) of `key` against sqrt(KL), split as robustness_summary splits, and
    the boundary iteration (shared by both halves, so each fit reaches it)."""
    steps, x, y = series(rows, key)
    n_fit = max(2, math.ceil(fit_fraction * len(steps)))
    return (x[:n_fit], y[:n_fit]), (x[n_fit - 1:], y[n_fit - 1:]), int(steps[n_fit - 1]) if len(steps) else 0


def parting_point(sqrt_kl, train, test, n_early: int):
    """The sqrt(KL) from which the train PM's lead over the test PM (train − test, both normalised)
    stays above its early-half mean + 2 standard deviations to the end of the run; None if it
    never does (Bai et al. 2022 §4.2: the two agree early, then part)."""
    gap = np.asarray(train) - np.asarray(test)
    bar = gap[:n_early].mean() + 2 * gap[:n_early].std()
    above = gap > bar
    for i in range(len(gap)):
        if above[i:].all():
            return float(sqrt_kl[i])
    return None


def robustness_measures(ppo_dir, fit_fraction: float) -> tuple[dict, dict]:
    """Early (the first fit_fraction of iterations) and late (the rest, from the boundary on) linear
    fits against sqrt(KL) of the train PM's and the test PM's mean-normalised rewards and of the
    logged samples' gold accuracy; the gold points split at the same iteration."""
    ppo_dir = epath.Path(ppo_dir)
    rows = read_metrics(ppo_dir)
    (tx, ty), (lx, ly), boundary = _halves(rows, TRAIN_NORMALISED, fit_fraction)
    (_, ety), (_, lty), _ = _halves(rows, TEST_NORMALISED, fit_fraction)
    early, late = linear_fit(tx, ty), linear_fit(lx, ly)
    test_early, test_late = linear_fit(tx, ety), linear_fit(lx, lty)
    gold = read_json(ppo_dir / "robustness.json").get("gold", [])
    g_early = [g for g in gold if g["step"] <= boundary]
    g_late = [g for g in gold if g["step"] >= boundary] or gold[-2:]
    gold_early = linear_fit([g["sqrt_kl"] for g in g_early], [g["gold"] for g in g_early])
    gold_late = linear_fit([g["sqrt_kl"] for g in g_late], [g["gold"] for g in g_late])
    values = {"train_pm_early_slope": early["slope"], "train_pm_early_r2": early["r2"],
              "gold_early_slope": gold_early["slope"], "train_pm_late_slope": late["slope"],
              "train_minus_test_late_slope": late["slope"] - test_late["slope"],
              "gold_late_slope": gold_late["slope"],
              "parting_sqrt_kl": parting_point(np.concatenate([tx, lx[1:]]), np.concatenate([ty, ly[1:]]),
                                               np.concatenate([ety, lty[1:]]), len(tx))}
    curve = {"sqrt_kl": np.concatenate([tx, lx[1:]]).tolist(), "train": np.concatenate([ty, ly[1:]]).tolist(),
             "test": np.concatenate([ety, lty[1:]]).tolist(), "gold": gold, "boundary_step": boundary,
             "fits": {"train_early": early, "train_late": late, "test_early": test_early, "test_late": test_late,
                      "gold_early": gold_early, "gold_late": gold_late}}
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in values.items()}, curve


def _robustness(config, folders, names) -> dict:
    fraction = config.robustness.ppo.curves.fit_fraction

    def one(seed):
        values, curve = robustness_measures(epath.Path(folders[f"robustness-s{seed}"]) / "ppo", fraction)
        return {k: values[k] for k in names}, curve
    return _collect(config.seeds, one)


def f4(config, folders) -> dict:
    """Early in PPO: the train PM's reward against sqrt(KL) (slope, r²) and the gold accuracy's slope."""
    return _robustness(config, folders, ("train_pm_early_slope", "train_pm_early_r2", "gold_early_slope"))


def f5(config, folders) -> dict:
    """Late in PPO: the train PM's slope, its excess over the test PM's, and the gold accuracy's slope;
    reported beside them, where the two PMs part (parting_point)."""
    return _robustness(config, folders, ("train_pm_late_slope", "train_minus_test_late_slope", "gold_late_slope",
                                         "parting_sqrt_kl"))


# --- F8: the online loop ---------------------------------------------------------------------------

def f8(config, folders) -> dict:
    """The exact judge's Elo of the last round's policy minus round 0's (mean over the labelers)."""
    def one(seed):
        rounds = read_json(epath.Path(folders[f"online-s{seed}"]) / "report" / "online_report.json")["rounds"]
        first, last = rounds[0]["judge_elo"], rounds[-1]["judge_elo"]
        gain = float(np.mean([last[k]["elo"] - first[k]["elo"] for k in first]))
        return ({"judge_elo_last_minus_first": gain},
                {"judge_elo": [r["judge_elo"] for r in rounds], "gold_pm_elo": [r["gold_elo"] for r in rounds],
                 "pm_predicted_elo": [r["pm_predicted_elo"] for r in rounds]})
    return _collect(config.online_seeds, one)


# --- F12: PPO, DPO, IPO and best-of-k against KL ----------------------------------------------------

def gold_of(row: dict) -> float | None:
    """An entry's gold score: the mean over the world's labelers of its gold accuracy on their prompts."""
    values = [lab["gold_accuracy"] for lab in row["labelers"].values() if lab["gold_accuracy"] is not None]
    return float(np.mean(values)) if values else None


def gold_elo_of(row: dict) -> float:
    """An entry's gold Elo: the mean over the labelers (anchored at the initial policy's 0)."""
    return float(np.mean([lab["gold_elo"] for lab in row["labelers"].values()]))


def frontier_value(rows, method: str, kl_budget: float) -> float | None:
    """The best gold score among the initial policy and `method`'s runs whose KL to the initial
    policy is at most kl_budget nats (runs with an unknown KL are left out)."""
    eligible = [r for r in rows if r["method"] == "initial"
                or (r["method"] == method and r["kl"] is not None and r["kl"] <= kl_budget)]
    golds = [g for g in (gold_of(r) for r in eligible) if g is not None]
    return max(golds) if golds else None


def f12(config, folders) -> dict:
    """Per seed, each method's frontier value within config.frontier.kl_budget; the criteria compare
    DPO with PPO, and IPO and best-of-k are reported beside."""
    budget = config.frontier.kl_budget

    def one(seed):
        rows = read_json(epath.Path(folders[f"frontier-s{seed}"]) / "frontier.json")["rows"]
        value = {m: frontier_value(rows, m, budget) for m in ("ppo", "dpo", "ipo", "best_of")}
        points = [{"name": r["name"], "method": r["method"], "strength": r["strength"], "kl": r["kl"],
                   "gold": gold_of(r), "gold_elo": gold_elo_of(r),
                   **{f"gold_{lab}": v["gold_accuracy"] for lab, v in r["labelers"].items()}} for r in rows]
        return ({"frontier_dpo_minus_ppo": _minus(value["dpo"], value["ppo"]),
                 "frontier_ipo_minus_ppo": _minus(value["ipo"], value["ppo"]),
                 "frontier_best_of_minus_ppo": _minus(value["best_of"], value["ppo"]),
                 **{f"frontier_{m}": v for m, v in value.items()}},
                {"points": points, "kl_budget": budget})
    return _collect(config.seeds, one)


MEASURES = {"F1": f1, "F2": f2, "F3": f3, "F4": f4, "F5": f5, "F6": f6, "F7": f7, "F8": f8, "F9": f9,
            "F10": f10, "F11": f11, "F12": f12}
