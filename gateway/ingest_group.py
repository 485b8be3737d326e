"""Group commit: the deliveries that arrive while a write is in flight are stored together.

A delivery joins the pending list and waits for its own future.  A flusher task (started by the
first delivery of a burst, gone when the list is empty) takes up to ``INGEST_BATCH_MAX``
pending deliveries as one group — whatever arrived meanwhile, after an optional
``INGEST_LINGER_MS`` — and hands it to ``gateway.ingest_store.store_group``: one transaction,
one commit.  Every member's future is settled only after that transaction ended: its outcome
after the commit, or the group's error (a lost database: all of them, nothing committed).  On
PostgreSQL a second group may be written while the first commits; SQLite has one writer.

A copy of a message whose group is being written (a provider re-sending while its first copy is
still in flight, a storm of 100 identical posts) does not start a group of its own to find that
row once it commits: that group answers it too, once committed, ``deduped`` with the first
copy's id, as a copy inside the group would be (or with the group's error).  Only a copy that
brings nothing new folds: one whose interest (``LEAD_INTERESTED``) the group in flight does not
carry goes to the next group and is an ordinary dedupe hit there; so does a copy whose first
copy failed alone.  The folded copies of a group are logged once per message, with their number.

The write runs in a task of its own: a waiting client that disconnects cancels only its wait,
never the group.  A group task cancelled itself (a shutdown that could not wait) rolls back and
answers every member unavailable, so a group is never half answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import weakref
from collections.abc import Callable

from gateway.delivery_stats import DeliveryStats
from gateway.events import Outcome
from gateway.ingest_store import (
    MessageKey,
    MessageWrite,
    Result,
    Write,
    hit_log,
    message_key,
    store_group,
    text_size,
)
from gateway.metrics import Metrics
from gateway.settings import Settings
from sql import Database, DatabaseUnavailable

log = logging.getLogger("hookgate.ingest")

# At most this much message text (bodies and subjects, in characters) in one group: its JSON
# parameter stays far below PostgreSQL's 255 MB jsonb limit however large the bodies are.
MAX_GROUP_TEXT = 16 * 1024 * 1024

# Groups written at once: PostgreSQL overlaps one group's commit with the next group's
# statements; SQLite's single writer would only queue a second one.
IN_FLIGHT = {"postgres": 2, "sqlite": 1}


@dataclasses.dataclass(slots=True)
class _Pending:
    write: Write
    answer: asyncio.Future[Result]


@dataclasses.dataclass(slots=True)
class _InFlight:
    """The first write of a message key in a group being written, and the copies folded into
    it (answered by the group once it committed)."""

    first: _Pending
    interested: bool  # some member of the group for this key carries interest
    folded: list[tuple[_Pending, str]] = dataclasses.field(default_factory=list)  # and event


class IngestGroups:
    """The grouper of one database."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        metrics: Metrics | None = None,
        job_due: Callable[[], None] | None = None,
        stats: DeliveryStats | None = None,
    ) -> None:
        self._db = db
        self._batch_max = settings.ingest_batch_max
        self._linger_s = settings.ingest_linger_ms / 1000
        self._metrics = metrics
        self._job_due = job_due
        self._stats = stats
        self._pending: list[_Pending] = []
        self._slots = asyncio.Semaphore(IN_FLIGHT[db.dialect])
        self._flusher: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._in_flight: dict[MessageKey, _InFlight] = {}

    async def submit(self, write: Write) -> Result:
        """Store ``write`` with whatever else is pending; its outcome (or its own error) once
        the transaction holding it has committed.  Raises the group's error."""
        pending = _Pending(write, asyncio.get_running_loop().create_future())
        if not self._fold(pending):
            self._queue(pending)
        # Each delivery has a future of its own: a cancelled wait cancels only that future, and
        # the group (which skips answers already done) writes and answers all the others.
        return await pending.answer

    def _queue(self, pending: _Pending) -> None:
        self._pending.append(pending)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                if self._linger_s:
                    await asyncio.sleep(self._linger_s)
                await self._slots.acquire()
                group = self._take()
                task = asyncio.create_task(self._write(group))
                self._writes.add(task)
                task.add_done_callback(functools.partial(self._settled, group=group))
        except asyncio.CancelledError:
            for pending in self._pending:
                _fail(pending, DatabaseUnavailable("shut down before the commit"))
            self._pending = []
            raise
        finally:
            self._flusher = None

    def _fold(self, pending: _Pending) -> bool:
        """Whether ``pending`` is a copy of a message being written that folds into that write
        (see the module docstring)."""
        write = pending.write
        if not isinstance(write, MessageWrite):
            return False
        entry = self._in_flight.get(message_key(write))
        if entry is None or (write.message.interested and not entry.interested):
            return False
        entry.folded.append((pending, write.message.event))
        return True

    def _take(self) -> list[_Pending]:
        """The next group: up to INGEST_BATCH_MAX pending writes, fewer when their message
        text would pass MAX_GROUP_TEXT (always at least one)."""
        count = text = 0
        for pending in self._pending[: self._batch_max]:
            text += text_size(pending.write)
            if count and text > MAX_GROUP_TEXT:
                break
            count += 1
        group = self._pending[:count]
        del self._pending[:count]
        mine: set[MessageKey] = set()  # keys whose first write in flight is of this group
        for pending in group:
            if isinstance(write := pending.write, MessageWrite):
                key = message_key(write)
                if key not in self._in_flight:
                    self._in_flight[key] = _InFlight(pending, write.message.interested)
                    mine.add(key)
                elif key in mine:
                    self._in_flight[key].interested |= write.message.interested
        return group

    def _landed(self, group: list[_Pending], outcome: list[Result] | BaseException) -> None:
        """The group's transaction ended with ``outcome`` (each member's result, or the group's
        error): copies arriving from now on are not folded into it, and those that were are
        answered — with the first copy's message, or the group's error; a copy whose first copy
        failed alone joins the next group — and logged once per message."""
        results = outcome if isinstance(outcome, list) else [outcome] * len(group)
        for pending, result in zip(group, results, strict=True):
            if not isinstance(write := pending.write, MessageWrite):
                continue
            key = message_key(write)
            entry = self._in_flight.get(key)
            if entry is None or entry.first is not pending:
                continue
            del self._in_flight[key]
            if not entry.folded:
                continue
            if isinstance(outcome, BaseException):
                for copy, _ in entry.folded:
                    _fail(copy, outcome)
                continue
            if not isinstance(result, Outcome) or result.message_id is None:
                for copy, _ in entry.folded:
                    self._queue(copy)
                continue
            for copy, event in entry.folded:
                _settle(copy, Outcome(event, message_id=result.message_id, deduped=True))
            fields = hit_log(
                key, write.message.event, result.message_id, len(entry.folded), in_flight=True
            )
            log.info("dedupe hit", extra=fields)

    async def _write(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results = await store_group(self._db, [p.write for p in group], self._stats)
        except Exception as exc:  # a lost database: nothing of the group was committed
            self._landed(group, exc)
            for pending in group:
                _fail(pending, exc)
            return
        if self._metrics is not None:
            self._metrics.ingest_group_size.observe(len(group))
            self._metrics.ingest_commit_seconds.observe(time.perf_counter() - started)
        self._landed(group, results)
        for pending, result in zip(group, results, strict=True):
            _settle(pending, result)
        if self._job_due is not None and any(isinstance(r, Outcome) and r.job_due for r in results):
            self._job_due()  # once per group

    def _settled(self, task: asyncio.Task[None], *, group: list[_Pending]) -> None:
        """A group task ended, however: its slot is free, and a task cancelled before it could
        answer (its transaction rolled back) answers every member, and every copy folded into
        one, unavailable."""
        self._writes.discard(task)
        self._slots.release()
        lost = DatabaseUnavailable("shut down before the commit")
        self._landed(group, lost)
        for pending in group:
            _fail(pending, lost)

    async def drain(self) -> None:
        """Wait for the pending deliveries and the groups in flight (before the database
        closes)."""
        while self._flusher is not None or self._writes:
            await asyncio.gather(
                *(t for t in (self._flusher, *self._writes) if t is not None),
                return_exceptions=True,
            )


def _settle(pending: _Pending, result: Result) -> None:
    """Answer one delivery (an outcome, or its own error), unless its wait was cancelled."""
    if not pending.answer.done():
        pending.answer.set_result(result)


def _fail(pending: _Pending, error: BaseException) -> None:
    """Fail one delivery with its group's error, unless its wait was cancelled."""
    if not pending.answer.done():
        pending.answer.set_exception(error)


_GROUPS: weakref.WeakKeyDictionary[Database, IngestGroups] = weakref.WeakKeyDictionary()


def open_groups(
    db: Database,
    settings: Settings,
    metrics: Metrics,
    job_due: Callable[[], None],
    stats: DeliveryStats | None = None,
) -> IngestGroups:
    """The grouper of a process's database, with its settings, metrics, runner wake-up and
    delivery stats (written in each group's transaction)."""
    groups = _GROUPS[db] = IngestGroups(db, settings, metrics, job_due, stats)
    return groups


def groups_for(db: Database) -> IngestGroups:
    """The database's grouper; a database no runtime opened (a command, a test) gets one with
    the default settings, no metrics and no wake-up."""
    groups = _GROUPS.get(db)
    if groups is None:
        groups = _GROUPS[db] = IngestGroups(db, Settings())
    return groups
