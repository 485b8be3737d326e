"""Three ``hookgate serve`` replicas on one PostgreSQL, 3,000 deliveries spread across them at
random with 30% duplicates sent concurrently: exactly one message per key, one job per message,
every job run once to success, every answer counted once in delivery_stats, and every cron tick
run by one replica."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter

import aiohttp
import pytest

from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import connect
from tests.conftest import count, fixture_json, rows, start_server, stop_server
from tests.fakes import FakeServer

pytestmark = pytest.mark.fault

REPLICAS = 3
DELIVERIES = 3_000
UNIQUE = 2_100  # the other 900 are copies of these: 30% duplicates
CONCURRENCY = 48
HEALTH_INTERVAL_S = 2


def delivery(reply_id: int) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"]["id"] = reply_id
    payload["data"]["lead"]["email"] = f"lead{reply_id % 300}@example.com"
    return json.dumps(payload).encode()


async def test_three_replicas_store_run_and_tick_exactly_once(
    postgres_url: str, fake_unipile: FakeServer
) -> None:
    db = await connect(postgres_url)
    workspace = await create_workspace(
        db, "Acme", WorkspaceOptions(unipile_account_id="acc-replicas")
    )
    await db.close()
    env = {
        "DATABASE_URL": postgres_url,
        "UNIPILE_BASE_URL": fake_unipile.url,
        "UNIPILE_API_KEY": "unipile-test-key",
        "UNIPILE_HEALTH_INTERVAL_S": str(HEALTH_INTERVAL_S),
        "JOB_POLL_INTERVAL_MS": "100",
        "LOG_LEVEL": "ERROR",
    }
    servers = [start_server(env) for _ in range(REPLICAS)]
    rng = random.Random(3)
    plan = list(range(1, UNIQUE + 1)) + [rng.randint(1, UNIQUE) for _ in range(DELIVERIES - UNIQUE)]
    rng.shuffle(plan)
    answers: Counter[int] = Counter()
    try:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for reply_id in plan:
            queue.put_nowait(reply_id)

        async def sender(http: aiohttp.ClientSession) -> None:
            while not queue.empty():
                reply_id = queue.get_nowait()
                base = rng.choice(servers).base_url
                async with http.post(
                    f"{base}/webhooks/emailbison/{workspace.id}",
                    params={"token": workspace.tokens["emailbison"]},
                    data=delivery(reply_id),
                ) as answer:
                    answers[answer.status] += 1

        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await asyncio.wait_for(asyncio.gather(*(sender(http) for _ in range(CONCURRENCY))), 240)
        assert answers == Counter({200: DELIVERIES})

        async with asyncio.timeout(120):  # every job runs, on whichever replica claims it
            # Other processes do the work: there is nothing in this one to wait on but the table.
            while await count(postgres_url, "background_jobs", "status = 'succeeded'") < UNIQUE:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        quiet_from = time.monotonic()
        await asyncio.sleep(4 * HEALTH_INTERVAL_S)  # health ticks with the storm over
    finally:
        for server in servers:
            stop_server(server)

    assert await count(postgres_url, "messages") == UNIQUE
    keys = await rows(
        postgres_url,
        "SELECT count(DISTINCT email_bison_reply_id) AS n FROM messages",
    )
    assert keys[0]["n"] == UNIQUE
    jobs = await rows(
        postgres_url, "SELECT status, attempts, count(*) AS n FROM background_jobs GROUP BY 1, 2"
    )
    assert jobs == [{"status": "succeeded", "attempts": 1, "n": UNIQUE}]
    per_message = await rows(
        postgres_url,
        "SELECT count(*) AS n FROM (SELECT message_id FROM background_jobs GROUP BY message_id "
        "HAVING count(*) > 1) AS doubled",
    )
    assert per_message[0]["n"] == 0
    # Every replica's answers are in delivery_stats (its flusher's, and its last at shutdown).
    stats = await rows(
        postgres_url,
        "SELECT outcome, CAST(sum(deliveries) AS bigint) AS n FROM delivery_stats "
        "GROUP BY outcome ORDER BY outcome",
    )
    assert stats == [
        {"outcome": "deduped", "n": DELIVERIES - UNIQUE},
        {"outcome": "stored", "n": UNIQUE},
    ]

    # Each replica schedules a tick every HEALTH_INTERVAL_S; a tick run by two replicas would
    # show as two checks of the account a few milliseconds apart.  Counted once the storm is
    # over: while three servers and the load generator saturate two cores, a run can be starved
    # past its own interval, and a time-based lease cannot tell that from a dead holder.
    checks = sorted(
        r.at
        for r in fake_unipile.requests("GET", "/api/v1/accounts/acc-replicas")
        if r.at >= quiet_from
    )
    assert len(checks) >= 3, "the health cron did not tick: the test proved nothing"
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    assert min(gaps) > HEALTH_INTERVAL_S / 2, f"a health tick ran twice: gaps {gaps}"
    print(
        f"\nreplicas: {DELIVERIES} deliveries → {UNIQUE} messages and jobs; "
        f"{len(checks)} health ticks, smallest gap {min(gaps):.2f} s"
    )
