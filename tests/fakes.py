"""Fake provider servers: real ``aiohttp.web`` servers on 127.0.0.1, each on a free port.

Tests point the real clients (aiohttp, openai, slack-sdk) at these; nothing is mocked.

Fixtures (function-scoped, started before the test and stopped after it; imported into
``tests/conftest.py`` so every test module can ask for them):

- ``fake_server``: a bare fake with no default answers (unscripted requests get 404);
- ``fake_openai``: answers ``POST /v1/chat/completions`` with ``chat_completion()``;
  point ``AsyncOpenAI(base_url=fake_openai.url + "/v1")`` at it;
- ``fake_slack``: answers ``POST /api/chat.postMessage`` with ``{"ok": true, …}``;
  point ``AsyncWebClient(base_url=fake_slack.url + "/api/")`` at it;
- ``fake_unipile``: ``GET /api/v1/accounts/*`` is a connected LinkedIn account and
  ``POST /api/v1/chats/*/messages`` answers ``{"object": "MessageSent", "message_id": …}``;
- ``fake_emailbison``: ``GET /api/leads/*`` (and ``…/sent-emails``, ``…/replies``) and
  ``POST /api/replies/*/reply`` answer in EmailBison's ``{"data": …}`` envelope.

Telling a fake how to answer::

    fake.script("GET", "/api/v1/accounts/acc-1",
                Reply(503), Reply(200, json={"sources": [{"status": "OK"}]}))

Each matching request takes the next reply of the script; the last one repeats for every
request after it.  Paths match exactly or with ``*`` wildcards (``fnmatch``: ``*`` also spans
``/``).  A later ``script`` for a path wins over an earlier one and over the defaults.  A
``Reply`` has a ``status``, a ``json`` body (or raw ``body`` bytes), ``headers`` (e.g.
``{"Retry-After": "1"}``), a ``delay_s`` before the server answers, ``before``: a coroutine
function the server awaits before it answers (a test's ``asyncio.Event().wait`` holds the request
until the test lets it go; a provider can post its webhook to the gateway first), and
``drop=True`` to read the request and then close the connection without answering.

An answer that depends on the request (its body, how many came before it) comes from a
responder instead: ``fake.respond("POST", "/v1/chat/completions", responder)``, where
``responder`` is a coroutine function given the ``SeenRequest`` that returns the ``Reply``; it
may take its time (it is cancelled when the client goes away).

What a fake saw: ``fake.seen`` (every ``SeenRequest``: method, path, query, headers, raw body,
parsed ``json``, parsed ``form``, arrival time on the monotonic clock), ``fake.count(method,
path)``, ``fake.in_flight`` and ``fake.max_in_flight`` (the most requests it was answering at
once).  ``await fake.wait_for_requests(n)`` waits (bounded) until it has seen ``n``.
``closed_port_url()`` is a URL on 127.0.0.1 where nothing listens (connection refused).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json as jsonlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from tests.pg_cluster import free_port


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    before: Callable[[], Awaitable[object]] | None = None
    drop: bool = False

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        payload = {} if self.json is None else self.json
        return web.json_response(payload, status=self.status, headers=self.headers)


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    form: dict[str, str] | None
    at: float


Responder = Callable[[SeenRequest], Awaitable[Reply]]


@dataclasses.dataclass
class _Route:
    method: str
    pattern: str
    replies: list[Reply]
    taken: int = 0
    responder: Responder | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and fnmatch.fnmatchcase(path, self.pattern)

    def next_reply(self) -> Reply:
        reply = self.replies[min(self.taken, len(self.replies) - 1)]
        self.taken += 1
        return reply


class FakeServer:
    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.seen: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._routes: list[_Route] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in turn (the last one repeats)."""
        if not replies:
            raise ValueError("script at least one reply")
        self._routes.insert(0, _Route(method.upper(), path, list(replies)))

    def respond(self, method: str, path: str, responder: Responder) -> None:
        """Answer ``method path`` with what ``responder`` makes of each request."""
        self._routes.insert(0, _Route(method.upper(), path, [], responder=responder))

    def default(self, method: str, path: str, reply: Reply) -> None:
        """An answer that any ``script`` overrides (what a provider says when all is well)."""
        self._routes.append(_Route(method.upper(), path, [reply]))

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.requests(method, path))

    def requests(self, method: str | None = None, path: str | None = None) -> list[SeenRequest]:
        return [
            r
            for r in self.seen
            if (method is None or r.method == method.upper())
            and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    async def wait_for_requests(self, n: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.seen) >= n)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a handler still sleeping when its client goes away is
        # cancelled, so in_flight drops and shutdown does not wait for it.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] | None = None
        body = b""
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            posted = await request.post()
            form = {k: str(v) for k, v in posted.items()}
        else:
            body = await request.read()
        try:
            parsed = jsonlib.loads(body) if body else None
        except ValueError:
            parsed = None
        seen = SeenRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            json=parsed,
            form=form,
            at=time.monotonic(),
        )
        self.seen.append(seen)
        async with self._arrived:
            self._arrived.notify_all()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            route = next((r for r in self._routes if r.matches(request.method, request.path)), None)
            if route is None:
                return web.json_response({"error": f"{self.name}: nothing scripted"}, status=404)
            if route.responder is not None:
                reply = await route.responder(seen)
            else:
                reply = route.next_reply()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.before is not None:
                await reply.before()
            if reply.drop and request.transport is not None:
                request.transport.abort()  # the request arrived; no answer ever will
            return reply.response()
        finally:
            self.in_flight -= 1


def closed_port_url() -> str:
    """A URL where nothing listens: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}"


def chat_completion(
    text: str = "Thanks, Jordan. Tuesday at 10 works.",
    *,
    prompt_tokens: int = 42,
    completion_tokens: int = 11,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """An OpenAI chat completion body as the API returns it."""
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


UNIPILE_OWNER_ID = "ACoAAB1xYzSamCarterExampleId0001"  # the fixtures' account_info.user_id


def unipile_account(
    status: str = "OK", account_id: str = "dfXlh46vQYCsMbVarumWlg"
) -> dict[str, Any]:
    """A Unipile ``GET /api/v1/accounts/{id}`` body whose messaging source has ``status``, owned
    by the LinkedIn member ``UNIPILE_OWNER_ID`` (``connection_params.im.id``)."""
    return {
        "object": "Account",
        "type": "LINKEDIN",
        "id": account_id,
        "name": "Sam Carter",
        "created_at": "2026-01-05T09:12:00.000Z",
        "connection_params": {
            "im": {
                "id": UNIPILE_OWNER_ID,
                "publicIdentifier": "sam-carter-example",
                "username": "Sam",
            }
        },
        "sources": [{"id": f"{account_id}_MESSAGING", "status": status}],
    }


@asynccontextmanager
async def running(server: FakeServer) -> AsyncIterator[FakeServer]:
    """Start ``server``; stop it when the block ends."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    async with running(FakeServer()) as server:
        yield server


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeServer]:
    server = FakeServer("openai")
    server.default("POST", "/v1/chat/completions", Reply(json=chat_completion()))
    async with running(server):
        yield server


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeServer]:
    server = FakeServer("slack")
    server.default(
        "POST",
        "/api/chat.postMessage",
        Reply(json={"ok": True, "channel": "C0REPLIES", "ts": "1767225600.000100"}),
    )
    async with running(server):
        yield server


@pytest.fixture
async def fake_unipile() -> AsyncIterator[FakeServer]:
    server = FakeServer("unipile")
    server.default("GET", "/api/v1/accounts/*", Reply(json=unipile_account()))
    server.default(
        "POST",
        "/api/v1/chats/*/messages",
        Reply(201, json={"object": "MessageSent", "message_id": "msg-fake-1"}),
    )
    async with running(server):
        yield server


@pytest.fixture
async def fake_emailbison() -> AsyncIterator[FakeServer]:
    server = FakeServer("emailbison")
    server.default("GET", "/api/leads/*/sent-emails", Reply(json={"data": []}))
    server.default("GET", "/api/leads/*/replies", Reply(json={"data": []}))
    server.default(
        "GET",
        "/api/leads/*",
        Reply(json={"data": {"id": 7, "email": "jordan@example.com", "first_name": "Jordan"}}),
    )
    server.default(
        "POST",
        "/api/replies/*/reply",
        Reply(json={"data": {"success": True, "reply": {"id": 9001}}}),
    )
    async with running(server):
        yield server
