"""The scheduler in real processes: two ``hookgate worker`` replicas on one PostgreSQL, a worker
killed mid-run, and webhook jobs run to completion under ``hookgate serve`` and
``hookgate worker``.  Workers load the test handler ``TEST_PROBE`` (tests/scheduler_probe.py)
through ``JOB_HANDLER_MODULES``."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import time
from pathlib import Path

import httpx2

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from scheduler import queue
from sql import Database, connect
from tests.conftest import (
    AppClient,
    LiveServer,
    count,
    fixture_bytes,
    make_settings,
    start_server,
    stop_server,
)


def start_worker(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    server = start_server(
        {
            "DATABASE_URL": database_url,
            "JOB_HANDLER_MODULES": "tests.scheduler_probe",
            "JOB_POLL_INTERVAL_MS": "50",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        command="worker",
    )
    return server.process


def stop_worker(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a graceful stop) and the exit status."""
    stop_server(LiveServer("", process))
    return process.returncode


async def enqueue_probes(db: Database, n: int, **payload: object) -> list[int]:
    ids = []
    for i in range(n):
        job_id = await queue.enqueue(
            db, "TEST_PROBE", f"TEST_PROBE:{i}", max_attempts=3, payload=payload
        )
        assert job_id is not None
        ids.append(job_id)
    return ids


async def wait_for(database_url: str, where: str, n: int, *, timeout_s: float) -> None:
    """Wait (bounded) until ``n`` background_jobs rows match ``where``."""
    async with asyncio.timeout(timeout_s):
        found = 0
        while found < n:
            await asyncio.sleep(0.1)  # another process does the work: nothing here to await
            found = await count(database_url, "background_jobs", where)


def overlaps(root: Path) -> list[Path]:
    return list(root.glob("overlap-*"))


def is_hanging(root: Path, job_id: int) -> bool:
    return (root / f"hanging-{job_id}").exists()


def done_log(root: Path) -> list[tuple[int, int]]:
    path = root / "done.log"
    lines = path.read_text().split() if path.exists() else []
    return [(int(a), int(b)) for a, b in zip(lines[::2], lines[1::2], strict=True)]


async def test_two_workers_never_run_the_same_job_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    db = await connect(postgres_url)
    try:
        ids = await enqueue_probes(db, 240, dir=str(tmp_path), sleep=0.005)
    finally:
        await db.close()
    workers = [start_worker(postgres_url, JOB_CONCURRENCY="4") for _ in range(2)]
    try:
        await wait_for(postgres_url, "status = 'succeeded'", len(ids), timeout_s=60)
    finally:
        codes = [stop_worker(w) for w in workers]
    assert codes == [0, 0]
    assert overlaps(tmp_path) == []
    runs = collections.Counter(job_id for job_id, _ in done_log(tmp_path))
    assert sorted(runs) == ids
    assert set(runs.values()) == {1}


async def test_job_of_a_killed_worker_is_reclaimed_and_completes(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    (job_id,) = await enqueue_probes(db, 1, dir=str(tmp_path), hang_first=True)
    doomed = start_worker(database_url, JOB_LEASE_S="1")
    try:
        async with asyncio.timeout(20):
            hanging = False
            while not hanging:
                await asyncio.sleep(0.05)  # the worker process signals through a file
                hanging = is_hanging(tmp_path, job_id)
    finally:
        doomed.kill()  # SIGKILL: no release, the lease just stops being renewed
        doomed.wait()
    killed_at = time.monotonic()
    rescuer = start_worker(database_url, JOB_LEASE_S="1")
    try:
        await wait_for(database_url, "status = 'succeeded'", 1, timeout_s=30)
    finally:
        assert stop_worker(rescuer) == 0
    print(
        f"\nrecovery: the killed worker's job succeeded {time.monotonic() - killed_at:.2f} s "
        "after kill -9 (JOB_LEASE_S=1, a new worker started at once)"
    )
    assert done_log(tmp_path) == [(job_id, rescuer.pid)]
    (row,) = await queue.list_jobs(db)
    assert (row["attempts"], row["locked_by"]) == (2, None)


async def post_reply(http: httpx2.AsyncClient, url: str) -> int:
    answer = await http.post(url, content=fixture_bytes("emailbison/lead_replied.json"))
    assert answer.status_code == 200, answer.text
    return int(answer.json()["message_id"])


async def test_webhook_jobs_complete_under_serve(
    settings: Settings, db: Database, workspace: CreatedWorkspace
) -> None:
    server = start_server({"DATABASE_URL": settings.database_url, "LOG_LEVEL": "WARNING"})
    try:
        async with httpx2.AsyncClient(base_url=server.base_url) as http:
            url = f"/webhooks/emailbison/{workspace.id}?token={workspace.tokens['emailbison']}"
            message_id = await post_reply(http, url)
            await wait_for(settings.database_url, "status = 'succeeded'", 1, timeout_s=20)
            metrics = (await http.get("/metrics")).text
    finally:
        stop_server(server)
    (job,) = await queue.list_jobs(db)
    assert (job["type"], job["message_id"]) == ("EMAIL_INBOUND_POST_PROCESS", message_id)
    assert (
        'hookgate_jobs_finished_total{outcome="succeeded",type="EMAIL_INBOUND_POST_PROCESS"} 1.0'
        in metrics
    )


async def test_webhook_jobs_complete_under_worker(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    from gateway.app import create_app

    app = create_app(make_settings(database_url, HOOKGATE_SCHEDULER="0"))  # web-only replica
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await post_reply(http, AppClient(http, app).url("emailbison", workspace))
    assert await count(database_url, "background_jobs", "status = 'pending'") == 1
    worker = start_worker(database_url)
    try:
        await wait_for(database_url, "status = 'succeeded'", 1, timeout_s=20)
    finally:
        assert stop_worker(worker) == 0
