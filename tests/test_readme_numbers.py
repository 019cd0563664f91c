"""The README's measured numbers are those of the committed main-job run
(docs/img/pipeline/headlines.json, written by `make run` at a recorded commit), never typed by hand."""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _f(value, digits):
    return f"{value:.{digits}f}".replace("-", "−")


def test_readme_headlines_equal_the_committed_run():
    heads = json.loads((ROOT / "docs" / "img" / "pipeline" / "headlines.json").read_text())
    readme = (ROOT / "README.md").read_text()
    gold = heads["gold_elo"]
    expected = [
        f"PM held-out accuracy {_f(heads['pm_accuracy'], 2)}",
        f"PPO reward {_f(heads['ppo_reward_first5'], 2)} → {_f(heads['ppo_reward_last5'], 2)}",
        f"KL {_f(heads['ppo_kl_last5'], 1)} nats",
        f"PM-judged Elo of the PPO policy {_f(heads['elo_ppo_vs_initial'], 0)} ± {_f(heads['elo_ppo_stderr'], 0)}",
        f"gold helpfulness Elo {_f(gold['helpful']['ppo']['elo'], 0)} ± {_f(gold['helpful']['ppo']['stderr'], 0)}",
        f"gold harmlessness Elo {_f(gold['harmless']['ppo']['elo'], 0)} ± {_f(gold['harmless']['ppo']['stderr'], 0)}",
        f"best OOD AUROC {_f(heads['best_ood']['auroc'], 2)}",
        f"against {_f(heads['ood_novelty_auroc'], 2)} for lexical novelty",
        f"{_f(heads['adversary_accuracy']['lookup'], 2)} (lookup) and "
        f"{_f(heads['adversary_accuracy']['logistic'], 2)} (n-gram regression)",
        f"a helpful-only PM ranks {_f(heads['tension']['helpful_only_on_harmless_conflicts'], 2)} of the harmless",
        f"a harmless-only PM {_f(heads['tension']['harmless_only_on_helpful_conflicts'], 2)} of the helpful",
    ]
    missing = [e for e in expected if e not in readme]
    assert not missing, f"README.md lacks the committed run's numbers: {missing}"


def test_readme_findings_table_is_the_committed_findings_run():
    """The "What hh reproduces" table is `python -m hh.findings.report docs/img/findings/findings.json`,
    from a run at a recorded, clean commit."""
    from hh.findings.report import readme_table
    report = json.loads((ROOT / "docs" / "img" / "findings" / "findings.json").read_text())
    assert report["provenance"]["git_commit"] and report["provenance"]["git_dirty"] is False
    assert readme_table(report) in (ROOT / "README.md").read_text()


def test_the_committed_headlines_record_their_commit():
    heads = json.loads((ROOT / "docs" / "img" / "pipeline" / "headlines.json").read_text())
    assert len(heads["git_commit"]) == 40 and heads["git_dirty"] is False
