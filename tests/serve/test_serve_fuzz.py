"""Property-based test of the comparison server's JSON API (hypothesis, a fixed derandomized profile
so its time is bounded): random bodies to every POST route (random JSON values, huge integers, deep
nesting, raw bytes, unicode with U+2028 / U+0085 / NUL / lone surrogates / emoji, wrong types, random
field names) from labeler ann. Never a 500; labeler bob's rows never change; every 2xx choice is
stored exactly once. No models: hh.serve.models.FakePool."""

import json
import sqlite3

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from hh.serve.app import Server, create_app
from hh.serve.limits import Limits
from hh.serve.models import FakePool
from hh.serve.store import Store

PROFILE = settings(max_examples=400, deadline=None, derandomize=True, database=None)
FIELDS = ("mode", "text", "pending_id", "side", "strength", "edit")
PENDING, ANNS, BOBS = "<pending>", "<ann's conversation>", "<bob's conversation>"   # filled in per example

odd_text = st.sampled_from(["\u2028", "\u0085", "\x00", "\ud800", "\udfff", "\U0001F600", "\n\nHuman: x",
                            "\n\nAssistant:", "", " ", "é", "\ufeff", "\\", '"'])
texts = st.one_of(st.text(max_size=12), st.text(st.characters(exclude_categories=()), max_size=12),
                  st.lists(odd_text, max_size=4).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10 ** 4000), 10 ** 4000),
                    st.floats(), texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=8)
field_values = st.one_of(json_values, st.sampled_from(["helpful", "red-team", "left", "right", PENDING]),
                         st.integers(1, 4), texts)
objects = st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), field_values, max_size=6)
choices = st.fixed_dictionaries(   # answers to ann's pending pair, valid or nearly
    {"pending_id": st.just(PENDING), "side": st.sampled_from(["left", "right"]) | field_values,
     "strength": st.integers(1, 4) | field_values},
    optional={"edit": st.one_of(texts, field_values), "extra": field_values})


def encoded(value, ascii_only: bool) -> bytes:
    """JSON text of `value`; non-ASCII text raw in UTF-8 (a lone surrogate then makes it invalid UTF-8)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.builds(encoded, objects, st.booleans()),
    st.builds(encoded, json_values, st.booleans()),
    st.integers(4000, 6000).map(lambda n: b'{"strength": ' + b"7" * n + b"}"),      # past the int-string limit
    st.integers(1, 20000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 10000).map(lambda d: b'{"text":' * d + b'"x"' + b"}" * d),
    st.binary(max_size=64),
)
routes = st.tuples(st.sampled_from(["", "/messages", "/choice", "/finish"]),
                   st.sampled_from([ANNS, ANNS, ANNS, BOBS, "c-unknown", "c-0000000000000000"]))


def rows_of(store, labeler):
    db = sqlite3.connect(str(store.path))
    try:
        return {"conversations": db.execute("SELECT * FROM conversations WHERE labeler_id=? ORDER BY id",
                                            (labeler,)).fetchall(),
                "pending": db.execute("SELECT p.* FROM pending p JOIN conversations c ON c.id = p.conversation_id "
                                      "WHERE c.labeler_id=? ORDER BY p.id", (labeler,)).fetchall(),
                "comparisons": db.execute("SELECT * FROM comparisons WHERE labeler_id=? ORDER BY id",
                                          (labeler,)).fetchall()}
    finally:
        db.close()


def filled(value, pending_id):
    if value == PENDING:
        return pending_id
    if isinstance(value, dict):
        return {k: filled(v, pending_id) for k, v in value.items()}
    return value


def test_random_bodies_never_500_never_touch_others_and_store_choices_once(tmp_path):
    store = Store(tmp_path)
    auth = {n: {"Authorization": f"Bearer {store.add_labeler(n)}"} for n in ("ann", "bob")}
    client = TestClient(create_app(Server(store, FakePool(0.0), limits=Limits(conversations_per_hour=10 ** 6))),
                        raise_server_exceptions=False)
    bobs = client.post("/api/conversations", json={"mode": "helpful"}, headers=auth["bob"]).json()["id"]
    client.post(f"/api/conversations/{bobs}/messages", json={"text": "bob's question"}, headers=auth["bob"])
    bob_before = rows_of(store, "bob")
    state = {"cid": None}
    seen = {"2xx choices": 0, "statuses": set()}

    def ann_waiting():
        """Ann's conversation, with a pending pair: -> (id, pending_id)."""
        view = client.get(f"/api/conversations/{state['cid']}", headers=auth["ann"]).json() if state["cid"] else None
        if view is None or view["finished"]:
            view = client.post("/api/conversations", json={"mode": "red-team"}, headers=auth["ann"]).json()
            state["cid"] = view["id"]
        if view["pending"] is None:
            view = client.post(f"/api/conversations/{view['id']}/messages", json={"text": "hi"},
                               headers=auth["ann"]).json()
        return view["id"], view["pending"]["pending_id"]

    @PROFILE
    @given(route=routes, body=bodies, structured=st.one_of(choices, objects))
    def check(route, body, structured):
        cid, pending_id = ann_waiting()
        action, target = route
        target = {ANNS: cid, BOBS: bobs}.get(target, target)
        path = "/api/conversations" + (f"/{target}{action}" if action else "")
        if action == "/choice" and structured.get("pending_id") == PENDING:   # a body that can be taken
            body = encoded(filled(structured, pending_id), ascii_only=True)
        count = store.count()
        r = client.post(path, content=body, headers={**auth["ann"], "Content-Type": "application/json"})
        seen["statuses"].add(r.status_code)
        assert r.status_code < 500, (path, body[:200], r.status_code, r.text[:300])
        assert isinstance(r.json()["detail"] if r.status_code >= 400 else r.json(), (str, dict))
        if action == "/choice" and r.status_code < 300:
            seen["2xx choices"] += 1
            answer = r.json()
            rows = [row for row in store.comparisons() if row["pending_id"] == pending_id]
            assert len(rows) == 1 and rows[0]["id"] == answer["comparison_id"]
            assert store.count() == count + (not answer["duplicate"])
        else:
            assert store.count() == count
    check()
    assert rows_of(store, "bob") == bob_before
    assert seen["2xx choices"] >= 5 and {200, 400, 404, 422} <= seen["statuses"], seen
