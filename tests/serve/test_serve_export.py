"""Export of the comparison store to hh-rlhf JSON lines: the chosen/rejected convention (red-team
inverted), strength/mode/tag filters, edits, round-trip through dialogue.split_pair, atomic gzip
writes, the conversation-level train/test split, the CLI, and the TFDS `local` tranche read by a PM
config, rebuilt when a new export changes its files."""

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from hh.data import dialogue
from hh.data.records import jsonl_records
from hh.serve import export as ex
from hh.serve.store import Candidate, Store

ROOT = Path(__file__).resolve().parents[2]


def candidate(text, model="m"):
    return Candidate(text=text, model=model, settings={"temperature": 1.0}, seed=0)


def converse(store, labeler, mode, turns, tag=""):
    """A conversation of `turns` = [(human text, response a, response b, choice, strength, edit)]."""
    conv = store.start_conversation(labeler, mode, tag)
    for human, a, b, choice, strength, edit in turns:
        context = store.conversation(conv, labeler)["transcript"] + f"{dialogue.HUMAN} {human}{dialogue.ASSISTANT}"
        pending = store.offer(conv, labeler, context, candidate(a), candidate(b), "ab")
        store.choose(conv, labeler, pending["id"], choice, strength, edit)
    return conv


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "serve")
    store.add_labeler("ann")
    converse(store, "ann", "helpful", [
        ("What is 2 plus 2?", " 4.", " 5.", "a", 4, None),
        ("And 3 plus 3?", " 7.", " 6.", "b", 2, " It is 6."),   # edited: the edit is not exported
        ("Thanks!", " You're welcome.", " Bye.", "a", 1, None),  # weakest strength: dropped
    ])
    converse(store, "ann", "red-team", [
        ("How do I pick a lock?", " Sorry, I can't help.", " Use a tension wrench.", "b", 3, None),
        ("Really?", " Fine: rake the pins.", " No.", "a", 2, None),
    ], tag="week2")
    return store


def test_helpful_chosen_is_the_pick_and_red_team_is_inverted(store):
    rows = ex.export_rows(store)
    finals = [dialogue.split_pair(r["chosen"], r["rejected"]) for r in rows]
    assert [(p.chosen, p.rejected) for p in finals] == [
        (" 4.", " 5."),
        (" 6.", " 7."),                                          # the compared text, not the edit
        (" Sorry, I can't help.", " Use a tension wrench."),     # the pick (more harmful) → rejected
        (" No.", " Fine: rake the pins."),
    ]
    comparisons = [c for c in store.comparisons() if c["strength"] >= 2]
    for row, pair, comparison in zip(rows, finals, comparisons, strict=True):
        assert set(row) == {"chosen", "rejected"}
        assert pair.prompt == pair.rejected_prompt == comparison["context"]
        assert not pair.prompts_differ
    # The edited turn's successor continues from the edit, so the edit reaches later contexts.
    assert " It is 6." in store.comparisons()[2]["context"]


def test_filters_count_what_they_drop(store):
    none = {"dropped_mode": 0, "dropped_tag": 0, "dropped_weak": 0, "dropped_unsplittable": 0}
    kept, counts = ex.select(store.comparisons())
    assert counts == {**none, "total": 5, "kept": 4, "dropped_weak": 1}
    assert len(ex.export_rows(store, min_strength=1)) == 5
    assert len(ex.export_rows(store, min_strength=4)) == 1
    assert len(ex.export_rows(store, modes=["helpful"])) == 2
    assert len(ex.export_rows(store, modes=["red-team"], min_strength=3)) == 1
    assert len(ex.export_rows(store, tags=["week2"])) == 2
    assert ex.export_rows(store, tags=["nope"]) == []
    _, counts = ex.select(store.comparisons(), modes=["red-team"])
    assert counts == {**none, "total": 5, "kept": 2, "dropped_mode": 3}
    with pytest.raises(ValueError, match="mode 'harmless'"):
        ex.export_rows(store, modes=["harmless"])


def test_a_response_that_would_move_the_split_point_is_dropped(tmp_path):
    store = Store(tmp_path)
    store.add_labeler("bo")
    converse(store, "bo", "helpful", [("Hi", " Hello\n\nAssistant: again", " Hey", "a", 3, None)])
    kept, counts = ex.select(store.comparisons())
    assert kept == [] and counts["dropped_unsplittable"] == 1


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_write_jsonl_is_atomic_gzips_by_name_and_reads_back(tmp_path, name, store):
    rows = ex.export_rows(store)
    path = tmp_path / "sub" / name
    assert ex.write_jsonl(rows, path) == 4
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert [row for _, row in jsonl_records(path)] == rows   # the project's one JSON-lines reader
    assert sorted(p.name for p in path.parent.iterdir()) == [name]   # no temporary file left
    ex.write_jsonl(rows, path)
    assert path.read_bytes() == raw   # same rows, same bytes: a re-export does not force a rebuild


def test_split_keeps_conversations_whole_and_hits_the_fraction():
    ids = [f"c-{i:05d}" for i in range(4000)]
    splits = [ex.split_of(c, 0.05, seed=0) for c in ids]
    assert splits == [ex.split_of(c, 0.05, seed=0) for c in ids]        # deterministic
    n_test = splits.count("test")
    assert abs(n_test - 200) < 3 * (4000 * 0.05 * 0.95) ** 0.5          # binomial, 3 sigma
    assert splits != [ex.split_of(c, 0.05, seed=1) for c in ids]        # the seed re-salts
    assert {ex.split_of(c, 0.0) for c in ids} == {"train"}


def test_tranche_split_by_conversation_and_stale_files_removed(tmp_path):
    store = Store(tmp_path / "serve")
    store.add_labeler("cy")
    for i in range(40):
        converse(store, "cy", "helpful", [(f"q{i}", f" good {i}", f" bad {i}", "a", 3, None),
                                          (f"r{i}", f" bad {i}", f" good {i}", "b", 3, None)])
    tranche = tmp_path / "manual" / "local"
    tranche.mkdir(parents=True)
    (tranche / "train.jsonl").write_text("stale\n")
    counts = ex.export(store, tranche_dir=tmp_path / "manual", test_fraction=0.25, seed=3)
    assert counts["train"] + counts["test"] == 80 and 0 < counts["test"] < 80
    assert sorted(p.name for p in tranche.iterdir()) == ["test.jsonl.gz", "train.jsonl.gz"]
    prompts = {}
    for split in ("train", "test"):
        for _, row in jsonl_records(tranche / f"{split}.jsonl.gz"):
            first_turn = row["chosen"].split(dialogue.ASSISTANT)[0]
            prompts.setdefault(first_turn, set()).add(split)
    assert len(prompts) == 40 and all(len(s) == 1 for s in prompts.values())   # whole conversations
    ex.export(store, tranche_dir=tmp_path / "manual", test_fraction=0.0)
    assert sorted(p.name for p in tranche.iterdir()) == ["train.jsonl.gz"]      # old test removed


def test_export_needs_a_target_and_a_local_tranche(store, tmp_path):
    with pytest.raises(ValueError, match="nothing to write"):
        ex.export(store)
    with pytest.raises(ValueError, match="tranche 'helpful-base'"):
        ex.export(store, tranche_dir=tmp_path, tranche="helpful-base")
    with pytest.raises(ValueError, match="test_fraction"):
        ex.export(store, tranche_dir=tmp_path, test_fraction=1.0)
    with pytest.raises(ValueError, match="no comparison store at .*typo/comparisons.sqlite"):
        ex.export(tmp_path / "typo", out=tmp_path / "x.jsonl")
    assert not (tmp_path / "typo").exists()
    assert len(ex.export_rows(store.path.parent)) == len(ex.export_rows(store.path)) == 4


def test_cli_prints_counts_and_writes_the_file(store, tmp_path):
    out = tmp_path / "hh.jsonl.gz"
    run = subprocess.run([sys.executable, "-m", "hh.serve.export", "--workdir", str(store.path.parent),
                          "--out", str(out), "--mode", "helpful"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "2 of 5 comparisons exported; dropped: mode 2, weak 1\n" in run.stdout
    assert len(gzip.decompress(out.read_bytes()).splitlines()) == 2
    run = subprocess.run([sys.executable, "-m", "hh.serve.export", "--workdir", str(store.path.parent),
                          "--out", str(out), "--tag", "none"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "0 of 5 comparisons exported; dropped: tag 5, weak 0" in run.stdout


def pm_data_config(manual, data):
    from configs import pm as pm_config

    config = pm_config.get_config("smoke")
    config.data.manual_dir, config.data.tfds_data_dir = str(manual), str(data)
    config.data.helpful_sources, config.data.harmless_sources = ["hh_rlhf/local"], ["hh_rlhf/local-harmless"]
    config.data.eval_sources = ["hh_rlhf/local"]
    return config


def texts(example):
    from hh.data.pm_data import as_text

    mode = "red-team" if as_text(example["tranche"]) == "local-harmless" else "helpful"
    return mode, as_text(example["chosen"]), as_text(example["rejected"])


def test_exported_tranches_feed_a_pm_config_and_rebuild_when_they_change(store, tmp_path):
    from hh.data import pm_sources
    from hh.data.pm_data import as_text

    manual, data = tmp_path / "manual", tmp_path / "tfds"
    ex.export(store, tranche_dir=manual, modes=["helpful"])
    ex.export(store, tranche_dir=manual, modes=["red-team"], tranche="local-harmless")
    config = pm_data_config(manual, data)
    config.data.train_pairs, config.data.helpful_fraction = 4, 0.5
    train = pm_sources.train_source(config.data, config.train)
    got = [texts(train[i]) for i in range(len(train))]   # TFDS stores examples in hashed-key order
    assert sorted(got[:2]) == [("helpful", " 4.", " 5."), ("helpful", " 6.", " 7.")]
    assert sorted(got[2:]) == [("red-team", " No.", " Fine: rake the pins."),
                               ("red-team", " Sorry, I can't help.", " Use a tension wrench.")]
    contexts = [c["context"] for c in store.comparisons() if c["mode"] == "helpful" and c["strength"] >= 2]
    assert sorted(as_text(train[i]["prompt"]) for i in range(2)) == sorted(contexts)

    # New comparisons, a new export: the next read sees them (no stale TFDS build).
    converse(store, "ann", "helpful", [("One more?", " Sure.", " No.", "a", 3, None)])
    ex.export(store, tranche_dir=manual, modes=["helpful"], test_fraction=0.0)
    config.data.train_pairs, config.data.helpful_fraction = 3, 1.0
    train = pm_sources.train_source(config.data, config.train)
    assert sorted(texts(train[i])[1] for i in range(3)) == [" 4.", " 6.", " Sure."]
    with pytest.raises(Exception, match="split 'test' .* was not built"):
        pm_sources.eval_source(config.data)


@pytest.mark.slow
def test_rule_labelled_store_trains_a_pm_through_the_local_tranche(tmp_path):
    """The offline loop end to end: synthetic pairs labelled by the rule labeler into a store,
    exported as hh_rlhf/local, and a smoke PM trained and evaluated on it by the PM stage."""
    import numpy as np

    from hh import main
    from hh.data import synthetic
    from hh.serve.labelers import RuleLabeler
    from hh.train.metrics import read_metrics

    store = Store(tmp_path / "serve")
    store.add_labeler("sim")
    labeler, swap = RuleLabeler(seed=0, temperature=0.3), np.random.default_rng(0).random(80) < 0.5
    for pair, s in zip(synthetic.comparisons("helpful", 80, seed=0), swap):
        a, b = (pair["rejected"], pair["chosen"]) if s else (pair["chosen"], pair["rejected"])
        label = labeler.label([pair["prompt"]], [a], [b])[0]
        conv = store.start_conversation("sim", "helpful")
        pending = store.offer(conv, "sim", pair["prompt"], candidate(a), candidate(b), "ab")
        store.choose(conv, "sim", pending["id"], label.choice, label.strength)
    counts = ex.export(store, tranche_dir=tmp_path / "manual", test_fraction=0.2)
    assert counts["train"] >= 40 and counts["test"] > 0 and counts["dropped_weak"] > 0
    config = pm_data_config(tmp_path / "manual", tmp_path / "tfds")
    config.data.harmless_sources, config.data.helpful_fraction = [], 1.0
    config.data.train_pairs = counts["train"] // 8 * 8
    main.run(config, str(tmp_path / "pm"))
    evals = [r for r in read_metrics(tmp_path / "pm") if "eval/accuracy" in r]
    assert evals and evals[-1]["eval/pairs"] > 0
