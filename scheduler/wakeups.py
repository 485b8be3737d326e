"""Wake-ups: a job made due anywhere — on another replica, by a command, by any code path —
starts within milliseconds on a runner with a free slot, not at the next poll.

The runner's ``nudge()`` claims at once when a slot is free (coalesced: a storm of wake-ups is
one claim at a time).  A webhook calls it after its commit (``Runtime.job_due``); ``JobWakeups``
calls it for every other enqueue, whichever process or code path made it:

- PostgreSQL: migration 008's trigger notifies channel ``hookgate_jobs`` from every
  transaction that makes a job pending and due; a ``Listener`` on a connection of its own
  (``DATABASE_LISTEN_URL``, else ``DATABASE_URL``) nudges on each notification.  A lost
  connection is reopened with backoff, and every (re)connection nudges once: what was notified
  while nobody listened is gone.  Behind pgbouncer (``DATABASE_PGBOUNCER=1``) without a listen
  URL there is nothing to listen on, which is logged once at start.
- SQLite: ``PRAGMA data_version`` on the reader connection moves whenever a commit changed the
  file (this process's writer or another process); checked every ``SQLITE_CHECK_INTERVAL_S``
  (a few microseconds of SQLite on the reader, which never waits for the writer: far cheaper
  than a claim), a change nudges.  A claim that found nothing changes nothing, so wake-ups do
  not feed themselves.

Polling stays the safety net for everything a wake-up cannot see: jobs due later (a backoff, a
delayed send), a notification lost with a connection, a listener that cannot connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.runtime import Runtime
from gateway.settings import Settings
from sql import DatabaseError
from sql.listen import Listener

log = logging.getLogger("hookgate.jobs")

CHANNEL = "hookgate_jobs"  # notified by migration 008's trigger on background_jobs
SQLITE_CHECK_INTERVAL_S = 0.025
LISTEN_CHECK_INTERVAL_S = 15.0  # a round trip on the listener's connection this often
RECONNECT_FIRST_S = 0.1
RECONNECT_CAP_S = 5.0


def listen_url(settings: Settings) -> str | None:
    """Where the PostgreSQL listener connects, or None when wake-ups fall back to polling
    (pgbouncer in transaction mode cannot ``LISTEN``)."""
    if settings.database_listen_url:
        return settings.database_listen_url
    if settings.database_pgbouncer:
        return None
    return settings.database_url


class JobWakeups:
    def __init__(self, runtime: Runtime, nudge: Callable[[], None]) -> None:
        self.runtime = runtime
        self.nudge = nudge
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        settings = self.runtime.settings
        watch: Coroutine[Any, Any, None]
        if self.runtime.db.dialect == "sqlite":
            watch = self._watch_commits()
        elif (url := listen_url(settings)) is not None:
            watch = self._listen(url)
        else:
            log.warning(
                "job wake-ups fall back to polling: LISTEN does not work through pgbouncer in "
                "transaction mode; set DATABASE_LISTEN_URL to a direct PostgreSQL connection",
                extra={"poll_interval_ms": settings.job_poll_interval_ms},
            )
            return
        self._task = asyncio.create_task(watch, name="jobs.wakeups")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen(self, url: str) -> None:
        """Listen until cancelled.  Failed connection attempts and short-lived connections back
        off (doubling up to ``RECONNECT_CAP_S``); a connection that lived longer resets it.  The
        first failed attempt of an outage is logged, the rest are not."""
        loop = asyncio.get_running_loop()
        timeout_s = self.runtime.settings.database_timeout_s
        delay = RECONNECT_FIRST_S
        outage = _Outage("could not listen for job wake-ups; polling meanwhile, retrying")
        while True:
            try:
                listener = await Listener.open(url, CHANNEL, self.nudge, timeout_s=timeout_s)
            except DatabaseError as exc:
                outage.failed(exc)
            else:
                outage.over()
                log.info("listening for job wake-ups", extra={"channel": CHANNEL})
                self.nudge()  # maybe missed: jobs made due before the LISTEN took effect
                opened = loop.time()
                try:
                    await _until_lost(listener)
                finally:
                    listener.close()
                log.warning("job wake-up listener lost its connection; reconnecting")
                if loop.time() - opened >= RECONNECT_CAP_S:
                    delay = RECONNECT_FIRST_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_CAP_S)

    async def _watch_commits(self) -> None:
        """Nudge whenever a commit changed the file since the last look, and once at the first
        look (what was committed before it is not known to have been claimed)."""
        db = self.runtime.db
        seen: int | None = None
        outage = _Outage("could not check the database for new jobs; polling meanwhile")
        while True:
            try:
                row = await db.fetch_one("data_version")
            except DatabaseError as exc:
                outage.failed(exc)
            else:
                assert row is not None
                outage.over()
                if row["data_version"] != seen:
                    seen = row["data_version"]
                    self.nudge()
            await asyncio.sleep(SQLITE_CHECK_INTERVAL_S)


class _Outage:
    """Logs the first failure of a run of failures, not every retry after it."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.failing = False

    def failed(self, exc: DatabaseError) -> None:
        if not self.failing:
            log.warning(self.message, extra={"error": str(exc)})
        self.failing = True

    def over(self) -> None:
        self.failing = False


async def _until_lost(listener: Listener) -> None:
    """Return when the listener's connection is gone, checking it every
    ``LISTEN_CHECK_INTERVAL_S`` (a connection can die without a reset reaching us)."""
    while not listener.lost.is_set():
        try:
            async with asyncio.timeout(LISTEN_CHECK_INTERVAL_S):
                await listener.lost.wait()
        except TimeoutError:
            with contextlib.suppress(DatabaseError):  # a failed check has set ``lost``
                await listener.check()
