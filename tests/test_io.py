"""Atomic writes (hh.io): the target holds the old bytes or the new ones, never a mix, and no
temporary is left behind."""

import multiprocessing
import os

import pytest
from etils import epath

from hh import io as hio


def _temporaries(directory) -> list[str]:
    return [name for name in os.listdir(directory) if ".tmp-" in name]


def test_write_text_and_bytes_replace_the_target(tmp_path):
    path = tmp_path / "result.json"
    hio.atomic_write_text(path, "old\n")
    hio.atomic_write_text(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    hio.atomic_write_bytes(str(tmp_path / "blob.bin"), b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert _temporaries(tmp_path) == []


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        with hio.atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert _temporaries(tmp_path) == []


def test_failure_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        with hio.atomic_path(tmp_path / "never"):
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_a_directory_is_renamed_whole_or_removed(tmp_path):
    with hio.atomic_path(tmp_path / "shard-0") as tmp:
        tmp.mkdir()
        (tmp / "a.npy").write_bytes(b"a")
    assert (tmp_path / "shard-0" / "a.npy").read_bytes() == b"a"
    with pytest.raises(RuntimeError):
        with hio.atomic_path(tmp_path / "shard-1") as tmp:
            tmp.mkdir()
            (tmp / "a.npy").write_bytes(b"a")
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["shard-0"]


def test_temporary_is_a_hidden_sibling_named_by_pid(tmp_path):
    target = tmp_path / "out.jsonl"
    first, second = hio.temporary_sibling(target), hio.temporary_sibling(target)
    assert first.parent == epath.Path(tmp_path)
    assert first.name.startswith(f".out.jsonl.tmp-{os.getpid()}-")
    assert first != second          # two threads of one process never share a temporary


def _temporary_name(path):
    return hio.temporary_sibling(path).name


def test_concurrent_processes_use_different_temporaries(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        names = pool.map(_temporary_name, [str(tmp_path / "x")] * 2)
    pids = {name.split(".tmp-")[1].split("-")[0] for name in names}
    assert len(set(names)) == 2 and str(os.getpid()) not in pids


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    path = str(tmp_path / "shared.txt")
    payloads = [str(i) * 100_000 for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(hio.atomic_write_text, [(path, p) for p in payloads])
    assert open(path).read() in payloads
    assert _temporaries(tmp_path) == []


def test_epath_paths(tmp_path):
    path = epath.Path(tmp_path) / "stamp.json"
    hio.atomic_write_text(path, "{}\n")
    assert path.read_text() == "{}\n"
    with hio.atomic_path(path) as tmp:
        assert isinstance(tmp, epath.Path)
        tmp.write_text("[]\n")
    assert path.read_text() == "[]\n"


def test_object_store_paths_are_written_directly():
    assert not hio.is_local("gs://bucket/run/result.json")
    assert hio.is_local("/tmp/result.json") and hio.is_local(epath.Path("relative/x"))
