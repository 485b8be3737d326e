"""The leads of an ingest group (``gateway.ingest_store``): each found by the one identity it
is keyed on, created or updated only when new or a delivery brings news — once per group, in
key order, one statement per key kind — and given the other identities its deliveries name
where no lead holds them yet."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from gateway.events import LEAD_IDENTITIES, Lead, LeadKey
from sql import Connection, DatabaseError, DatabaseUnavailable, Row, json_rows, timestamp_text

log = logging.getLogger("hookgate.ingest")

_LEAD_FIELDS = ("first_name", "last_name", "company", "title", "status")

LeadRef = tuple[str, LeadKey, str]  # workspace id, key kind, key value


def lead_ref(workspace_id: str, lead: Lead) -> LeadRef:
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
        ref = lead_ref(workspace_id, lead)
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
        for row in await conn.fetch_all(f"find_leads_by_{kind}", rows=json_rows(wanted)):
            rows[(row["workspace_id"], kind, row["key_value"])] = row
        changed = [ref for ref in refs if ref not in rows or _news_for(rows[ref], merged[ref][0])]
        if changed:
            upserts = [_lead_row(ref, *merged[ref]) for ref in changed]
            for row in await conn.fetch_all(f"upsert_leads_by_{kind}", rows=json_rows(upserts)):
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
        "now": timestamp_text(now),
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
