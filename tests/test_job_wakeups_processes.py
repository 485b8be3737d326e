"""Wake-ups across real processes: a job enqueued by one process is started by a ``hookgate
worker`` whose next poll is a minute away.  The worker's start-up poll may take the first job;
every later one can only have been started by a wake-up — PostgreSQL ``NOTIFY`` to the worker's
listener, or SQLite's check for other processes' commits.  Behind pgbouncer the listener needs
``DATABASE_LISTEN_URL``; without it the worker says so once and polls."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from gateway.workspaces import CreatedWorkspace
from scheduler import queue
from sql import Database, connect
from tests.conftest import fixture_json, start_server, stop_server
from tests.pgbouncer import PgBouncer
from tests.tcp_proxy import TcpProxy
from tests.test_job_wakeups import enqueue_probe, run_probes_one_after_another
from tests.test_scheduler_processes import done_log, stop_worker, wait_for

POLL_A_MINUTE_AWAY = {"JOB_POLL_INTERVAL_MS": "60000"}
FALLBACK = "job wake-ups fall back to polling"
LISTENING = "listening for job wake-ups"


def start_logged_worker(database_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``hookgate worker`` running the TEST_PROBE handler, its INFO logs in ``log``."""
    with log.open("ab") as sink:
        server = start_server(
            {
                "DATABASE_URL": database_url,
                "JOB_HANDLER_MODULES": "tests.scheduler_probe",
                "LOG_LEVEL": "INFO",
                **env,
            },
            command="worker",
            stderr=sink,
        )
    return server.process


def log_messages(log: Path) -> list[str]:
    return [json.loads(line)["msg"] for line in log.read_text().splitlines() if line.strip()]


def reply(reply_id: int) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"]["id"] = reply_id
    return json.dumps(payload).encode()


async def test_a_delivery_to_an_ingest_only_replica_is_run_by_a_worker_without_a_poll(
    database_url: str, db: Database, workspace: CreatedWorkspace, tmp_path: Path
) -> None:
    web = start_server(
        {"DATABASE_URL": database_url, "HOOKGATE_SCHEDULER": "0", "LOG_LEVEL": "WARNING"}
    )
    worker = start_logged_worker(database_url, tmp_path / "worker.log", **POLL_A_MINUTE_AWAY)
    try:
        hook = f"{web.base_url}/webhooks/emailbison/{workspace.id}"
        params = {"token": workspace.tokens["emailbison"]}
        async with httpx2.AsyncClient(timeout=10) as http:
            for n in (1, 2, 3):
                answer = await http.post(hook, params=params, content=reply(7000 + n))
                assert answer.status_code == 200, answer.text
                await wait_for(database_url, "status = 'succeeded'", n, timeout_s=15)
    finally:
        stop_server(web)
        assert stop_worker(worker) == 0
    jobs = await queue.list_jobs(db)
    assert {(j["type"], j["status"]) for j in jobs} == {("EMAIL_INBOUND_POST_PROCESS", "succeeded")}
    assert len(jobs) == 3


async def test_the_listener_reconnects_after_its_connection_is_cut(
    postgres_url: str, tmp_path: Path
) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    db = await connect(postgres_url)
    log = tmp_path / "worker.log"
    worker = start_logged_worker(
        postgres_url, log, DATABASE_LISTEN_URL=proxy.url(postgres_url), **POLL_A_MINUTE_AWAY
    )
    try:
        await run_probes_one_after_another(postgres_url, db, tmp_path, range(1, 3))
        await proxy.cut()  # the listener's connection is reset, new ones are refused
        await enqueue_probe(db, 3, tmp_path)  # notified while nobody listens
        await asyncio.sleep(1.5)  # reconnection attempts are refused meanwhile
        await proxy.restore()
        await wait_for(postgres_url, "status = 'succeeded'", 3, timeout_s=15)
        await run_probes_one_after_another(postgres_url, db, tmp_path, range(4, 6))
    finally:
        assert stop_worker(worker) == 0
        await db.close()
        await proxy.close()
    assert sorted(job_id for job_id, _ in done_log(tmp_path)) == [1, 2, 3, 4, 5]
    messages = log_messages(log)
    assert messages.count(LISTENING) >= 2
    assert "job wake-up listener lost its connection; reconnecting" in messages
    refused = [m for m in messages if m.startswith("could not listen for job wake-ups")]
    assert len(refused) == 1  # once per outage, however many attempts it took


async def worker_behind_pgbouncer(
    postgres_url: str, bouncer: PgBouncer, root: Path, **env: str
) -> list[str]:
    """A worker whose DATABASE_URL goes through pgbouncer runs three probes one after another;
    its log messages."""
    db = await connect(postgres_url)
    log = root / "worker.log"
    worker = start_logged_worker(bouncer.url(postgres_url), log, DATABASE_PGBOUNCER="1", **env)
    try:
        await run_probes_one_after_another(postgres_url, db, root, range(1, 4))
    finally:
        assert stop_worker(worker) == 0
        await db.close()
    return log_messages(log)


async def test_behind_pgbouncer_the_listener_uses_the_listen_url(
    postgres_url: str, bouncer: PgBouncer, tmp_path: Path
) -> None:
    messages = await worker_behind_pgbouncer(
        postgres_url, bouncer, tmp_path, DATABASE_LISTEN_URL=postgres_url, **POLL_A_MINUTE_AWAY
    )
    assert LISTENING in messages
    assert FALLBACK not in " ".join(messages)


async def test_behind_pgbouncer_without_a_listen_url_jobs_are_polled_and_it_is_said_once(
    postgres_url: str, bouncer: PgBouncer, tmp_path: Path
) -> None:
    messages = await worker_behind_pgbouncer(
        postgres_url, bouncer, tmp_path, JOB_POLL_INTERVAL_MS="200"
    )
    assert [m for m in messages if m.startswith(FALLBACK)] == [
        f"{FALLBACK}: LISTEN does not work through pgbouncer in transaction mode; "
        "set DATABASE_LISTEN_URL to a direct PostgreSQL connection"
    ]
    assert not [m for m in messages if "listen" in m.lower() and not m.startswith(FALLBACK)]
