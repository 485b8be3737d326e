"""10,000 generated malformed or hostile requests across every route of a live server: no 5xx,
no message, job or lead written, quarantine rows only from authenticated senders, the server
still healthy and its memory flat afterwards."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.settings import PROVIDERS, Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import LiveServer, count, fixture_bytes, rows, start_server, stop_server

pytestmark = pytest.mark.fault

TOTAL = 10_000
CONCURRENCY = 32
SEED = 20261123


@dataclass(frozen=True)
class Attack:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    authenticated: bool  # carries the workspace's real token for this provider


def _hostile_bodies(rng: random.Random) -> Iterator[tuple[bytes, str]]:
    """(body, content type) pairs that no provider can store as a message."""
    keys = [
        "event",
        "data",
        "type",
        "event_type",
        "messageId",
        "message_id",
        "reply",
        "AccountStatus",
        "secret_key",
        "lead_email",
        "contact_id",
        "message",
        "timestamp",
    ]
    junk: list[object] = [None, True, 0, -1, 1e308, "", "x" * 1000, [], {}, [[[]]], {"a": {"b": 1}}]
    while True:
        kind = rng.randrange(9)
        if kind == 0:
            yield b"{" * rng.randint(1, 5000), "application/json"  # unterminated, deep
        elif kind == 1:
            yield b"[" * 3000 + b"]" * 3000, "application/json"  # nesting past the parser limit
        elif kind == 2:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), "application/json"
        elif kind == 3:
            yield b'{"event": "\xff\xfe\xfd"}', "application/json"  # invalid UTF-8
        elif kind == 4:
            yield b"event=LEAD_REPLIED&data=1", "application/x-www-form-urlencoded"
        elif kind == 5:
            yield json.dumps(rng.choice(junk)).encode(), "text/plain"  # not an object
        elif kind == 6:
            yield (
                json.dumps({"event": {"type": "y" * rng.randint(1, 200_000)}}).encode(),
                "application/json",
            )
        elif kind == 7:
            yield b'{"a": 1e99999, "b": "\\ud800"}', "application/json"
        else:  # an object of plausible keys with values of the wrong types
            obj = {rng.choice(keys): rng.choice(junk) for _ in range(rng.randint(1, 6))}
            yield json.dumps(obj).encode(), "application/json"


def attacks(workspace: CreatedWorkspace, rng: random.Random) -> Iterator[Attack]:
    bodies = _hostile_bodies(rng)
    bad_ids = [
        "../../etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "ws_" + "f" * 5000,
        "ws_%00",
        "%2e%2e",
        "ws_0000000000000000",
        workspace.id.upper(),
        "' OR 1=1 --",
        "ws_😀",
    ]
    routes = [
        "/cron/context_packs",
        "/cron/unipile_health",
        "/cron/../../x",
        "/api/quarantine",
        f"/api/workspaces/{workspace.id}/integrations",
        "/api/drafts/1/send",
        f"/api/workspaces/{workspace.id}/context-packs",
        "/status",
        "/metrics",
        "/healthz",
        "/readyz",
        "/webhooks",
        "/webhooks/emailbison",
        "/%2e%2e/%2e%2e/etc/passwd",
    ]
    while True:
        body, content_type = next(bodies)
        provider = rng.choice([*PROVIDERS, "mailchimp", "..", "EMAILBISON"])
        roll = rng.random()
        if roll < 0.45 and provider in PROVIDERS:  # authenticated, hostile body
            yield Attack(
                "POST",
                f"/webhooks/{provider}/{workspace.id}?token={workspace.tokens[provider]}",
                body,
                {"Content-Type": content_type},
                authenticated=True,
            )
        elif roll < 0.75:  # wrong, missing or foreign credentials, or a hostile path
            token = rng.choice(["", "x", workspace.tokens[rng.choice(PROVIDERS)], "a" * 10_000])
            workspace_id = rng.choice([workspace.id, *bad_ids])
            headers = {
                "Content-Type": content_type,
                "Authorization": rng.choice(["", "Bearer", "Bearer " + token, "Basic Zm9v"]),
                "X-GHL-Signature": rng.choice(["", "not base64!", "A" * 88]),
            }
            bearer = headers["Authorization"]
            presented = bearer[7:] if bearer.startswith("Bearer ") else token
            yield Attack(
                "POST",
                f"/webhooks/{provider}/{workspace_id}?token={token}",
                body,
                headers,
                authenticated=workspace_id == workspace.id
                and presented == workspace.tokens.get(provider),
            )
        else:  # every other route, with junk methods, credentials and bodies
            headers = {
                "Authorization": rng.choice(["", "Bearer wrong", "Bearer " + "z" * 5000]),
                "Content-Type": content_type,
            }
            yield Attack(
                rng.choice(["GET", "POST", "PUT", "DELETE"]),
                rng.choice(routes),
                body,
                headers,
                authenticated=False,
            )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture
def server(settings: Settings, db: object) -> Iterator[LiveServer]:
    live = start_server(
        {
            "DATABASE_URL": settings.database_url,
            "LOG_LEVEL": "ERROR",
            "HOOKGATE_ADMIN_TOKEN": "admin-secret",
            "CRON_SECRET": "cron-secret",
        }
    )
    try:
        yield live
    finally:
        stop_server(live)


async def test_ten_thousand_hostile_requests(
    server: LiveServer, workspace: CreatedWorkspace, settings: Settings
) -> None:
    rng = random.Random(SEED)
    plan = attacks(workspace, rng)
    statuses: Counter[int] = Counter()
    accepted_from_authenticated = 0
    rss: dict[int, int] = {}
    sent = 0
    lock = asyncio.Lock()

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal sent, accepted_from_authenticated
        while True:
            async with lock:
                if sent >= TOTAL:
                    return
                sent += 1
                attack = next(plan)
                if sent in (2_000, TOTAL):
                    rss[sent] = rss_kib(server.process.pid)
            async with http.request(
                attack.method,
                server.base_url + attack.path,
                data=attack.body,
                headers=attack.headers,
                skip_auto_headers=["Content-Type"],
            ) as answer:
                body = await answer.read()
                statuses[answer.status] += 1
                # Kept in the quarantine: 202, or 200 on Unipile (which re-sends anything else).
                if answer.status in (200, 202) and b'"quarantined":true' in body:
                    assert attack.authenticated, f"quarantined for an unauthenticated {attack.path}"
                    accepted_from_authenticated += 1

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(CONCURRENCY))), 300)
        print(
            f"\nhostile requests: {dict(sorted(statuses.items()))}; server RSS "
            f"{rss[2_000] // 1024} MiB after 2,000, {rss[TOTAL] // 1024} MiB after {TOTAL:,}"
        )

        assert sum(statuses.values()) == TOTAL
        assert not [s for s in statuses if s >= 500], statuses
        url = settings.database_url
        for table in ("messages", "background_jobs", "leads", "ai_drafts"):
            assert await count(url, table) == 0, f"{table} was written by a hostile request"
        quarantined = await rows(url, "SELECT DISTINCT workspace_id FROM webhook_quarantine")
        assert {r["workspace_id"] for r in quarantined} <= {workspace.id}
        assert await count(url, "webhook_quarantine") <= accepted_from_authenticated
        assert rss[TOTAL] - rss[2_000] < 32 * 1024, "server memory grew by more than 32 MiB"

        async with http.get(server.base_url + "/healthz") as health:
            assert health.status == 200
        hook = f"{server.base_url}/webhooks/emailbison/{workspace.id}"
        async with http.post(
            hook,
            params={"token": workspace.tokens["emailbison"]},
            data=fixture_bytes("emailbison/lead_replied.json"),
        ) as answer:
            assert answer.status == 200
    assert await count(settings.database_url, "messages") == 1
