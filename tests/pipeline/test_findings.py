"""The findings job: verdict rules against hand-worked intervals, the measures against hand-made
runs, the config's rules, and (slow) the smoke job end to end with a rerun that skips everything."""

import json
import math
import shutil

import numpy as np
import pytest
from etils import epath

from configs import findings as findings_config
from hh.findings import measures, verdicts
from hh.findings.capacity import non_embedding_params, trunk_shape, with_trunk
from hh.pipeline.findings import reuse_finished, sub_job
from hh.pipeline.jobs import job_steps, run_job
from hh.pipeline.runner import Step, run_steps


def test_parse_criterion_reads_the_rule_and_names_a_bad_one():
    assert verdicts.parse_criterion("size_slope > 0") == ("size_slope", ">", 0.0)
    assert verdicts.parse_criterion(" gold_ppo_minus_best_of > -0.05 ") == ("gold_ppo_minus_best_of", ">", -0.05)
    assert verdicts.parse_criterion("ece<1e-1") == ("ece", "<", 0.1)
    for bad in ("size_slope >= 0", "size slope > 0", "x > y", ""):
        with pytest.raises(ValueError, match="verdict criterion"):
            verdicts.parse_criterion(bad)


def test_t_interval_is_the_hand_worked_student_interval():
    e = verdicts.t_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.302653: half-width 4.302653 / sqrt(3)
    assert e["mean"] == 2.0 and e["n"] == 3
    assert math.isclose(e["hi"] - 2.0, 4.302653 / math.sqrt(3), rel_tol=1e-6)
    assert math.isclose(2.0 - e["lo"], 4.302653 / math.sqrt(3), rel_tol=1e-6)
    one = verdicts.t_interval([0.3, None, float("nan")])
    assert one["n"] == 1 and one["mean"] == 0.3 and math.isnan(one["lo"])


@pytest.mark.parametrize("lo,hi,op,threshold,outcome", [
    (0.1, 0.3, ">", 0.0, "met"), (-0.3, -0.1, ">", 0.0, "failed"), (-0.1, 0.2, ">", 0.0, "undecided"),
    (-0.2, 0.0, ">", 0.0, "failed"),          # touching the threshold is not above it
    (0.2, 0.4, "<", 0.5, "met"), (0.5, 0.7, "<", 0.5, "failed"), (0.4, 0.6, "<", 0.5, "undecided"),
    (float("nan"), float("nan"), ">", 0.0, "undecided")])
def test_decide_by_where_the_interval_lies(lo, hi, op, threshold, outcome):
    assert verdicts.decide({"lo": lo, "hi": hi}, op, threshold) == outcome


def test_a_finding_needs_every_criterion_met_and_fails_on_any_failure():
    up, down, flat = [1.0, 1.1, 0.9], [-1.0, -1.1, -0.9], [1.0, -1.0, 0.1]
    assert verdicts.verdict(["a > 0", "b > 0"], {"a": up, "b": up})["verdict"] == verdicts.REPRODUCED
    assert verdicts.verdict(["a > 0", "b > 0"], {"a": up, "b": flat})["verdict"] == verdicts.INCONCLUSIVE
    assert verdicts.verdict(["a > 0", "b > 0"], {"a": flat, "b": down})["verdict"] == verdicts.NOT_REPRODUCED
    missing = verdicts.verdict(["a > 0", "c > 0"], {"a": up})
    assert missing["verdict"] == verdicts.INCONCLUSIVE
    assert missing["criteria"][1]["outcome"] == "undecided" and missing["criteria"][1]["note"] == "not measured"


def test_the_deciding_criterion_is_the_one_that_set_the_verdict():
    from hh.findings.report import deciding
    rows = [{"outcome": "met", "id": 0}, {"outcome": "undecided", "id": 1}, {"outcome": "failed", "id": 2}]
    assert deciding({"verdict": verdicts.NOT_REPRODUCED, "criteria": rows})["id"] == 2
    assert deciding({"verdict": verdicts.INCONCLUSIVE, "criteria": rows})["id"] == 1
    assert deciding({"verdict": verdicts.REPRODUCED, "criteria": rows[:1]})["id"] == 0


def test_every_finding_has_a_measure_and_well_formed_rules():
    config = findings_config.get_config("tiny")
    assert set(config.verdicts) == set(measures.MEASURES) == {f"F{i}" for i in range(1, 13)}
    for rule in config.verdicts.values():
        assert rule.claim and rule.source and rule.criteria
        for text in rule.criteria:
            verdicts.parse_criterion(text)
    assert len(config.seeds) >= 3 and len(config.online_seeds) >= 3
    names = [s.name for s in job_steps(config)]
    assert names == ["main-s0", "main-s1", "main-s2", "capacity", "robustness-s0", "robustness-s1",
                     "robustness-s2", "online-s0", "online-s1", "online-s2", "frontier-s0", "frontier-s1",
                     "frontier-s2", "findings"]


def test_a_bad_rule_fails_before_anything_runs(tmp_path):
    config = findings_config.get_config("smoke")
    config.verdicts.F3.criteria = ["ece <= 0.1"]
    with pytest.raises(ValueError, match="ece <= 0.1"):
        run_job(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_trunks_parse_and_count_as_kaplan_does():
    assert trunk_shape("d256-l2") == (256, 2)
    assert non_embedding_params("d256-l2") == 2 * 12 * 256 * 256
    with pytest.raises(ValueError, match="d<d_model>-l<n_layers>"):
        trunk_shape("256x2")
    cfg = with_trunk(findings_config.get_config("smoke").main.pm, "d128-l4")
    m = cfg.model
    assert (m.d_model, m.n_layers, m.d_ff, m.d_head, m.n_heads) == (128, 4, 512, 64, 2)


def test_best_of_kl_is_log_k_minus_k_minus_one_over_k():
    assert measures.best_of_kl(1) == 0.0
    assert math.isclose(measures.best_of_kl(4), math.log(4) - 0.75)
    assert math.isclose(measures.best_of_kl(64), 4.158883 - 0.984375, abs_tol=1e-6)   # 3.17


def test_f1_recovers_the_slopes_of_a_noiseless_grid(tmp_path):
    """Accuracy = 0.2 + 0.03 ln P + 0.05 ln D exactly: each seed's fit returns b = 0.03, c = 0.05,
    and the PMP gain is the difference at the PMP run's pair count."""
    runs = []
    for seed in (0, 1, 2):
        for size, pairs, pmp in [("d64-l2", 1280, False), ("d128-l2", 1280, False), ("d256-l2", 1280, False),
                                 ("d256-l2", 320, False), ("d256-l2", 5120, False), ("d256-l2", 320, True)]:
            p = non_embedding_params(size)
            acc = 0.2 + 0.03 * math.log(p) + 0.05 * math.log(pairs) + (0.01 * (seed + 1) if pmp else 0.0)
            runs.append({"size": size, "params": p, "seed": seed, "pairs": pairs, "pmp": pmp, "accuracy": acc})
    (tmp_path / "capacity.json").write_text(json.dumps({"main_trunk": "d256-l2", "runs": runs}))
    config = findings_config.get_config("tiny")
    f1 = measures.f1(config, {"capacity": tmp_path})
    np.testing.assert_allclose(f1["per_seed"]["size_slope"], [0.03] * 3, atol=1e-9)
    np.testing.assert_allclose(f1["per_seed"]["data_slope"], [0.05] * 3, atol=1e-9)
    f11 = measures.f11(config, {"capacity": tmp_path})
    np.testing.assert_allclose(f11["per_seed"]["pmp_gain"], [0.01, 0.02, 0.03], atol=1e-9)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_robustness_measures_fit_each_half_of_a_hand_made_run(tmp_path):
    """Train reward 2·sqrt(KL) early, 1·sqrt(KL) late (from the boundary); test reward 2·x early, 0 late;
    gold 0.1·x on the first logged half, −0.05·x on the second: the six measures are those slopes."""
    x = np.arange(1, 11, dtype=float)          # sqrt(KL) of iterations 1..10; boundary at iteration 5
    train = np.where(x <= 5, 2 * x, 10 + (x - 5))
    test = np.where(x <= 5, 2 * x, 10.0)
    _write_jsonl(tmp_path / "metrics.jsonl", [
        {"step": int(s), "train/sqrt_kl": float(s), "train/reward_normalised": float(a),
         "train/test_reward_normalised": float(b)} for s, a, b in zip(x, train, test)])
    gold = [{"step": s, "sqrt_kl": float(s), "gold": (0.1 * s if s <= 5 else 0.5 - 0.05 * (s - 5)), "se": 0.0, "n": 8}
            for s in (1, 3, 5, 7, 9)]
    (tmp_path / "robustness.json").write_text(json.dumps({"gold": gold}))
    values, curve = measures.robustness_measures(tmp_path, 0.5)
    assert curve["boundary_step"] == 5
    expected = {"train_pm_early_slope": 2.0, "train_pm_early_r2": 1.0, "gold_early_slope": 0.1,
                "train_pm_late_slope": 1.0, "train_minus_test_late_slope": 1.0, "gold_late_slope": -0.05}
    for name, value in expected.items():
        assert math.isclose(values[name], value, abs_tol=1e-9), name
    # the gap is 0 for iterations 1-5 (mean 0, sd 0), then 1, 2, 3, 4, 5 from iteration 6 on
    assert values["parting_sqrt_kl"] == 6.0


def test_parting_point_is_where_the_gap_stays_above_its_early_band():
    x = np.arange(8, dtype=float)
    train, test = np.array([0, 1, 0, 1, 3, 1, 3, 4.0]), np.zeros(8)
    # early band (first 4): mean 0.5 + 2 × 0.5 = 1.5; above from index 6 on (index 4 dips back at 5)
    assert measures.parting_point(x, train, test, 4) == 6.0
    assert measures.parting_point(x, np.zeros(8), test, 4) is None


def test_a_later_online_seed_reuses_the_first_seeds_judge(tmp_path):
    """reuse_finished copies finished steps only, never over a step the target has begun, and the
    target's runner then skips the copies (same section, same inputs) and runs the rest."""
    calls = []

    def step(name, inputs=()):
        def run(config, folder, folders):
            calls.append((folder.parent.name, name))
            (folder / "out.txt").write_text(f"{name} {config[name]}")
            return {}
        return Step(name, inputs, lambda c, n=name: {n: c[n]}, run, lambda folder: [folder / "out.txt"])
    job = [step("judge"), step("policy", ("judge",))]
    run_steps(job, {"judge": 1, "policy": 0}, tmp_path / "s0", log=lambda _: None)
    reuse_finished(epath.Path(tmp_path / "s0"), epath.Path(tmp_path / "s1"), ["judge"])
    run_steps(job, {"judge": 1, "policy": 1}, tmp_path / "s1", log=lambda _: None)
    assert calls == [("s0", "judge"), ("s0", "policy"), ("s1", "policy")]
    assert (tmp_path / "s1" / "judge" / "out.txt").read_text() == "judge 1"
    # the same through a findings step: sub_job copies the first seed's judge in, then runs its job
    run = sub_job(lambda config, seed: {"judge": 1, "policy": seed}, lambda config: job, 2,
                  reuse=lambda folders: (folders["s0"], ["judge"]))
    run({}, epath.Path(tmp_path / "s2"), {"s0": epath.Path(tmp_path / "s0")})
    assert calls[3:] == [("s2", "policy")]


@pytest.mark.slow
def test_smoke_findings_job_runs_end_to_end_then_skips_everything(smoke_pipeline, tmp_path):
    config = findings_config.get_config("smoke")
    workdir = tmp_path / "findings"
    # the session's smoke pipeline is the main job at seed 0 with this config: its steps all skip
    shutil.copytree(smoke_pipeline[0], workdir / "main-s0")
    summaries = run_job(config, str(workdir))
    report = json.loads((workdir / "findings" / "findings.json").read_text())
    assert set(report["findings"]) == set(config.verdicts)
    assert report["provenance"]["seeds"] == list(config.seeds)
    md = (workdir / "findings" / "findings.md").read_text()
    for fid, finding in report["findings"].items():
        assert finding["verdict"] in (verdicts.REPRODUCED, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE)
        assert summaries["findings"][fid] == finding["verdict"]
        assert (workdir / "findings" / f"{fid}.png").stat().st_size > 0
        assert f"## {fid}: {finding['verdict']}" in md
        if fid == "F8":                        # the smoke job has no online seed
            assert finding["verdict"] == verdicts.INCONCLUSIVE and finding["criteria"][0]["note"] == "not measured"
            continue
        seeds = config.capacity.seeds if fid in ("F1", "F11") else config.seeds
        for row in finding["criteria"]:       # every rule's measure was measured on every seed
            assert row["estimate"]["n"] + sum(v is None for v in finding["per_seed"][row["measure"]]) == len(seeds)
            assert len(finding["per_seed"][row["measure"]]) == len(seeds)
    for fid, finding in report["findings"].items():     # each failure is listed with its failed rules
        if finding["verdict"] == verdicts.NOT_REPRODUCED:
            listed = next(line for line in md.splitlines() if line.startswith(f"- **{fid}**"))
            assert all(r["rule"] in listed for r in finding["criteria"] if r["outcome"] == "failed")
    lines = []
    run_job(config, str(workdir), log=lines.append)
    assert lines and all("skipped" in line for line in lines)


# --- F12: the PPO / DPO / IPO / best-of-k frontier ---------------------------------------------------

def _row(name, method, kl, helpful, harmless, strength=0):
    return {"name": name, "method": method, "strength": strength, "kl": kl,
            "labelers": {"helpful": {"gold_accuracy": helpful, "gold_elo": 100 * helpful},
                         "harmless": {"gold_accuracy": harmless, "gold_elo": 100 * harmless}}}


FRONTIER_ROWS = [_row("initial", "initial", 0.0, 0.3, 0.5),
                 _row("best-of-4", "best_of", 0.636, 0.4, 0.5, 4),
                 _row("ppo-kl0.1", "ppo", 1.0, 0.35, 0.55, 0.1),      # gold 0.45
                 _row("ppo-kl0.001", "ppo", 9.0, 0.9, 0.9, 0.001),    # beyond the budget
                 _row("dpo-b0.3", "dpo", 2.0, 0.5, 0.6, 0.3),         # gold 0.55
                 _row("dpo-b0.03", "dpo", 3.9, 0.6, 0.7, 0.03),       # gold 0.65: the best within 4
                 _row("ipo-t0.1", "ipo", None, 0.9, 0.9, 0.1)]        # KL unknown: left out


def test_frontier_value_is_the_best_gold_within_the_kl_budget():
    assert measures.frontier_value(FRONTIER_ROWS, "ppo", 4.0) == pytest.approx(0.45)
    assert measures.frontier_value(FRONTIER_ROWS, "ppo", 10.0) == pytest.approx(0.9)
    assert measures.frontier_value(FRONTIER_ROWS, "dpo", 4.0) == pytest.approx(0.65)
    assert measures.frontier_value(FRONTIER_ROWS, "dpo", 1.0) == pytest.approx(0.4)   # the initial policy
    assert measures.frontier_value(FRONTIER_ROWS, "ipo", 100.0) == pytest.approx(0.4)
    assert measures.frontier_value(FRONTIER_ROWS, "best_of", 4.0) == pytest.approx(0.45)


def test_f12_measures_each_seeds_frontier_and_reports_a_table_and_plot(tmp_path):
    from hh.findings.report import frontier_table, plot_finding
    config = findings_config.get_config("smoke")
    config.frontier.kl_budget = 4.0
    folders = {}
    for seed, shift in zip(config.seeds, (0.0, 0.1)):
        rows = [{**r, "labelers": {lab: {**v, "gold_accuracy": v["gold_accuracy"] + shift}
                                   for lab, v in r["labelers"].items()}} for r in FRONTIER_ROWS]
        folders[f"frontier-s{seed}"] = tmp_path / f"frontier-s{seed}"
        folders[f"frontier-s{seed}"].mkdir()
        (folders[f"frontier-s{seed}"] / "frontier.json").write_text(json.dumps({"rows": rows}))
    measured = measures.f12(config, folders)
    assert measured["per_seed"]["frontier_dpo_minus_ppo"] == pytest.approx([0.2, 0.2])
    assert measured["per_seed"]["frontier_best_of_minus_ppo"] == pytest.approx([0.0, 0.0])
    assert measured["per_seed"]["frontier_ppo"] == pytest.approx([0.45, 0.55])
    decided = verdicts.verdict(list(config.verdicts.F12.criteria), measured["per_seed"])
    assert decided["verdict"] == verdicts.REPRODUCED   # two equal differences: an interval of width 0 above 0
    table = "\n".join(frontier_table(measured["detail"]))
    for row in FRONTIER_ROWS:
        assert f"| {row['name']} |" in table
    assert "| dpo-b0.03 | 3.9 [3.9, 3.9] | 0.7 [0.0647, 1.34] |" in table   # gold: 0.65, 0.75 over 2 seeds
    plot_finding("F12", {**decided, **measured}, tmp_path / "F12.png")
    assert (tmp_path / "F12.png").stat().st_size > 0


def test_frontier_runs_start_from_one_policy_and_learn_from_the_pms_pairs():
    from hh.findings.frontier import entries, run_name, train_runs
    config = findings_config.get_config("tiny")
    f = config.frontier
    runs = train_runs(f, 2, "/m/lm", "/m/pm")
    assert sorted(runs) == sorted([run_name("ppo", c) for c in f.ppo_kl_coefs] + [run_name("dpo", b) for b in f.dpo_betas]
                                  + [run_name("ipo", t) for t in f.ipo_taus])
    for coef in f.ppo_kl_coefs:
        ppo = runs[run_name("ppo", coef)]
        assert (ppo.init_from, ppo.reward_model, ppo.seed, ppo.kl.kind, ppo.kl.init_coef) == ("/m/lm", "/m/pm", 2, "fixed", coef)
    for loss, values, field in (("dpo", f.dpo_betas, "beta"), ("ipo", f.ipo_taus, "tau")):
        for v in values:
            cfg = runs[run_name(loss, v)]
            assert (cfg.init_from, cfg.seed, cfg.dpo.loss, cfg.dpo[field]) == ("/m/lm", 2, loss, v)
            for name in findings_config.PM_PAIR_FIELDS:      # the PM's comparisons, not others
                assert cfg.data[name] == config.main.pm.data[name], name
            assert cfg.data.seq_len == cfg.data.max_prompt_len + cfg.data.max_response_len
    described = entries(f, epath.Path("/out"), "/m/lm")
    assert described[0][0].name == "initial" and described[0][0].workdir == "/m/lm"
    assert [e.k for e, method, _ in described if method == "best_of"] == list(f.best_of_ks)
    assert all(e.workdir == "/m/lm" for e, method, _ in described if method in ("initial", "best_of"))
    assert run_name("ppo", 0.001) == "ppo-kl0.001" and run_name("best_of", 16) == "best-of-16"


def test_frontier_rows_read_a_policy_elo_report():
    from hh.eval.policy_elo import Entry
    from hh.findings.frontier import frontier_rows
    described = [(Entry("initial", "/lm"), "initial", 0), (Entry("dpo-b0.1", "/dpo"), "dpo", 0.1)]

    def section(elo):
        return {"table": [{"model": "initial", "elo": 0.0, "stderr": 0.0}, {"model": "dpo-b0.1", "elo": elo, "stderr": 5.0}],
                "accuracy": {"initial": {"mean": 0.25, "se": 0.1, "n": 8}, "dpo-b0.1": {"mean": 0.5, "se": 0.1, "n": 8}},
                "pm": {"table": [{"model": "initial", "elo": 0.0}, {"model": "dpo-b0.1", "elo": 3 * elo}]}}
    report = {"kl_to_reference": {"initial": {"kl": 0.0, "stderr": 0.0}, "dpo-b0.1": {"kl": 2.5, "stderr": 0.3}},
              "mean_score": {"initial": -0.1, "dpo-b0.1": 0.4},
              "gold": {"helpful": section(40.0), "harmless": section(-20.0)}}
    rows = frontier_rows(report, described)
    assert [r["name"] for r in rows] == ["initial", "dpo-b0.1"]
    dpo = rows[1]
    assert (dpo["method"], dpo["strength"], dpo["kl"], dpo["kl_stderr"], dpo["pm_mean_score"]) == ("dpo", 0.1, 2.5, 0.3, 0.4)
    assert dpo["labelers"]["helpful"] == {"gold_accuracy": 0.5, "gold_se": 0.1, "n": 8, "gold_elo": 40.0,
                                          "gold_elo_se": 5.0, "pm_elo": 120.0}
    assert measures.gold_elo_of(dpo) == pytest.approx(10.0)
