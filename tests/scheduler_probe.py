"""A job handler for tests that run ``hookgate worker`` processes (``JOB_HANDLER_MODULES=
tests.scheduler_probe``).  ``TEST_PROBE`` jobs leave evidence in the directory their payload
names: ``done.log`` (one ``<job id> <pid>`` line per completed run), ``overlap-*`` files when a
job was found running twice at once, and ``hanging-<id>`` when a run hangs on purpose.

Payload: ``{"dir": path, "sleep": seconds, "hang_first": bool}``; with ``hang_first`` the first
attempt hangs (its worker is meant to be killed) and later ones complete.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from scheduler.handlers import JobContext, register
from scheduler.queue import Job

HANG_S = 60.0


def _enter(root: Path, job: Job) -> bool:
    """Mark the job as running in this process; False if another run holds the mark."""
    try:
        fd = os.open(root / f"running-{job.id}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        (root / f"overlap-{job.id}-{os.getpid()}").touch()
        return False
    os.close(fd)
    return True


def _leave(root: Path, job: Job) -> None:
    (root / f"running-{job.id}").unlink()
    with (root / "done.log").open("a") as log:
        log.write(f"{job.id} {os.getpid()}\n")


@register("TEST_PROBE", timeout_s=HANG_S * 2)
async def probe(ctx: JobContext, job: Job) -> None:
    root = Path(job.payload["dir"])
    if job.payload.get("hang_first") and job.attempts == 1:
        (root / f"hanging-{job.id}").touch()
        await asyncio.sleep(HANG_S)
    if not _enter(root, job):
        raise RuntimeError(f"job {job.id} is already running elsewhere")
    await asyncio.sleep(float(job.payload.get("sleep", 0)))
    _leave(root, job)
