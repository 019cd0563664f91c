"""benchmarks/train_step.py still runs end to end on the project's LM step (smoke size)."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = {"preset", "seq", "batch", "dtype", "peak_dtype", "attention", "params_total", "matmul_params", "tokens_per_s",
        "step_s", "compile_s", "model_tflops_per_step", "achieved_gflops", "matmul_peak_gflops",
        "mfu", "jax_version", "device"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_step_bench", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow   # the benchmark smoke run: CI's full suite runs it, the everyday suite need not
def test_smoke_run_prints_one_json_line(bench, capsys):
    result = bench.main(["--preset", "smoke", "--seq", "32", "--batch", "2", "--steps", "1",
                         "--matmul-size", "128", "--matmul-runs", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert set(result) == KEYS
    assert result["matmul_params"] == 122_880 and result["batch"] == 2
    assert result["model_tflops_per_step"] > 0 and 0 < result["mfu"] < 2
    assert (result["dtype"], result["peak_dtype"], result["attention"]) == ("float32", "float32", "dense")
