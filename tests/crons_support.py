"""Helpers shared by the cron tests: an injectable clock, a runtime whose clients talk to the fake
servers, a workspace with a Unipile account and a Slack channel, and its AccountStatus webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from gateway.runtime import Runtime, open_runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import fixture_bytes, make_settings
from tests.fakes import FakeServer, Reply

START = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
HEALTH_INTERVAL = dt.timedelta(seconds=900)


class Clock:
    """``Runtime.clock`` for tests: stands still until the test moves it."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


def cron_settings(
    database_url: str,
    *,
    slack: FakeServer | None = None,
    unipile: FakeServer | None = None,
    openai: FakeServer | None = None,
    **overrides: str,
) -> Settings:
    env = {"HOOKGATE_SCHEDULER": "0"}
    if slack is not None:
        env |= {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": f"{slack.url}/api/"}
    if unipile is not None:
        env |= {"UNIPILE_BASE_URL": unipile.url, "UNIPILE_API_KEY": "unipile-test-key"}
    if openai is not None:
        env |= {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{openai.url}/v1"}
    return make_settings(database_url, **(env | overrides))


@asynccontextmanager
async def cron_runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as runtime:
        if clock is not None:
            runtime.clock = clock
        yield runtime


async def unipile_workspace(db: Database, name: str, account: str) -> CreatedWorkspace:
    options = WorkspaceOptions(slack_channel=f"#ops-{account}", unipile_account_id=account)
    return await create_workspace(db, name, options)


async def report_credentials_lost(app: Any, workspace: CreatedWorkspace) -> int:
    """Unipile's AccountStatus webhook (status CREDENTIALS) for the workspace's account, posted
    through the ASGI app (its lifespan running); the answer's status code."""
    url = f"/webhooks/unipile/{workspace.id}?token={workspace.tokens['unipile']}"
    body = fixture_bytes("unipile/account_status_credentials.json")
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        return (await http.post(url, content=body)).status_code


def disconnect(unipile: FakeServer, account: str) -> None:
    """Unipile answers for ``account`` as it does for a disconnected LinkedIn account."""
    body = {
        "status": 401,
        "type": "errors/disconnected_account",
        "title": "Disconnected account",
        "detail": "The account appears to be disconnected from the provider service.",
    }
    unipile.script("GET", f"/api/v1/accounts/{account}", Reply(401, json=body))


def slack_texts(slack: FakeServer) -> list[tuple[str, str]]:
    """(channel, text) of every chat.postMessage the fake Slack answered."""
    found = []
    for request in slack.requests("POST", "/api/chat.postMessage"):
        fields = request.form if request.form is not None else (request.json or {})
        found.append((str(fields.get("channel")), str(fields.get("text"))))
    return found


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, interval_s: float = 0.1
) -> None:
    """Wait (bounded) until ``check`` is true."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)
