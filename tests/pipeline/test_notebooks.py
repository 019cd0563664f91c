"""The notebooks run top to bottom on smoke settings (slow): each is executed with nbclient in a
python3 kernel of this same environment, with a cell injected after its "parameters" cell
(papermill's behaviour) that points every output at a tmp dir. A cell that raises fails the test.
The session's smoke pipeline (tests/conftest.py) is what the quickstart shows and what
rlhf_dynamics starts from, so nothing is trained twice."""

import json
import pathlib
import sys

import nbclient
import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, params: dict, cwd: pathlib.Path, timeout: int = 600):
    """Runs notebooks/<name> in `cwd` with `params` set after its parameters cell; -> the notebook."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join([f"{k} = {v!r}" for k, v in params.items()] +
                       [f"import sys; assert sys.prefix == {sys.prefix!r}, 'the kernel is not this env'"])
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, injected)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for out in c.get("outputs", []))


@pytest.fixture(scope="module")
def quickstart(smoke_pipeline, tmp_path_factory):
    """The quickstart on the session's finished smoke pipeline: its run_steps call finds every
    step done (same config, same inputs) and skips it, so CI trains the pipeline once, not twice
    (tests/pipeline/test_pipeline.py checks the training run itself)."""
    workdir, _ = smoke_pipeline
    root = tmp_path_factory.mktemp("quickstart")
    nb = execute("quickstart.ipynb", {"PRESET": "smoke", "WORKDIR": str(workdir)}, root)
    return workdir, nb


@pytest.mark.slow
def test_quickstart_runs_the_pipeline_and_shows_the_report(quickstart):
    workdir, nb = quickstart
    printed = "".join(out.get("text", "") for c in nb.cells for out in c.get("outputs", []))
    assert printed.count("skipped") == 13, printed[-2000:]   # the session's run, found finished
    assert json.loads((workdir / "report" / "headlines.json").read_text())["elo_anchor"] == "distill"
    assert images(nb) == len(list((workdir / "report").glob("*.png"))) == 6


@pytest.mark.slow
def test_scaling_laws_trains_a_grid_then_refits_from_json(tmp_path):
    params = {"MODELS": [[1, 32], [1, 64]], "PAIRS": [64, 128], "BATCH": 32, "EVAL_COMPARISONS": 32,
              "WORKDIR": str(tmp_path / "grid")}
    nb = execute("scaling_laws.ipynb", params, tmp_path)
    results = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert len(results) == 4 and {r["pairs"] for r in results} == {64, 128}
    assert results[0]["params"] < results[-1]["params"] and all(0 <= r["accuracy"] <= 1 for r in results)
    assert images(nb) == 1
    refit = {"RESULTS_JSON": str(tmp_path / "grid" / "results.json"), "WORKDIR": str(tmp_path / "refit")}
    execute("scaling_laws.ipynb", refit, tmp_path)
    assert json.loads((tmp_path / "refit" / "fit.json").read_text()) == \
        json.loads((tmp_path / "grid" / "fit.json").read_text())


@pytest.mark.slow
def test_rlhf_dynamics_on_the_quickstart_pipeline(quickstart, tmp_path):
    pipeline, _ = quickstart
    params = {"PIPELINE_WORKDIR": str(pipeline), "WORKDIR": str(tmp_path / "dyn"), "PM_STEPS": 6,
              "PPO_STEPS": 4}
    nb = execute("rlhf_dynamics.ipynb", params, tmp_path)
    ppo = json.loads((tmp_path / "dyn" / "ppo" / "config.json").read_text())
    assert ppo["reward_model"] == str(pipeline / "pm") and ppo["init_from"] == str(pipeline / "distill")
    assert ppo["test_reward_model"] == str(tmp_path / "dyn" / "test_pm")
    test_pm = json.loads((tmp_path / "dyn" / "test_pm" / "config.json").read_text())
    assert test_pm["data"]["helpful_sources"] == ["synthetic-helpful:train[2000:4000]"]
    assert test_pm["init_from"] == str(pipeline / "pmp")
    assert json.loads((tmp_path / "dyn" / "ppo" / "robustness.json").read_text())["iterations"] == 4
    assert images(nb) == 4   # its reward vs sqrt(KL), the pipeline's, robustness.png, the iterations plot
