"""Webhook deliveries per minute, provider, outcome and ack latency, kept in ``delivery_stats``
for the console's charts (so they cover every replica and outlive restarts).

``record`` runs once per answered delivery and costs one dict lookup: the count and latency sum
of (epoch minute, provider, outcome, latency bucket) are added up in memory.  ``write(conn)``
drains them into the table with one upsert that adds to the rows already there (another
replica's, or this process's earlier writes).  Every process that serves webhooks runs
``flushing``: a ``flush`` in a short transaction of its own every ``DELIVERY_STATS_FLUSH_S``
seconds and once at shutdown, and once an hour a purge of minutes older than ``KEEP_S``.

A ``deduped`` answer also names the message it is a copy of: the same writes add those copies
to ``message_copies`` (the console's messages list shows them).

Latency falls into fixed buckets (``LATENCY_BOUNDS_MS``, each row naming its upper bound), so the
p50 and p99 of any set of rows come from their summed counts: ``quantile`` estimates within the
bucket the rank falls in (the console says so).  Minutes are this process's clock's.

A write that fails keeps its counts for the next one; past ``max_minutes`` distinct minutes
pending (the database down for that long) the oldest minutes are dropped and counted
(``hookgate_delivery_stats_dropped_total``).  A commit whose outcome is unknown (the connection
lost during COMMIT) is written again: a rare double count rather than a loss.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from sql import Connection, Database, DatabaseError, json_rows

log = logging.getLogger("hookgate.delivery_stats")

LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
ABOVE_MS = 2_147_483_647  # the last bucket's bound in the table: slower than the largest bound
OUTCOMES = ("stored", "deduped", "ignored", "quarantined", "rejected", "unavailable", "error")
KEEP_S = 8 * 24 * 3600  # the console's longest range is 7 days
PURGE_EVERY_S = 3600

_BOUNDS_S = tuple(bound / 1000 for bound in LATENCY_BOUNDS_MS)
_LE_MS = (*LATENCY_BOUNDS_MS, ABOVE_MS)

MAX_COPIES = 10_000  # message ids with copies pending, past which the oldest are dropped

Key = tuple[int, str, str, int]  # (epoch minute, provider, outcome, latency bucket index)
Counts = dict[Key, list[float]]  # key: [deliveries, latency seconds summed]


@dataclasses.dataclass(slots=True)
class Pending:
    """What waits to be written: the counts, and the deduped copies by message id."""

    counts: Counts = dataclasses.field(default_factory=dict)
    copies: dict[int, int] = dataclasses.field(default_factory=dict)


class DeliveryStats:
    """One process's pending counts (not shared between processes: each writes its own)."""

    def __init__(
        self,
        max_minutes: int = 60,
        on_drop: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pending = Pending()
        self._max_minutes = max_minutes
        self._on_drop = on_drop
        self._clock = clock

    def record(
        self, provider: str, outcome: str, latency_s: float, copy_of: int | None = None
    ) -> None:
        """One answered delivery: its ``outcome`` (one of ``OUTCOMES``), how long it took, and
        for a ``deduped`` one the message it is a copy of."""
        if copy_of is not None:
            copies = self._pending.copies
            copies[copy_of] = copies.get(copy_of, 0) + 1
        key = (
            int(self._clock() // 60),
            provider,
            outcome,
            bisect.bisect_left(_BOUNDS_S, latency_s),
        )
        entry = self._pending.counts.get(key)
        if entry is None:
            self._pending.counts[key] = [1, latency_s]
        else:
            entry[0] += 1
            entry[1] += latency_s

    @property
    def pending(self) -> int:
        """Deliveries recorded and not yet written."""
        return int(sum(entry[0] for entry in self._pending.counts.values()))

    async def write(self, conn: Connection) -> Pending:
        """Add everything pending to ``delivery_stats`` (and the copies to ``message_copies``)
        with one statement each on ``conn``: the caller's transaction, which should end soon (on
        PostgreSQL it now holds the rows of this minute until it commits).  Returns what it
        wrote: a caller whose transaction then rolls back gives it back with ``keep``.  When a
        statement itself raises, the counts are kept already and the error propagates (a
        transaction whose statement failed is lost anyway); nothing else here raises."""
        taken, self._pending = self._pending, Pending()
        try:
            if taken.counts:
                await conn.execute("add_delivery_stats", rows=_encode(taken.counts))
            if taken.copies:
                copies = json_rows(list(taken.copies.items()))
                await conn.execute("add_message_copies", copies=copies)
        except BaseException:
            self.keep(taken)
            raise
        return taken

    def keep(self, pending: Pending) -> None:
        """Put back what was not written; past ``max_minutes`` distinct minutes, drop the
        oldest and count what was dropped (and past ``MAX_COPIES`` ids, the oldest copies)."""
        counts = self._pending.counts
        for key, (deliveries, latency_s) in pending.counts.items():
            entry = counts.get(key)
            if entry is None:
                counts[key] = [deliveries, latency_s]
            else:
                entry[0] += deliveries
                entry[1] += latency_s
        copies = self._pending.copies
        for message_id, n in pending.copies.items():
            copies[message_id] = copies.get(message_id, 0) + n
        for message_id in list(copies)[: max(len(copies) - MAX_COPIES, 0)]:
            del copies[message_id]
        minutes = sorted({key[0] for key in counts})
        if len(minutes) > self._max_minutes:
            oldest_kept = minutes[-self._max_minutes]
            self._drop(key for key in counts if key[0] < oldest_kept)

    def drop_all(self) -> None:
        """Give up on what is pending (counted as dropped): the process is ending and the last
        write failed."""
        self._pending.copies.clear()
        self._drop(self._pending.counts)

    def _drop(self, keys: Iterable[Key]) -> None:
        dropped = [self._pending.counts.pop(key) for key in list(keys)]
        deliveries = sum(entry[0] for entry in dropped)
        if deliveries:
            if self._on_drop is not None:
                self._on_drop(deliveries)
            log.warning("delivery stats dropped", extra={"deliveries": int(deliveries)})

    async def flush(self, db: Database) -> bool:
        """Write what is pending in a transaction of its own; False (counts kept) when the
        database cannot take it."""
        written = Pending()
        try:
            async with db.transaction() as conn:
                written = await self.write(conn)
        except BaseException as exc:
            self.keep(written)  # the commit failed after the write (else ``write`` kept them)
            if not isinstance(exc, DatabaseError):
                raise
            log.warning("delivery stats not written yet", extra={"error": str(exc)})
            return False
        return True


def _encode(counts: Counts) -> str:
    """The rows as one JSON array of [epoch minute, provider, outcome, le ms, count, ms sum]."""
    rows = [
        [minute, provider, outcome, _LE_MS[bucket], int(n), latency_s * 1000]
        for (minute, provider, outcome, bucket), (n, latency_s) in counts.items()
    ]
    return json_rows(rows)


@asynccontextmanager
async def flushing(stats: DeliveryStats, db: Database, interval_s: float) -> AsyncIterator[None]:
    """Flush every ``interval_s`` while the block runs, and once more when it ends."""
    task = asyncio.create_task(_flush_every(stats, db, interval_s), name="delivery-stats")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not await stats.flush(db):
            stats.drop_all()


async def _flush_every(stats: DeliveryStats, db: Database, interval_s: float) -> None:
    purged_at = -float(PURGE_EVERY_S)
    while True:
        await asyncio.sleep(interval_s)
        await stats.flush(db)
        if time.monotonic() - purged_at >= PURGE_EVERY_S:
            try:
                await db.execute("purge_delivery_stats", keep_s=KEEP_S)
                purged_at = time.monotonic()
            except DatabaseError as exc:
                log.warning("old delivery stats not purged", extra={"error": str(exc)})


def quantile(buckets: Iterable[tuple[int, float]], q: float) -> float | None:
    """The ``q`` quantile, in ms, of deliveries counted in (latency_le_ms, count) buckets:
    linear within the bucket the rank falls in, from the bound below it to its own (at most the
    largest finite bound)."""
    counts = dict.fromkeys(_LE_MS, 0.0)
    for le, n in buckets:
        counts[le] += n
    total = sum(counts.values())
    if total <= 0:
        return None
    rank, seen, lower = q * total, 0.0, 0.0
    for le, n in counts.items():
        if n > 0 and seen + n >= rank:
            return lower if le == ABOVE_MS else lower + (le - lower) * (rank - seen) / n
        seen += n
        lower = float(le)
    return lower
