"""Crons: named runs that one replica at a time performs, on a schedule or when asked.

``CronService`` holds the registry (``context_packs`` every ``CONTEXT_PACK_INTERVAL_S``,
``unipile_health`` every ``UNIPILE_HEALTH_INTERVAL_S``) and gives the scheduler its interval
jobs (``scheduled_jobs``), plus the alert sender every ``ALERTS_SEND_INTERVAL_S``.
``POST /cron/{name}`` calls ``run_now``.

A run first takes the cron's ``cron_leases`` row in one atomic statement (``take_cron_lease``).
A scheduled tick keeps the lease for 90% of the interval, even after it finishes, so replicas
whose schedules are not aligned do not run the same cron again in between: exactly one replica
runs each tick.  While a run goes on its lease is renewed (a dead holder loses it within
``min(hold, 60 s)``); a run that loses its lease to another replica is cancelled.  A manual run
may also take the lease of a finished run, and gives it back when it ends; so does a run
cancelled by shutdown, so another replica can run that tick.  A cron already running (here or
on another replica) is ``CronBusy``.

The database keeps the clock: a lease is taken, renewed and compared with its ``now()``, and
a run's start is the database's ``last_started_at``.  Its end is that start plus the run's
duration on this process's monotonic clock, so no replica's wall clock is ever written or
compared.  The end (``last_finished_at``, ``last_outcome``, ``breaker_opened_at``) is written on
the lease row.  When that write fails (the database is what went away) it is kept and written
before this process's next run of that cron, guarded so it never overwrites a later run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from gateway.runtime import Runtime
from gateway.settings import Settings
from scheduler.runner import new_worker_id
from sql import DatabaseError

log = logging.getLogger("hookgate.crons")

HOLD_FRACTION = 0.9
MAX_RENEW_WINDOW_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class CronResult:
    """What a cron's function returns: ``ok``, ``skipped`` (nothing it could do, e.g. its
    service is off) or ``breaker_open`` (it ended early and will resume)."""

    outcome: str = "ok"
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    breaker_opened_at: dt.datetime | None = None


CronFunc = Callable[[Runtime], Coroutine[Any, Any, CronResult]]


@dataclasses.dataclass(frozen=True, slots=True)
class CronSpec:
    name: str
    interval_s: float
    max_run_s: float
    run: CronFunc


@dataclasses.dataclass(frozen=True, slots=True)
class CronRun:
    """One run's end, as logged, recorded on the lease row and answered over HTTP.  Outcomes:
    those of ``CronResult`` plus ``failed`` (it raised or overran ``max_run_s``), ``cancelled``
    (shutdown) and ``lost_lease``."""

    name: str
    holder: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    expires_at: dt.datetime
    error: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    breaker_opened_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cron": self.name,
            "outcome": self.outcome,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "error": self.error,
            "detail": self.detail,
            "breaker_opened_at": (
                None if self.breaker_opened_at is None else self.breaker_opened_at.isoformat()
            ),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A coroutine function the scheduler runs every ``seconds`` (and once at start with
    ``at_start``), never overlapping itself."""

    id: str
    seconds: float
    func: Callable[[], Awaitable[object]]
    at_start: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Tick:
    """A run that holds its lease: ``started`` is the database's ``last_started_at`` (with
    the holder, the run's identity on the lease row), ``began`` the monotonic time it was taken,
    ``keep_until`` how long the lease stays after the run ends."""

    spec: CronSpec
    started: dt.datetime
    began: float
    keep_until: dt.datetime


class CronBusy(Exception):
    """The cron is running already, in this process or on another replica."""


def default_crons(settings: Settings) -> list[CronSpec]:
    # Imported here: those modules import CronResult from this one.
    from scheduler.context_packs import build_context_packs
    from scheduler.unipile_health import check_unipile_health

    return [
        CronSpec(
            "context_packs",
            settings.context_pack_interval_s,
            settings.context_pack_max_run_s,
            build_context_packs,
        ),
        CronSpec(
            "unipile_health",
            settings.unipile_health_interval_s,
            settings.unipile_health_interval_s,
            check_unipile_health,
        ),
    ]


class CronService:
    def __init__(
        self, runtime: Runtime, specs: list[CronSpec] | None = None, *, holder: str | None = None
    ) -> None:
        self.runtime = runtime
        self.holder = holder or new_worker_id()
        chosen = default_crons(runtime.settings) if specs is None else specs
        self.specs = {spec.name: spec for spec in chosen}
        self._active: dict[str, asyncio.Task[Any]] = {}
        self._unrecorded: dict[str, CronRun] = {}

    def scheduled_jobs(self) -> list[ScheduledJob]:
        from scheduler.alerts import send_due_alerts

        async def send_alerts() -> None:
            try:
                await send_due_alerts(self.runtime)
            except DatabaseError as exc:
                log.warning("alert sender could not reach the database", extra={"error": str(exc)})

        jobs = [
            ScheduledJob(f"cron.{spec.name}", spec.interval_s, partial(self.tick, spec.name))
            for spec in self.specs.values()
        ]
        jobs.append(
            ScheduledJob("alerts.send", self.runtime.settings.alerts_send_interval_s, send_alerts)
        )
        return jobs

    async def tick(self, name: str) -> CronRun | None:
        """A scheduled run: None when another run has the lease.  Never raises (but
        ``CancelledError``): the scheduler's job must not die."""
        try:
            return await self._run(self.specs[name], manual=False)
        except CronBusy:
            return None
        except DatabaseError as exc:
            log.warning("cron lease not taken", extra={"cron": name, "error": str(exc)})
            return None

    async def run_now(self, name: str) -> CronRun:
        """A manual run.  Raises KeyError (no such cron), CronBusy or DatabaseError."""
        return await self._run(self.specs[name], manual=True)

    def runs_in_flight(self) -> set[asyncio.Task[Any]]:
        """The runs going on in this process, scheduled and manual: shutdown drains them (each
        cancelled one records its end as ``cancelled``; context packs resume on the next run)."""
        return set(self._active.values())

    async def _run(self, spec: CronSpec, *, manual: bool) -> CronRun:
        if spec.name in self._active:
            raise CronBusy(spec.name)
        task = asyncio.current_task()
        assert task is not None
        self._active[spec.name] = task  # set before any await: the in-process guard
        try:
            await self._record_unrecorded(spec.name)
            hold_s = spec.interval_s * HOLD_FRACTION
            window_s = min(hold_s, MAX_RENEW_WINDOW_S)
            began = time.monotonic()
            lease = await self.runtime.db.fetch_one(
                "take_cron_lease",
                name=spec.name,
                holder=self.holder,
                lease_s=window_s if manual else hold_s,
                manual=manual,
            )
            if lease is None:
                raise CronBusy(spec.name)
            started: dt.datetime = lease["last_started_at"]
            tick = _Tick(spec, started, began, started if manual else lease["expires_at"])
            return await self._execute(tick, window_s)
        finally:
            self._active.pop(spec.name, None)

    async def _execute(self, tick: _Tick, window_s: float) -> CronRun:
        spec = tick.spec
        lost = asyncio.Event()
        body = asyncio.create_task(spec.run(self.runtime), name=f"cron:{spec.name}")
        renewer = asyncio.create_task(self._renew(tick, window_s, body, lost))
        result = CronResult()
        outcome, error = "ok", None
        try:
            async with asyncio.timeout(spec.max_run_s):
                result = await body
            outcome = result.outcome
        except TimeoutError:
            outcome, error = "failed", f"ran past its {spec.max_run_s:g} s limit"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not lost.is_set() or (current is not None and current.cancelling()):
                await asyncio.shield(self._end(tick, "cancelled", None))
                raise
            outcome, error = "lost_lease", "another replica took the lease over"
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("cron run failed", extra={"cron": spec.name})
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        return await self._end(tick, outcome, error, result)

    async def _end(
        self, tick: _Tick, outcome: str, error: str | None, result: CronResult | None = None
    ) -> CronRun:
        duration_s = time.monotonic() - tick.began
        finished = tick.started + dt.timedelta(seconds=duration_s)
        # A run cut short by shutdown hands its lease back: another replica may run the tick.
        # Expired as of its start, not of ``finished``: that is measured from before the lease
        # was taken, so it runs ahead of the database's clock by the take's round trip, and a
        # replica asking at once would still find the lease held.
        expires = tick.started if outcome == "cancelled" else max(tick.keep_until, finished)
        run = CronRun(
            name=tick.spec.name,
            holder=self.holder,
            started_at=tick.started,
            finished_at=finished,
            outcome=outcome,
            expires_at=expires,
            error=error,
            detail=result.detail if result else {},
            breaker_opened_at=result.breaker_opened_at if result else None,
        )
        level = logging.INFO if outcome in ("ok", "skipped") else logging.WARNING
        log.log(
            level,
            "cron run finished",
            extra={
                "cron": run.name,
                "outcome": outcome,
                "error": error,
                "duration_s": round(duration_s, 3),
                **run.detail,
            },
        )
        try:
            await self._record(run)
        except DatabaseError as exc:
            self._unrecorded[run.name] = run
            log.warning(
                "cron run's end not recorded; it is written before this cron's next run here",
                extra={"cron": run.name, "error": str(exc)},
            )
        return run

    async def _record(self, run: CronRun) -> None:
        await self.runtime.db.execute(
            "finish_cron_run",
            name=run.name,
            holder=run.holder,
            started_at=run.started_at,
            finished_at=run.finished_at,
            outcome=run.outcome,
            error=run.error,
            breaker_opened_at=run.breaker_opened_at,
            expires_at=run.expires_at,
        )

    async def _record_unrecorded(self, name: str) -> None:
        run = self._unrecorded.get(name)
        if run is None:
            return
        try:
            await self._record(run)
        except DatabaseError:
            return  # still down: taking the lease will say so
        self._unrecorded.pop(name, None)

    async def _renew(
        self, tick: _Tick, window_s: float, body: asyncio.Task[CronResult], lost: asyncio.Event
    ) -> None:
        """Every third of the window, push the lease to at least ``window_s`` from now.  A
        renewal that finds the lease taken over cancels the run."""
        name = tick.spec.name
        interval = max(window_s / 3, 0.05)
        while not body.done():
            await asyncio.sleep(interval)
            try:
                owned = await self.runtime.db.fetch_one(
                    "renew_cron_lease",
                    name=name,
                    holder=self.holder,
                    started_at=tick.started,
                    window_s=window_s,
                )
            except DatabaseError as exc:
                log.warning("cron lease renewal failed", extra={"cron": name, "error": str(exc)})
                continue
            if owned is None:
                log.warning("cron run lost its lease; cancelled", extra={"cron": name})
                lost.set()
                body.cancel()
                return
