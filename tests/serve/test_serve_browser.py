"""The comparison page (hh/serve/static) in a real browser: Debian's Chromium driven by Playwright
against the real app on a local port, with the smoke LM chain's models answering. A helpful and a
red-team conversation of three turns each, then the stored rows and their export are checked."""

import contextlib
import os
import pathlib
import shutil
import threading
import time

import pytest

from hh.data.dialogue import ASSISTANT, HUMAN
from hh.serve.app import QUESTIONS, Server, create_app, side_to_choice
from hh.serve.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow]   # Chromium start-up: make test and CI, not test-fast

CHROMIUM = "/usr/bin/chromium"
# no outside lookups at all: Chromium otherwise resolves Google hosts in the background
CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
SCREENSHOT = pathlib.Path(__file__).resolve().parents[2] / "docs" / "img" / "serve.png"
SAMPLE_TIMEOUT_MS = 180_000      # the first pair compiles both deployments' samplers on the CPU


@contextlib.contextmanager
def serving(app):
    """The app on a free localhost port in a thread: -> its base URL."""
    import uvicorn

    from launch.processes import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        reason = (f"{CHROMIUM} is missing: install Debian's chromium (`make chromium`, or "
                  f"apt-get install -y chromium); never `playwright install` (no internet here)")
        if os.environ.get("HH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def open_page(browser, base):
    """A fresh page ~1200px wide that records JS errors (uncaught exceptions, CSP refusals; not
    the 4xx answers the page shows itself) and every URL it requests."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.errors, page.urls = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and page.errors.append(m.text))
    page.on("request", lambda r: page.urls.append(r.url))
    try:
        yield page
    finally:
        context.close()
    outside = [u for u in page.urls if not u.startswith(base) and not u.startswith("data:")]
    assert not outside, f"the page loaded resources from elsewhere: {outside}"


@pytest.fixture(scope="module")
def pool(pm_chain):
    from configs import serve as serve_cfg
    from hh.serve.__main__ import resolve_paths
    from hh.serve.models import load_pool

    config = serve_cfg.get_config("smoke")
    config.models_root = str(pm_chain["lm"].parent)
    return SlowFirstPair(load_pool(resolve_paths(config)))


class SlowFirstPair:
    """The real pool, with its first pair held back a second: the page's busy state is then there
    to see even when other tests in the session compiled the samplers already."""

    def __init__(self, pool):
        self.pool, self.calls = pool, 0

    def pick(self, rng):
        return self.pool.pick(rng)

    def candidates(self, contexts, pairs, seed):
        self.calls += 1
        if self.calls == 1:
            time.sleep(1.0)
        return self.pool.candidates(contexts, pairs, seed)


def test_without_a_valid_token_the_page_asks_for_the_invite_link(browser, tmp_path):
    from playwright.sync_api import expect

    store = Store(tmp_path)
    store.add_labeler("alice")
    with serving(create_app(Server(store, pool=None))) as base, open_page(browser, base) as page:
        page.goto(base + "/")
        expect(page.locator("#no-token")).to_be_visible()
        expect(page.locator("#no-token")).to_contain_text("invite link")
        expect(page.locator("#app")).to_be_hidden()

        page.goto(base + "/?token=not-a-token")
        expect(page.locator("#no-token")).to_be_visible()
        expect(page.locator("#no-token")).to_contain_text("invite link")
        expect(page.locator("#error")).to_contain_text("valid labeler token")
        assert "token" not in page.url      # moved out of the address bar
        assert page.evaluate("sessionStorage.getItem('hh-token')") is None   # a rejected one is dropped

        answers = page.evaluate("""async () => {
            const out = [];
            for (const headers of [{}, {Authorization: "Bearer not-a-token"}]) {
                const r = await fetch("/api/session", {headers});
                out.push([r.status, (await r.json()).detail]);
            }
            return out;
        }""")
        for status, detail in answers:
            assert status == 401 and "invite link" in detail
        assert not page.errors, page.errors


# The plan of both conversations: (message, send by, strength, side, pick by, edit or None). Each of
# the strengths 1-4 at least once, both sides, clicks and shortcuts, one edited response.
PLAN = {
    "helpful": [("How do I boil an egg?", "click", 4, "left", "click", None),
                ("And how long for a soft one?", "keys", 2, "right", "keys:arrow", None),
                ("Thanks, anything else?", "click", 3, "right", "click", "Six minutes, then cold water.")],
    "red-team": [("Tell me something rude.", "keys", 1, "right", "keys:letter", None),
                 ("Be ruder.", "click", 2, "left", "click", None),
                 ("Even ruder.", "keys", 4, "left", "keys:arrow", None)],
}


def send(page, text, how, first=False):
    from playwright.sync_api import expect

    page.fill("#message", text)
    if how == "keys":
        page.press("#message", "Control+Enter")
    else:
        page.click("#send")
    if first:     # the first pair takes seconds (the samplers compile): the page says it is busy
        expect(page.locator("#status")).to_contain_text("sampling…")
        expect(page.locator("#message")).to_be_disabled()
        expect(page.locator("#finish")).to_be_disabled()
    expect(page.locator("#pending")).to_be_visible(timeout=SAMPLE_TIMEOUT_MS)
    expect(page.locator("#pending-human")).to_have_text(text)
    return {"left": page.text_content("#response-left"), "right": page.text_content("#response-right")}


def choose(page, strength, side, how, edit, number):
    from playwright.sync_api import expect

    if how == "click":
        page.click(f"[data-testid=strength-{strength}]")
    else:
        page.keyboard.press(str(strength))
    expect(page.locator(f"[data-testid=strength-{strength}]")).to_have_attribute("aria-pressed", "true")
    if edit is not None:
        page.check("#edit-toggle")
    if how == "click":
        page.click(f"#pick-{side}")
    else:
        key = {"keys:arrow": {"left": "ArrowLeft", "right": "ArrowRight"},
               "keys:letter": {"left": "a", "right": "b"}}[how][side]
        page.keyboard.press(key)
    if edit is not None:
        expect(page.locator("#edit-text")).to_have_value(page.text_content(f"#response-{side}"))
        page.fill("#edit-text", edit)
        page.click("#submit-edit")
    expect(page.locator("#status")).to_contain_text(f"Recorded comparison #{number}")
    expect(page.locator("#pending")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()


def test_two_conversations_through_the_page(browser, pool, tmp_path):
    from playwright.sync_api import expect

    started = time.perf_counter()
    store = Store(tmp_path)
    token = store.add_labeler("alice")
    shown = []       # per turn, in order: mode, plan entry, the texts shown {"left", "right"}
    with serving(create_app(Server(store, pool, seed=0))) as base, open_page(browser, base) as page:
        page.goto(f"{base}/?token={token}")
        expect(page.locator("#labeler")).to_have_text("alice")
        assert "token" not in page.url
        for key in ("Ctrl", "Enter", "←", "→", "1", "4"):
            expect(page.locator("#shortcut-list")).to_contain_text(key)
        for mode, plan in PLAN.items():
            page.select_option("#mode", mode)
            page.click("#start")
            expect(page.locator("#conversation-mode")).to_have_text(mode)
            expect(page.locator("#instructions")).to_contain_text(
                "helpful and honest" if mode == "helpful" else "MORE HARMFUL")
            for turn, (text, send_by, strength, side, pick_by, edit) in enumerate(plan):
                texts = send(page, text, send_by, first=not shown)
                expect(page.locator("#question")).to_have_text(QUESTIONS[mode])
                expect(page.locator("#send")).to_be_hidden()
                if mode == "helpful" and turn == 2:
                    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
                    if os.environ.get("UPDATE_SCREENSHOT") == "1":
                        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(tmp_path / "serve.png", SCREENSHOT)
                if mode == "red-team" and turn == 1:
                    # a reload (the token now lives in sessionStorage) shows the same pair again
                    page.reload()
                    expect(page.locator("#pending")).to_be_visible()
                    assert page.text_content("#response-left") == texts["left"]
                    assert page.text_content("#response-right") == texts["right"]
                choose(page, strength, side, pick_by, edit, len(shown) + 1)
                shown.append((mode, turn, text, strength, side, edit, texts))
                expect(page.locator("#transcript li.assistant")).to_have_count(turn + 1)
                assert page.locator("#transcript li.assistant .text").last.text_content() == (
                    edit if edit is not None else texts[side])
            page.click("#finish")
            expect(page.locator("#conversation-finished")).to_be_visible()
            expect(page.locator("#composer")).to_be_hidden()

        # the list reopens the (finished) helpful conversation with its three turns
        items = page.locator("[data-testid=open-conversation]")
        expect(items).to_have_count(2)
        page.locator("[data-testid=open-conversation]", has_text="helpful").click()
        expect(page.locator("#conversation-mode")).to_have_text("helpful")
        expect(page.locator("#transcript li.assistant")).to_have_count(3)
        assert not page.errors, page.errors
    browser_seconds = time.perf_counter() - started

    rows = store.comparisons()
    assert len(rows) == 6
    conversations = {}
    for row, (mode, turn, text, strength, side, edit, texts) in zip(rows, shown):
        assert (row["mode"], row["turn"], row["strength"], row["labeler_id"]) == (mode, turn, strength, "alice")
        assert row["choice"] == side_to_choice(row["display_order"], side)
        left, right = ("response_a", "response_b") if row["display_order"] == "ab" else ("response_b", "response_a")
        assert (row[left].strip(), row[right].strip()) == (texts["left"], texts["right"])
        assert row["edited"] == (edit is not None)
        assert row["edit"] == (None if edit is None else " " + edit)
        # the context grows with the picked (or edited) response and the next message
        previous = conversations.get(row["conversation_id"], "")
        assert row["context"] == f"{previous}{HUMAN} {text}{ASSISTANT}"
        picked = row["response_" + row["choice"]]
        conversations[row["conversation_id"]] = row["context"] + (row["edit"] if row["edited"] else picked)
    assert [r["edited"] for r in rows].count(1) == 1
    assert len(conversations) == 2
    for cid, transcript in conversations.items():
        conv = store.conversation(cid)
        assert conv["transcript"] == transcript and conv["turns"] == 3 and conv["finished_at"] is not None

    check_export(store, rows)
    print(f"\nbrowser test: {browser_seconds:.1f} s in the page (after the models were loaded)")


def check_export(store, rows):
    """hh.serve.export: helpful chosen = the picked response; red-team (Bai et al. 2022 §2.2) the
    picked, more harmful one is rejected; strength < min_strength dropped; edits not exported."""
    from hh.serve.export import export_rows

    def expected(min_strength, modes=None):
        out = []
        for r in rows:
            if r["strength"] < min_strength or (modes is not None and r["mode"] not in modes):
                continue
            picked, other = (r["response_a"], r["response_b"]) if r["choice"] == "a" else (r["response_b"], r["response_a"])
            if r["mode"] == "red-team":
                picked, other = other, picked
            out.append((r["context"] + picked, r["context"] + other))
        return sorted(out)

    def exported(**kw):
        return sorted((e["chosen"], e["rejected"]) for e in export_rows(store, **kw))

    assert len(expected(2)) == 5            # the one strength-1 row (red-team, turn 0) is dropped
    assert exported() == expected(2)
    assert exported(min_strength=1) == expected(1)
    assert exported(min_strength=2, modes=("helpful",)) == expected(2, ("helpful",))
