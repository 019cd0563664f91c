"""The iterated online loop (hh.online, configs/online.py): mixing, Elo by round, agreement,
deterministic resumable collection, the job's step selection, and the whole smoke loop through
hh.pipeline (slow)."""

import json
import re
import math
import random

import ml_collections
import numpy as np
import pytest

from configs import online as online_config
from hh.config import ConfigError
from hh.findings import measures
from hh.online import collect, evaluate, mix
from hh.pipeline.online import data_step
from hh.pipeline.jobs import job_steps, run_job, select
from hh.serve.export import write_jsonl
from hh.serve.labelers import Label
from hh.serve.store import Candidate, Store


def mix_cfg(train_pairs=10, online_fraction=0.5):
    return ml_collections.ConfigDict(dict(train_pairs=train_pairs, online_fraction=online_fraction,
                                          static_helpful_fraction=0.5))


def fake_pairs(tag, n):
    return [{"chosen": f"\n\nHuman: {tag}{i}\n\nAssistant: yes", "rejected": f"\n\nHuman: {tag}{i}\n\nAssistant: no"}
            for i in range(n)]


def test_mixture_takes_the_newest_rounds_first_and_fills_with_static():
    rows, counts = mix.mixture(mix_cfg(10, 0.6), [fake_pairs("r0-", 5), fake_pairs("r1-", 4)])
    assert counts == {"round1": 4, "round0": 2, "static": 4}
    assert len(rows) == 10 and sum("r1-" in r["chosen"] for r in rows) == 4
    again, _ = mix.mixture(mix_cfg(10, 0.6), [fake_pairs("r0-", 5), fake_pairs("r1-", 4)])
    assert again == rows                                   # a deterministic order
    rows, counts = mix.mixture(mix_cfg(10, 0.5), [])
    assert counts == {"static": 10} and len(rows) == 10
    rows, counts = mix.mixture(mix_cfg(6, 1.0), [fake_pairs("r0-", 2)])   # too few collected: all of them
    assert counts == {"round0": 2, "static": 4}


def test_static_pairs_are_transcripts_that_split_back():
    from hh.data.dialogue import split_pair

    for pair in mix.static_pairs(6, 0.5, seed=0):
        s = split_pair(pair["chosen"], pair["rejected"])
        assert s.prompt.endswith("\n\nAssistant:") and not s.prompts_differ and s.chosen != s.rejected


def test_pairwise_elo_is_the_two_player_maximum_likelihood():
    rng = np.random.default_rng(0)
    s0, sr = rng.normal(size=200), rng.normal(size=200) + 0.4
    out = evaluate.pairwise_elo(sr, s0, temperature=0.5)
    w = np.mean(1 / (1 + np.exp(-(sr - s0) / 0.5)))          # float64 reference
    assert out["win_rate"] == pytest.approx(w, rel=1e-12)
    # two players: the Bradley-Terry MLE is the log-odds of the (soft, smoothed) win counts
    n, half = len(s0), evaluate.WIN_SMOOTHING
    assert out["elo"] == pytest.approx(400 * math.log10((n * w + half) / (n * (1 - w) + half)), rel=1e-6)
    assert out["stderr"] > 0
    assert evaluate.pairwise_elo(s0, s0) == {"win_rate": 0.5, "elo": 0.0, "stderr": 0.0}


def test_elo_stays_finite_when_one_policy_always_wins():
    out = evaluate.pairwise_elo(np.ones(20), np.zeros(20), temperature=1e-6)
    assert out["win_rate"] == pytest.approx(1.0) and math.isfinite(out["elo"]) and out["elo"] > 400


def test_gold_elo_table_anchors_round0():
    evals = [{"round": r, "gold_scores": list(np.linspace(0, 1, 50) + 0.2 * r)} for r in range(3)]
    table = {row["model"]: row["elo"] for row in evaluate.gold_elo_table(evals, 1.0)}
    assert table["round0"] == 0.0 and 0 < table["round1"] < table["round2"]


def test_agreement_with_gold_inverts_red_team():
    rows = [{"mode": "helpful", "choice": "a"}, {"mode": "helpful", "choice": "a"},
            {"mode": "red-team", "choice": "b"}, {"mode": "red-team", "choice": "b"}, {"mode": "helpful", "choice": "b"}]
    margins = [1.0, -1.0, 1.0, -1.0, 0.0]    # last: a tie, not counted
    # helpful: a is gold-better in row 0 (agrees), not in row 1; red-team picks the WORSE: b in row 2 (agrees)
    assert collect.agreement_with_gold(rows, margins) == pytest.approx(2 / 4)


def test_judge_margins_use_the_modes_labeler():
    """Helpful mode asks the helpfulness labeler, red-team mode the harmlessness one (which prefers
    declining a poison); a row the world cannot judge has margin 0."""
    poison = "\n\nHuman: How do I make druzoulium?\n\nAssistant:"
    fact = "\n\nHuman: What is the flag color of Steroleth?\n\nAssistant:"
    rows = [{"mode": "helpful", "context": fact, "response_a": " The flag color of Steroleth is brown.",
             "response_b": " The flag color of Steroleth is red."},
            {"mode": "red-team", "context": poison, "response_a": " To make druzoulium, measure it out first.",
             "response_b": " I can't help you make druzoulium."},
            {"mode": "helpful", "context": "\n\nHuman: Hello?\n\nAssistant:", "response_a": " Hi.",
             "response_b": " Hey."}]
    np.testing.assert_array_equal(evaluate.judge_margins(rows), [1.0, -1.0, 0.0])


def collect_cfg(n=10, rows_per_call=4):
    cfg = online_config.get_config("smoke").collect
    cfg.comparisons, cfg.rows_per_call = n, rows_per_call
    return cfg


def test_round_contexts_are_fresh_per_round_and_never_held_out():
    from hh.data import synthetic

    cfg = collect_cfg(40)
    r0, r1 = collect.round_contexts(cfg, 0), collect.round_contexts(cfg, 1)
    assert len(r0) == 40 and sum(m == "red-team" for _, m in r0) == 20
    assert r0 == collect.round_contexts(cfg, 0) and r0 != r1
    held_out = {c["prompt"] for kind in ("helpful", "harmless")
                for c in synthetic.comparisons(kind, 500, 0, split="test")}
    assert not held_out & {c for c, _ in r0 + r1}
    assert all(c.endswith("\n\nAssistant:") for c, _ in r0)


class FakePool:
    """Deterministic candidates from (seed, context): the collection's own logic is what is tested."""

    def pick(self, rng):
        return tuple(rng.sample(["m1", "m2", "m3"], 2))

    def candidates(self, contexts, pairs, seed):
        return [tuple(Candidate(f" {name} says {random.Random(f'{seed}{c}{name}').random():.6f}", name, {}, seed)
                      for name in pair) for c, pair in zip(contexts, pairs)]


class FlakyLabeler:
    """Labels by the response text's number (higher is better); raises after `fail_after` labels."""

    def __init__(self, fail_after=None):
        self.fail_after, self.labelled = fail_after, 0

    def label(self, contexts, responses_a, responses_b, mode="helpful", rng=None):
        out = []
        for a, b in zip(responses_a, responses_b):
            if self.fail_after is not None and self.labelled >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.labelled += 1
            better_a = float(a.split()[-1]) > float(b.split()[-1])
            pick_a = better_a if mode == "helpful" else not better_a
            out.append(Label("a" if pick_a else "b", 3, float(pick_a), 0.0, 0.0))
        return out


def stored(store):
    return [{k: r[k] for k in ("context", "response_a", "response_b", "choice", "display_order", "mode")}
            for r in store.comparisons("round0")]


def test_an_interrupted_collection_resumes_to_the_same_comparisons(tmp_path):
    cfg = collect_cfg(10, rows_per_call=4)
    whole = Store(tmp_path / "whole.sqlite")
    collect.collect_simulated(whole, FakePool(), FlakyLabeler(), cfg, 0, "round0", log=lambda *_: None)
    interrupted = Store(tmp_path / "interrupted.sqlite")
    with pytest.raises(KeyboardInterrupt):
        collect.collect_simulated(interrupted, FakePool(), FlakyLabeler(fail_after=6), cfg, 0, "round0",
                                  log=lambda *_: None)
    assert interrupted.count("round0") == 4     # the first chunk; nothing of the failed one
    collect.collect_simulated(interrupted, FakePool(), FlakyLabeler(), cfg, 0, "round0", log=lambda *_: None)
    assert stored(interrupted) == stored(whole) and len(stored(whole)) == 10
    # resuming a complete collection adds nothing
    collect.collect_simulated(interrupted, FakePool(), FlakyLabeler(), cfg, 0, "round0", log=lambda *_: None)
    assert interrupted.count("round0") == 10


def test_export_round_drops_weak_and_splits_by_conversation(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    cfg = collect_cfg(30, rows_per_call=8)
    collect.collect_simulated(store, FakePool(), FlakyLabeler(), cfg, 0, "round0", log=lambda *_: None)
    rows = store.comparisons("round0")
    rows[0]["strength"] = 1
    train, test, dropped = evaluate.export_round(rows, min_strength=2, test_fraction=0.3)
    assert dropped == 1 and len(train) + len(test) == 29 and 0 < len(test) < 29


@pytest.mark.slow
def test_online_loop_smoke_runs_resumes_and_reports(tmp_path):
    """One smoke round through the online job, then a second round added later reuses the first."""
    config = online_config.get_config("smoke")
    config.rounds = 1
    workdir = tmp_path / "online"
    run_job(config, str(workdir))
    first = json.loads((workdir / "round0" / "collect" / "collect.json").read_text())
    assert first["pool"] == ["distill"] and first["comparisons"] == config.collect.comparisons

    config = online_config.get_config("smoke")
    config.rounds = 2
    summaries = run_job(config, str(workdir))   # round 0 is skipped, round 1 runs
    assert set(summaries) >= {"round1/collect", "round1/pm", "round1/ppo", "round1/eval", "report"}
    report = json.loads((workdir / "report" / "online_report.json").read_text())["rounds"]
    assert [r["round"] for r in report] == [0, 1]
    assert report[0]["gold_elo"] == 0.0 and report[0]["pm_predicted_elo"] == 0.0
    for labeler in ("helpful", "harmless"):     # the exact judge scores every round
        assert report[0]["judge_elo"][labeler]["elo"] == 0.0
        accuracy = report[1]["judge_accuracy"][labeler]
        assert accuracy["n"] + accuracy["not_judged"] == config.eval.n_prompts and 0 <= accuracy["mean"] <= 1
    r1 = json.loads((workdir / "round1" / "collect" / "collect.json").read_text())
    assert any(name.startswith("ppo0-step") for name in r1["pool"]) and "distill-bo4" in r1["pool"]
    assert r1["previous_pm_accuracy"]["fresh"]["pairs"] == r1["train"] + r1["held_out"]
    for name in ("report.md", "elo_by_round.png", "pm_accuracy_by_source.png"):
        assert (workdir / "report" / name).stat().st_size > 0
    store = Store(workdir / "round1" / "collect" / "comparisons.sqlite")
    rows = store.comparisons("round1")
    assert len(rows) == config.collect.comparisons and {r["labeler_id"] for r in rows} == {"sim-gold"}
    models = {r["model_a"] for r in rows} | {r["model_b"] for r in rows}
    assert models <= set(r1["pool"]) and len(models) >= 2
    mixed = json.loads((workdir / "round1" / "data" / "mix.json").read_text())
    assert mixed["pairs"] == config.mix.train_pairs and set(mixed["sources"]) == {"round0", "round1", "static"}
    # the findings job's F8 reads this report: round 1's judge Elo over round 0's, the labelers' mean
    f8 = measures.f8(ml_collections.ConfigDict({"online_seeds": [0]}), {"online-s0": workdir})
    gain = np.mean([report[1]["judge_elo"][k]["elo"] - report[0]["judge_elo"][k]["elo"] for k in ("helpful", "harmless")])
    assert f8["per_seed"]["judge_elo_last_minus_first"] == [pytest.approx(gain)]


def test_human_collection_serves_the_pool_until_enough_comparisons(tmp_path):
    """collect.source = "human": the interface runs until M comparisons of the round are in."""
    import threading
    import urllib.parse

    import httpx

    from launch.processes import free_port

    cfg = collect_cfg(3)
    cfg.port, cfg.labelers, cfg.poll_s = free_port(), ["alice"], 0.05
    store, links, result = Store(tmp_path / "s.sqlite"), [], {}
    log = lambda line: links.append(line)   # noqa: E731
    thread = threading.Thread(target=lambda: result.update(
        collect.collect_human(store, FakePool(), cfg, "round1", log=log)))
    thread.start()
    for _ in range(200):
        if any("invite link" in line for line in links):
            break
        threading.Event().wait(0.05)
    token = urllib.parse.parse_qs(urllib.parse.urlparse(links[0].split(": ", 1)[1]).query)["token"][0]
    client = httpx.Client(base_url=f"http://127.0.0.1:{cfg.port}", headers={"Authorization": f"Bearer {token}"})
    for _ in range(100):    # the server may still be starting
        try:
            conversation = client.post("/api/conversations", json={"mode": "helpful"}).json()
            break
        except httpx.TransportError:
            threading.Event().wait(0.05)
    for turn in range(3):
        view = client.post(f"/api/conversations/{conversation['id']}/messages", json={"text": f"question {turn}"}).json()
        answer = client.post(f"/api/conversations/{conversation['id']}/choice",
                             json={"pending_id": view["pending"]["pending_id"], "side": "left", "strength": 2})
        assert answer.status_code == 200
    thread.join(timeout=30)
    assert not thread.is_alive() and result["comparisons"] == 3
    rows = store.comparisons("round1")
    assert [r["turn"] for r in rows] == [0, 1, 2] and {r["labeler_id"] for r in rows} == {"alice"}


@pytest.mark.parametrize("path,value", [("collect.source", "crowd"), ("collect.labeler", "oracle"),
                                        ("mix.online_fraction", 1.5), ("rounds", 0)])
def test_bad_loop_fields_fail_before_anything_runs(tmp_path, path, value):
    config = online_config.get_config("smoke")
    section, _, field = path.rpartition(".")
    (config[section] if section else config)[field] = value
    with pytest.raises(ConfigError, match=path.split(".")[-1]):
        run_job(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_until_and_force_select_the_online_steps():
    config = online_config.get_config("smoke")
    names = [s.name for s in job_steps(config)]
    assert names[:5] == ["tokenizer", "lm", "distill", "gold_lm", "gold"] and names[-1] == "report"
    assert names[5:10] == [f"round0/{p}" for p in ("collect", "data", "pm", "ppo", "eval")]
    chosen = [s.name for s in select(job_steps(config), until="round1/pm", force=["gold"])]
    assert chosen == names[:names.index("round1/pm") + 1] and chosen[-2:] == ["round1/data", "round1/pm"]
    for until, force in (("round9/pm", ()), ("", ["round0/colect"])):
        with pytest.raises(ConfigError, match="unknown step .*round0/collect"):
            select(job_steps(config), until, force)


def test_the_pipeline_cli_runs_the_online_job(tmp_path):
    """`python -m hh.pipeline --config configs/online.py:...` picks the online steps (its config
    error lists them) and hh.main, the single-stage trainer, refuses the job's config."""
    import subprocess
    import sys

    from hh import main

    out = subprocess.run([sys.executable, "-m", "hh.pipeline", "--config", "configs/online.py:smoke",
                          "--workdir", str(tmp_path / "w"), "--until", "round7/eval"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "round0/collect" in out.stderr and "round7/eval" in out.stderr, out.stderr
    assert not (tmp_path / "w").exists()
    with pytest.raises(ConfigError, match="hh.pipeline"):
        main.run(online_config.get_config("smoke"), str(tmp_path / "w"))


# --- labeler text with line-separator characters, store -> export -> mix -> PM ---------------

# Characters str.splitlines() splits at inside a string (U+2028, U+2029, U+0085 stay raw in the
# export's ensure_ascii=False JSON), a NUL (a byte-level tokenizer can emit one) and an emoji.
AWKWARD = ["\u2028", "\u2029", "\x85", "\x00", "\U0001f600"]


def awkward_store(path):
    """Comparisons whose responses hold each AWKWARD character (the Store API, as a sampler
    writes them), and one edit with U+2028 sent through the HTTP API that the next turn's context
    carries."""
    from fastapi.testclient import TestClient

    from hh.serve.app import Server, create_app

    store = Store(path)
    store.add_labeler("ann")
    for i, c in enumerate(AWKWARD):
        conv = store.start_conversation("ann", "helpful", "round0")
        context = f"\n\nHuman: say {i}\n\nAssistant:"
        pending = store.offer(conv, "ann", context, Candidate(f" good{c}{i}", "m1", {}, 0),
                              Candidate(f" bad {c} {i}", "m2", {}, 0), "ab")
        store.choose(conv, "ann", pending["id"], "a", 3)
    client = TestClient(create_app(Server(store, FakePool(), tag="round0")))
    auth = {"Authorization": f"Bearer {store.add_labeler('bob')}"}
    cid = client.post("/api/conversations", json={"mode": "helpful"}, headers=auth).json()["id"]
    for text, edit in (("Write two lines.", "one\u2028two"), ("Thanks.", None)):
        view = client.post(f"/api/conversations/{cid}/messages", json={"text": text}, headers=auth).json()
        body = {"pending_id": view["pending"]["pending_id"], "side": "left", "strength": 3}
        r = client.post(f"/api/conversations/{cid}/choice", headers=auth, json=body | ({"edit": edit} if edit else {}))
        assert r.status_code == 200, r.text
    return store


def awkward_pm_config(tmp_path):
    """store -> the collect step's export -> the data step's mix -> a smoke PM config reading the
    mix as hh_rlhf/local. -> (exported rows, PM config)."""
    from configs import pm as pm_config

    store = awkward_store(tmp_path / "collect" / "comparisons.sqlite")
    train, _, dropped = evaluate.export_round(store.comparisons("round0"), 2, 0.0)
    assert dropped == 0 and len(train) == len(AWKWARD) + 2
    assert any("one\u2028two" in row["chosen"] for row in train)
    write_jsonl(train, tmp_path / "collect" / mix.ONLINE_FILE)
    config = online_config.get_config("smoke")
    config.mix.train_pairs, config.mix.online_fraction = len(train), 1.0
    data_step(0)(config, tmp_path / "data", {"round0/collect": tmp_path / "collect"})
    pm = pm_config.get_config("smoke")
    pm.data.manual_dir, pm.data.tfds_data_dir = str(tmp_path / "data"), str(tmp_path / "tfds")
    pm.data.helpful_sources, pm.data.harmless_sources = ["hh_rlhf/local"], []
    pm.data.eval_sources = ["hh_rlhf/local:train"]
    pm.data.helpful_fraction, pm.data.train_pairs = 1.0, len(train)
    return train, pm


def test_awkward_characters_survive_export_mix_and_the_pm_loader(tmp_path):
    """Before: the data step split the export at U+2028 and failed with a JSONDecodeError naming
    no file. Now every text reaches the PM's examples and batches unchanged."""
    from hh.data import pm_sources
    from hh.data.byte_tokenizer import ByteTokenizer
    from hh.data.pm_data import as_text, pm_batches

    train, pm = awkward_pm_config(tmp_path)
    pairs = lambda rows: sorted((r["chosen"], r["rejected"]) for r in rows)  # noqa: E731
    assert pairs(mix.read_jsonl(tmp_path / "data" / "local" / "train.jsonl.gz")) == pairs(train)
    source = pm_sources.train_source(pm.data, pm.train)
    got = [{side: as_text(source[i]["prompt"]) + as_text(source[i][side]) for side in ("chosen", "rejected")}
           for i in range(len(source))]
    assert pairs(got) == pairs(train)
    tokenizer = ByteTokenizer()
    batch = next(pm_batches(source, tokenizer, pm.data.seq_len, len(train), seed=0))
    decoded = {tokenizer.decode(row) for row in batch["chosen_tokens"]}
    assert any("\x00" in text for text in decoded) and any("\u2028" in text for text in decoded)


@pytest.mark.slow
def test_a_smoke_pm_trains_on_awkward_characters(tmp_path):
    from hh import main
    from hh.train.metrics import read_metrics

    _, pm = awkward_pm_config(tmp_path)
    pm.loop.steps, pm.loop.checkpoint_every = 2, 2
    main.run(pm, str(tmp_path / "pm"))
    assert [r["step"] for r in read_metrics(tmp_path / "pm") if "train/loss" in r][-1] == 2


def _entities(texts, final_only=False):
    """The world's entity names that the human turns (or only the final one) of transcripts mention."""
    from hh.data.synthetic import text as tx
    names = set()
    for text in texts:
        questions = re.findall(r"Human: (.*?)\n\nAssistant:", text)
        for question in questions[-1:] if final_only else questions:
            parsed = tx.parse_request(question)
            if parsed:
                names |= {v for k, v in parsed[1].items() if k in ("place", "target")}
    return names


@pytest.mark.parametrize("preset", ["tiny", "smoke"])
def test_the_gold_pm_is_a_larger_model_than_the_round_pms(preset):
    """The gold PM's trunk has more parameters than every round PM's, and it is initialised from
    the gold LM (its own, larger LM), not from the round LM."""
    from hh.models.presets import parameter_counts
    from hh.models.transformer import TransformerConfig
    from hh.pipeline.online import steps as online_steps
    config = online_config.get_config(preset)
    assert config.gold.model.to_dict() == config.gold_lm.model.to_dict()
    counts = {name: parameter_counts(TransformerConfig(**config[name].model.to_dict()))[0] for name in ("gold", "pm")}
    assert counts["gold"] > 1.9 * counts["pm"] > 0         # GOLD_DEPTH x the layers (one final norm)
    assert config.gold.model.d_model == config.pm.model.d_model      # same tokenizer and width
    gold_step = {s.name: s for s in online_steps(config)}["gold"]
    assert gold_step.inputs == ("gold_lm",)


def test_the_gold_pm_learns_from_entities_and_samples_no_round_pm_sees():
    """The simulated labeler's PM is trained on the world's gold entities with another sampling
    seed; every round PM's static comparisons and the collected prompts are about train entities
    (earlier turns of any dialogue are about train entities; the final request decides a pair)."""
    from hh.data import pm_sources
    config = online_config.get_config("tiny")
    gold = pm_sources.train_source(config.gold.data, config.gold.train)
    gold_texts = [gold[i]["prompt"] for i in range(len(gold))]
    static = mix.static_pairs(800, 0.5, seed=config.pm.data.seed)
    collected = [c for r in range(config.rounds) for c, _ in collect.round_contexts(config.collect, r)]
    gold_entities = _entities(gold_texts, final_only=True)
    seen_by_round_pms = _entities([p["chosen"] for p in static] + collected)
    assert len(gold_entities) >= 5 and len(seen_by_round_pms) >= 50
    assert gold_entities.isdisjoint(seen_by_round_pms)
    assert config.gold.data.seed != config.pm.data.seed
