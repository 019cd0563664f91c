"""The pmp-stackexchange / pmp-reddit / pmp-wikipedia comparison sources, read through
hh.data.sources.comparison_source from small dumps laid out under manual_dir: the schema, both
forms, group-disjoint deterministic splits and the errors for a missing or empty layout."""

import gzip
import json
import re
from xml.sax.saxutils import quoteattr

import pytest

from configs import common
from hh.config import ConfigError
from hh.data.errors import DataError
from hh.data.pmp import dumps
from hh.data.pmp.pairs import BAD, GOOD
from hh.data.sources import comparison_source

KEYS = {"prompt", "chosen", "rejected", "num_turns", "tranche"}
GROUPS = 40   # questions / submissions / pages per dump: enough for both splits (see _ids)


def _ids(source: str, fmt: str) -> list[str]:
    """GROUPS ids named by `fmt`, the first few of which hash into "test", so both splits of a
    tiny dump are non-empty whatever TEST_FRACTION is."""
    ids = [fmt.format(i) for i in range(1, 2000)]
    test = [i for i in ids if dumps.split_of(source, fmt_group(source, i)) == "test"][:3]
    train = [i for i in ids if i not in test][:GROUPS - len(test)]
    return test + train


def fmt_group(source: str, post_id: str) -> str:
    """The split group of an id as dumps.py forms it (StackExchange prefixes the site)."""
    return f"cooking/{post_id}" if source == "stackexchange" else post_id


def write_stackexchange(root):
    def row(**attrs):
        return "<row " + " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items()) + " />"
    rows = []
    for q in _ids("stackexchange", "{}"):
        q = int(q)
        rows += [row(Id=q, PostTypeId=1, Title=f"Question {q}?", Body=f"<p>Body {q}.</p>"),
                 row(Id=10000 + q, PostTypeId=2, ParentId=q, Score=7, Body=f"<p>Good {q}.</p>"),
                 row(Id=20000 + q, PostTypeId=2, ParentId=q, Score=0, Body=f"<p>Bad {q}.</p>")]
    folder = root / "stackexchange"
    folder.mkdir()
    text = "<posts>\n" + "\n".join(rows) + "\n</posts>\n"
    (folder / "cooking.xml.gz").write_bytes(gzip.compress(text.encode()))


def write_reddit(root):
    submissions, comments = [], []
    for s in _ids("reddit", "s{}"):
        submissions.append({"id": s, "author": f"op{s}", "title": f"Title {s}", "selftext": "",
                            "subreddit": "science"})
        for c, score in (("a", 9), ("b", 1)):
            comments.append({"id": f"{s}{c}", "parent_id": f"t3_{s}", "link_id": f"t3_{s}",
                             "author": f"user{c}", "body": f"Comment {c} on {s}.",
                             "score": score, "subreddit": "science"})
    folder = root / "reddit"
    folder.mkdir()
    for name, records in (("RS_2020-01.jsonl", submissions), ("RC_2020-01.jsonl", comments)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def write_wikipedia(root):
    reverts = [{"page_title": p, "before": f"{p} is a page. VANDALISM", "after": f"{p} is a page.",
                "comment": "rv vandalism"} for p in _ids("wikipedia", "Page {}")]
    folder = root / "wikipedia"
    folder.mkdir()
    (folder / "reverts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reverts))


WRITERS = {"pmp-stackexchange": write_stackexchange, "pmp-reddit": write_reddit,
           "pmp-wikipedia": write_wikipedia}


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pmp")
    for write in WRITERS.values():
        write(root)
    return root


def _cfg(manual_dir, **overrides):
    cfg = common.data(seq_len=64)
    cfg.manual_dir = str(manual_dir)
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_binarized_rows_are_good_bad_pairs_two_per_ranked_pair(manual_dir, name):
    cfg = _cfg(manual_dir)
    rows = {split: comparison_source(name, split, cfg) for split in ("train", "test")}
    assert len(rows["train"]) + len(rows["test"]) == 2 * GROUPS   # one ranked pair per group
    assert len(rows["test"]) == 2 * 3
    for split_rows in rows.values():
        assert all(set(r) == KEYS and r["tranche"] == name and r["num_turns"] == 1
                   for r in split_rows)
        good, bad = split_rows[::2], split_rows[1::2]
        assert all((r["chosen"], r["rejected"]) == (GOOD, BAD) for r in good)
        assert all((r["chosen"], r["rejected"]) == (BAD, GOOD) for r in bad)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_ranked_form_is_one_row_per_pair_with_the_better_side_chosen(manual_dir, name):
    cfg = _cfg(manual_dir, pmp_form="ranked")
    ranked = comparison_source(name, "train", cfg) + comparison_source(name, "test", cfg)
    assert len(ranked) == GROUPS
    assert all(set(r) == KEYS and r["tranche"] == name for r in ranked)
    binarized = comparison_source(name, "train", _cfg(manual_dir))
    # The binarized GOOD row's sample is the ranked row's prompt + chosen.
    assert binarized[0]["prompt"] == ranked[0]["prompt"] + ranked[0]["chosen"] + "\n\n"


def test_rows_render_each_source(manual_dir):
    first = {name: comparison_source(name, "test", _cfg(manual_dir, pmp_form="ranked"))[0]
             for name in WRITERS}
    assert first["pmp-stackexchange"]["prompt"].startswith("Question: Question ")
    assert first["pmp-stackexchange"]["chosen"].startswith("Answer: Good ")
    assert first["pmp-reddit"]["chosen"].startswith("COMMENT by User B: Comment a on ")
    assert first["pmp-wikipedia"]["rejected"].endswith("is a page. VANDALISM")


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_splits_are_disjoint_by_question_and_deterministic(manual_dir, name):
    cfg = _cfg(manual_dir, pmp_form="ranked")
    train, test = (comparison_source(name, s, cfg) for s in ("train", "test"))
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert comparison_source(name, "test", cfg) == test
    # The split is a hash of the group alone: another seed draws, it does not move questions.
    assert comparison_source(name, "test", _cfg(manual_dir, pmp_form="ranked", seed=7)) == test


def test_split_of_holds_out_about_five_percent():
    held_out = sum(dumps.split_of("stackexchange", f"site/{i}") == "test" for i in range(20000))
    assert abs(held_out / 20000 - dumps.TEST_FRACTION) < 0.01
    assert dumps.split_of("reddit", "abc") == dumps.split_of("reddit", "abc")


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_missing_directory_names_it_and_the_layout(tmp_path, name):
    source = name.removeprefix("pmp-")
    folder = re.escape(str(tmp_path / source))
    with pytest.raises(DataError, match=f"{folder}: not a directory.*<manual_dir>/{source}/"):
        comparison_source(name, "train", _cfg(tmp_path))
    with pytest.raises(ConfigError, match="config.data.manual_dir is empty"):
        comparison_source(name, "train", _cfg(""))


def test_empty_result_and_bad_settings_are_errors(manual_dir, tmp_path):
    (tmp_path / "wikipedia").mkdir()
    with pytest.raises(DataError, match=r"wikipedia: no train pairs for pmp-wikipedia"):
        comparison_source("pmp-wikipedia", "train", _cfg(tmp_path))
    with pytest.raises(ConfigError, match="config.data.pmp_form='graded'"):
        comparison_source("pmp-wikipedia", "train", _cfg(manual_dir, pmp_form="graded"))
    with pytest.raises(ConfigError, match="no split 'validation'"):
        comparison_source("pmp-wikipedia", "validation", _cfg(manual_dir))


def test_reddit_file_without_its_partner_is_named(tmp_path):
    (tmp_path / "reddit").mkdir()
    (tmp_path / "reddit" / "RS_2020-02.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="RS_2020-02.jsonl: no RC_2020-02.jsonl"):
        comparison_source("pmp-reddit", "train", _cfg(tmp_path))


def test_stackexchange_sites_may_be_folders_of_posts_xml(manual_dir, tmp_path):
    (tmp_path / "stackexchange" / "cooking").mkdir(parents=True)
    packed = (manual_dir / "stackexchange" / "cooking.xml.gz").read_bytes()
    (tmp_path / "stackexchange" / "cooking" / "Posts.xml").write_bytes(gzip.decompress(packed))
    cfg = _cfg(tmp_path)
    assert comparison_source("pmp-stackexchange", "test", cfg) == \
        comparison_source("pmp-stackexchange", "test", _cfg(manual_dir))


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_prepared_shards_hold_the_sources_rows_in_order(manual_dir, tmp_path, name):
    """`python -m hh.data.prepare --source pmp-…` streams each dump file into a shard: the same
    binarized rows the in-memory source reads, split for split."""
    from hh.data.prepare import prepare
    for split in ("train", "test"):
        out = tmp_path / split
        manifest = prepare(name, out, kind="comparisons", split=split, manual_dir=str(manual_dir))
        shards = comparison_source(f"array_record:{out}", split, _cfg(manual_dir))
        expected = comparison_source(name, split, _cfg(manual_dir))
        assert manifest["total_records"] == len(shards) == len(expected)
        assert [shards[i] for i in range(len(shards))] == expected


@pytest.mark.slow
def test_pmp_stage_trains_from_prepared_dump_shards(manual_dir, tmp_path):
    """The PMP stage from the command line on shards prepared from generated StackExchange dumps."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hh.data.prepare import prepare
    from hh.train.metrics import read_metrics
    for split in ("train", "test"):
        prepare("pmp-stackexchange", tmp_path / split, kind="comparisons", split=split,
                manual_dir=str(manual_dir))
    n_train = 2 * (GROUPS - 3)   # binarized: two rows per ranked pair
    workdir = tmp_path / "pmp"
    run = subprocess.run(
        [sys.executable, "-m", "hh.main", "--config", "configs/pmp.py:smoke", "--workdir", str(workdir),
         f"--config.data.helpful_sources=('array_record:{tmp_path / 'train'}',)",
         f"--config.data.eval_sources=('array_record:{tmp_path / 'test'}',)",
         f"--config.data.train_pairs={n_train}"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert run.returncode == 0, run.stderr[-3000:]
    evals = [r for r in read_metrics(workdir) if "eval/pairs" in r]
    assert evals and evals[-1]["eval/pairs"] == 6
