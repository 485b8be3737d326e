"""The same storms through a real uvicorn process and a real HTTP client over TCP."""

from __future__ import annotations

import asyncio
import json
import time

import httpx2

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import LiveServer, count, fixture_bytes, fixture_json


async def test_a_hundred_identical_deliveries_to_a_live_server_store_one_message(
    live_server: LiveServer, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = f"{live_server.base_url}/webhooks/emailbison/{workspace.id}"
    params = {"token": workspace.tokens["emailbison"]}
    payload = fixture_bytes("emailbison/lead_replied.json")
    limits = httpx2.Limits(max_connections=100)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post(url, params=params, content=payload) for _ in range(100))
        )
        elapsed = time.monotonic() - started
    print(f"\n100 identical deliveries, {settings.database_url.split(':')[0]}: {elapsed:.3f} s")
    assert [a.status_code for a in answers] == [200] * 100
    deduped = [a.json()["deduped"] for a in answers]
    assert deduped.count(False) == 1 and deduped.count(True) == 99
    assert await count(settings.database_url, "messages") == 1
    assert await count(settings.database_url, "background_jobs") == 1


async def test_a_hundred_distinct_deliveries_to_a_live_server_store_a_hundred(
    live_server: LiveServer, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = f"{live_server.base_url}/webhooks/emailbison/{workspace.id}"
    params = {"token": workspace.tokens["emailbison"]}

    def delivery(i: int) -> bytes:
        payload = fixture_json("emailbison/lead_replied.json")
        payload["data"]["reply"]["id"] = 7000 + i
        return json.dumps(payload).encode()

    async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100), timeout=30) as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post(url, params=params, content=delivery(i)) for i in range(100))
        )
        elapsed = time.monotonic() - started
    print(f"\n100 distinct deliveries, {settings.database_url.split(':')[0]}: {elapsed:.3f} s")
    assert [a.status_code for a in answers] == [200] * 100
    assert await count(settings.database_url, "messages") == 100
