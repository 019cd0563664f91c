"""hh.serve against hostile and heavy use, without models (a fake pool): the body cap while
streaming, huge numbers and deep nesting, the per-labeler limits (sampling in flight, conversations
per hour), the failed-token back-off per address, and sampling on its own worker thread."""

import asyncio
import itertools
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from hh.serve import requests
from hh.serve.app import Server, create_app
from hh.serve.store import Candidate, Store, StoreError


class BlockingPool:
    """Answers every turn with two canned responses once `release` is set; records the threads
    that sampled and how many calls are waiting."""

    models = {"fake": None}

    def __init__(self, blocked=False):
        self.release, self.entered, self.threads = threading.Event(), threading.Semaphore(0), []
        if not blocked:
            self.release.set()

    def pick(self, rng):
        return "fake", "fake"

    def candidates(self, contexts, pairs, seed):
        self.threads.append(threading.current_thread().name)
        self.entered.release()
        assert self.release.wait(30)
        return [(Candidate(" yes", "fake", {}, seed), Candidate(" no", "fake", {}, seed)) for _ in contexts]


def make(tmp_path, pool=None, **server_args):
    store = Store(tmp_path)
    tokens = {name: store.add_labeler(name) for name in ("ann", "bob")}
    server = Server(store, pool or BlockingPool(), **server_args)
    return store, server, create_app(server), {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}


# --- the body cap -----------------------------------------------------------------------------

def streamed_request(chunks, content_length=None):
    """A starlette Request whose body arrives as `chunks` (no Content-Length unless given);
    -> (request, [bytes pulled so far])."""
    pulled = [0]

    async def receive():
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), pulled


def test_chunked_body_is_cut_off_at_the_limit_while_streaming():
    mib = b"x" * (1 << 20)
    request, pulled = streamed_request(itertools.repeat(mib, 200))        # 200 MiB, no Content-Length
    with pytest.raises(StoreError, match="byte limit") as e:
        asyncio.run(requests.json_body(request))
    assert e.value.status == 413
    assert pulled[0] <= requests.MAX_BODY_BYTES + len(mib), pulled      # stopped at the first chunk over


def test_declared_oversize_body_is_refused_before_reading():
    request, pulled = streamed_request(iter([b"x" * 1024] * 10), content_length=200_000_000)
    with pytest.raises(StoreError, match="200000000 bytes") as e:
        asyncio.run(requests.json_body(request))
    assert e.value.status == 413 and pulled[0] == 0


def test_body_in_small_chunks_reads_whole():
    request, _ = streamed_request(iter([b'{"mo', b'de": "hel', b'pful"}']), content_length=18)
    assert asyncio.run(requests.json_body(request)) == {"mode": "helpful"}


# --- numbers and nesting ------------------------------------------------------------------------

HOSTILE_BODIES = {   # body -> part of the 400 message
    "5000-digit int": (b'{"mode": ' + b"9" * 5000 + b"}", "digits"),
    "5000-digit negative int": (b'{"strength": -' + b"1" * 5000 + b"}", "digits"),
    "20000-deep list": (b"[" * 20000 + b"]" * 20000, "nested"),
    "10000-deep object": (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested"),   # 60 KB: under the cap
    "deep, unclosed": (b"[" * 20000, "nested"),
    "65-deep": (b'{"mode": ' + b"[" * 64 + b"]" * 64 + b"}", "nested"),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_huge_numbers_and_deep_nesting_are_400_not_500(tmp_path, case):
    _, _, app, auth = make(tmp_path)
    body, fragment = HOSTILE_BODIES[case]
    client = TestClient(app, raise_server_exceptions=False)
    for path in ("/api/conversations", "/api/conversations/c-unknown/messages",
                 "/api/conversations/c-unknown/choice"):
        r = client.post(path, content=body, headers={**auth["ann"], "Content-Type": "application/json"})
        assert r.status_code == 400 and fragment in r.json()["detail"], (path, r.status_code, r.text[:300])


def test_brackets_inside_strings_and_moderate_depth_are_fine(tmp_path):
    _, _, app, auth = make(tmp_path)
    client = TestClient(app)
    body = b'{"mode": "helpful", "note": "' + b"[{" * 5000 + b'\\"]", "x": ' + b"[" * 30 + b"]" * 30 + b"}"
    r = client.post("/api/conversations", content=body, headers={**auth["ann"], "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


# --- per-labeler limits -------------------------------------------------------------------------

async def concurrent_messages(app, server, pool, auth):
    """Three of ann's messages at once while sampling is held, then one of bob's."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        async def start(who):
            return (await client.post("/api/conversations", json={"mode": "helpful"}, headers=auth[who])).json()["id"]

        async def say(who, cid):
            return await client.post(f"/api/conversations/{cid}/messages", json={"text": "hi"}, headers=auth[who])
        anns = [await start("ann") for _ in range(3)]
        bobs = await start("bob")
        first = [asyncio.create_task(say("ann", cid)) for cid in anns[:2]]
        await asyncio.to_thread(pool.entered.acquire, timeout=10)      # one samples ...
        for _ in range(1000):                                           # ... and one waits its turn
            if server.sampling.count["ann"] == 2:
                break
            await asyncio.sleep(0.01)
        third = await say("ann", anns[2])
        session = await client.get("/api/session", headers=auth["ann"])     # reading is not limited
        bob = asyncio.create_task(say("bob", bobs))
        await asyncio.sleep(0.2)
        pool.release.set()
        return [await t for t in first], third, session, await bob


def test_sampling_in_flight_per_labeler_is_capped_and_runs_on_the_sampler_thread(tmp_path):
    from hh.serve.limits import Limits

    pool = BlockingPool(blocked=True)
    store, server, app, auth = make(tmp_path, pool, limits=Limits(max_sampling_per_labeler=2))
    first, third, session, bob = asyncio.run(concurrent_messages(app, server, pool, auth))
    assert [r.status_code for r in first] == [200, 200], [r.text for r in first]
    assert third.status_code == 429 and "2 messages" in third.json()["detail"], third.text
    assert session.status_code == 200 and bob.status_code == 200, (session.text, bob.text)
    # no request-pool thread ever waits for the models: sampling has its own worker
    assert len(pool.threads) == 3 and all(name.startswith("hh-sampler") for name in pool.threads), pool.threads
    # the cap is released when the answers leave
    cid = next(c["id"] for c in store.conversations("ann") if store.conversation(c["id"])["pending"] is None)
    client = TestClient(app)
    assert client.post(f"/api/conversations/{cid}/messages", json={"text": "again"},
                       headers=auth["ann"]).status_code == 200


def test_conversations_per_hour_per_labeler(tmp_path):
    from hh.serve.limits import Limits

    store, _, app, auth = make(tmp_path, limits=Limits(conversations_per_hour=3))
    client = TestClient(app)
    codes = [client.post("/api/conversations", json={"mode": "helpful"}, headers=auth["ann"]).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.post("/api/conversations", json={"mode": "helpful"}, headers=auth["ann"])
    assert r.status_code == 429 and "3 conversations per hour" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) > 0
    assert client.post("/api/conversations", json={"mode": "red-team"}, headers=auth["bob"]).status_code == 200
    assert len(store.conversations("ann")) == 3


def test_failed_tokens_back_off_per_address(tmp_path):
    from hh.serve.limits import Limits

    _, server, app, auth = make(tmp_path, limits=Limits(auth_failures=5, auth_failure_window_s=60))
    now = [1000.0]
    server.failed_auth.clock = lambda: now[0]
    attacker = TestClient(app, client=("10.0.0.1", 4000))
    colleague = TestClient(app, client=("10.0.0.2", 4000))
    wrong = {"Authorization": "Bearer guess"}
    assert [attacker.get("/api/session", headers=wrong).status_code for _ in range(5)] == [401] * 5
    for headers in (wrong, auth["ann"], {}):        # blocked: whatever it sends, a right token too
        r = attacker.get("/api/session", headers=headers)
        assert r.status_code == 429 and "too many failed" in r.json()["detail"], r.text
        assert r.headers["Retry-After"] == "60"
    assert colleague.get("/api/session", headers=auth["bob"]).status_code == 200
    assert colleague.get("/api/session", headers=wrong).status_code == 401
    now[0] += 30
    assert attacker.get("/api/session", headers=auth["ann"]).headers["Retry-After"] == "30"
    now[0] += 30.5                                   # the window passes
    assert attacker.get("/api/session", headers=auth["ann"]).status_code == 200


def test_limits_come_from_the_config_and_must_be_positive():
    import configs.serve
    from hh.serve.limits import Limits

    config = configs.serve.get_config("smoke")
    assert Limits.from_config(config) == Limits()              # the documented defaults
    config.conversations_per_hour = 5
    assert Limits.from_config(config).conversations_per_hour == 5
    config.max_sampling_per_labeler = 0
    with pytest.raises(ValueError, match=r"config.max_sampling_per_labeler=0 must be positive"):
        Limits.from_config(config)
