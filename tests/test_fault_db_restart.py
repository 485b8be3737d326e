"""A PostgreSQL restart in the middle of a delivery stream, on a throwaway cluster.

Every delivery answered 200 is stored; every other one was answered 503 (the retry status) and
is stored when re-sent; the gateway recovers by itself.  The test prints how many seconds passed
from the database being back to the first 200."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx2
import pytest

from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import connect
from sql.migrations import discover
from tests.conftest import count, fixture_json, run_blocking, start_server, stop_server
from tests.pg_cluster import Cluster

pytestmark = pytest.mark.fault

SENDERS = 4


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def delivery(reply_id: int) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"]["id"] = reply_id
    return json.dumps(payload).encode()


async def test_restart_mid_stream_loses_nothing_and_recovers(cluster: Cluster) -> None:
    async def prepare() -> tuple[str, str]:
        db = await connect(cluster.url)
        await db.apply_migrations(discover(db.dialect))
        created = await create_workspace(db, "Acme", WorkspaceOptions())
        await db.close()
        return created.id, created.tokens["emailbison"]

    workspace_id, token = await prepare()
    server = start_server({"DATABASE_URL": cluster.url, "DATABASE_TIMEOUT_S": "1"})
    answers: dict[int, list[int]] = {}
    back_at: float | None = None
    first_ok_after_back: float | None = None
    stop = asyncio.Event()
    next_id = iter(range(1, 100_000))

    async def sender(http: httpx2.AsyncClient) -> None:
        nonlocal first_ok_after_back
        while not stop.is_set():
            reply_id = next(next_id)
            try:
                answer = await http.post(url, params={"token": token}, content=delivery(reply_id))
                status = answer.status_code
            except httpx2.TransportError:
                status = 0
            answers.setdefault(reply_id, []).append(status)
            if status == 200 and back_at is not None and first_ok_after_back is None:
                first_ok_after_back = time.monotonic()
            if status != 200:
                await asyncio.sleep(0.05)

    url = f"{server.base_url}/webhooks/emailbison/{workspace_id}"
    try:
        async with httpx2.AsyncClient(timeout=10) as http:
            senders = [asyncio.create_task(sender(http)) for _ in range(SENDERS)]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.stop, "fast")
            await asyncio.sleep(1.0)  # deliveries during the outage
            await asyncio.to_thread(cluster.start)
            back_at = time.monotonic()
            for _ in range(100):  # bounded: at most 10 s for the first 200 after the restart
                if first_ok_after_back is not None:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*senders)

            statuses = {s for history in answers.values() for s in history}
            assert statuses <= {200, 503}, f"unexpected answers: {statuses}"
            failed = [i for i, history in answers.items() if history[-1] != 200]
            assert failed, "no delivery met the outage: the restart proved nothing"
            for reply_id in failed:  # the provider's retry
                answer = await http.post(url, params={"token": token}, content=delivery(reply_id))
                assert answer.status_code == 200
    finally:
        stop_server(server)

    assert first_ok_after_back is not None, "the gateway did not recover within 10 s"
    recovery = first_ok_after_back - (back_at or 0)
    print(
        f"\nrecovery: first 200 {recovery:.2f} s after PostgreSQL was back; "
        f"{len(answers)} deliveries, {len(failed)} answered 503 during the outage"
    )
    stored = run_blocking(count(cluster.url, "messages"))
    assert stored == len(answers)
