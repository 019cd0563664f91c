"""hh.serve.app through its HTTP API, over the smoke models (pm_chain): tokens on every route,
labelers see only their own conversations, bad input is refused with a clear message and stores
nothing, choices are idempotent and survive a restart, screen sides map to stored choices, the
pool's pairing modes, and a slow sample does not block other labelers (a real uvicorn server)."""

import contextlib
import json
import random
import socket
import sqlite3
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

import configs.serve
from hh.config import ConfigError
from hh.serve import __main__ as serve_main
from hh.serve.app import Server, create_app, side_to_choice
from hh.serve.limits import Limits
from hh.serve.models import Pool, load_pool
from hh.serve.store import Store, response_after

UNAUTHORIZED = "valid labeler token"


@pytest.fixture(scope="module")
def pool(pm_chain):
    config = configs.serve.get_config("smoke")
    config.models_root = str(pm_chain["lm"].parent)
    return load_pool(serve_main.resolve_paths(config))


def make_env(store_dir, pool, seed=0, labelers=("ann", "bob")):
    store = Store(store_dir)
    tokens = {name: store.add_labeler(name) for name in labelers if name not in store.labelers()}
    # many wrong tokens on purpose here: the per-address back-off (tests/serve/test_serve_hardening.py) set aside
    server = Server(store, pool, tag="api-test", max_message_chars=configs.serve.get_config("smoke").max_message_chars,
                    seed=seed, limits=Limits(auth_failures=10_000))
    return SimpleNamespace(store=store, server=server, client=TestClient(create_app(server)),
                           auth={n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()})


@pytest.fixture(scope="module")
def env(pool, tmp_path_factory):
    return make_env(tmp_path_factory.mktemp("serve_api"), pool)


def start(env, who="ann", mode="helpful"):
    r = env.client.post("/api/conversations", json={"mode": mode}, headers=env.auth[who])
    assert r.status_code == 200, r.text
    return r.json()


def say(env, cid, text, who="ann"):
    r = env.client.post(f"/api/conversations/{cid}/messages", json={"text": text}, headers=env.auth[who])
    assert r.status_code == 200, r.text
    return r.json()


def choose(env, cid, pending_id, side="left", strength=2, who="ann", **extra):
    r = env.client.post(f"/api/conversations/{cid}/choice", headers=env.auth[who],
                        json={"pending_id": pending_id, "side": side, "strength": strength, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def snapshot(store):
    """Everything a refused request must leave as it was (a labeler's last use aside: a valid
    token's request records it)."""
    db = sqlite3.connect(str(store.path))
    try:
        out = {table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
               for table in ("conversations", "pending", "comparisons")}
        out["labelers"] = db.execute("SELECT id, token_sha256, created_at, revoked_at FROM labelers ORDER BY 1").fetchall()
        return out
    finally:
        db.close()


@pytest.fixture(scope="module")
def idle(env):
    """A conversation of ann's with one answered turn and no pending pair."""
    conv = start(env)
    view = say(env, conv["id"], "What is the capital of France?")
    choose(env, conv["id"], view["pending"]["pending_id"])
    return conv["id"]


@pytest.fixture(scope="module")
def waiting(env):
    """A conversation of ann's with a pending pair: (id, pending_id)."""
    conv = start(env)
    view = say(env, conv["id"], "Tell me a joke.")
    return conv["id"], view["pending"]["pending_id"]


def test_binds_localhost_by_default(pool, tmp_path, monkeypatch):
    assert configs.serve.get_config("smoke").host == configs.serve.get_config("tiny").host == "127.0.0.1"
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(serve_main, "load_pool", lambda config: pool)
    serve_main.serve(configs.serve.get_config("smoke"), str(tmp_path))
    serve_main.serve(configs.serve.get_config("smoke"), str(tmp_path), host="0.0.0.0", port=9001)
    assert [(c["host"], c["port"]) for c in calls] == [("127.0.0.1", 8000), ("0.0.0.0", 9001)]


def test_every_api_route_needs_a_valid_token(env, waiting):
    cid, pending_id = waiting
    token = env.auth["ann"]["Authorization"][len("Bearer "):]
    routes = [("GET", "/api/session", None), ("GET", "/api/conversations", None),
              ("POST", "/api/conversations", {"mode": "helpful"}), ("GET", f"/api/conversations/{cid}", None),
              ("POST", f"/api/conversations/{cid}/messages", {"text": "hello"}),
              ("POST", f"/api/conversations/{cid}/choice", {"pending_id": pending_id, "side": "left", "strength": 2}),
              ("POST", f"/api/conversations/{cid}/finish", None),
              ("POST", "/api/conversations", {"mode": "no such mode"})]     # 401 before the body is read
    bad_headers = [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer "},
                   {"Authorization": f"Basic {token}"}, {"Authorization": token},
                   {"Authorization": f"Bearer {token}x"}]
    before = snapshot(env.store)
    for method, path, body in routes:
        for headers in bad_headers:
            r = env.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401 and UNAUTHORIZED in r.json()["detail"], (method, path, headers, r.text)
        # the invite link's ?token= is for the page; the API reads only the header
        r = env.client.request(method, f"{path}?token={token}", json=body)
        assert r.status_code == 401, (method, path)
    assert snapshot(env.store) == before
    assert env.client.get("/api/session", headers=env.auth["ann"]).json()["labeler"] == "ann"


def test_labelers_see_and_continue_only_their_own(env, waiting):
    cid, pending_id = waiting
    before = snapshot(env.store)
    bob = env.auth["bob"]
    attempts = [env.client.get(f"/api/conversations/{cid}", headers=bob),
                env.client.post(f"/api/conversations/{cid}/messages", json={"text": "hi"}, headers=bob),
                env.client.post(f"/api/conversations/{cid}/choice", headers=bob,
                                json={"pending_id": pending_id, "side": "left", "strength": 2}),
                env.client.post(f"/api/conversations/{cid}/finish", headers=bob)]
    for r in attempts:
        assert r.status_code == 404 and "no conversation" in r.json()["detail"], r.text
    # another's conversation reads exactly like a conversation that does not exist
    unknown = env.client.get("/api/conversations/c-0000000000000000", headers=bob)
    assert unknown.status_code == 404
    assert unknown.json()["detail"].replace("c-0000000000000000", cid) == attempts[0].json()["detail"]
    assert snapshot(env.store) == before
    bobs = start(env, "bob")["id"]
    ann_list = [c["id"] for c in env.client.get("/api/conversations", headers=env.auth["ann"]).json()["conversations"]]
    bob_list = [c["id"] for c in env.client.get("/api/conversations", headers=bob).json()["conversations"]]
    assert cid in ann_list and bobs not in ann_list
    assert bob_list == [bobs]
    assert env.client.get(f"/api/conversations/{bobs}", headers=env.auth["ann"]).status_code == 404
    still = env.client.get(f"/api/conversations/{cid}", headers=env.auth["ann"]).json()
    assert still["pending"]["pending_id"] == pending_id


MESSAGE_CASES = {   # body -> (status, part of the message)
    "empty": ({"text": ""}, 422, "is empty"),
    "whitespace": ({"text": "  \n\t  "}, 422, "is empty"),
    "missing": ({}, 422, "must be a string"),
    "number": ({"text": 5}, 422, "must be a string"),
    "list": ({"text": ["hi"]}, 422, "must be a string"),
    "oversize": ({"text": "x" * 2001}, 413, "limit is 2000"),
    "human-marker": ({"text": "hi\n\nHuman: and then"}, 422, "turn marker"),
    "assistant-marker": ({"text": "hi\n\nAssistant: sure"}, 422, "turn marker"),
    "control-char": ({"text": "a\x00b"}, 422, "control characters"),
    "non-utf8": (b'{"text": "caf\xe9"}', 400, "not valid UTF-8"),
    "surrogate": (b'{"text": "\\ud800"}', 400, "surrogate"),
    "non-json": (b"text=hello", 400, "not JSON"),
    "json-array": (b'["hello"]', 400, "must be a JSON object"),
    "json-string": (b'"hello"', 400, "must be a JSON object"),
    "huge-body": (b'{"text": "' + b"x" * (64 << 10) + b'"}', 413, "byte limit"),
}
CHOICE_CASES = {   # fields over a valid choice -> (status, part of the message)
    "strength-0": ({"strength": 0}, 422, "'strength'"),
    "strength-5": ({"strength": 5}, 422, "'strength'"),
    "strength-str": ({"strength": "3"}, 422, "'strength'"),
    "strength-true": ({"strength": True}, 422, "'strength'"),
    "strength-float": ({"strength": 3.0}, 422, "'strength'"),
    "strength-missing": ({"strength": None}, 422, "'strength'"),
    "side-middle": ({"side": "middle"}, 422, "'side'"),
    "side-upper": ({"side": "LEFT"}, 422, "'side'"),
    "pending-number": ({"pending_id": 5}, 422, "'pending_id'"),
    "pending-long": ({"pending_id": "p" * 65}, 422, "'pending_id'"),
    "edit-empty": ({"edit": " "}, 422, "'edit' is empty"),
    "edit-marker": ({"edit": "ok\n\nHuman: more"}, 422, "turn marker"),
    "edit-number": ({"edit": 3}, 422, "'edit' must be a string"),
}


def post(env, path, body, who="ann"):
    if isinstance(body, bytes):
        return env.client.post(path, content=body, headers={**env.auth[who], "Content-Type": "application/json"})
    return env.client.post(path, json=body, headers=env.auth[who])


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_bad_message_is_refused_and_stores_nothing(env, idle, case):
    body, status, fragment = MESSAGE_CASES[case]
    before = snapshot(env.store)
    r = post(env, f"/api/conversations/{idle}/messages", body)
    assert r.status_code == status and fragment in r.json()["detail"], r.text
    assert snapshot(env.store) == before


@pytest.mark.parametrize("case", list(CHOICE_CASES))
def test_bad_choice_is_refused_and_stores_nothing(env, waiting, case):
    cid, pending_id = waiting
    fields, status, fragment = CHOICE_CASES[case]
    body = {"pending_id": pending_id, "side": "left", "strength": 2, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    before = snapshot(env.store)
    r = post(env, f"/api/conversations/{cid}/choice", body)
    assert r.status_code == status and fragment in r.json()["detail"], r.text
    assert snapshot(env.store) == before


def test_other_bad_requests_store_nothing(env, idle, waiting):
    cid, pending_id = waiting
    before = snapshot(env.store)
    cases = [(post(env, "/api/conversations", {"mode": "chat"}), 422, "'mode'"),
             (post(env, "/api/conversations", {"mode": 1}), 422, "'mode'"),
             (post(env, "/api/conversations", {}), 422, "'mode'"),
             (post(env, "/api/conversations", b"[1]"), 400, "JSON object"),
             (post(env, f"/api/conversations/{cid}/messages", {"text": "another"}), 409, "waiting for a choice"),
             (post(env, f"/api/conversations/{idle}/choice", {"pending_id": pending_id, "side": "left", "strength": 2}),
              409, "reload")]
    for path in ("/messages", "/choice", "/finish"):
        body = {"text": "hi"} if path == "/messages" else {"pending_id": pending_id, "side": "left", "strength": 2}
        cases.append((post(env, f"/api/conversations/c-unknown{path}", body), 404, "no conversation"))
    cases.append((env.client.get("/api/conversations/c-unknown", headers=env.auth["ann"]), 404, "no conversation"))
    for r, status, fragment in cases:
        assert r.status_code == status and fragment in r.json()["detail"], r.text
    assert snapshot(env.store) == before


def test_choice_twice_is_idempotent(env):
    cid = start(env)["id"]
    pending_id = say(env, cid, "Hello?")["pending"]["pending_id"]
    count = env.store.count()
    first = choose(env, cid, pending_id, "right", 3)
    again = choose(env, cid, pending_id, "right", 3)
    other = choose(env, cid, pending_id, "left", 1, edit="changed my mind")    # a different resubmission
    assert first["duplicate"] is False and again["duplicate"] is True and other["duplicate"] is True
    assert first["comparison_id"] == again["comparison_id"] == other["comparison_id"]
    assert env.store.count() == count + 1
    row = [r for r in env.store.comparisons() if r["id"] == first["comparison_id"]][0]
    assert (row["strength"], row["edited"], row["pending_id"]) == (3, 0, pending_id)
    assert first["conversation"] == again["conversation"] == other["conversation"]
    assert len(first["conversation"]["turns"]) == 1 and first["conversation"]["pending"] is None


def test_restart_keeps_pending_and_refuses_stale_pages(pool, tmp_path):
    before = make_env(tmp_path, pool)
    cid = start(before)["id"]
    page = say(before, cid, "Are you there?")
    done_cid = start(before)["id"]
    done_pending = say(before, done_cid, "One more?")["pending"]["pending_id"]
    # the restart: a new process state (server, app, store object) over the same database
    after = make_env(tmp_path, pool, seed=1)
    after.auth = before.auth
    assert after.client.get(f"/api/conversations/{cid}", headers=after.auth["ann"]).json() == page
    unknown = {"pending_id": "p-0123456789abcdef", "side": "left", "strength": 2}
    r = post(after, f"/api/conversations/{cid}/choice", unknown)
    assert r.status_code == 409 and "not waiting for a choice" in r.json()["detail"] and "reload" in r.json()["detail"]
    answer = choose(after, cid, page["pending"]["pending_id"], "left", 4)
    assert answer["duplicate"] is False and after.store.count() == 1
    assert answer["conversation"]["turns"][-1]["assistant"] == page["pending"]["responses"][0]["text"]
    # a page left open on a conversation that was finished elsewhere
    assert post(after, f"/api/conversations/{done_cid}/finish", {}).status_code == 200
    r = post(after, f"/api/conversations/{done_cid}/choice", {"pending_id": done_pending, "side": "right",
                                                               "strength": 2})
    assert r.status_code == 409 and "reload" in r.json()["detail"]
    r = post(after, f"/api/conversations/{done_cid}/messages", {"text": "still there?"})
    assert r.status_code == 409 and "finished" in r.json()["detail"]
    assert after.store.count() == 1


def test_side_to_choice():
    assert [side_to_choice(o, s) for o in ("ab", "ba") for s in ("left", "right")] == ["a", "b", "b", "a"]


def test_display_order_is_random_and_sides_map_to_choices(pool, tmp_path):
    env = make_env(tmp_path, pool, seed=0)
    seen = {}
    cid = start(env)["id"]
    for turn in range(16):
        if turn == 8:
            cid = start(env, mode="red-team")["id"]
        view = say(env, cid, f"message number {turn}")
        pending = env.store.conversation(cid)["pending"]
        order = pending["display_order"]
        left, right = (r["text"] for r in view["pending"]["responses"])
        a, b = pending["response_a"].strip(), pending["response_b"].strip()
        assert (left, right) == ((a, b) if order == "ab" else (b, a))
        side = "left" if seen.get((order, "left"), 0) <= seen.get((order, "right"), 0) else "right"
        seen[(order, side)] = seen.get((order, side), 0) + 1
        after = choose(env, cid, pending["id"], side, 1 + turn % 4)
        row = env.store.comparisons()[-1]
        assert row["pending_id"] == pending["id"] and row["display_order"] == order
        expected = {("ab", "left"): "a", ("ab", "right"): "b", ("ba", "left"): "b", ("ba", "right"): "a"}
        assert row["choice"] == expected[order, side]
        shown = left if side == "left" else right
        assert response_after(row["choice"], row).strip() == shown
        assert after["conversation"]["turns"][-1]["assistant"] == shown
    assert sorted(seen) == [("ab", "left"), ("ab", "right"), ("ba", "left"), ("ba", "right")], seen
    orders = [r["display_order"] for r in env.store.comparisons()]
    assert 4 <= orders.count("ab") <= 12, orders


@pytest.mark.parametrize("pairing,pair", [("same", ()), ("given", ("lm-bo2", "lm")), ("random", ())])
def test_pairing_modes_and_stored_provenance(pool, pm_chain, tmp_path, pairing, pair):
    env = make_env(tmp_path, Pool(list(pool.models.values()), pairing, pair, seed=0), seed=3)
    cid = start(env)["id"]
    for turn in range(4):
        view = say(env, cid, f"turn {turn}")
        choose(env, cid, view["pending"]["pending_id"], "left")
    rows = env.store.comparisons()
    assert len(rows) == 4
    for row in rows:
        models = (row["model_a"], row["model_b"])
        if pairing == "same":
            assert models == ("lm", "lm")
        elif pairing == "given":
            assert models == ("lm-bo2", "lm")
        else:
            assert sorted(models) == ["lm", "lm-bo2"]
        for side in "ab":
            settings = json.loads(row[f"settings_{side}"])
            assert settings["k"] == (2 if row[f"model_{side}"] == "lm-bo2" else 1)
            assert settings["workdir"] == str(pm_chain["lm"]) and isinstance(settings["step"], int)
            assert (settings["temperature"], settings["max_new_tokens"]) == (1.0, 16)
            assert isinstance(row[f"seed_{side}"], int)
            assert row[f"response_{side}"].startswith(" ")
        if pairing == "same":        # one model twice: two rows of one call
            assert row["seed_a"] == row["seed_b"]
            assert {json.loads(row["settings_a"])["row"], json.loads(row["settings_b"])["row"]} == {0, 1}
    assert len({r["seed_a"] for r in rows}) == 4            # every turn samples with a fresh key
    with pytest.raises(ConfigError, match="config.pair"):
        Pool(list(pool.models.values()), "given", ("lm", "nope"))
    with pytest.raises(ConfigError, match="config.pairing"):
        Pool(list(pool.models.values()), "best")


class SlowPool:
    """The pool, each sampling call `delay` seconds slower; `sampling` is set while one runs."""

    def __init__(self, pool, delay):
        self.pool, self.delay, self.models = pool, delay, pool.models
        self.sampling = threading.Event()

    def pick(self, rng):
        return self.pool.pick(rng)

    def candidates(self, *args):
        self.sampling.set()
        time.sleep(self.delay)
        out = self.pool.candidates(*args)
        self.sampling.clear()
        return out


@contextlib.contextmanager
def running(app):
    """A real uvicorn server on a free localhost port, in a thread (what a browser talks to)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_slow_sample_does_not_block_other_labelers(pool, tmp_path):
    slow = SlowPool(pool, 2.0)
    env = make_env(tmp_path, slow)
    ann = start(env)["id"]
    bobs = start(env, "bob")["id"]
    with running(create_app(env.server)) as url, httpx.Client(base_url=url, timeout=60) as a, \
            httpx.Client(base_url=url, timeout=60) as b:
        out = {}

        def send(name, cid, text):
            t = time.perf_counter()
            out[name] = (a.post(f"/api/conversations/{cid}/messages", json={"text": text}, headers=env.auth["ann"]),
                         time.perf_counter() - t)
        sender = threading.Thread(target=send, args=("slow", ann, "Take your time."))
        sender.start()
        assert slow.sampling.wait(30)
        waits = {}
        for path, method, body in (("/api/session", "GET", None), ("/api/conversations", "GET", None),
                                   (f"/api/conversations/{bobs}", "GET", None),
                                   ("/api/conversations", "POST", {"mode": "helpful"})):
            t = time.perf_counter()
            r = b.request(method, path, json=body, headers=env.auth["bob"])
            waits[method + " " + path] = time.perf_counter() - t
            assert r.status_code == 200, r.text
        still_sampling = slow.sampling.is_set()
        sender.join(60)
        r, seconds = out["slow"]
        assert r.status_code == 200 and r.json()["pending"] is not None and seconds >= 2.0
        assert still_sampling, "the slow sample ended before the other requests were timed"
        assert max(waits.values()) < 0.5, waits

        # two messages at once on one conversation (a double click): one pair, the other refused
        slow.delay = 0.5
        choose(env, ann, r.json()["pending"]["pending_id"])
        results = []

        def message(text):
            results.append(a.post(f"/api/conversations/{ann}/messages", json={"text": text}, headers=env.auth["ann"]))
        senders = [threading.Thread(target=message, args=(t,)) for t in ("first", "second")]
        for s in senders:
            s.start()
        for s in senders:
            s.join(60)
        assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
        ok = [r for r in results if r.status_code == 200][0]
        assert env.store.conversation(ann)["pending"]["id"] == ok.json()["pending"]["pending_id"]


def test_many_turns_keep_the_transcript_consistent(env):
    rng = random.Random(0)
    cid = start(env, mode="red-team")["id"]
    for turn in range(5):
        view = say(env, cid, f"question {turn}")
        edit = "an edited reply" if turn == 2 else None
        result = choose(env, cid, view["pending"]["pending_id"], rng.choice(["left", "right"]), 2,
                        **({"edit": edit} if edit else {}))
    conv = env.store.conversation(cid)
    rows = [r for r in env.store.comparisons() if r["conversation_id"] == cid]
    assert conv["turns"] == len(rows) == 5 and [r["turn"] for r in rows] == list(range(5))
    assert conv["transcript"] == rows[-1]["context"] + response_after(rows[-1]["choice"], rows[-1])
    assert rows[2]["edit"] == " an edited reply"
    assert rows[3]["context"].startswith(rows[2]["context"] + " an edited reply")
    assert [t["human"] for t in result["conversation"]["turns"]] == [f"question {i}" for i in range(5)]
    assert all(r["mode"] == "red-team" and r["tag"] == "api-test" for r in rows)
