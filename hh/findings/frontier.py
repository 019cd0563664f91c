"""The findings job's F12 experiment: PPO, DPO, IPO and best-of-k from one initial policy, on the
same comparisons, each at several strengths, judged by the world's exact judge against the KL to
the initial policy (the frontier plot of Rafailov et al. 2023 Fig. 2 and Gao et al. 2022, with a
gold judge in place of a learned one).

Per seed, from that seed's main job (its LM, or its distilled policy: `frontier.initial`):
  ppo-kl<λ>     PPO against the main job's PM with a fixed KL coefficient λ (hh.rl)
  dpo-b<β>      DPO on the PM's training comparisons (hh.dpo), the initial policy as reference
  ipo-t<τ>      IPO on the same comparisons
  best-of-k     the initial policy's best of k samples by the main job's PM (no training)
then one evaluation (hh.eval.policy_elo) of every entry on the same held-out prompts with the same
sampling keys: the gold accuracy per labeler, the gold Elo (pairwise exact-judge preferences), the
PM's Elo beside them, and each entry's KL to the initial policy (the k1 estimate over its own
samples; best-of-k's analytic log k − (k−1)/k). Every training run goes through hh.main.run in
its own folder, so an interrupted step resumes, and a finished run is only evaluated.
"""

import copy
import json

from etils import epath

from hh import main
from hh.eval.policy_elo import Entry, policy_elo
from hh.io import atomic_write_text
from hh.trained import LoadedPM


def run_name(method: str, strength) -> str:
    """The folder / entry name of one run: "ppo-kl0.01", "dpo-b0.1", "ipo-t0.1", "best-of-16"."""
    prefix = {"ppo": "ppo-kl", "dpo": "dpo-b", "ipo": "ipo-t", "best_of": "best-of-"}[method]
    return f"{prefix}{strength:g}"


def strengths(frontier) -> dict:
    """{method: [strength, ...]} of the config section (PPO's λ_KL, DPO's β, IPO's τ, best-of k)."""
    return {"ppo": list(frontier.ppo_kl_coefs), "dpo": list(frontier.dpo_betas), "ipo": list(frontier.ipo_taus),
            "best_of": list(frontier.best_of_ks)}


def ppo_config(frontier, seed: int, coef: float, initial: str, reward_model: str):
    """PPO from `initial` against `reward_model` with the fixed KL coefficient `coef`."""
    cfg = copy.deepcopy(frontier.ppo)
    cfg.seed, cfg.init_from, cfg.reward_model = seed, initial, reward_model
    cfg.kl.kind, cfg.kl.init_coef = "fixed", float(coef)
    return cfg


def preference_config(frontier, seed: int, loss: str, strength: float, initial: str):
    """A DPO (loss "dpo", β = strength) or IPO (loss "ipo", τ = strength) stage config on the
    comparisons the main job's PM trained on (configs/findings.py copies its data fields into
    frontier.dpo.data)."""
    cfg = copy.deepcopy(frontier.dpo)
    cfg.seed, cfg.init_from, cfg.dpo.loss = seed, initial, loss
    if loss == "dpo":
        cfg.dpo.beta = float(strength)
    else:
        cfg.dpo.tau = float(strength)
    return cfg


def train_runs(frontier, seed: int, initial: str, reward_model: str) -> dict:
    """{folder name: stage config} of every training run of one seed."""
    s = strengths(frontier)
    runs = {run_name("ppo", c): ppo_config(frontier, seed, c, initial, reward_model) for c in s["ppo"]}
    for loss in ("dpo", "ipo"):
        runs.update({run_name(loss, v): preference_config(frontier, seed, loss, v, initial)
                     for v in s[loss]})
    return runs


def entries(frontier, folder: epath.Path, initial: str) -> list:
    """The evaluated policies, the initial one first (Elo 0, KL 0), with each entry's method and
    strength: [(Entry, method, strength)]."""
    s = strengths(frontier)
    out = [(Entry("initial", initial), "initial", 0)]
    out += [(Entry(run_name("best_of", k), initial, int(k)), "best_of", k) for k in s["best_of"]]
    for method in ("ppo", "dpo", "ipo"):
        out += [(Entry(run_name(method, v), str(folder / run_name(method, v))), method, v) for v in s[method]]
    return out


def frontier_rows(report: dict, described) -> list:
    """One row per entry from a policy_elo report: method, strength, KL to the initial policy, and
    per labeler the gold accuracy, gold Elo and PM Elo."""
    rows = []
    for entry, method, strength in described:
        kl = report["kl_to_reference"].get(entry.name)
        row = {"name": entry.name, "method": method, "strength": strength,
               "kl": None if kl is None else kl["kl"], "kl_stderr": None if kl is None else kl["stderr"],
               "pm_mean_score": report["mean_score"][entry.name], "labelers": {}}
        for labeler, section in report["gold"].items():
            gold_elo = {r["model"]: r for r in section["table"]}[entry.name]
            pm_elo = {r["model"]: r for r in section["pm"]["table"]}[entry.name]
            acc = section["accuracy"][entry.name]
            row["labelers"][labeler] = {"gold_accuracy": acc["mean"], "gold_se": acc["se"], "n": acc["n"],
                                        "gold_elo": gold_elo["elo"], "gold_elo_se": gold_elo["stderr"],
                                        "pm_elo": pm_elo["elo"]}
        rows.append(row)
    return rows


def run_frontier(seed: int):
    """The findings step `frontier-s<seed>`: trains the seed's runs, evaluates every entry, and
    writes frontier.json ({"rows", "initial", "prompts", ...}) and the samples."""
    def run(config, folder, folders):
        frontier, main_dir = config.frontier, epath.Path(folders[f"main-s{seed}"])
        initial, reward_model = str(main_dir / frontier.initial), str(main_dir / "pm")
        for name, cfg in train_runs(frontier, seed, initial, reward_model).items():
            print(f"  {folder.name} {name}", flush=True)
            main.run(cfg, str(folder / name))
        described = entries(frontier, folder, initial)
        report = policy_elo([e for e, _, _ in described], LoadedPM(reward_model), list(frontier.prompts),
                            frontier.n_prompts, frontier.max_new_tokens, seed=frontier.eval_seed, reference=initial)
        out = {"seed": seed, "initial": initial, "reward_model": reward_model, "prompts": list(frontier.prompts),
               "n_prompts": frontier.n_prompts, "rows": frontier_rows(report, described)}
        atomic_write_text(folder / "frontier_samples.jsonl",
                          "".join(json.dumps(r) + "\n" for r in report["samples"]))
        atomic_write_text(folder / "frontier.json", json.dumps(out, indent=2) + "\n")
        return {"entries": len(out["rows"])}
    return run
