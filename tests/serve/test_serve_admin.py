"""hh.serve.admin: revoking and rotating a labeler's token (effective at once on a running server,
same labeler and data after a rotation), the list with status and last use, the command line, and
a version-1 store migrated on open. No models: a fake pool."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hh.serve import admin
from hh.serve.app import Server, create_app
from hh.serve.models import FakePool
from hh.serve.store import (
    SCHEMA,
    SCHEMA_VERSION,
    Candidate,
    Store,
    StoreError,
    token_digest,
)

REPO = Path(__file__).resolve().parents[2]
URL = "http://labels.example:8000"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def token_of(link):
    assert link.startswith(URL + "/?token="), link
    return link.split("?token=", 1)[1]


def test_revoke_and_rotate_hold_at_once_on_a_running_server(tmp_path, capsys):
    store = Store(tmp_path)
    ann, bob = store.add_labeler("ann"), store.add_labeler("bob")
    client = TestClient(create_app(Server(store, FakePool(0.0))))
    cid = client.post("/api/conversations", json={"mode": "helpful"}, headers=bearer(ann)).json()["id"]
    pending = client.post(f"/api/conversations/{cid}/messages", json={"text": "hi"}, headers=bearer(ann)).json()

    # another process's view of the store (the admin command), the server left running
    assert admin.run(Store(tmp_path), ["revoke", "ann"], URL) == 0
    assert "ann: revoked" in capsys.readouterr().out
    r = client.get("/api/session", headers=bearer(ann))
    assert r.status_code == 401 and "invite link" in r.json()["detail"]
    assert client.get(f"/api/conversations/{cid}", headers=bearer(ann)).status_code == 401
    assert client.get("/api/session", headers=bearer(bob)).status_code == 200

    links = []
    assert admin.run(Store(tmp_path), ["rotate", "ann"], URL, out=links.append) == 0
    new = token_of(links[0])
    assert new not in (ann, bob)
    assert client.get("/api/session", headers=bearer(new)).json()["labeler"] == "ann"
    # the same labeler: her conversation and its pending pair are hers under the new link
    mine = client.get("/api/conversations", headers=bearer(new)).json()["conversations"]
    assert [c["id"] for c in mine] == [cid]
    answer = client.post(f"/api/conversations/{cid}/choice", headers=bearer(new),
                         json={"pending_id": pending["pending"]["pending_id"], "side": "left", "strength": 3})
    assert answer.status_code == 200 and store.comparisons()[0]["labeler_id"] == "ann"
    assert client.get("/api/session", headers=bearer(ann)).status_code == 401      # the old link stays dead

    # rotating an active labeler's link kills the one before it, too
    links.clear()
    admin.run(store, ["rotate", "bob"], URL, out=links.append)
    assert client.get("/api/session", headers=bearer(bob)).status_code == 401
    assert client.get("/api/session", headers=bearer(token_of(links[0]))).json()["labeler"] == "bob"


def test_list_shows_status_last_use_and_counts(tmp_path):
    store = Store(tmp_path)
    ann = store.add_labeler("ann")
    store.add_labeler("bob")
    store.add_labeler("cat")
    assert store.labeler_for_token(ann) == "ann"          # a use
    cid = store.start_conversation("ann", "helpful")
    pending = store.offer(cid, "ann", "\n\nHuman: hi\n\nAssistant:", Candidate(" a", "m", {}, 1),
                          Candidate(" b", "m", {}, 2), "ab")
    store.choose(cid, "ann", pending["id"], "a", 2)
    store.revoke("bob")
    lines = []
    assert admin.run(store, ["list"], URL, out=lines.append) == 0
    rows = dict(line.split("\t", 1) for line in lines)
    assert list(rows) == ["ann", "bob", "cat"]
    assert rows["ann"].startswith("active\tlast used 20") and rows["ann"].endswith("\t1 comparisons")
    assert rows["bob"].startswith("revoked 20") and "last used never\t0 comparisons" in rows["bob"]
    assert rows["cat"] == "active\tlast used never\t0 comparisons"
    # last use is recorded at most once a minute (not a write per request)
    first = {r["id"]: r["last_used_at"] for r in store.labeler_rows()}["ann"]
    store.labeler_for_token(ann)
    assert {r["id"]: r["last_used_at"] for r in store.labeler_rows()}["ann"] == first


def test_unknown_labeler_and_bad_usage(tmp_path, capsys):
    store = Store(tmp_path)
    assert admin.run(store, ["revoke", "zed"], URL) == 1
    assert admin.run(store, ["rotate", "zed"], URL) == 1
    assert capsys.readouterr().err.count("no labeler 'zed'") == 2
    assert admin.run(store, ["delete", "zed"], URL) == 2
    assert "rotate NAME | revoke NAME" in capsys.readouterr().err
    store.add_labeler("ann")
    assert admin.run(store, ["add", "ann"], URL) == 1


def test_command_line(tmp_path):
    def admin_cli(*args):
        return subprocess.run([sys.executable, "-m", "hh.serve.admin", "--workdir", str(tmp_path), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    link = admin_cli("--url", URL, "add", "ann")
    assert link.returncode == 0, link.stderr
    revoked = admin_cli("revoke", "ann")
    assert revoked.returncode == 0 and Store(tmp_path).labeler_for_token(token_of(link.stdout.strip())) is None
    listed = admin_cli("list")
    assert listed.returncode == 0 and listed.stdout.startswith("ann\trevoked "), listed
    backup = admin_cli("backup", str(tmp_path / "copy.sqlite"))
    assert backup.returncode == 0 and "0 comparisons" in backup.stdout, backup.stderr
    assert Store(tmp_path / "copy.sqlite").labelers() == ["ann"]


V1_LABELERS = """CREATE TABLE IF NOT EXISTS labelers (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT UNIQUE NOT NULL,
        created_at REAL NOT NULL)"""


def version_1_store(path):
    """A store as the first schema wrote it: labelers without revoked_at / last_used_at."""
    db = sqlite3.connect(str(path))
    for statement in SCHEMA:
        db.execute(V1_LABELERS if "TABLE IF NOT EXISTS labelers" in statement else statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO labelers VALUES ('ann', ?, 1.0)", (token_digest("old-token"),))
    db.execute("INSERT INTO conversations VALUES ('c-1', 'ann', 'helpful', '', '', 0, 2.0, NULL)")
    db.commit()
    db.close()


def test_a_version_1_store_is_migrated_on_open(tmp_path):
    path = tmp_path / "comparisons.sqlite"
    version_1_store(path)
    store = Store(tmp_path)
    assert store.labeler_for_token("old-token") == "ann"         # the old invite link still works
    assert [c["id"] for c in store.conversations("ann")] == ["c-1"]
    store.revoke("ann")
    assert store.labeler_for_token("old-token") is None
    db = sqlite3.connect(str(path))
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert {"revoked_at", "last_used_at"} <= {r[1] for r in db.execute("PRAGMA table_info(labelers)")}
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):       # a newer store is refused, not misread
        Store(tmp_path)
