"""``hookgate jobs list|stats|retry`` against real databases."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.cli import main
from scheduler import queue
from scheduler.queue import JobQueue
from sql import Database

LEASE_S = 30.0


async def hookgate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["jobs", *args])  # the command runs its own loop
    return code, capsys.readouterr().out


async def finish(db: Database, job_id: int, outcome: str) -> None:
    worker = JobQueue(db, "cli-test")
    (job,) = await worker.claim(1, lease_s=LEASE_S)
    assert job.id == job_id
    if outcome == "dead":
        assert await worker.bury(job, error="RuntimeError: boom")
    else:
        assert await worker.succeed(job)


@pytest.fixture
async def jobs(db: Database) -> dict[str, int]:
    """One job in each of dead, succeeded and pending."""
    ids: dict[str, int] = {}
    for name in ("dead", "succeeded", "pending"):
        job_id = await queue.enqueue(db, "DRAFT_SEND", f"DRAFT_SEND:{name}", max_attempts=5)
        assert job_id is not None
        if name != "pending":
            await finish(db, job_id, name)
        ids[name] = job_id
    return ids


async def test_stats_and_list(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    jobs: dict[str, int],
) -> None:
    code, out = await hookgate(capsys, monkeypatch, database_url, "stats", "--json")
    assert code == 0
    assert json.loads(out) == {
        "DRAFT_SEND": {"pending": 1, "running": 0, "succeeded": 1, "dead": 1}
    }

    code, out = await hookgate(
        capsys, monkeypatch, database_url, "list", "--status", "dead", "--json"
    )
    (dead,) = json.loads(out)
    assert (dead["id"], dead["last_error"], dead["attempts"]) == (
        jobs["dead"],
        "RuntimeError: boom",
        1,
    )

    code, out = await hookgate(
        capsys, monkeypatch, database_url, "list", "--type", "NOPE", "--json"
    )
    assert json.loads(out) == []
    code, out = await hookgate(capsys, monkeypatch, database_url, "list")
    assert [int(line.split()[0]) for line in out.splitlines()] == sorted(
        jobs.values(), reverse=True
    )


async def test_retry_one_job_and_every_dead_job(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    db: Database,
    jobs: dict[str, int],
) -> None:
    code, _ = await hookgate(capsys, monkeypatch, database_url, "retry", str(jobs["succeeded"]))
    assert code == 1
    code, _ = await hookgate(capsys, monkeypatch, database_url, "retry", str(jobs["dead"]))
    assert code == 0
    (row,) = [r for r in await queue.list_jobs(db) if r["id"] == jobs["dead"]]
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, None)

    await finish(db, jobs["pending"], "dead")  # oldest due first: the former "pending" job
    code, out = await hookgate(capsys, monkeypatch, database_url, "retry", "--dead")
    assert (code, out.strip()) == (0, "1 dead jobs back to pending")
    assert (await queue.job_counts(db))["DRAFT_SEND"] == {
        "pending": 2,
        "running": 0,
        "succeeded": 1,
        "dead": 0,
    }
