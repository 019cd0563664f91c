"""The comparison server under load and a crash: 8 simulated labelers over HTTP, each submitting 50
comparisons against `python -m hh.serve` (smoke models), while the server is killed with SIGKILL
mid-run and restarted on the same port and workdir. Every acknowledged comparison must be stored
exactly once and every conversation must be whole; prints the throughput as one `LOAD:` line.
The same with one more labeler flooding slow sampling requests, against a fake 50 ms sampler
(config.fake_sampling_s): the other labelers' page loads must stay fast (p95 <= 100 ms)."""

import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from hh.serve.store import Store, response_after

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LABELERS, PER_LABELER = 8, 50
KILL_AFTER = 100                 # acknowledged comparisons (all labelers) before the SIGKILL
FAKE_SAMPLING_S = 0.05           # the flood test's sampler: each call sleeps this long
FLOOD_THREADS = 6                # the flooding labeler's concurrent senders ...
FLOOD_RETRY_S = 0.05             # ... each sending again this soon after a 429
PAGE_P95_S = 0.1                 # the other labelers' GET /api/session and /api/conversations
DEADLINE_S = 240                 # the whole run; the target is well under 90 s
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m hh.serve` on `port` over `workdir`; its output goes to `log`."""

    def __init__(self, models_root, workdir, port, log, extra=()):
        self.command = [sys.executable, "-m", "hh.serve", "--config", "configs/serve.py:smoke",
                        f"--config.models_root={models_root}", "--workdir", str(workdir), "--port", str(port),
                        *extra]
        self.url, self.log, self.proc = f"http://127.0.0.1:{port}", log, None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "JAX_PLATFORMS": "cpu"})

    def wait_ready(self, token, timeout=120.0) -> float:
        """Polls GET /api/session until it answers 200; -> the time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{Path(self.log).read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/session", headers={"Authorization": f"Bearer {token}"},
                             timeout=2).status_code == 200:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not answering after {timeout} s:\n{Path(self.log).read_text()[-3000:]}")

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class AckCounter:
    """Acknowledged comparisons counted across the labeler threads (each Labeler's `progress`);
    `enough` is set once `kill_after` have been acknowledged, the moment to SIGKILL the server."""

    def __init__(self, kill_after: int):
        self.kill_after, self.count = kill_after, 0
        self.lock, self.enough = threading.Lock(), threading.Event()

    def __call__(self):
        with self.lock:
            self.count += 1
            if self.count >= self.kill_after:
                self.enough.set()


class Labeler:
    """A simulated labeler: conversations of 1-4 turns, a random side and strength each turn, an
    occasional edit; retries through connection errors (the server restarting), re-reading the
    conversation to resume, and records every acknowledged choice (pending_id -> comparison_id).
    A message refused with 429 (too many in flight) is sent again after `retry_s`. With
    `time_pages`, each turn first loads the page's lists (GET /api/session, /api/conversations)
    and records how long each answer took."""

    def __init__(self, name, token, url, seed, progress, time_pages=False, retry_s=0.05):
        self.name, self.rng, self.progress = name, random.Random(seed), progress
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.acked, self.ack_times, self.page_seconds = {}, [], []
        self.time_pages, self.retry_s = time_pages, retry_s
        self.retries = self.lost_answers = self.resumed_pairs = self.throttled = 0
        self.error = None

    def load_page(self):
        """The page's reads, each timed; one cut off by the restart is not timed (nor retried)."""
        for path in ("/api/session", "/api/conversations"):
            t = time.perf_counter()
            r = self.request("GET", path, once=True)
            if r is not None:
                self.page_seconds.append(time.perf_counter() - t)
                self.expect(r)

    def request(self, method, path, body=None, once=False):
        """The HTTP answer; connection errors are retried (or, with `once`, -> None)."""
        while True:
            try:
                return self.http.request(method, path, json=body)
            except httpx.TransportError:
                self.retries += 1
                if once:
                    return None
                time.sleep(0.1)

    def expect(self, response, status=200):
        assert response.status_code == status, (self.name, response.request.url, response.status_code, response.text)
        return response.json()

    def message(self, cid, text) -> dict:
        """The conversation's pending pair after sending `text` (or the one that survived a crash)."""
        while True:
            r = self.request("POST", f"/api/conversations/{cid}/messages", {"text": text}, once=True)
            if r is not None and r.status_code == 200:
                view = r.json()
            elif r is not None and r.status_code == 429:
                self.throttled += 1
                time.sleep(self.retry_s)
                continue
            elif r is None or (r.status_code == 409 and "waiting for a choice" in r.text):
                # the answer was lost (or a retry met the pair it created): read where we are
                view = self.expect(self.request("GET", f"/api/conversations/{cid}"))
                self.resumed_pairs += view["pending"] is not None
            else:
                self.expect(r)
            if view["pending"] is not None:
                return view["pending"]

    def choose(self, cid, pending, edit=None):
        body = {"pending_id": pending["pending_id"], "side": self.rng.choice(["left", "right"]),
                "strength": self.rng.randint(1, 4), **({"edit": edit} if edit else {})}
        # a resubmission after a lost answer must be idempotent: the same body until it is answered
        answer = self.expect(self.request("POST", f"/api/conversations/{cid}/choice", body))
        if answer["duplicate"]:
            self.lost_answers += 1
        first = self.acked.setdefault(pending["pending_id"], answer["comparison_id"])
        assert first == answer["comparison_id"], (self.name, pending, first, answer)
        if not answer["duplicate"] or len(self.ack_times) < len(self.acked):
            self.ack_times.append(time.monotonic())
            self.progress()

    def run(self):
        try:
            cid, turns_left = None, 0
            while len(self.acked) < PER_LABELER:
                if turns_left == 0:
                    if cid is not None and self.rng.random() < 0.5:
                        self.expect(self.request("POST", f"/api/conversations/{cid}/finish"))
                    mode = self.rng.choice(["helpful", "red-team"])
                    cid = self.expect(self.request("POST", "/api/conversations", {"mode": mode}))["id"]
                    turns_left = self.rng.randint(1, 4)
                if self.time_pages:
                    self.load_page()
                pending = self.message(cid, f"{self.name} asks question {len(self.acked)}")
                edit = "an edited answer" if self.rng.random() < 0.1 else None
                self.choose(cid, pending, edit)
                turns_left -= 1
        except Exception as e:        # noqa: BLE001 -- reported by the test, with the labeler
            self.error = repr(e)


def check_store(path, labelers):
    """Every acknowledged comparison exactly once, no rows beyond them, every conversation whole
    (each labeler's count is what they were acknowledged)."""
    db = sqlite3.connect(str(path))
    db.row_factory = sqlite3.Row
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [dict(r) for r in db.execute("SELECT * FROM comparisons ORDER BY id")]
        conversations = {r["id"]: dict(r) for r in db.execute("SELECT * FROM conversations")}
        assert db.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0, "a pair was left unanswered"
    finally:
        db.close()
    assert len(rows) == sum(len(lab.acked) for lab in labelers)
    assert len({r["pending_id"] for r in rows}) == len(rows)
    assert len({(r["conversation_id"], r["turn"]) for r in rows}) == len(rows)
    stored = {r["pending_id"]: r["id"] for r in rows}
    acked = {p: c for lab in labelers for p, c in lab.acked.items()}
    assert stored == acked        # each acknowledged one exactly once (same id), nothing else
    for lab in labelers:
        assert sum(r["labeler_id"] == lab.name for r in rows) == len(lab.acked)
    for r in rows:
        assert all(v is not None for k, v in r.items() if k != "edit"), r
        assert (r["edit"] is not None) == bool(r["edited"]) and r["choice"] in ("a", "b")
        assert 1 <= r["strength"] <= 4 and r["display_order"] in ("ab", "ba")
        assert r["context"].endswith(ASSISTANT) and r["context"].startswith(HUMAN)
    by_conversation = {}
    for r in rows:
        by_conversation.setdefault(r["conversation_id"], []).append(r)
    for cid, conv in conversations.items():
        turns = sorted(by_conversation.get(cid, []), key=lambda r: r["turn"])
        assert conv["turns"] == len(turns) and [r["turn"] for r in turns] == list(range(len(turns)))
        transcript = ""
        for r in turns:
            assert r["labeler_id"] == conv["labeler_id"] and r["mode"] == conv["mode"]
            assert r["context"].startswith(transcript) and HUMAN in r["context"][len(transcript):]
            transcript = r["context"] + response_after(r["choice"], r)
        assert conv["transcript"] == transcript, cid
    return rows


def test_load_and_sigkill_restart(pm_chain, tmp_path):
    workdir = tmp_path / "serve"
    store = Store(workdir)
    tokens = {f"labeler{i}": store.add_labeler(f"labeler{i}") for i in range(LABELERS)}
    server = ServerProcess(pm_chain["lm"].parent, workdir, free_port(), tmp_path / "server.log")
    any_token = next(iter(tokens.values()))
    t_launch = time.monotonic()
    server.start()
    try:
        server.wait_ready(any_token)
        startup_s = time.monotonic() - t_launch
        acks = AckCounter(KILL_AFTER)
        labelers = [Labeler(name, token, server.url, seed, acks)
                    for seed, (name, token) in enumerate(tokens.items())]
        threads = [threading.Thread(target=lab.run, daemon=True) for lab in labelers]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        assert acks.enough.wait(DEADLINE_S), f"only {acks.count} comparisons acknowledged"
        first_pid = server.proc.pid
        t_kill = time.monotonic()
        server.kill()
        at_kill = acks.count
        server.start()
        t_ready = server.wait_ready(any_token)
        assert server.proc.pid != first_pid
        for t in threads:
            t.join(max(1.0, DEADLINE_S - (time.monotonic() - t0)))
        t_end = time.monotonic()
        assert not any(t.is_alive() for t in threads), f"labelers not done: {acks.count} acknowledged"
        assert [lab.error for lab in labelers] == [None] * LABELERS

        # after the restart, resubmitting an acknowledged choice is idempotent
        conversation_of = {r["pending_id"]: r["conversation_id"] for r in store.comparisons()}
        for lab in labelers:
            pending_id, comparison_id = next(iter(lab.acked.items()))
            cid = conversation_of[pending_id]
            again = lab.expect(lab.request("POST", f"/api/conversations/{cid}/choice",
                                           {"pending_id": pending_id, "side": "left", "strength": 2}))
            assert again["duplicate"] is True and again["comparison_id"] == comparison_id
    finally:
        server.stop()

    check_store(store.path, labelers)
    assert [len(lab.acked) for lab in labelers] == [PER_LABELER] * LABELERS
    after = [t for lab in labelers for t in lab.ack_times if t > t_kill]
    assert KILL_AFTER <= at_kill < LABELERS * PER_LABELER and after, (at_kill, len(after))
    total = LABELERS * PER_LABELER
    wall = t_end - t0
    recovery = min(after) - t_kill                 # kill -> first acknowledged comparison afterwards
    result = dict(comparisons=total, labelers=LABELERS, wall_s=round(wall, 2), startup_s=round(startup_s, 2),
                  restart_s=round(t_ready - t_kill, 2), recovery_s=round(recovery, 2),
                  per_s=round(total / wall, 2), per_s_excluding_restart=round(total / (wall - recovery), 2),
                  acknowledged_before_kill=at_kill, retries=sum(lab.retries for lab in labelers),
                  lost_answers_resubmitted=sum(lab.lost_answers for lab in labelers),
                  pending_pairs_resumed=sum(lab.resumed_pairs for lab in labelers))
    (tmp_path / "load.json").write_text(json.dumps(result, indent=1))
    print("\nLOAD: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)


def percentile(values, q):
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def flood(flooder, conversations, stop):
    """The flooding labeler: one sender per conversation, each sending a message (a slow sample) as
    soon as its last pair is answered, and again 50 ms after every 429, until `stop`."""
    def sender(cid):
        try:
            while not stop.is_set():
                flooder.choose(cid, flooder.message(cid, "flood"))
        except Exception as e:        # noqa: BLE001 -- reported by the test
            flooder.error = repr(e)
    threads = [threading.Thread(target=sender, args=(cid,), daemon=True) for cid in conversations]
    for t in threads:
        t.start()
    return threads


def test_flooding_labeler_does_not_slow_the_others_and_sigkill_loses_nothing(tmp_path):
    workdir = tmp_path / "serve"
    store = Store(workdir)
    tokens = {f"labeler{i}": store.add_labeler(f"labeler{i}") for i in range(LABELERS)}
    flood_token = store.add_labeler("flooder")
    flood_conversations = [store.start_conversation("flooder", "helpful") for _ in range(FLOOD_THREADS)]
    server = ServerProcess("", workdir, free_port(), tmp_path / "server.log",
                           extra=[f"--config.fake_sampling_s={FAKE_SAMPLING_S}"])
    any_token = next(iter(tokens.values()))
    server.start()
    stop = threading.Event()
    try:
        server.wait_ready(any_token)
        acks = AckCounter(KILL_AFTER)
        flooder = Labeler("flooder", flood_token, server.url, 99, lambda: None, retry_s=FLOOD_RETRY_S)
        labelers = [Labeler(name, token, server.url, seed, acks, time_pages=True)
                    for seed, (name, token) in enumerate(tokens.items())]
        flood_threads = flood(flooder, flood_conversations, stop)
        flood_deadline = time.monotonic() + 30
        while flooder.throttled == 0:           # the flood is on: the sampler is busy and queued
            assert flooder.error is None and time.monotonic() < flood_deadline, flooder.error
            time.sleep(0.01)
        threads = [threading.Thread(target=lab.run, daemon=True) for lab in labelers]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        assert acks.enough.wait(DEADLINE_S), f"only {acks.count} comparisons acknowledged"
        t_kill = time.monotonic()
        server.kill()
        at_kill = acks.count
        server.start()
        server.wait_ready(any_token)
        for t in threads:
            t.join(max(1.0, DEADLINE_S - (time.monotonic() - t0)))
        t_end = time.monotonic()
        stop.set()
        for t in flood_threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads + flood_threads), f"not done: {acks.count} acknowledged"
        assert [lab.error for lab in labelers + [flooder]] == [None] * (LABELERS + 1)
    finally:
        stop.set()
        server.stop()

    rows = check_store(store.path, labelers + [flooder])
    assert [len(lab.acked) for lab in labelers] == [PER_LABELER] * LABELERS
    pages = [s for lab in labelers for s in lab.page_seconds]
    p95 = percentile(pages, 95)
    wall = t_end - t0
    result = dict(p95_page_ms=round(1000 * p95, 1), p50_page_ms=round(1000 * percentile(pages, 50), 1),
                  max_page_ms=round(1000 * max(pages), 1), page_loads=len(pages),
                  comparisons=len(rows), labeler_comparisons=LABELERS * PER_LABELER,
                  flooder_comparisons=len(flooder.acked), flooder_429s=flooder.throttled,
                  labeler_429s=sum(lab.throttled for lab in labelers), wall_s=round(wall, 2),
                  per_s=round(len(rows) / wall, 2), acknowledged_before_kill=at_kill,
                  recovery_s=round(min(t for lab in labelers for t in lab.ack_times if t > t_kill) - t_kill, 2))
    print("\nLOAD: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    assert flooder.throttled > 0 and len(flooder.acked) > 0, result
    assert p95 <= PAGE_P95_S, result
