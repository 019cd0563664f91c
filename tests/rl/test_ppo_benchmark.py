"""Smoke tests of the PPO benchmarks (docs/performance.md): both sides run 2 iterations of W1 and print the
JSON line the comparison reads; no timing is asserted (benchmarks/ holds the timed runs)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
TUNIX_PYTHON = os.path.join(ROOT, "benchmarks", "peers", ".venv-tunix", "bin", "python")


def check_row(row, side):
    assert row["side"] == side and row["workload"] == "W1"
    assert set(row["phases_s"]) == {"rollout", "scoring", "train", "other"}
    assert len(row["iterations_s"]) == 2 and row["iteration_s_median"] > 0
    assert row["generated_tokens_per_s"] > 0


@pytest.mark.slow      # ~20 s: CI runs it (make test); the everyday suite does not
def test_hh_ppo_iteration_w1_runs_and_reports_its_roofline():
    import ppo_iteration

    row = ppo_iteration.run("W1", iterations=2)
    check_row(row, "hh")
    assert row["params"]["policy"] == row["params"]["reference"] > row["params"]["value"] == row["params"]["pm"]
    flops = row["roofline"]["phase_flops"]
    assert flops["train"] > flops["scoring"] > flops["rollout"] > 0
    assert 0 < row["roofline"]["iteration_fraction"]
    json.dumps(row)


def test_policy_params_match_the_workload_by_hand():
    """W1: embed 4096·128 + head 128·4096 + 2 layers of (4·128² attention + 3·128·512 SwiGLU + 2 norms)
    + final norm (RMSNorm: scales only)."""
    import ppo_iteration
    from ppo_workloads import workload

    w = workload("W1")
    bench = ppo_iteration.Workload(w)
    per_layer = 4 * 128 * 128 + 3 * 128 * 512 + 2 * 128
    assert bench.params["policy"] == 2 * 4096 * 128 + 2 * per_layer + 128
    assert bench.params["value"] == 4096 * 128 + 2 * per_layer + 128 + 128 + 1   # no LM head; scalar head


@pytest.mark.slow
def test_tunix_peer_w1_runs():
    if not os.path.exists(TUNIX_PYTHON):
        reason = "the tunix venv is not installed (make bench-ppo-peer-env; about 1.6 GB)"
        if os.environ.get("HH_REQUIRE_TUNIX") == "1":   # CI (.ci/run) installs it: missing is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    out = subprocess.run([TUNIX_PYTHON, os.path.join(ROOT, "benchmarks", "peers", "tunix_ppo.py"),
                          "--workload", "W1", "--iterations", "2"], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    check_row(json.loads(out.stdout.strip().splitlines()[-1]), "tunix")


def test_comparison_table_has_ratios_and_fractions():
    import ppo_compare

    def row(side, total, phases):
        return {"side": side, "workload": "W1", "iteration_s_median": total,
                "phases_s": dict(zip(("rollout", "scoring", "train", "other"), phases)),
                "roofline": {"phase_roofline_s": {"rollout": 0.01, "scoring": 0.02, "train": 0.03}}}
    text = ppo_compare.table([row("hh", 0.2, (0.05, 0.05, 0.09, 0.01)), row("tunix", 0.4, (0.1, 0.1, 0.18, 0.02))])
    assert "| W1 | **total** | 0.2000 | 0.4000 | 0.50 | 30% | 15% | equal FLOPs: 4 forwards, 2·K forward+backward |" in text
    assert "| W1 | rollout | 0.0500 | 0.1000 | 0.50 | 20% | 10% |  |" in text
    w3 = ppo_compare.work_note({"batch": 32, "minibatches": 4, "schedule": "whole_rollout"})
    assert w3.endswith("schedules differ: hh one rollout of 32, tunix 4 × (rollout of 8, K steps)")
    w3m = ppo_compare.work_note({"batch": 32, "minibatches": 4, "schedule": "per_minibatch"})
    assert w3m.endswith("like for like: both sides 4 × (rollout of 8, K steps)")
    older = {**row("hh", 9.0, (3, 3, 3, 0)), "run_at": "2026-12-01T10:00:00"}
    newer = [{**r, "run_at": "2026-12-02T10:00:00"} for r in (row("hh", 0.2, (0.05, 0.05, 0.09, 0.01)),
                                                           row("tunix", 0.4, (0.1, 0.1, 0.18, 0.02)))]
    assert ppo_compare.latest_run([older] + newer) == newer


@pytest.mark.slow      # ~40 s: CI runs it
def test_ppo_scaling_smoke_writes_rows_plots_and_table(tmp_path, monkeypatch, capsys):
    import ppo_scaling

    monkeypatch.setattr(ppo_scaling, "AXES", {"length": [("W1", {"gen_len": 8}), ("W1", {"gen_len": 16})]})
    out = tmp_path / "scaling.jsonl"
    ppo_scaling.main(["--axes", "length", "--iterations", "2", "--out", str(out), "--plots", str(tmp_path)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["gen_len"] for r in rows] == [8, 16] and all(r["axis"] == "length" for r in rows)
    assert all(len(r["iterations_s"]) == 2 for r in rows)
    assert (tmp_path / "ppo_scaling_length.png").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "| W1, length 16 |" in printed


def test_scaling_points_and_growth_slopes():
    import ppo_scaling

    w, cfg = ppo_scaling.point("13M", {})
    assert (cfg.n_layers, cfg.d_model, cfg.vocab_size) == (4, 512, 2 ** 16) and cfg.dtype == "float32"
    assert (w["prompt_len"], w["gen_len"], w["vocab"]) == (32, 32, 2 ** 16)
    assert ppo_scaling.point("W2", {"batch": 32})[0]["batch"] == 32
    assert ppo_scaling.growth(0.5, 2.0) == pytest.approx(4.0)

    def row(n, seconds, roof):
        return {"axis": "length", "workload": "W2", "gen_len": n, "batch": 8, "iteration_s_median": sum(seconds),
                "phases_s": dict(zip(ppo_scaling.PHASES, seconds)),
                "roofline": {"phase_roofline_s": dict(zip(ppo_scaling.PHASES, roof)), "iteration_fraction": 0.5}}
    rows = [row(64, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)), row(128, (2.0, 4.0, 2.0), (1.0, 1.0, 1.0)),
            row(32, (9.0, 9.0, 9.0), (1.0, 1.0, 1.0))]
    rows = ppo_scaling.latest(rows + [row(64, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))])
    assert [r["gen_len"] for r in rows] == [32, 64, 128]
    text = ppo_scaling.table(rows)
    assert "| W2, length 128 | 2.000 | 4.000 | 2.000 | 8.000 | 50% | 2.00 / 2.00 · 4.00 / 2.00 · 2.00 / 2.00 | – | – |" in text
    peer = {**row(128, (4.0, 4.0, 8.0), (1.0, 1.0, 1.0)), "side": "tunix"}
    text = ppo_scaling.table(rows + [peer])
    assert "| W2, length 128 | 2.000 | 4.000 | 2.000 | 8.000 | 50% | 2.00 / 2.00 · 4.00 / 2.00 · 2.00 / 2.00 | 16.000 | 0.50 |" in text
    assert "| W2, length 64 | 1.000 | 1.000 | 1.000 | 3.000 | 50% |" in text and text.count("| – | – |") == 2


def test_micro_rows_caps_the_tokens_of_a_gradient_microbatch():
    from ppo_workloads import micro_rows, workload

    w2 = workload("W2")                                        # 8 rows of 128 tokens, one minibatch
    assert micro_rows(w2) == 8
    assert micro_rows({**w2, "micro_tokens": 1024}) == 8
    assert micro_rows({**w2, "micro_tokens": 1024, "gen_len": 512}) == 1    # 576 tokens a row
    assert micro_rows({**w2, "micro_tokens": 1024, "batch": 64}) == 8
    assert micro_rows({**workload("W3"), "micro_tokens": 300}) == 2        # 8-row minibatches of 128
