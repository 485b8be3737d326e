"""The group write: the deliveries of one group (``gateway.ingest_group``) stored in one
transaction, one statement per step for the whole group (``sql/<dialect>/queries/
ingest_group.sql``, each taking the group as one JSON array).

The steps, in this order: the new messages are inserted (``ON CONFLICT DO NOTHING RETURNING``),
their post-process jobs enqueued; the dedupe hits are found by the one key their deliveries use;
the leads are read by their key and upserted only when new or changed, each once per group and
in key order; the new messages get their lead; each message hit by copies gets one update
(its ``deduped_copies`` and the interest a copy brought) and its dead job is revived.  Copies of
one delivery inside the group are folded into one row: the first is stored, the others answered
``deduped`` with its id, their interest kept.  A statement error that is not an outage retries
the members one by one, so only the delivery at fault gets its error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.events import (
    LEAD_IDENTITIES,
    MESSAGE_KEYS,
    POST_PROCESS_JOB,
    Lead,
    LeadKey,
    LeadUpdate,
    Message,
    Outcome,
    ReplayedDelivery,
)
from sql import Connection, Database, DatabaseError, DatabaseUnavailable, Row

log = logging.getLogger("hookgate.ingest")

_LEAD_FIELDS = ("first_name", "last_name", "company", "title", "status")


@dataclasses.dataclass(frozen=True, slots=True)
class MessageWrite:
    workspace_id: str
    message: Message
    now: dt.datetime
    max_attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class LeadWrite:
    workspace_id: str
    update: LeadUpdate
    now: dt.datetime


Write = MessageWrite | LeadWrite
Result = Outcome | Exception
MessageKey = tuple[str, str, str]  # workspace id, key column, key value
LeadRef = tuple[str, LeadKey, str]  # workspace id, key kind, key value


async def store_group(db: Database, writes: Sequence[Write]) -> list[Result]:
    """Store ``writes`` in one transaction and return each one's outcome (or its own error,
    such as ``ReplayedDelivery``).  Raises ``DatabaseUnavailable`` (and nothing is committed)
    when the database is lost; any other failure retries the members one by one."""
    try:
        async with db.transaction() as conn:
            return await _write(conn, writes)
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if len(writes) == 1:
            return [exc]
        log.warning("group write failed, storing its members one by one", exc_info=True)
    results: list[Result] = []
    for write in writes:
        try:
            results.extend(await store_group(db, [write]))
        except DatabaseUnavailable as lost:
            # Those stored alone before the outage keep their answer; the rest share it.
            results.extend([lost] * (len(writes) - len(results)))
            break
    return results


def _timestamp(value: dt.datetime | None) -> str | None:
    """A time as the group's JSON carries it: UTC text without an offset."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json(rows: Sequence[object]) -> str:
    return orjson.dumps(rows).decode()


async def _write(conn: Connection, writes: Sequence[Write]) -> list[Result]:
    copies: dict[MessageKey, list[int]] = {}
    for i, write in enumerate(writes):
        if isinstance(write, MessageWrite):
            msg = write.message
            copies.setdefault((write.workspace_id, msg.key_column, msg.key_value), []).append(i)
    keys = sorted(copies)  # one lock order for every group
    firsts: dict[MessageKey, MessageWrite] = {}
    for key in keys:
        first = writes[copies[key][0]]
        assert isinstance(first, MessageWrite)
        firsts[key] = first
    interest = {k: any(_message(writes[i]).interested for i in copies[k]) for k in keys}

    new = await _insert_messages(conn, [(firsts[k], interest[k]) for k in keys])
    stored = await _find_messages(conn, [k for k in keys if k not in new])
    jobs = [
        {
            "type": POST_PROCESS_JOB[firsts[k].message.channel],
            "workspace_id": k[0],
            "message_id": new[k],
            "payload": {"event": firsts[k].message.event},
            "max_attempts": firsts[k].max_attempts,
        }
        for k in keys
        if k in new and firsts[k].message.direction == "inbound"
    ]
    if jobs:
        await conn.execute("enqueue_post_process_jobs", rows=_json(jobs))

    # The leads last: an upserted lead stays locked until the commit, so hold it the shortest.
    leads: list[tuple[str, Lead, dt.datetime]] = [
        (k[0], _with_interest(firsts[k].message.lead, writes, copies[k][1:]), firsts[k].now)
        for k in keys
        if k in new
    ]
    leads += [(w.workspace_id, w.update.lead, w.now) for w in writes if isinstance(w, LeadWrite)]
    lead_ids = await upsert_leads(conn, leads)
    if new:
        links = [
            {"id": new[k], "lead_id": lead_ids[_lead_ref(k[0], firsts[k].message.lead)]}
            for k in keys
            if k in new
        ]
        await conn.execute("set_messages_lead", rows=_json(links))

    lead_of: dict[MessageKey, int | None] = {
        k: lead_ids[_lead_ref(k[0], firsts[k].message.lead)] for k in new
    }
    lead_of.update({k: row["lead_id"] for k, row in stored.items()})
    revived = await _record_dedupe_hits(conn, writes, copies, new, stored, interest, lead_of)
    results: list[Result] = []
    for i, write in enumerate(writes):
        if isinstance(write, LeadWrite):
            results.append(Outcome(write.update.event, ignored=True))
            continue
        msg = write.message
        key = (write.workspace_id, msg.key_column, msg.key_value)
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


def _message(write: Write) -> Message:
    assert isinstance(write, MessageWrite)
    return write.message


def _job_type(msg: Message) -> str | None:
    return POST_PROCESS_JOB[msg.channel] if msg.direction == "inbound" else None


def _with_interest(lead: Lead, writes: Sequence[Write], later_copies: list[int]) -> Lead:
    """A later copy's interest (``LEAD_INTERESTED``) marks the lead, as its dedupe hit would
    have one group later."""
    if lead.interested or not any(_message(writes[i]).interested for i in later_copies):
        return lead
    return dataclasses.replace(lead, interested=True)


async def _insert_messages(
    conn: Connection, firsts: list[tuple[MessageWrite, bool]]
) -> dict[MessageKey, int]:
    if not firsts:
        return {}
    rows = []
    for write, interested in firsts:
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
                "sent_at": _timestamp(msg.sent_at),
                "interested": interested,
                "now": _timestamp(write.now),
                msg.key_column: msg.key_value,
                "delivery_id": msg.delivery_id,
                "provider_thread_id": msg.thread_id,
            }
        )
    inserted = await conn.fetch_all("insert_messages", rows=_json(rows))
    new: dict[MessageKey, int] = {}
    for row in inserted:
        column = next(c for c in MESSAGE_KEYS if row[c] is not None)
        new[(row["workspace_id"], column, row[column])] = int(row["id"])
    return new


async def _find_messages(conn: Connection, keys: list[MessageKey]) -> dict[MessageKey, Row]:
    """The stored messages of the dedupe hits: one statement per key column present."""
    by_column: dict[str, list[dict[str, str]]] = {}
    for workspace_id, column, value in keys:
        by_column.setdefault(column, []).append({"workspace_id": workspace_id, "key_value": value})
    found: dict[MessageKey, Row] = {}
    for column, rows in by_column.items():
        for row in await conn.fetch_all(f"find_messages_by_{column}", rows=_json(rows)):
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
) -> set[int]:
    """One update per message hit by copies; revive the dead jobs of the stored ones.  Returns
    the ids of the messages whose job was revived."""
    hits = []
    for key, members in copies.items():
        if key in new and len(members) > 1:
            hits.append({"id": new[key], "copies": len(members) - 1, "interested": False})
        elif key in stored:
            hits.append(
                {"id": stored[key]["id"], "copies": len(members), "interested": interest[key]}
            )
        else:
            continue
        for i in members[key in new :]:
            write = writes[i]
            assert isinstance(write, MessageWrite)
            log.info(
                "dedupe hit",
                extra={
                    "event": write.message.event,
                    "key_name": key[1],
                    "key_value": key[2],
                    "workspace_id": key[0],
                    "lead_id": lead_of[key],
                    "message_id": hits[-1]["id"],
                    "deduped": True,
                },
            )
    if not hits:
        return set()
    hits.sort(key=lambda hit: hit["id"])
    await conn.execute("record_dedupe_hits", rows=_json(hits))
    now = max(_message_now(writes, copies[k]) for k in stored) if stored else None
    interested_leads = sorted(
        {
            int(stored[k]["lead_id"])
            for k in stored
            if interest[k] and stored[k]["lead_id"] is not None
        }
    )
    if interested_leads:
        await conn.execute(
            "mark_leads_interested",
            rows=_json([{"id": i, "now": _timestamp(now)} for i in interested_leads]),
        )
    dead = sorted(
        f"{job}:{stored[k]['id']}"
        for k in stored
        if (job := _job_type(_message(writes[copies[k][0]]))) is not None
    )
    if not dead:
        return set()
    revived = await conn.fetch_all("requeue_dead_jobs", dedupe_keys=_json(dead))
    return {int(row["dedupe_key"].rsplit(":", 1)[1]) for row in revived}


def _message_now(writes: Sequence[Write], members: list[int]) -> dt.datetime:
    return max(writes[i].now for i in members)


def _lead_ref(workspace_id: str, lead: Lead) -> LeadRef:
    value = getattr(lead, lead.key)
    assert value is not None  # checked before the delivery joined a group (gateway.ingest)
    return (workspace_id, lead.key, value)


def _merge(older: Lead, newer: Lead) -> Lead:
    """Two deliveries of one lead in one group, as if stored one after the other: identities
    are never overwritten (the first wins), other fields the later delivery names win."""
    changes: dict[str, Any] = {
        column: getattr(newer, column)
        for column in LEAD_IDENTITIES
        if getattr(older, column) is None and getattr(newer, column) is not None
    }
    changes.update({f: getattr(newer, f) for f in _LEAD_FIELDS if getattr(newer, f) is not None})
    changes["interested"] = older.interested or newer.interested
    return dataclasses.replace(older, **changes)


def _news_for(row: Row, lead: Lead) -> bool:
    """Whether a delivery tells the stored lead anything new (a field it names with another
    value, or interest).  Most deliveries do not, and then the lead row is only read: the
    upsert would lock it until the commit, and every delivery of a busy lead would queue."""
    if lead.interested and not row["interested"]:
        return True
    return any(
        getattr(lead, field) is not None and getattr(lead, field) != row[field]
        for field in _LEAD_FIELDS
    )


async def upsert_leads(
    conn: Connection, leads: Sequence[tuple[str, Lead, dt.datetime]]
) -> dict[LeadRef, int]:
    """Find each lead by its primary identity; create or update it only when it is new or a
    delivery brings news, each lead once and in key order (one statement per key kind); then
    attach the other identities the deliveries name where the lead has none yet.  Returns the
    lead ids by (workspace id, key kind, key value)."""
    merged: dict[LeadRef, tuple[Lead, dt.datetime]] = {}
    for workspace_id, lead, now in leads:
        ref = _lead_ref(workspace_id, lead)
        if ref in merged:
            older, then = merged[ref]
            merged[ref] = (_merge(older, lead), max(then, now))
        else:
            merged[ref] = (lead, now)
    rows: dict[LeadRef, Row] = {}
    for kind in LEAD_IDENTITIES:
        refs = sorted(ref for ref in merged if ref[1] == kind)
        if not refs:
            continue
        wanted = [{"workspace_id": ref[0], "key_value": ref[2]} for ref in refs]
        for row in await conn.fetch_all(f"find_leads_by_{kind}", rows=_json(wanted)):
            rows[(row["workspace_id"], kind, row["key_value"])] = row
        changed = [ref for ref in refs if ref not in rows or _news_for(rows[ref], merged[ref][0])]
        if changed:
            upserts = [_lead_row(ref, *merged[ref]) for ref in changed]
            for row in await conn.fetch_all(f"upsert_leads_by_{kind}", rows=_json(upserts)):
                rows[(row["workspace_id"], kind, row["key_value"])] = row
    for ref in sorted(merged):
        lead = merged[ref][0]
        row = rows[ref]
        missing = {
            column: getattr(lead, column)
            for column in LEAD_IDENTITIES
            if row[column] is None and getattr(lead, column) is not None
        }
        if missing:
            await _attach_identities(conn, ref[0], int(row["id"]), missing)
    return {ref: int(rows[ref]["id"]) for ref in merged}


def _lead_row(ref: LeadRef, lead: Lead, now: dt.datetime) -> dict[str, Any]:
    return {
        "workspace_id": ref[0],
        "key_value": ref[2],
        **{field: getattr(lead, field) for field in _LEAD_FIELDS},
        "interested": lead.interested,
        "now": _timestamp(now),
    }


async def _attach_identities(
    conn: Connection, workspace_id: str, lead_id: int, identities: dict[LeadKey, str]
) -> None:
    """Give the lead those identities no other lead holds.  The statement's NOT EXISTS guard is
    exact on SQLite (one writer) but not under concurrent PostgreSQL transactions: one that
    gives the same phone to another lead first makes it fail with a unique violation (or a
    deadlock).  The savepoint turns that into "the other lead keeps it"; the delivery goes on."""
    await conn.execute("savepoint_attach_identities")
    try:
        await conn.execute(
            "attach_lead_identities",
            id=lead_id,
            workspace_id=workspace_id,
            **{column: identities.get(column) for column in LEAD_IDENTITIES},
        )
    except DatabaseUnavailable:
        raise
    except DatabaseError as exc:
        await conn.execute("rollback_to_attach_identities")
        log.info(
            "lead identity kept by another lead",
            extra={"workspace_id": workspace_id, "lead_id": lead_id, "error": str(exc)},
        )
