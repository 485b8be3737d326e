"""What the randomized fault test (tests/test_fault_random.py) runs: hookgate processes each
behind a TCP proxy of its own, the fake services that watch them, and a provider that posts.

- ``Process``: ``hookgate serve`` or ``hookgate worker`` as a real process whose database
  connections all go through its own ``TcpProxy`` (cut it and that process alone loses the
  database), logging to a file; ``kill`` is ``kill -9``.  A skewed process runs under
  libfaketime, so its wall clock really is ahead (its monotonic clock is left alone).
- ``Fakes``: OpenAI-compatible AI, Slack, EmailBison and Unipile fakes (``tests.fakes``) that
  behave as the plan says (``tests.fault_plan``) and record what they saw.  Each message body
  carries a token (``FT0042``); the fakes count the requests in flight per token (``Gauge``), so
  two handlers of one job at once show there, whatever the database says.
- ``Provider``: posts deliveries, their copies at once to different replicas, and retries what
  was not answered (a 503 during a cut) the way a provider would, keeping every answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import glob
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from gateway.workspaces import CreatedWorkspace
from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes import FakeServer, Reply, SeenRequest, chat_completion, unipile_account
from tests.fault_plan import (
    RECONNECTING,
    TOKEN,
    Plan,
    Post,
    ReplyPlan,
    SlackOutcome,
    echo_payload,
)
from tests.tcp_proxy import TcpProxy

ADMIN_TOKEN = "admin-fault-token"
SLACK_TIMEOUT_S = 1.0
RETRY_FOR_S = 40.0  # how long a provider keeps re-posting a delivery that was not answered
RETRY_PAUSE_S = 0.3


def libfaketime() -> str:
    """The path of Debian's libfaketime (package ``faketime``; ``scripts/test-setup`` installs
    it)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise RuntimeError(
            "libfaketime is not installed (the randomized fault test runs a replica with its "
            "clock ahead under it): apt-get install faketime, or run scripts/test-setup as root"
        )
    return found[0]


def skewed_env(seconds: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock ``seconds`` ahead."""
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": f"+{seconds}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # asyncio's timers keep real time
    }


@dataclasses.dataclass
class Process:
    name: str
    command: str  # serve | worker
    env: dict[str, str]
    proxy: TcpProxy
    log: Path
    live: LiveServer | None = None
    cut_now: bool = False
    kills: int = 0
    exits: list[str] = dataclasses.field(default_factory=list)  # exits by itself: last words
    # Held while the process is killed and started again: one process at a time.
    lifecycle: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def base_url(self) -> str:
        assert self.live is not None
        return self.live.base_url

    @property
    def exit_code(self) -> int | None:
        """The exit status of a process that ended (``None`` while it runs)."""
        return None if self.live is None else self.live.process.poll()

    async def start(self) -> None:
        # In a thread: the proxy this process connects through runs on this event loop.
        with self.log.open("ab") as log:
            try:
                self.live = await asyncio.to_thread(
                    start_server, self.env, command=self.command, stderr=log
                )
            except RuntimeError as exc:
                raise RuntimeError(f"{self.name}: {exc}; its log ends:\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.live is not None and self.exit_code is None:
            await asyncio.to_thread(stop_server, self.live)

    async def supervise(self) -> None:
        """What systemd or Kubernetes does: start the process again whenever it exits by itself
        (``hookgate`` exits at start when its database is unreachable), once its database is
        back.  Runs until cancelled."""
        while True:
            await asyncio.sleep(0.2)
            async with self.lifecycle:
                if self.exit_code is None or self.cut_now:
                    continue
                self.exits.append(f"exit {self.exit_code}: {self.log_tail(1)[:200]}")
                with contextlib.suppress(RuntimeError):  # exited at start again: next turn
                    await self.start()

    async def cut(self, seconds: float) -> None:
        """The database away from this process for ``seconds``: open connections reset, new
        ones refused."""
        self.cut_now = True
        await self.proxy.cut()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.proxy.restore()
            self.cut_now = False

    async def kill_and_restart(self, down_s: float) -> None:
        """``kill -9``, then a new process after ``down_s`` (once its database is reachable:
        a process starts by migrating)."""
        async with self.lifecycle:
            assert self.live is not None
            self.live.process.kill()
            await asyncio.to_thread(self.live.process.wait)
            self.kills += 1
            await asyncio.sleep(down_s)
            while self.cut_now:  # noqa: ASYNC110  (the cut is another task of this test)
                await asyncio.sleep(0.1)
            await self.start()


@contextlib.asynccontextmanager
async def running(processes: Iterable[Process]) -> AsyncIterator[None]:
    """Every process started behind its proxy and supervised for the block; then each stopped
    gracefully (SIGTERM, while its database is still reachable), then the proxies."""
    started = list(processes)
    for process in started:
        await process.proxy.start()
    supervisors: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(process.start() for process in started))
        supervisors = [asyncio.create_task(process.supervise()) for process in started]
        yield
    finally:
        for supervisor in supervisors:
            supervisor.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
        await asyncio.gather(*(process.stop() for process in started))
        for process in started:
            await process.proxy.close()


class Gauge:
    """Requests in flight per key, and the most there ever were at once."""

    def __init__(self) -> None:
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        self.now[key] += 1
        self.most[key] = max(self.most[key], self.now[key])
        try:
            yield
        finally:
            self.now[key] -= 1

    def overlapping(self) -> dict[str, int]:
        return {key: n for key, n in self.most.items() if n > 1}


@dataclasses.dataclass(frozen=True, slots=True)
class SlackPost:
    key: str  # a message's token, or "<kind>:<workspace id>" for an alert
    outcome: SlackOutcome


class Fakes:
    """The fake services of one run, behaving as ``plan`` says."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.ai = FakeServer("openai")
        self.slack = FakeServer("slack")
        self.emailbison = FakeServer("emailbison")
        self.unipile = FakeServer("unipile")
        self.ai_gauge = Gauge()
        self.slack_gauge = Gauge()
        self.send_gauge = Gauge()
        self.slack_posts: list[SlackPost] = []
        self.sends: collections.Counter[str] = collections.Counter()  # per inbound reply id
        self.unrecognised: list[str] = []  # requests a fake could not tie to the plan
        self.workspaces: list[CreatedWorkspace] = []
        self.provider: Provider | None = None
        self.started_at = time.monotonic()
        self._asked: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._echoes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Fakes:
        self.ai.respond("POST", "/v1/chat/completions", self._complete)
        self.slack.respond("POST", "/api/chat.postMessage", self._post_message)
        self.emailbison.default("GET", "/api/leads/*", Reply(json={"data": {"status": "active"}}))
        self.emailbison.respond("POST", "/api/replies/*/reply", self._send_reply)
        self.unipile.respond("GET", "/api/v1/accounts/*", self._account)
        for server in (self.ai, self.slack, self.emailbison, self.unipile):
            await server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.echoes_done()
        for server in (self.ai, self.slack, self.emailbison, self.unipile):
            await server.stop()

    def env(self) -> dict[str, str]:
        return {
            "OPENAI_API_KEY": "sk-fault",
            "OPENAI_BASE_URL": f"{self.ai.url}/v1",
            "SLACK_BOT_TOKEN": "xoxb-fault",
            "SLACK_API_URL": f"{self.slack.url}/api/",
            "SLACK_TIMEOUT_MS": str(int(SLACK_TIMEOUT_S * 1000)),
            "UNIPILE_BASE_URL": self.unipile.url,
            "UNIPILE_API_KEY": "unipile-fault-key",
        }

    async def echoes_done(self) -> None:
        while self._echoes:
            await asyncio.gather(*self._echoes, return_exceptions=True)

    @property
    def echoes_pending(self) -> int:
        return len(self._echoes)

    def _nth(self, *key: str) -> int:
        """How many requests came before this one for ``key`` (the plan's ``n``)."""
        n = self._asked[key]
        self._asked[key] += 1
        return n

    async def _complete(self, seen: SeenRequest) -> Reply:
        request = seen.json or {}
        text = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
        found = TOKEN.search(text)
        if found is None:
            self.unrecognised.append(f"AI: {text[:80]}")
            return Reply(400, json={"error": {"message": "no token"}})
        token = found.group()
        purpose = "draft" if request.get("response_format") else "sentiment"
        n = self._nth("ai", token, purpose)
        with self.ai_gauge.hold(token):
            await asyncio.sleep(self.plan.ai_delay_s(token, purpose, n))
        if self.plan.ai_fails(token, purpose, n):
            return Reply(500, json={"error": {"message": "the model is overloaded"}})
        if purpose == "sentiment":
            return Reply(json=chat_completion(self.plan.reply(token).sentiment))
        draft = {"reply": f"{token} Glad to hear it. Does Tuesday at 10 work?", "confidence": 0.5}
        return Reply(json=chat_completion(json.dumps(draft)))

    def _slack_key(self, text: str) -> str | None:
        if found := TOKEN.search(text):
            return found.group()
        for workspace in self.workspaces:
            if workspace.id in text and "could not be read" in text:
                return f"quarantine:{workspace.id}"
            if f" {workspace.name}: " in f" {text}":
                kind = "reconnected" if "connected again" in text else "disconnected"
                return f"unipile_{kind}:{workspace.id}"
        return None

    async def _post_message(self, seen: SeenRequest) -> Reply:
        text = str((seen.json or {}).get("text", ""))
        key = self._slack_key(text)
        if key is None:
            self.unrecognised.append(f"Slack: {text[:80]}")
            return Reply(json={"ok": False, "error": "channel_not_found"})
        outcome = self.plan.slack_outcome(key, self._nth("slack", key))
        self.slack_posts.append(SlackPost(key, outcome))
        with self.slack_gauge.hold(key):
            await asyncio.sleep(SLACK_TIMEOUT_S + 1.0 if outcome == "late" else 0.02)
        if outcome == "error_500":
            return Reply(500, json={"ok": False, "error": "internal_error"})
        if outcome == "drop":
            return Reply(drop=True)
        if outcome == "rate_limited":
            return Reply(
                429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"}
            )
        return Reply(json={"ok": True, "channel": "C0FAULT", "ts": f"{time.time():.6f}"})

    async def _send_reply(self, seen: SeenRequest) -> Reply:
        reply_id = seen.path.split("/")[3]
        try:
            reply = self.plan.by_reply_id(reply_id)
        except KeyError:
            self.unrecognised.append(f"EmailBison send: {seen.path}")
            return Reply(404, json={"error": "no such reply"})
        self.sends[reply_id] += 1
        body = str((seen.json or {}).get("message", ""))
        with self.send_gauge.hold(reply_id):
            await asyncio.sleep(self.plan.send_delay_s(reply.token))
            if reply.echo_before:  # the echo webhook beats the send's answer
                # Shielded: the client giving up on this answer does not stop the provider.
                await asyncio.shield(self._echo(reply, body, after_s=0.0))
        if not reply.echo_before:
            self._echo(reply, body, after_s=0.3)
        return Reply(json={"data": {"success": True, "reply": {"id": int(reply.sent_id)}}})

    def _echo(self, reply: ReplyPlan, body: str, *, after_s: float) -> asyncio.Task[None]:
        async def post() -> None:
            await asyncio.sleep(after_s)
            assert self.provider is not None
            await self.provider.deliver(
                Post(
                    at=time.monotonic() - self.started_at,
                    workspace=reply.workspace,
                    event="MANUAL_EMAIL_SENT",
                    key_column="email_bison_reply_id",
                    key=reply.sent_id,
                    body=echo_payload(reply, body),
                    replicas=reply.echo_replicas,
                )
            )

        task = asyncio.create_task(post())
        self._echoes.add(task)
        task.add_done_callback(self._echoes.discard)
        return task

    async def _account(self, seen: SeenRequest) -> Reply:
        account_id = seen.path.rsplit("/", 1)[1]
        index = int(account_id.removeprefix("acc-fault-"))
        if index == RECONNECTING and time.monotonic() - self.started_at > self.plan.reconnect_at:
            return Reply(json=unipile_account(account_id=account_id))
        return Reply(
            401,
            json={
                "status": 401,
                "type": "errors/disconnected_account",
                "title": "Disconnected account",
            },
        )


@dataclasses.dataclass
class Delivered:
    """One copy of a delivery (or one press of send) and every answer it got, in order."""

    post: Post | None
    statuses: list[int] = dataclasses.field(default_factory=list)
    body: dict[str, Any] | None = None  # the last answer's

    @property
    def status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None


class Provider:
    """Posts deliveries and presses send, re-posting whatever was not answered."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        replicas: list[Process],
        workspaces: list[CreatedWorkspace],
    ) -> None:
        self.http = http
        self.replicas = replicas
        self.workspaces = workspaces
        self.delivered: list[Delivered] = []
        self.presses: dict[int, list[Delivered]] = collections.defaultdict(list)

    async def deliver(self, post: Post) -> None:
        workspace = self.workspaces[post.workspace]
        path = f"/webhooks/emailbison/{workspace.id}?token={workspace.tokens['emailbison']}"
        copies = [Delivered(post) for _ in post.replicas]
        self.delivered.extend(copies)
        await asyncio.gather(
            *(
                self._post(path, post.body, r, c, {})
                for r, c in zip(post.replicas, copies, strict=True)
            )
        )

    async def press(self, draft_id: int, replicas: tuple[int, ...]) -> None:
        """Press send on the draft on each replica named, at once."""
        path = f"/api/drafts/{draft_id}/send"
        copies = [Delivered(None) for _ in replicas]
        self.presses[draft_id].extend(copies)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        await asyncio.gather(
            *(self._post(path, b"", r, c, headers) for r, c in zip(replicas, copies, strict=True))
        )

    async def _post(
        self, path: str, body: bytes, replica: int, into: Delivered, headers: dict[str, str]
    ) -> None:
        """Post until answered with something other than 503 (the retry status), for at most
        ``RETRY_FOR_S``; a retry may land on the other replica, as behind a load balancer."""
        deadline = time.monotonic() + RETRY_FOR_S
        attempt = 0
        while True:
            target = self.replicas[(replica + attempt) % len(self.replicas)]
            try:
                async with self.http.post(
                    target.base_url + path, data=body, headers=headers
                ) as answer:
                    status, text = answer.status, await answer.text()
            except (aiohttp.ClientError, TimeoutError):
                status, text = 0, ""  # no answer: the provider tries again
            into.statuses.append(status)
            with contextlib.suppress(json.JSONDecodeError):
                into.body = json.loads(text) if text else None
            if into.status not in (0, 503) or time.monotonic() > deadline:
                return
            attempt += 1
            await asyncio.sleep(RETRY_PAUSE_S)
