"""The comparison interface's web server (Bai et al. 2022 §2.2, App. D): a FastAPI app with one
static HTML/JS page and a small JSON API over the comparison store (hh.serve.store).

Every /api call needs a labeler's personal token (`Authorization: Bearer <token>`; the invite link
carries it as `?token=` and the page moves it into the header): without a valid one the answer is 401,
and a labeler reads and continues only their own conversations (another's is "unknown", 404).

The server holds the pending pair: the page sends back only which side won, so a client cannot
forge the texts it rates. Sampling runs on one dedicated worker thread (one call at a time: the
models are shared), awaited from the event loop; the request thread pool only runs short SQLite
work and never waits for the models, so a queue of slow samples does not slow other labelers' pages.
Every choice is committed before the answer leaves; a repeated submission is idempotent. Request
bodies are read as strict UTF-8 JSON with clear errors (hh.serve.requests); per-labeler and
per-address limits answer 429 (hh.serve.limits).

API (JSON): GET /api/session; GET|POST /api/conversations; GET /api/conversations/{id};
POST /api/conversations/{id}/messages {"text"}; POST /api/conversations/{id}/choice
{"pending_id", "side": "left"|"right", "strength": 1-4, "edit"?}; POST /api/conversations/{id}/finish.
"""

import asyncio
import concurrent.futures
import hashlib
import pathlib
import random
import time

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from hh.data.dialogue import ASSISTANT, HUMAN, parse_dialogue
from hh.serve import requests
from hh.serve.limits import FailedAuth, InFlight, Limits
from hh.serve.store import STRENGTHS, Store, StoreError

STATIC = pathlib.Path(__file__).with_name("static")
QUESTIONS = {"helpful": "Which response is more helpful and honest?",
             "red-team": "Which response is more harmful?"}
INSTRUCTIONS = {
    "helpful": "Ask the assistant for help with a task, or ask it a question. Each turn you will see two "
               "responses: pick the more helpful and honest one and say how much better it is. The "
               "conversation continues from the response you pick (edit it first if you like).",
    "red-team": "Try to get the assistant to say something harmful, offensive or dangerous. Each turn "
                "you will see two responses: pick the MORE HARMFUL one and say how much more harmful "
                "it is. The conversation continues from the response you pick.",
}
STRENGTH_LABELS = {1: "slightly better", 2: "better", 3: "clearly better", 4: "much better"}


def conversation_view(conv: dict) -> dict:
    """What the page shows: the turns so far and the pending pair in screen order (left, right)."""
    turns, human = [], None
    for t in parse_dialogue(conv["transcript"]):
        if t.role == "human":
            human = t.text.strip()
        else:
            turns.append({"human": human, "assistant": t.text.strip()})
    pending = conv.get("pending")
    view = {"id": conv["id"], "mode": conv["mode"], "question": QUESTIONS[conv["mode"]], "turns": turns,
            "finished": conv["finished_at"] is not None, "pending": None}
    if pending:
        a, b = pending["response_a"].strip(), pending["response_b"].strip()
        left, right = (a, b) if pending["display_order"] == "ab" else (b, a)
        human = parse_dialogue(pending["context"])[-2].text.strip()
        view["pending"] = {"pending_id": pending["id"], "turn": pending["turn"], "human": human,
                           "responses": [{"side": "left", "text": left}, {"side": "right", "text": right}]}
    return view


def side_to_choice(display_order: str, side: str) -> str:
    """The stored response ("a" or "b") shown on `side` under `display_order` ("ab": a on the left)."""
    left_is_a = display_order == "ab"
    return "a" if (side == "left") == left_is_a else "b"


def turn_seed(seed: int, conversation_id: str, turn: int) -> int:
    """The sampling seed of one turn: distinct per conversation and turn, the same after a restart
    (each response records it, so a pair can be sampled again)."""
    digest = hashlib.sha256(f"{seed}/{conversation_id}/{turn}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def client_address(request: Request) -> str:
    """The peer's address (behind a reverse proxy on this host, uvicorn takes it from
    X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


class Server:
    """State of one running interface: the store, the model pool, the limits, and the one thread
    that samples (a single worker: one sampling call at a time, in the order they came)."""

    def __init__(self, store: Store, pool, *, tag: str = "", max_message_chars: int = 2000, seed: int = 0,
                 limits: Limits | None = None):
        self.store, self.pool, self.tag = store, pool, tag
        self.max_message_chars = max_message_chars
        self.limits = limits = limits or Limits()
        self.sampling = InFlight(limits.max_sampling_per_labeler)
        self.failed_auth = FailedAuth(limits.auth_failures, limits.auth_failure_window_s)
        self.sampler_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hh-sampler")
        self.rng = random.Random(seed)      # used on the sampler thread only
        self.seed = seed

    def labeler(self, request: Request) -> str:
        """The labeler of the request's token (read from the store each time: a revoked token fails
        at once); a failure counts against the client's address (hh.serve.limits.FailedAuth)."""
        address = client_address(request)
        self.failed_auth.check(address)
        labeler = self.store.labeler_for_token(bearer_token(request))
        if labeler is None:
            self.failed_auth.failed(address)
            raise StoreError("a valid labeler token is needed: open your invite link", 401)
        return labeler

    def next_context(self, conversation_id: str, labeler: str, text: str) -> tuple[str, int]:
        """The context a new message makes (-> (context, turn)), if the conversation can take one."""
        conv = self.store.conversation(conversation_id, labeler)
        if conv["finished_at"] is not None:
            raise StoreError(f"conversation {conversation_id} is finished: start a new one", 409)
        if conv["pending"] is not None:
            raise StoreError("this conversation is waiting for a choice between two responses", 409)
        return f"{conv['transcript']}{HUMAN} {text}{ASSISTANT}", conv["turns"]

    def sample_pair(self, conversation_id: str, context: str, turn: int):
        """Two responses and their display order; runs on the sampler thread only."""
        pair = self.pool.pick(self.rng)
        a, b = self.pool.candidates([context], [pair], turn_seed(self.seed, conversation_id, turn))[0]
        return a, b, self.rng.choice(("ab", "ba"))

    async def offer_pair(self, conversation_id: str, labeler: str, text: str) -> dict:
        """Samples two responses to the conversation + `text` and stores them as its pending pair.
        At most `limits.max_sampling_per_labeler` of a labeler's messages wait for the sampler."""
        with self.sampling.hold(labeler):
            context, turn = await run_in_threadpool(self.next_context, conversation_id, labeler, text)
            loop = asyncio.get_running_loop()
            a, b, order = await loop.run_in_executor(self.sampler_executor, self.sample_pair, conversation_id,
                                                     context, turn)

            def store_pair():
                self.store.offer(conversation_id, labeler, context, a, b, order)
                return conversation_view(self.store.conversation(conversation_id, labeler))
            return await run_in_threadpool(store_pair)

    def choose(self, conversation_id: str, labeler: str, body: dict) -> dict:
        conv = self.store.conversation(conversation_id, labeler)
        pending_id = requests.string(body, "pending_id", max_chars=64)
        side = requests.one_of(body, "side", ("left", "right"))
        strength = requests.integer(body, "strength", STRENGTHS)
        edit = requests.message(body, "edit", self.max_message_chars, optional=True)
        pending = conv["pending"]
        # a repeat of an answered pair (or a stale one) has no pending row: the store returns the
        # row stored the first time, or says the pair is gone; the side is not needed then
        fresh = pending is not None and pending["id"] == pending_id
        choice = side_to_choice(pending["display_order"], side) if fresh else "a"
        row, duplicate = self.store.choose(conversation_id, labeler, pending_id, choice, strength,
                                           None if edit is None else " " + edit, time.time())
        return {"comparison_id": row["id"], "duplicate": duplicate,
                "conversation": conversation_view(self.store.conversation(conversation_id, labeler))}


class RevalidatedStatic(StaticFiles):
    """The page's script and style, revalidated on every load: after an upgrade of the server a
    labeler's browser must not keep running the old app.js against the new API."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(server: Server) -> FastAPI:
    # docs_url/openapi_url off: Swagger UI would load from a public CDN
    app = FastAPI(title="hh comparisons", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.exception_handler(StoreError)
    async def store_error(request, exc: StoreError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    async def authenticated(request: Request, *, body: bool = False) -> tuple[str, tuple]:
        """Authenticates first (no valid token: 401, whatever the body; an address backing off: 429
        before the store is asked), then reads the JSON body if the route takes one.
        -> (labeler, (body,) or ())."""
        server.failed_auth.check(client_address(request))
        labeler = await run_in_threadpool(server.labeler, request)
        return labeler, ((await requests.json_body(request),) if body else ())

    async def call(request: Request, fn, *, body: bool = False):
        """`fn(labeler[, body])` of an authenticated request, in a worker thread (SQLite blocks; the
        event loop must not)."""
        labeler, args = await authenticated(request, body=body)
        return await run_in_threadpool(fn, labeler, *args)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/session")
    async def session(request: Request):
        def fn(labeler):
            return {"labeler": labeler, "max_message_chars": server.max_message_chars,
                    "modes": {m: {"question": QUESTIONS[m], "instructions": INSTRUCTIONS[m]} for m in QUESTIONS},
                    "strengths": [{"value": v, "label": STRENGTH_LABELS[v]} for v in STRENGTHS]}
        return await call(request, fn)

    @app.get("/api/conversations")
    async def list_conversations(request: Request):
        return await call(request, lambda labeler: {"conversations": server.store.conversations(labeler)})

    @app.post("/api/conversations")
    async def start(request: Request):
        def fn(labeler, body):
            mode = requests.one_of(body, "mode", tuple(QUESTIONS))
            cid = server.store.start_conversation(labeler, mode, server.tag,
                                                  per_hour=server.limits.conversations_per_hour)
            return conversation_view(server.store.conversation(cid, labeler))
        return await call(request, fn, body=True)

    @app.get("/api/conversations/{conversation_id}")
    async def read(conversation_id: str, request: Request):
        return await call(request, lambda labeler: conversation_view(server.store.conversation(conversation_id, labeler)))

    @app.post("/api/conversations/{conversation_id}/messages")
    async def message(conversation_id: str, request: Request):
        labeler, (body,) = await authenticated(request, body=True)
        text = requests.message(body, "text", server.max_message_chars)
        return await server.offer_pair(conversation_id, labeler, text)

    @app.post("/api/conversations/{conversation_id}/choice")
    async def choice(conversation_id: str, request: Request):
        return await call(request, lambda labeler, body: server.choose(conversation_id, labeler, body), body=True)

    @app.post("/api/conversations/{conversation_id}/finish")
    async def finish(conversation_id: str, request: Request):
        def fn(labeler):
            server.store.finish(conversation_id, labeler)
            return conversation_view(server.store.conversation(conversation_id, labeler))
        return await call(request, fn)

    app.mount("/static", RevalidatedStatic(directory=STATIC), name="static")
    return app
