"""hh.serve.store: labelers and tokens, conversation ownership, pending pairs and choices (exactly
once), finishing, tags, WAL mode and concurrent writers. Fake Candidates: no model is needed."""

import sqlite3
import threading
import time

import pytest

from hh.serve.store import SCHEMA_VERSION, Candidate, Store, StoreError, response_after

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def cands(turn=0, tag="x"):
    return (Candidate(f" answer a{turn}{tag}", "model-1", {"k": 1, "temperature": 1.0}, 11 + turn),
            Candidate(f" answer b{turn}{tag}", "model-2", {"k": 2, "temperature": 1.0}, 22 + turn))


def context_after(transcript, text):
    return f"{transcript}{HUMAN} {text}{ASSISTANT}"


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path)


def raw(store, query, args=()):
    db = sqlite3.connect(str(store.path))
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def test_labelers_tokens_and_only_hash_stored(store):
    token = store.add_labeler("ann")
    other = store.add_labeler("bob.b-2_x")
    assert token != other and len(token) >= 24
    assert store.labeler_for_token(token) == "ann"
    assert store.labeler_for_token(other) == "bob.b-2_x"
    assert store.labeler_for_token(token + "x") is None
    assert store.labeler_for_token("") is None
    assert store.labelers() == ["ann", "bob.b-2_x"]
    with pytest.raises(StoreError, match="already exists") as e:
        store.add_labeler("ann")
    assert e.value.status == 409
    for bad in ("", "a b", "a/b", "x" * 65, "ann;drop", "<b>"):
        with pytest.raises(StoreError, match="labeler id") as e:
            store.add_labeler(bad)
        assert e.value.status == 400
    assert store.labelers() == ["ann", "bob.b-2_x"]
    # the token never reaches the disk (database, WAL or shared memory file): only its SHA-256
    files = [p for p in store.path.parent.iterdir() if p.name.startswith(store.path.name)]
    assert files
    for p in files:
        data = p.read_bytes()
        assert token.encode() not in data and other.encode() not in data


def test_conversation_ownership(store):
    store.add_labeler("ann"), store.add_labeler("bob")
    cid = store.start_conversation("ann", "helpful")
    assert store.conversation(cid, "ann")["labeler_id"] == "ann"
    a, b = cands()
    calls = [lambda: store.conversation(cid, "bob"),
             lambda: store.offer(cid, "bob", context_after("", "hi"), a, b, "ab"),
             lambda: store.finish(cid, "bob"),
             lambda: store.conversation("c-unknown", "ann")]
    for call in calls:
        with pytest.raises(StoreError, match="no conversation") as e:
            call()
        assert e.value.status == 404
    pending = store.offer(cid, "ann", context_after("", "hi"), a, b, "ab")
    with pytest.raises(StoreError, match="no conversation") as e:
        store.choose(cid, "bob", pending["id"], "a", 2)
    assert e.value.status == 404
    assert [c["id"] for c in store.conversations("ann")] == [cid]
    assert store.conversations("bob") == []
    assert store.count() == 0 and store.conversation(cid, "ann")["pending"]["id"] == pending["id"]
    with pytest.raises(StoreError, match="mode") as e:
        store.start_conversation("ann", "chat")
    assert e.value.status == 422


def test_offer_choose_and_transcript_growth(store):
    store.add_labeler("ann")
    cid = store.start_conversation("ann", "red-team", tag="round-1")
    transcript = ""
    for turn, (choice, edit) in enumerate([("b", None), ("a", " an edited answer"), ("a", None)]):
        context = context_after(transcript, f"message {turn}")
        a, b = cands(turn)
        pending = store.offer(cid, "ann", context, a, b, "ba" if turn % 2 else "ab")
        conv = store.conversation(cid, "ann")
        assert conv["pending"]["id"] == pending["id"] and conv["turns"] == turn
        assert conv["pending"]["context"] == context and conv["pending"]["turn"] == turn
        row, duplicate = store.choose(cid, "ann", pending["id"], choice, 3, edit)
        assert not duplicate
        picked = edit if edit is not None else (a.text if choice == "a" else b.text)
        assert response_after(choice, row) == picked
        transcript = context + picked
        conv = store.conversation(cid, "ann")
        assert conv["transcript"] == transcript and conv["turns"] == turn + 1 and conv["pending"] is None
        assert row["context"] == context and row["turn"] == turn and row["choice"] == choice
        assert row["response_a"] == a.text and row["response_b"] == b.text
        assert (row["model_a"], row["model_b"]) == ("model-1", "model-2")
        assert (row["seed_a"], row["seed_b"]) == (11 + turn, 22 + turn)
        assert row["settings_a"] == '{"k": 1, "temperature": 1.0}'
        assert row["edited"] == int(edit is not None) and row["edit"] == edit
        assert (row["mode"], row["labeler_id"], row["tag"], row["strength"]) == ("red-team", "ann", "round-1", 3)
        assert row["decided_at"] >= row["shown_at"] and row["seconds"] >= 0
    # the edit is what the next turn continues from
    assert " an edited answer" + HUMAN + " message 2" in transcript
    assert transcript.startswith(HUMAN + " message 0" + ASSISTANT + " answer b0x")
    assert store.count() == 3


def test_choose_twice_is_idempotent(store):
    store.add_labeler("ann")
    cid = store.start_conversation("ann", "helpful")
    pending = store.offer(cid, "ann", context_after("", "hi"), *cands(), "ab")
    first, dup1 = store.choose(cid, "ann", pending["id"], "a", 4)
    again, dup2 = store.choose(cid, "ann", pending["id"], "b", 1, " other")   # a different answer
    assert (dup1, dup2) == (False, True)
    assert again == first and again["choice"] == "a" and again["strength"] == 4
    assert store.count() == 1
    assert store.conversation(cid, "ann")["turns"] == 1
    # the answered pair is not another conversation's
    other = store.start_conversation("ann", "helpful")
    with pytest.raises(StoreError, match="another conversation") as e:
        store.choose(other, "ann", pending["id"], "a", 4)
    assert e.value.status == 409 and store.count() == 1


def test_stale_pending_and_one_pending_per_conversation(store):
    store.add_labeler("ann")
    cid = store.start_conversation("ann", "helpful")
    context = context_after("", "hi")
    pending = store.offer(cid, "ann", context, *cands(), "ab")
    # a second pair while one waits is refused, the first stays answerable
    with pytest.raises(StoreError, match="waiting for a choice") as e:
        store.offer(cid, "ann", context, *cands(1), "ba")
    assert e.value.status == 409
    assert store.conversation(cid, "ann")["pending"]["id"] == pending["id"]
    for stale in ("p-0000000000000000", ""):
        with pytest.raises(StoreError, match="not waiting for a choice") as e:
            store.choose(cid, "ann", stale, "a", 2)
        assert e.value.status == 409
    # a pair of another conversation of the same labeler
    other = store.start_conversation("ann", "helpful")
    with pytest.raises(StoreError, match="not waiting for a choice") as e:
        store.choose(other, "ann", pending["id"], "a", 2)
    assert e.value.status == 409
    for choice, strength in (("c", 2), ("a", 0), ("a", 5), ("a", "3")):
        with pytest.raises(StoreError) as e:
            store.choose(cid, "ann", pending["id"], choice, strength)
        assert e.value.status == 422
    with pytest.raises(StoreError, match="display_order"):
        store.offer(other, "ann", context, *cands(), "ba ")
    assert store.count() == 0 and store.conversation(other, "ann")["pending"] is None


def test_finish(store):
    store.add_labeler("ann")
    cid = store.start_conversation("ann", "helpful")
    pending = store.offer(cid, "ann", context_after("", "hi"), *cands(), "ab")
    store.finish(cid, "ann")
    conv = store.conversation(cid, "ann")
    assert conv["finished_at"] is not None and conv["pending"] is None
    assert raw(store, "SELECT COUNT(*) FROM pending") == [(0,)]
    with pytest.raises(StoreError, match="finished") as e:
        store.offer(cid, "ann", context_after("", "hi"), *cands(), "ab")
    assert e.value.status == 409
    with pytest.raises(StoreError, match="not waiting") as e:
        store.choose(cid, "ann", pending["id"], "a", 2)
    assert e.value.status == 409
    finished_at = conv["finished_at"]
    store.finish(cid, "ann")              # finishing twice keeps the first time
    assert store.conversation(cid, "ann")["finished_at"] == finished_at
    assert store.count() == 0


def test_count_and_comparisons_by_tag(store):
    store.add_labeler("ann")
    for tag, n in (("round-1", 2), ("round-2", 3), ("", 1)):
        cid = store.start_conversation("ann", "helpful", tag=tag)
        transcript = ""
        for turn in range(n):
            pending = store.offer(cid, "ann", context_after(transcript, f"m{turn}"), *cands(turn, tag), "ab")
            row, _ = store.choose(cid, "ann", pending["id"], "b", 2)
            transcript = row["context"] + row["response_b"]
    assert store.count() == 6
    assert (store.count("round-1"), store.count("round-2"), store.count(""), store.count("none")) == (2, 3, 1, 0)
    rows = store.comparisons("round-2")
    assert [r["tag"] for r in rows] == ["round-2"] * 3 and [r["turn"] for r in rows] == [0, 1, 2]
    assert [r["id"] for r in store.comparisons()] == sorted(r["id"] for r in store.comparisons())
    assert store.comparisons("none") == []


def test_wal_mode_and_schema(store, tmp_path):
    assert raw(store, "PRAGMA journal_mode") == [("wal",)]
    assert store.path == tmp_path / "comparisons.sqlite"
    assert Store(store.path).path == store.path                     # an explicit file path works too
    assert raw(store, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    raw_db = sqlite3.connect(str(store.path))
    raw_db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    raw_db.commit(), raw_db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path)


def test_concurrent_writers(store):
    threads, turns = 8, 50
    for i in range(threads):
        store.add_labeler(f"lab{i}")
    errors = []

    def labeler(i):
        try:
            name = f"lab{i}"
            for conv in range(5):                              # 5 conversations of 10 turns each
                cid = store.start_conversation(name, "helpful", tag=f"t{i % 2}")
                transcript = ""
                for turn in range(turns // 5):
                    a, b = cands(turn, f"-{i}")
                    pending = store.offer(cid, name, context_after(transcript, f"{i}.{conv}.{turn}"), a, b, "ab")
                    choice = "ab"[(i + turn) % 2]
                    row, duplicate = store.choose(cid, name, pending["id"], choice, 1 + turn % 4)
                    assert not duplicate
                    transcript = row["context"] + response_after(choice, row)
                assert store.conversation(cid, name)["transcript"] == transcript
        except Exception as e:        # noqa: BLE001 -- reported below, with the thread
            errors.append((i, repr(e)))

    workers = [threading.Thread(target=labeler, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert store.count() == threads * turns
    assert store.count("t0") == store.count("t1") == threads * turns // 2
    assert raw(store, "SELECT COUNT(DISTINCT pending_id), COUNT(DISTINCT conversation_id || ':' || turn) "
                      "FROM comparisons") == [(400, 400)]
    assert raw(store, "SELECT COUNT(*) FROM pending") == [(0,)]
    assert raw(store, "SELECT SUM(turns) FROM conversations") == [(400,)]
    assert store.check_integrity() == "ok"


def test_backup_while_a_labeler_writes_is_a_consistent_prefix(store, tmp_path):
    """Backups taken while comparisons are being written: each opens, passes integrity_check, and
    holds the first N comparisons exactly, with conversations and pending pairs of that moment."""
    store.add_labeler("ann")
    stop, errors, written = threading.Event(), [], [0]

    def writer():
        try:
            cid, transcript = store.start_conversation("ann", "helpful"), ""
            while not stop.is_set():
                n = written[0]
                pending = store.offer(cid, "ann", context_after(transcript, f"q{n}"), *cands(n), "ab")
                row, _ = store.choose(cid, "ann", pending["id"], "ab"[n % 2], 1 + n % 4)
                transcript = row["context"] + response_after(row["choice"], row)
                written[0] += 1
        except Exception as e:        # noqa: BLE001 -- reported below
            errors.append(repr(e))
    thread = threading.Thread(target=writer)
    thread.start()
    copies = []
    try:
        for i in range(4):
            target = written[0] + 15
            while written[0] < target and thread.is_alive():
                time.sleep(0.005)
            copies.append((tmp_path / f"backup-{i}.sqlite", store.backup(tmp_path / f"backup-{i}.sqlite")))
    finally:
        stop.set()
        thread.join()
    assert errors == []
    final = store.comparisons()
    counts = [count for _, count in copies]
    assert all(b > a for a, b in zip(counts, counts[1:])) and counts[0] >= 15, counts   # taken mid-write
    assert counts[-1] <= len(final)
    for path, count in copies:
        db = sqlite3.connect(str(path))
        db.row_factory = sqlite3.Row
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = [dict(r) for r in db.execute("SELECT * FROM comparisons ORDER BY id")]
            turns = db.execute("SELECT SUM(turns) FROM conversations").fetchone()[0]
        finally:
            db.close()
        assert len(rows) == count and rows == final[:count]          # a prefix, byte for byte
        assert turns == count                                        # the conversation matches it
    with pytest.raises(StoreError, match="exists"):
        store.backup(copies[0][0])
    assert not list(tmp_path.glob("*.partial"))
