"""`python -m hh.data.prepare` and the shards it writes: every source form, rows equal to the
in-memory packer's, restart after a kill keeps finished shards, and bad input (a malformed line, a
corrupted or truncated shard, another tokenizer) fails naming the file and line or record."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from real_data import HH_RLHF as REAL

from configs import common
from hh.config import ConfigError
from hh.data import shards, text_sources
from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.errors import DataError
from hh.data.lm_data import lm_batches
from hh.data.packing import pack_documents
from hh.data.prepare import prepare
from hh.data.sources import PAIR_FIELDS, comparison_source, lm_rows

ROOT = Path(__file__).resolve().parents[2]
TOK = ByteTokenizer()
SEQ = 32


def _docs(n, salt=""):
    return [f"document {salt}{i}: " + "words " * (i % 7) + "end." for i in range(n)]


@pytest.fixture
def corpus(tmp_path):
    """Three files, one of each text form: {path: documents}."""
    root = tmp_path / "corpus"
    root.mkdir()
    files = {}
    docs = _docs(40, "a")
    (root / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    files[root / "a.jsonl"] = docs
    docs = _docs(30, "b")
    (root / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps({"text": d, "id": 1}) + "\n"
                                                            for d in docs).encode()))
    files[root / "b.jsonl.gz"] = docs
    docs = [f"paragraph {i}\nsecond line {i}" for i in range(20)]
    (root / "c.txt").write_text("\n\n".join(docs) + "\n")
    files[root / "c.txt"] = docs
    return root, files


def test_text_files_yield_their_documents(corpus):
    root, files = corpus
    for path, docs in files.items():
        assert list(text_sources.file_documents(path)) == docs
    assert list(text_sources.documents(f"files:{root}/*")) == [d for docs in files.values() for d in docs]


def test_prepared_rows_equal_the_in_memory_packer_per_file(corpus, tmp_path):
    root, files = corpus
    manifest = prepare(f"files:{root}/*", tmp_path / "out", tokenizer="bytes", seq_len=SEQ)
    source = shards.Shards(str(tmp_path / "out"))
    assert manifest["total_documents"] == sum(len(d) for d in files.values())
    offset = 0
    for entry, docs in zip(manifest["shards"], files.values()):
        expected = pack_documents(TOK.encode_batch(docs), SEQ, TOK.bos_id, TOK.eos_id, TOK.pad_id)
        got = source.take_rows(np.arange(offset, offset + entry["records"]))
        for key in ("tokens", "segment_ids", "positions"):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        offset += entry["records"]
    assert offset == len(source) == manifest["total_rows"]
    assert shards.verify(tmp_path / "out") == []


def test_restart_keeps_finished_shards_and_rewrites_the_unfinished(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ)
    first = (out / shards.shard_name(0)).stat().st_mtime_ns
    # a kill after shard 1's data but before its sidecar, and before the manifest
    (out / "shard-00001.json").unlink()
    (out / shards.MANIFEST).unlink()
    (out / shards.shard_name(1)).write_bytes(b"half a shard")
    manifest = prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ)
    assert (out / shards.shard_name(0)).stat().st_mtime_ns == first
    assert shards.verify(out) == [] and len(manifest["shards"]) == 3
    with pytest.raises(ConfigError, match="seq_len"):
        prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ * 2)
    (root / "0.jsonl").write_text('{"text": "a new first file"}\n')   # every shard's file moves
    with pytest.raises(ConfigError, match=r"shard-00000.array_record was made from .*a.jsonl"):
        prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ)


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: field 'text' must be str"):
        prepare(f"files:{tmp_path}/*.jsonl", tmp_path / "out", tokenizer="bytes", seq_len=SEQ)
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": "cut\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: malformed JSON"):
        prepare(f"files:{tmp_path}/*.jsonl", tmp_path / "out2", tokenizer="bytes", seq_len=SEQ)


def _corrupt(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_shard_names_the_file_and_record(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ)
    shard = out / shards.shard_name(0)
    _corrupt(shard, 2000)
    source = shards.Shards(str(out))
    with pytest.raises(DataError, match=rf"{shard.name}: record \d+: .*hash mismatch"):
        source.take_rows(np.arange(source.entries[0]["records"]))
    assert any("sha256 differs" in p for p in shards.verify(out))
    # a truncated shard opens as an empty ArrayRecord file: the manifest's size catches it
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(DataError, match=rf"{shard.name}: 1000 bytes, the manifest says"):
        shards.Shards(str(out)).take_rows([0])


def test_a_stray_shard_and_a_missing_manifest_are_errors(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(f"files:{root}/*", out, tokenizer="bytes", seq_len=SEQ)
    (out / "shard-00099.array_record").write_bytes(b"")
    with pytest.raises(DataError, match="not listed in"):
        shards.Shards(str(out))
    with pytest.raises(DataError, match="no manifest"):
        shards.read_manifest(root)


def _lm_cfg(source, tokenizer="sentencepiece", seq_len=SEQ):
    cfg = common.data(seq_len, tokenizer=tokenizer)
    cfg.source, cfg.eval_rows = source, 4
    return cfg


def test_lm_rows_from_shards_and_the_tokenizer_check(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(f"files:{root}/*", out, tokenizer="train", vocab_size=300, tokenizer_sample=100, seq_len=SEQ)
    train, held_out, tokenizer = lm_rows(_lm_cfg(f"array_record:{out}"), tmp_path / "workdir")
    assert len(train) + len(held_out) == len(shards.Shards(str(out))) and len(held_out) == 4
    assert (tmp_path / "workdir" / "tokenizer" / "tokenizer.model").exists()
    batch = next(lm_batches(train, 4, seed=0))
    assert batch["inputs"].shape == (4, SEQ) and batch["loss_mask"].sum() > 0
    with pytest.raises(ConfigError, match="were tokenized with"):
        lm_rows(_lm_cfg(f"array_record:{out}", tokenizer="bytes"))
    with pytest.raises(ConfigError, match="seq_len"):
        lm_rows(_lm_cfg(f"array_record:{out}", seq_len=SEQ * 2))


def test_lm_rows_from_text_files(corpus):
    root, files = corpus
    train, held_out, _ = lm_rows(_lm_cfg(f"files:{root}/*", tokenizer="bytes"))
    n_tokens = (train["segment_ids"] > 0).sum() + (held_out["segment_ids"] > 0).sum()
    docs = [d for docs in files.values() for d in docs]
    assert n_tokens == sum(len(d.encode()) + 2 for d in docs)   # every document, bos and eos


def test_two_processes_read_disjoint_rows_that_make_the_global_batch(corpus, tmp_path):
    root, _ = corpus
    prepare(f"files:{root}/*", tmp_path / "out", tokenizer="bytes", seq_len=SEQ)
    train, _, _ = lm_rows(_lm_cfg(f"array_record:{tmp_path / 'out'}", tokenizer="bytes"))
    one = lm_batches(train, 8, seed=1)
    halves = [lm_batches(train, 8, seed=1, row_range=r) for r in ((0, 4), (4, 8))]
    for step in range(5):
        whole = one.batch(step)["inputs"]
        np.testing.assert_array_equal(np.concatenate([h.batch(step)["inputs"] for h in halves]), whole)
        indices = [one.sampler.indices(step)[a:b] for a, b in ((0, 4), (4, 8))]
        assert not set(indices[0]) & set(indices[1])


HH_RLHF_LINE = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}


def test_comparison_files_in_either_layout(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(HH_RLHF_LINE) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"prompt": "P", "chosen": "C", "rejected": "R",
                                                  "weight": 2}) + "\n")
    rows = comparison_source(f"files:{tmp_path}/*.jsonl", "train", common.data(SEQ))
    assert rows[0] == {"prompt": "\n\nHuman: Hi?\n\nAssistant:", "chosen": " Hello.", "rejected": " Go away."}
    assert rows[1] == {"prompt": "P", "chosen": "C", "rejected": "R", "weight": 2.0}
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "only a prompt"}) + "\n")
    prompts = comparison_source(f"files:{tmp_path}/p.jsonl", "train", common.data(SEQ), fields=("prompt",))
    assert prompts == [{"prompt": "only a prompt"}]
    with pytest.raises(DataError, match=r"p.jsonl, line 1: missing field 'chosen'"):
        comparison_source(f"files:{tmp_path}/p.jsonl", "train", common.data(SEQ), fields=PAIR_FIELDS)
    (tmp_path / "c.jsonl").write_text(json.dumps({"chosen": "no markers", "rejected": "x"}) + "\n")
    with pytest.raises(DataError, match="c.jsonl, line 1"):
        comparison_source(f"files:{tmp_path}/c.jsonl", "train", common.data(SEQ))


def test_comparison_shards_hold_the_rows_in_order(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(25)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare(f"files:{tmp_path}/mine.jsonl", tmp_path / "out", kind="comparisons")
    source = comparison_source(f"array_record:{tmp_path / 'out'}", "train", common.data(SEQ))
    assert [source[i] for i in range(len(source))] == rows
    with pytest.raises(ConfigError, match="holds comparisons, not lm_rows"):
        lm_rows(_lm_cfg(f"array_record:{tmp_path / 'out'}", tokenizer="bytes"))


def test_the_cli_prepares_and_verifies(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "hh.data.prepare", f"--source=files:{root}/*.jsonl*",
                          "--tokenizer=bytes", f"--seq_len={SEQ}", f"--out={out}", "--workers=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["total_documents"] == 70
    assert "docs_s=" in run.stderr and "tok_s=" in run.stderr   # the progress bar's rates
    ok = subprocess.run([sys.executable, "-m", "hh.data.prepare", f"--verify={out}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "OK" in ok.stdout
    _corrupt(out / shards.shard_name(1), 500)
    bad = subprocess.run([sys.executable, "-m", "hh.data.prepare", f"--verify={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "shard-00001.array_record: sha256 differs" in bad.stdout


def _real_cfg(tmp_path):
    cfg = common.data(SEQ, tokenizer="bytes")
    cfg.manual_dir, cfg.tfds_data_dir = str(REAL), str(tmp_path / "tfds")
    return cfg


@pytest.mark.skipif(not (REAL / "harmless-base/test.jsonl.gz").exists(), reason="no hh-rlhf copy")
def test_the_real_harmless_base_split_through_every_comparison_form(tmp_path):
    """files: (hh-rlhf's own layout), tfds: and prepared array_record shards of the real
    harmless-base test split hold the same 2,312 comparisons."""
    cfg = _real_cfg(tmp_path)
    files = comparison_source(f"files:{REAL}/harmless-base/test.jsonl.gz", "test", cfg)
    tfds_rows = comparison_source("tfds:hh_rlhf/harmless-base:1.0.0", "test", cfg)
    prepare(f"files:{REAL}/harmless-base/test.jsonl.gz", tmp_path / "out", kind="comparisons")
    shard_rows = comparison_source(f"array_record:{tmp_path / 'out'}", "test", cfg)
    assert len(files) == len(tfds_rows) == len(shard_rows) == 2312
    keys = ("prompt", "chosen", "rejected")
    as_set = lambda rows: {tuple(rows[i][k] for k in keys) for i in range(len(rows))}  # noqa: E731
    assert as_set(files) == as_set(tfds_rows) == as_set(shard_rows)   # TFDS shuffles at write time
    assert [shard_rows[i] for i in range(3)] == files[:3]


@pytest.mark.skipif(not (REAL / "harmless-base/test.jsonl.gz").exists(), reason="no hh-rlhf copy")
def test_lm_text_from_a_tfds_feature(tmp_path):
    cfg = _real_cfg(tmp_path)
    cfg.source, cfg.text_field, cfg.text_split = "tfds:hh_rlhf/harmless-base", "prompt", "test[:100]"
    train, held_out, _ = lm_rows(cfg)
    docs = list(text_sources.documents(cfg.source, "prompt", "test[:100]", cfg.tfds_data_dir, cfg.manual_dir))
    assert len(docs) == 100 and all(d.startswith("\n\nHuman:") for d in docs)
    n_tokens = (train["segment_ids"] > 0).sum() + (held_out["segment_ids"] > 0).sum()
    assert n_tokens == sum(len(d.encode()) + 2 for d in docs)


@pytest.mark.skipif(not (REAL / "harmless-base/test.jsonl.gz").exists(), reason="no hh-rlhf copy")
def test_prepare_from_a_tfds_split_in_ranges(tmp_path):
    """A TFDS split is cut into ranges of examples, one shard each, packed like the documents in
    memory."""
    cfg = _real_cfg(tmp_path)
    spec, split = "tfds:hh_rlhf/harmless-base", "test[:250]"
    units = text_sources.units(spec, split=split, data_dir=cfg.tfds_data_dir, manual_dir=cfg.manual_dir,
                               tfds_unit_size=100)
    assert [(u.start, u.stop) for u in units] == [(0, 100), (100, 200), (200, 250)]
    manifest = prepare(spec, tmp_path / "out", field="prompt", split=split, data_dir=cfg.tfds_data_dir,
                       manual_dir=cfg.manual_dir, tokenizer="bytes", seq_len=SEQ)
    docs = list(text_sources.documents(spec, "prompt", split, cfg.tfds_data_dir, cfg.manual_dir))
    expected = pack_documents(TOK.encode_batch(docs), SEQ, TOK.bos_id, TOK.eos_id, TOK.pad_id)
    got = shards.Shards(str(tmp_path / "out")).take_rows(np.arange(manifest["total_rows"]))
    np.testing.assert_array_equal(got["tokens"], expected["tokens"])   # one unit: 250 < 100,000
