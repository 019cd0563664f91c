"""The comparison store: every labeler, conversation, pending pair and comparison, in SQLite.

SQLite in WAL mode is the embedded default (`<workdir>/comparisons.sqlite`): readers never block the
writer, and a process killed mid-write leaves the last committed state (a transaction is all or
nothing). The SQL is kept portable (TEXT / INTEGER / REAL columns, no JSON functions, no UPSERT), so
the module can be pointed at another database with a DB-API driver by changing `connect` alone.

One short-lived connection per call (sqlite3 connections must not cross threads), `BEGIN
IMMEDIATE` for writes, so concurrent writers queue on the busy timeout instead of failing.
`synchronous=FULL`: an acknowledged choice survives a machine crash, not only a process kill.

Schema version 2 adds each labeler's revoked_at and last_used_at; an older store is migrated when
it is opened (`MIGRATIONS`), so its labelers, tokens and rows keep working. `backup` copies the
database with SQLite's online backup API while labelers write.

A choice is recorded exactly once: the pending pair it answers is deleted in the same transaction
that inserts the comparison (and updates the conversation), and `comparisons.pending_id` is UNIQUE;
a repeated submission returns the stored row instead of a second one.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import secrets
import sqlite3
import time
import uuid

from etils import epath

from hh.io import atomic_path

DB_NAME = "comparisons.sqlite"
MODES = ("helpful", "red-team")
STRENGTHS = (1, 2, 3, 4)   # 1 = "slightly better" ... 4 = "much better"; 1 is dropped on export
SCHEMA_VERSION = 2
LAST_USE_RESOLUTION_S = 60.0   # a labeler's last use is written at most once a minute, not per request

# What a pending pair and a recorded comparison share: the pair as it was shown.
PAIR_COLUMNS = """
        turn INTEGER NOT NULL,
        context TEXT NOT NULL,
        response_a TEXT NOT NULL, response_b TEXT NOT NULL,
        model_a TEXT NOT NULL, model_b TEXT NOT NULL,
        settings_a TEXT NOT NULL, settings_b TEXT NOT NULL,
        seed_a INTEGER NOT NULL, seed_b INTEGER NOT NULL,
        display_order TEXT NOT NULL,"""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS labelers (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT UNIQUE NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL)""",
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        labeler_id TEXT NOT NULL REFERENCES labelers(id),
        mode TEXT NOT NULL,
        tag TEXT NOT NULL,
        transcript TEXT NOT NULL,
        turns INTEGER NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL)""",
    """CREATE TABLE IF NOT EXISTS pending (
        id TEXT PRIMARY KEY,
        conversation_id TEXT UNIQUE NOT NULL REFERENCES conversations(id),""" + PAIR_COLUMNS + """
        shown_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS comparisons (
        id INTEGER PRIMARY KEY,
        pending_id TEXT UNIQUE NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),""" + PAIR_COLUMNS + """
        choice TEXT NOT NULL,
        strength INTEGER NOT NULL,
        edited INTEGER NOT NULL,
        edit TEXT,
        mode TEXT NOT NULL,
        labeler_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        shown_at REAL NOT NULL,
        decided_at REAL NOT NULL,
        seconds REAL NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS comparisons_by_tag ON comparisons (tag)""",
    """CREATE INDEX IF NOT EXISTS conversations_by_labeler ON conversations (labeler_id)""",
)

# version -> the statements that bring a store of that version to the next one
MIGRATIONS = {
    1: ("ALTER TABLE labelers ADD COLUMN revoked_at REAL",
        "ALTER TABLE labelers ADD COLUMN last_used_at REAL"),
}


class StoreError(ValueError):
    """A request the store refuses; `status` is the HTTP status the server answers with, and
    `retry_after` (seconds) goes with a 429."""

    def __init__(self, message, status=400, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One model response offered for comparison, with what produced it."""
    text: str
    model: str
    settings: dict
    seed: int


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def response_after(choice: str, row) -> str:
    """The text the conversation continues from: the edit if there is one, else the picked one."""
    if row["edited"]:
        return row["edit"]
    return row["response_a"] if choice == "a" else row["response_b"]


class Store:
    """The comparison database of one workdir (or an explicit path)."""

    def __init__(self, path):
        self.path = epath.Path(path)
        if self.path.is_dir() or not self.path.suffix:
            self.path = self.path / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
        with self.transaction() as db:     # one writer at a time: a server and an admin may both open it
            db.execute(SCHEMA[0])
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = SCHEMA_VERSION if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version}, this hh reads {SCHEMA_VERSION}")
            for old in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[old]:
                    db.execute(statement)
            for statement in SCHEMA[1:]:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def connect(self):
        db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction: committed on leaving, rolled back on an exception."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- labelers -------------------------------------------------------------------------------

    def add_labeler(self, labeler_id: str) -> str:
        """Registers a labeler; -> their personal token (only its hash is stored)."""
        if not labeler_id or len(labeler_id) > 64 or not all(c.isalnum() or c in "-_." for c in labeler_id):
            raise StoreError(f"labeler id {labeler_id!r}: use 1-64 letters, digits, '-', '_' or '.'")
        token = secrets.token_urlsafe(24)
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO labelers (id, token_sha256, created_at) VALUES (?, ?, ?)",
                           (labeler_id, token_digest(token), time.time()))
        except sqlite3.IntegrityError:
            raise StoreError(f"labeler {labeler_id!r} already exists", 409) from None
        return token

    def labeler_for_token(self, token: str):
        """The labeler id an active (not revoked) token belongs to, or None; read from the database
        on every call, so a revocation holds at once. Records the labeler's last use."""
        if not token:
            return None
        with self.connect() as db:
            row = db.execute("SELECT id, last_used_at FROM labelers WHERE token_sha256=? AND revoked_at IS NULL",
                             (token_digest(token),)).fetchone()
        if row is None:
            return None
        now = time.time()
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USE_RESOLUTION_S:
            with self.transaction() as db:
                db.execute("UPDATE labelers SET last_used_at=? WHERE id=?", (now, row["id"]))
        return row["id"]

    def labelers(self) -> list[str]:
        with self.connect() as db:
            return [r["id"] for r in db.execute("SELECT id FROM labelers ORDER BY created_at")]

    def labeler_rows(self) -> list[dict]:
        """Every labeler: id, created_at, revoked_at and last_used_at (None: never / not revoked)."""
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT id, created_at, revoked_at, last_used_at FROM labelers "
                                                "ORDER BY created_at")]

    def revoke(self, labeler_id: str) -> None:
        """Invalidates the labeler's token at once; their conversations and comparisons stay."""
        with self.transaction() as db:
            if db.execute("UPDATE labelers SET revoked_at=COALESCE(revoked_at, ?) WHERE id=?",
                          (time.time(), labeler_id)).rowcount == 0:
                raise StoreError(f"no labeler {labeler_id!r}", 404)

    def rotate(self, labeler_id: str) -> str:
        """A new token for the same labeler (the old one stops working; a revoked labeler is active
        again); -> the new token. Their data stays theirs: it is keyed by the id, not the token."""
        token = secrets.token_urlsafe(24)
        with self.transaction() as db:
            if db.execute("UPDATE labelers SET token_sha256=?, revoked_at=NULL WHERE id=?",
                          (token_digest(token), labeler_id)).rowcount == 0:
                raise StoreError(f"no labeler {labeler_id!r}", 404)
        return token

    # --- conversations --------------------------------------------------------------------------

    def start_conversation(self, labeler_id: str, mode: str, tag: str = "", per_hour: int | None = None) -> str:
        """A new conversation; with `per_hour`, refused (429) when the labeler started that many in
        the last hour (counted in the same transaction, so concurrent starts cannot overshoot)."""
        if mode not in MODES:
            raise StoreError(f"mode {mode!r}: use one of {list(MODES)}", 422)
        conversation_id = new_id("c")
        with self.transaction() as db:
            if per_hour is not None:
                now = time.time()
                count, oldest = db.execute("SELECT COUNT(*), MIN(created_at) FROM conversations WHERE labeler_id=? "
                                           "AND created_at > ?", (labeler_id, now - 3600)).fetchone()
                if count >= per_hour:
                    wait = max(1, math.ceil(oldest + 3600 - now))
                    raise StoreError(f"the limit is {per_hour} conversations per hour "
                                     f"(config.conversations_per_hour); the next can start in {wait} s", 429, wait)
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, '', 0, ?, NULL)",
                       (conversation_id, labeler_id, mode, tag, time.time()))
        return conversation_id

    def conversation(self, conversation_id: str, labeler_id: str | None = None) -> dict:
        """The conversation (transcript, turns, mode, finished) and its pending pair, if any. With
        `labeler_id`, only that labeler's own: another's is reported as unknown (no existence leak)."""
        with self.connect() as db:
            db.execute("BEGIN")     # one snapshot: a choice committed between the two reads is seen whole
            row = db.execute("SELECT * FROM conversations WHERE id=?", (conversation_id,)).fetchone()
            if row is None or (labeler_id is not None and row["labeler_id"] != labeler_id):
                raise StoreError(f"no conversation {conversation_id!r} for this labeler", 404)
            pending = db.execute("SELECT * FROM pending WHERE conversation_id=?", (conversation_id,)).fetchone()
        out = dict(row)
        out["pending"] = dict(pending) if pending else None
        return out

    def conversations(self, labeler_id: str) -> list[dict]:
        with self.connect() as db:
            rows = db.execute("SELECT id, mode, turns, created_at, finished_at FROM conversations "
                              "WHERE labeler_id=? ORDER BY created_at", (labeler_id,)).fetchall()
        return [dict(r) for r in rows]

    def finish(self, conversation_id: str, labeler_id: str) -> None:
        self.conversation(conversation_id, labeler_id)
        with self.transaction() as db:
            db.execute("UPDATE conversations SET finished_at=? WHERE id=? AND finished_at IS NULL",
                       (time.time(), conversation_id))
            db.execute("DELETE FROM pending WHERE conversation_id=?", (conversation_id,))

    # --- pairs and choices ----------------------------------------------------------------------

    def offer(self, conversation_id: str, labeler_id: str, context: str, a: Candidate, b: Candidate,
              display_order: str) -> dict:
        """Records the pair shown for the next turn (server state: the client never sends texts
        back). `context` ends with the "\\n\\nAssistant:" marker. A conversation has at most one
        pending pair: offering another before the first is answered is refused (409), so a
        concurrent second message cannot silently replace a pair already on a labeler's screen.
        -> the pending row."""
        if display_order not in ("ab", "ba"):
            raise StoreError(f"display_order {display_order!r}: 'ab' or 'ba'")
        conv = self.conversation(conversation_id, labeler_id)
        if conv["finished_at"] is not None:
            raise StoreError(f"conversation {conversation_id} is finished", 409)
        row = dict(id=new_id("p"), conversation_id=conversation_id, turn=conv["turns"], context=context,
                   response_a=a.text, response_b=b.text, model_a=a.model, model_b=b.model,
                   settings_a=json.dumps(a.settings, sort_keys=True),
                   settings_b=json.dumps(b.settings, sort_keys=True), seed_a=int(a.seed),
                   seed_b=int(b.seed), display_order=display_order, shown_at=time.time())
        with self.transaction() as db:
            now = db.execute("SELECT turns, finished_at FROM conversations WHERE id=?", (conversation_id,)).fetchone()
            if now["turns"] != conv["turns"] or now["finished_at"] is not None:
                raise StoreError("the conversation moved on while the responses were sampled; reload it", 409)
            if db.execute("SELECT 1 FROM pending WHERE conversation_id=?", (conversation_id,)).fetchone():
                raise StoreError("this conversation is waiting for a choice between two responses", 409)
            db.execute(f"INSERT INTO pending ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
        return row

    def choose(self, conversation_id: str, labeler_id: str, pending_id: str, choice: str, strength: int,
               edit: str | None = None, decided_at: float | None = None) -> tuple[dict, bool]:
        """Records the labeler's choice of the pending pair `pending_id`: choice "a" or "b" (the
        stored responses, not the screen sides), strength 1-4, an optional edit of the picked
        response that the conversation continues from. -> (comparison row, duplicate): a repeated
        submission of the same pending id returns the row stored the first time."""
        if choice not in ("a", "b"):
            raise StoreError(f"choice {choice!r}: 'a' or 'b'", 422)
        if strength not in STRENGTHS:
            raise StoreError(f"strength {strength!r}: one of {list(STRENGTHS)}", 422)
        decided_at = time.time() if decided_at is None else decided_at
        with self.transaction() as db:
            conv = db.execute("SELECT * FROM conversations WHERE id=?", (conversation_id,)).fetchone()
            if conv is None or conv["labeler_id"] != labeler_id:
                raise StoreError(f"no conversation {conversation_id!r} for this labeler", 404)
            done = db.execute("SELECT * FROM comparisons WHERE pending_id=?", (pending_id,)).fetchone()
            if done is not None:
                if done["conversation_id"] != conversation_id:
                    raise StoreError(f"pair {pending_id} belongs to another conversation", 409)
                return dict(done), True
            pending = db.execute("SELECT * FROM pending WHERE id=?", (pending_id,)).fetchone()
            if pending is None or pending["conversation_id"] != conversation_id:
                raise StoreError(f"pair {pending_id!r} is not waiting for a choice (it was replaced or "
                                 f"the conversation was finished): reload the conversation", 409)
            row = {k: pending[k] for k in pending.keys() if k not in ("id",)}
            row.update(pending_id=pending_id, choice=choice, strength=int(strength),
                       edited=int(edit is not None), edit=edit, mode=conv["mode"], labeler_id=labeler_id,
                       tag=conv["tag"], decided_at=decided_at,
                       seconds=max(0.0, decided_at - pending["shown_at"]))
            db.execute(f"INSERT INTO comparisons ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
            db.execute("DELETE FROM pending WHERE id=?", (pending_id,))
            transcript = row["context"] + response_after(choice, row)
            db.execute("UPDATE conversations SET transcript=?, turns=turns+1 WHERE id=?",
                       (transcript, conversation_id))
            stored = db.execute("SELECT * FROM comparisons WHERE pending_id=?", (pending_id,)).fetchone()
        return dict(stored), False

    # --- reading --------------------------------------------------------------------------------

    def comparisons(self, tag: str | None = None) -> list[dict]:
        """Every stored comparison (of one tag), in the order they were recorded."""
        query, args = "SELECT * FROM comparisons", ()
        if tag is not None:
            query, args = query + " WHERE tag=?", (tag,)
        with self.connect() as db:
            return [dict(r) for r in db.execute(query + " ORDER BY id", args)]

    def count(self, tag: str | None = None) -> int:
        query, args = "SELECT COUNT(*) FROM comparisons", ()
        if tag is not None:
            query, args = query + " WHERE tag=?", (tag,)
        with self.connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def counts_by_labeler(self) -> dict[str, int]:
        with self.connect() as db:
            return {r[0]: r[1] for r in db.execute("SELECT labeler_id, COUNT(*) FROM comparisons GROUP BY labeler_id")}

    def backup(self, out) -> int:
        """A consistent copy of the database at `out` (SQLite's online backup API: one snapshot,
        taken while labelers keep writing), written beside it and renamed, so `out` is never half a
        copy; an existing `out` is refused. -> the number of comparisons in the copy."""
        out = os.fspath(out)
        if os.path.exists(out):
            raise StoreError(f"{out} exists: choose a new file for the backup", 409)
        with self.connect() as db, atomic_path(out) as partial:
            copy = sqlite3.connect(os.fspath(partial))
            try:
                db.backup(copy)     # pages=-1: all in one step, one read snapshot (WAL: writers go on)
                count = copy.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]
            finally:
                copy.close()
        return int(count)

    def check_integrity(self) -> str:
        with self.connect() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]
