"""The group write: the writes of one group (``gateway.ingest_group``) stored in one
transaction, one statement per step for the whole group (``sql/<dialect>/queries/
ingest_group.sql``, each taking the group as one JSON array).

The steps, in this order: the group's messages are looked up by the one key their deliveries
use (a row found is a dedupe hit, with whether its job is dead); the leads of the others and the
lead updates are read by their key and upserted only when new or changed, each once per group
and in key order (``gateway.ingest_leads``); the new messages are inserted with their lead
(``ON CONFLICT DO NOTHING RETURNING``) and their post-process jobs enqueued; a message hit by
copies gets the interest a copy brought and its job re-run (interest new to it) or revived
(dead); then the integration reports, the writes with statements of their own (quarantined
deliveries) and the delivery stats answered since the last write (``gateway.delivery_stats``:
one statement per group, not a transaction of their own).  An insert that conflicts although no
row had its key a moment before (another group committed it meanwhile, or a replayed delivery
id) rolls the group back to be written again, knowing it (``_Raced``).  Copies of one delivery
inside the group are folded into one row: the first is stored, the others answered ``deduped``
with its id, their interest kept.  A statement error that is not an outage retries the members
one by one, so only the delivery at fault gets its error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.delivery_stats import DeliveryStats, Pending
from gateway.events import (
    MESSAGE_KEYS,
    POST_PROCESS_JOB,
    IntegrationStatus,
    Lead,
    LeadUpdate,
    Message,
    Outcome,
    ReplayedDelivery,
)
from gateway.ingest_leads import lead_ref, upsert_leads
from gateway.integrations import record_integration_status
from sql import Connection, Database, DatabaseUnavailable, Row, json_rows, timestamp_text

log = logging.getLogger("hookgate.ingest")


@dataclasses.dataclass(frozen=True, slots=True)
class MessageWrite:
    workspace_id: str
    message: Message
    now: dt.datetime
    max_attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class LeadWrite:
    workspace_id: str
    event: LeadUpdate
    now: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class StatusWrite:
    workspace_id: str
    event: IntegrationStatus
    now: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class OwnWrite:
    """Statements of their own (a quarantined delivery, ``gateway.quarantine``), run in the
    group's transaction after the rest, in workspace order, under a savepoint: what they raise
    (``QuarantineFull``, a statement error) is their own answer and undoes only their writes."""

    workspace_id: str
    run: Callable[[Connection], Awaitable[object]]


Write = MessageWrite | LeadWrite | StatusWrite | OwnWrite
Result = object  # an Outcome (an OwnWrite's own result), or the write's own Exception
MessageKey = tuple[str, str, str]  # workspace id, key column, key value


def message_key(write: MessageWrite) -> MessageKey:
    """The one key a message is deduplicated by: its workspace and its provider's key."""
    return (write.workspace_id, write.message.key_column, write.message.key_value)


def hit_log(
    key: MessageKey, event: str, message_id: int, copies: int, **more: object
) -> dict[str, object]:
    """The fields of a ``dedupe hit`` line: one per message and group, with its ``copies``."""
    return {
        "event": event,
        "key_name": key[1],
        "key_value": key[2],
        "workspace_id": key[0],
        "message_id": message_id,
        "copies": copies,
        "deduped": True,
        **more,
    }


def text_size(write: Write) -> int:
    """The message text a write adds to its group's JSON parameter."""
    if not isinstance(write, MessageWrite):
        return 0
    return len(write.message.body or "") + len(write.message.subject or "")


async def store_group(
    db: Database, writes: Sequence[Write], stats: DeliveryStats | None = None
) -> list[Result]:
    """Store ``writes`` in one transaction and return each one's outcome (or its own error,
    such as ``ReplayedDelivery``), with the delivery stats pending in ``stats``.  Raises
    ``DatabaseUnavailable`` (and nothing is committed) when the database is lost; any other
    failure retries the members one by one."""
    suspects: frozenset[MessageKey] = frozenset()
    while True:
        hit_logs: list[dict[str, object]] = []
        written: Pending | None = None
        try:
            async with db.transaction() as conn:
                results = await _write(conn, writes, hit_logs, suspects)
                if stats is not None:
                    written = await stats.write(conn)
        except _Raced as raced:  # rolled back before the stats were written: again, knowing them
            log.info("group written again", extra={"raced": len(raced.keys)})
            suspects |= raced.keys
            continue
        except BaseException as exc:
            if stats is not None and written is not None:
                stats.keep(written)  # written, then not committed
            if isinstance(exc, DatabaseUnavailable) or not isinstance(exc, Exception):
                raise
            if len(writes) == 1:
                return [exc]
            log.warning("group write failed, storing its members one by one", exc_info=True)
            return await _one_by_one(db, writes)
        break
    for extra in hit_logs:  # once committed
        log.info("dedupe hit", extra=extra)
    return results


class _Raced(Exception):
    """Messages whose insert conflicted though no row had their key when the group looked:
    another group committed them meanwhile, or (a GoHighLevel ``webhookId`` replayed with
    another message) their delivery id is another message's.  The group is rolled back — its
    leads were upserted for messages that are not new — and written again: those found then
    are dedupe hits, the others replays.  Each time adds keys, so it ends."""

    def __init__(self, keys: frozenset[MessageKey]) -> None:
        super().__init__(f"{len(keys)} message inserts conflicted")
        self.keys = keys


async def _one_by_one(db: Database, writes: Sequence[Write]) -> list[Result]:
    results: list[Result] = []
    for write in writes:
        try:
            results.extend(await store_group(db, [write]))
        except DatabaseUnavailable as lost:
            # Those stored alone before the outage keep their answer; the rest share it.
            results.extend([lost] * (len(writes) - len(results)))
            break
    return results


async def _write(
    conn: Connection,
    writes: Sequence[Write],
    hit_logs: list[dict[str, object]],
    suspects: frozenset[MessageKey],
) -> list[Result]:
    copies: dict[MessageKey, list[int]] = {}
    for i, write in enumerate(writes):
        if isinstance(write, MessageWrite):
            copies.setdefault(message_key(write), []).append(i)
    keys = sorted(copies)  # one lock order for every group
    firsts = {k: _message_write(writes[copies[k][0]]) for k in keys}
    interest = {k: any(_message(writes[i]).interested for i in copies[k]) for k in keys}

    stored = await _find_messages(conn, [(k, _job_type(firsts[k].message)) for k in keys])
    replayed = {k for k in suspects if k not in stored}
    fresh = [k for k in keys if k not in stored and k not in replayed]
    # The leads before their messages, so that a new message is inserted with its lead (an
    # update afterwards would write every message row, and its index entries, twice).
    leads: list[tuple[str, Lead, dt.datetime]] = [
        (k[0], _with_interest(firsts[k].message.lead, writes, copies[k][1:]), firsts[k].now)
        for k in fresh
    ]
    leads += [(w.workspace_id, w.event.lead, w.now) for w in writes if isinstance(w, LeadWrite)]
    lead_ids = await upsert_leads(conn, leads)
    lead_of: dict[MessageKey, int | None] = {
        k: lead_ids[lead_ref(k[0], firsts[k].message.lead)] for k in fresh
    }
    new = await _insert_messages(conn, [(firsts[k], interest[k], lead_of[k]) for k in fresh])
    if raced := frozenset(k for k in fresh if k not in new):
        raise _Raced(raced)
    jobs = [
        {
            "type": job_type,
            "workspace_id": k[0],
            "message_id": new[k],
            "payload": {"event": firsts[k].message.event},
            "max_attempts": firsts[k].max_attempts,
        }
        for k in keys
        if k in new and (job_type := _job_type(firsts[k].message)) is not None
    ]
    if jobs:
        await conn.execute("enqueue_post_process_jobs", rows=json_rows(jobs))

    lead_of.update({k: row["lead_id"] for k, row in stored.items()})
    revived = await _record_dedupe_hits(
        conn, writes, copies, new, stored, interest, lead_of, hit_logs
    )
    # Integration reports in arrival order per (workspace, integration): the last one stands.
    statuses = [w for w in writes if isinstance(w, StatusWrite)]
    for w in sorted(statuses, key=lambda w: (w.workspace_id, w.event.integration)):
        status = w.event
        await record_integration_status(
            conn, w.workspace_id, status.integration, status.connected, status.reason, w.now
        )
    own = {
        i: await _run_own(conn, write)
        for i, write in sorted(enumerate(writes), key=lambda iw: iw[1].workspace_id)
        if isinstance(write, OwnWrite)
    }
    results: list[Result] = []
    for i, write in enumerate(writes):
        if isinstance(write, OwnWrite):
            results.append(own[i])
            continue
        if not isinstance(write, MessageWrite):
            results.append(Outcome(write.event.event, ignored=True))
            continue
        msg = write.message
        key = message_key(write)
        if key in new and copies[key][0] == i:
            results.append(
                Outcome(msg.event, message_id=new[key], job_due=_job_type(msg) is not None)
            )
        elif key in new or key in stored:
            message_id = new[key] if key in new else stored[key]["id"]
            results.append(
                Outcome(
                    msg.event, message_id=message_id, deduped=True, job_due=message_id in revived
                )
            )
        else:
            # The insert conflicted and no row has the delivery's key: the conflict was on
            # its delivery id, which another message holds.
            results.append(
                ReplayedDelivery(
                    f"delivery {msg.delivery_id} was already received with another message"
                )
            )
    return results


async def _run_own(conn: Connection, write: OwnWrite) -> object:
    await conn.execute("savepoint_own_write")
    try:
        return await write.run(conn)
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        await conn.execute("rollback_to_own_write")
        return exc


def _message_write(write: Write) -> MessageWrite:
    assert isinstance(write, MessageWrite)  # the indexes in `copies` are of messages
    return write


def _message(write: Write) -> Message:
    return _message_write(write).message


def _job_type(msg: Message) -> str | None:
    # .get: a channel the schema refuses (its CHECK fails the insert) has no job either.
    return POST_PROCESS_JOB.get(msg.channel) if msg.direction == "inbound" else None


def _with_interest(lead: Lead, writes: Sequence[Write], later_copies: list[int]) -> Lead:
    """A later copy's interest (``LEAD_INTERESTED``) marks the lead, as its dedupe hit would
    have one group later."""
    if lead.interested or not any(_message(writes[i]).interested for i in later_copies):
        return lead
    return dataclasses.replace(lead, interested=True)


async def _insert_messages(
    conn: Connection, firsts: list[tuple[MessageWrite, bool, int | None]]
) -> dict[MessageKey, int]:
    if not firsts:
        return {}
    rows = []
    for write, interested, lead_id in firsts:
        msg = write.message
        rows.append(
            {
                "workspace_id": write.workspace_id,
                "channel": msg.channel,
                "direction": msg.direction,
                "provider": msg.provider,
                "event": msg.event,
                "subject": msg.subject,
                "body": msg.body,
                "sent_at": None if msg.sent_at is None else timestamp_text(msg.sent_at),
                "interested": interested,
                "now": timestamp_text(write.now),
                msg.key_column: msg.key_value,
                "delivery_id": msg.delivery_id,
                "provider_thread_id": msg.thread_id,
                "lead_id": lead_id,
            }
        )
    inserted = await conn.fetch_all("insert_messages", rows=json_rows(rows))
    new: dict[MessageKey, int] = {}
    for row in inserted:
        column = next(c for c in MESSAGE_KEYS if row[c] is not None)
        new[(row["workspace_id"], column, row[column])] = int(row["id"])
    return new


async def _find_messages(
    conn: Connection, keys: list[tuple[MessageKey, str | None]]
) -> dict[MessageKey, Row]:
    """The stored messages of the dedupe hits, each with whether its job (of the type given
    with its key) is dead: one statement per key column present."""
    by_column: dict[str, list[dict[str, str | None]]] = {}
    for (workspace_id, column, value), job_type in keys:
        by_column.setdefault(column, []).append(
            {"workspace_id": workspace_id, "key_value": value, "job_type": job_type}
        )
    found: dict[MessageKey, Row] = {}
    for column, rows in by_column.items():
        for row in await conn.fetch_all(f"find_messages_by_{column}", rows=json_rows(rows)):
            found[(row["workspace_id"], column, row["key_value"])] = row
    return found


async def _record_dedupe_hits(
    conn: Connection,
    writes: Sequence[Write],
    copies: dict[MessageKey, list[int]],
    new: dict[MessageKey, int],
    stored: dict[MessageKey, Row],
    interest: dict[MessageKey, bool],
    lead_of: dict[MessageKey, int | None],
    hit_logs: list[dict[str, object]],
) -> set[int]:
    """For the messages stored before this group, the interest a copy brought and their jobs:
    re-run when the interest is new to the message (issue 14 item 11), a dead one revived
    otherwise.  Returns the ids of the messages whose job was made due; the hits' log line (one
    per message, with the number of copies) goes to ``hit_logs``."""
    for key, members in copies.items():
        if key not in new and key not in stored:
            continue
        hits = members[key in new :]
        if hits:
            message_id = new[key] if key in new else int(stored[key]["id"])
            event = _message(writes[hits[0]]).event
            hit_logs.append(hit_log(key, event, message_id, len(hits), lead_id=lead_of[key]))
    if not stored:
        return set()
    interested = [k for k in stored if interest[k]]
    news: set[int] = set()
    if interested:
        ids = sorted(int(stored[k]["id"]) for k in interested)
        found = await conn.fetch_all("mark_messages_interested", ids=json_rows(ids))
        news = {int(row["id"]) for row in found}
        now = timestamp_text(
            max(_message_write(writes[i]).now for k in interested for i in copies[k])
        )
        leads = sorted({int(lead) for k in interested if (lead := stored[k]["lead_id"])})
        if leads:
            rows = [{"id": lead, "now": now} for lead in leads]
            await conn.execute("mark_leads_interested", rows=json_rows(rows))
    # A message the hit made interested has its job re-run; any other one whose job was dead
    # when found (the common case, no job is dead, costs no statement) has it revived.
    due: set[int] = set()
    rerun = [k for k in stored if int(stored[k]["id"]) in news]
    revive = [k for k in stored if int(stored[k]["id"]) not in news and stored[k]["job_dead"]]
    for query, picked in (("rerun_jobs", rerun), ("requeue_dead_jobs", revive)):
        keys = sorted(
            f"{job}:{stored[k]['id']}"
            for k in picked
            if (job := _job_type(_message(writes[copies[k][0]]))) is not None
        )
        if keys:
            found = await conn.fetch_all(query, dedupe_keys=json_rows(keys))
            due |= {int(row["dedupe_key"].rsplit(":", 1)[1]) for row in found}
    return due
