"""The webhook quarantine: authenticated deliveries that no parser could read, kept for replay.

A delivery that passed authentication and the size limit and is a JSON object, but that its
provider's parser rejects (``ParseError``), is stored raw in ``webhook_quarantine`` and answered
202 instead of being lost.  It is written in the transaction of an ingest group, under a
savepoint of its own (``gateway.ingest_store.OwnWrite``):

1. ``quarantine_lock``: on PostgreSQL an advisory lock per workspace, held to the end of the
   transaction; on SQLite the ``BEGIN IMMEDIATE`` write lock already serialises everything;
2. ``INSERT … ON CONFLICT (workspace_id, body_hash) DO NOTHING RETURNING id``: the same raw
   delivery (hash of provider + body) is one row, and a repeat gets the first row's id;
3. the flood guard, for a new row only: more than ``QUARANTINE_MAX_PER_HOUR`` rows received in
   the last hour raises ``QuarantineFull`` and the savepoint rolls back (nothing stored).  The
   lock makes the count exact: a storm of distinct bodies never stores more than the limit in
   any rolling hour (as measured by the receiving processes' clocks);
4. the day's Slack alert is *claimed* in ``alerts`` (unique per workspace, kind, day; repeats
   count as suppressed).  Sending it is left to ``scheduler.alerts``, which the scheduler
   runs: the request path never calls another service.

Replay runs the current parser over the stored body through the live path's own
``gateway.ingest.ingest_delivery``, so exactly-once holds: replaying twice is a dedupe hit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.events import ParseError, ReplayedDelivery
from gateway.ingest import ingest_delivery
from gateway.ingest_group import groups_for
from gateway.ingest_store import OwnWrite
from gateway.providers import PROVIDERS, Delivery
from gateway.settings import Settings
from gateway.workspaces import is_workspace_id
from sql import Connection, Database, Row

log = logging.getLogger("hookgate.quarantine")

STATUSES = ("pending", "replayed", "discarded")
MASK = "***"
# Header names holding a secret (dropped before a row is stored) and body keys (masked on show).
_SECRET_NAME_PARTS = ("auth", "cookie", "signature", "secret", "token", "password", "apikey")
_TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
)
REPLAY_BATCH = 200


class QuarantineFull(Exception):
    """The workspace quarantined ``QUARANTINE_MAX_PER_HOUR`` deliveries in the last hour."""


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    id: int
    new: bool  # False: the same raw delivery was already quarantined

    def answer(self) -> dict[str, Any]:
        return {"success": True, "quarantined": True, "delivery_id": self.id}


def body_hash(provider: str, raw_body: bytes) -> str:
    return hashlib.sha256(provider.encode() + b"\0" + raw_body).hexdigest()


def _is_secret_name(name: str) -> bool:
    squashed = name.lower().replace("_", "").replace("-", "")
    return any(part in squashed for part in _SECRET_NAME_PARTS)


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping for a replay or a diagnosis: no credentials (authorization,
    signatures, ``*-auth``, secrets, tokens, cookies) and no transport headers."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in _TRANSPORT_HEADERS and not _is_secret_name(name)
    }


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with every secret-named key's value replaced by ``***`` (SmartLead
    puts its ``secret_key`` inside the body, and the raw body must stay intact for replay)."""
    if isinstance(value, dict):
        return {
            key: MASK if _is_secret_name(key) else mask_secrets(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


async def quarantine_delivery(db: Database, delivery: Delivery, error: str) -> Quarantined:
    """Keep ``delivery`` (authenticated, a JSON object its parser rejected with ``error``), in
    the transaction of an ingest group (``gateway.ingest_group``)."""
    workspace_id: str = delivery.workspace["id"]
    keep = functools.partial(_keep, delivery=delivery, error=error)
    result = await groups_for(db).submit(OwnWrite(workspace_id, keep))
    if isinstance(result, Exception):
        raise result
    assert isinstance(result, Quarantined)
    if result.new:
        log.warning(
            "delivery quarantined",
            extra={
                "provider": delivery.provider,
                "workspace_id": workspace_id,
                "delivery_id": result.id,
                "error": error,
            },
        )
    return result


async def _keep(conn: Connection, *, delivery: Delivery, error: str) -> Quarantined:
    workspace_id: str = delivery.workspace["id"]
    digest = body_hash(delivery.provider, delivery.raw_body)
    now = delivery.received_at
    limit = delivery.settings.quarantine_max_per_hour
    await conn.fetch_one("quarantine_lock", workspace_id=workspace_id)
    row = await conn.fetch_one(
        "insert_quarantine",
        workspace_id=workspace_id,
        provider=delivery.provider,
        body_hash=digest,
        raw_body=delivery.raw_body,
        headers=orjson.dumps(safe_headers(delivery.headers)).decode(),
        error=error,
        now=now,
    )
    if row is None:
        existing = await conn.fetch_one(
            "find_quarantine_by_hash", workspace_id=workspace_id, body_hash=digest
        )
        assert existing is not None  # the conflicting row is committed (and we hold the lock)
        return Quarantined(int(existing["id"]), new=False)
    recent = await conn.fetch_one(
        "count_recent_quarantine", workspace_id=workspace_id, since=now - dt.timedelta(hours=1)
    )
    assert recent is not None
    if int(recent["n"]) > limit:
        raise QuarantineFull(
            f"cannot read this {delivery.provider} payload ({error}), and this workspace "
            f"already quarantined {limit} unreadable deliveries in the last hour "
            "(QUARANTINE_MAX_PER_HOUR): not stored"
        )
    await conn.execute(
        "claim_quarantine_alert", workspace_id=workspace_id, day=now.date().isoformat(), now=now
    )
    return Quarantined(int(row["id"]), new=True)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayResult:
    id: int
    status: str  # the row's status after the replay
    event: str | None = None
    message_id: int | None = None
    deduped: bool = False
    ignored: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def replay(db: Database, settings: Settings, delivery_id: int) -> ReplayResult | None:
    """Run the provider's current parser over a stored delivery and ingest the result exactly
    as a live delivery would be.  Success marks the row replayed (with the message id, or none
    for an event that is not a message); a parse error leaves its status with the new error.
    The delivery was authenticated when it arrived: replay does not check secrets again.
    ``None`` when no such row exists."""
    row = await db.fetch_one("get_quarantine", id=delivery_id)
    if row is None:
        return None
    now = dt.datetime.now(dt.UTC)
    provider = PROVIDERS.get(row["provider"])
    workspace = await db.fetch_one("get_workspace", id=row["workspace_id"])
    if provider is None or workspace is None:
        missing = f"provider {row['provider']}" if provider is None else "workspace"
        return ReplayResult(delivery_id, row["status"], error=f"no such {missing} any more")
    raw_body = bytes(row["raw_body"])
    delivery = Delivery(
        provider=provider.name,
        workspace=workspace,
        headers=_stored_headers(row),
        query={},
        raw_body=raw_body,
        received_at=row["received_at"],
        settings=settings,
    )
    try:
        outcome = await ingest_delivery(db, provider, orjson.loads(raw_body), delivery)
    except (ParseError, ReplayedDelivery) as exc:
        error = f"cannot read this {provider.name} payload: {exc}"
        await db.execute("record_quarantine_error", id=delivery_id, error=error, now=now)
        return ReplayResult(delivery_id, row["status"], error=error)
    await db.execute(
        "mark_quarantine_replayed", id=delivery_id, message_id=outcome.message_id, now=now
    )
    log.info(
        "quarantined delivery replayed",
        extra={
            "delivery_id": delivery_id,
            "provider": provider.name,
            "workspace_id": workspace["id"],
            "message_id": outcome.message_id,
            "deduped": outcome.deduped,
        },
    )
    return ReplayResult(
        delivery_id,
        "replayed",
        event=outcome.event,
        message_id=outcome.message_id,
        deduped=outcome.deduped,
        ignored=outcome.message_id is None,
    )


async def replay_pending(
    db: Database, settings: Settings, *, provider: str | None = None
) -> list[ReplayResult]:
    """Replay every pending delivery (of one provider), oldest first.  Each row is tried once:
    one that still fails stays pending and is not tried again in this run."""
    results: list[ReplayResult] = []
    after_id = 0
    while True:
        batch = await list_deliveries(
            db, provider=provider, status="pending", after_id=after_id, limit=REPLAY_BATCH
        )
        for row in batch:
            result = await replay(db, settings, int(row["id"]))
            if result is not None:
                results.append(result)
        if len(batch) < REPLAY_BATCH:
            return results
        after_id = int(batch[-1]["id"])


async def list_deliveries(
    db: Database,
    *,
    workspace_id: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Row]:
    """Quarantined deliveries, oldest first, without their bodies."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if provider is not None and provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if workspace_id is not None and not is_workspace_id(workspace_id):
        raise ValueError(f"not a workspace id (ws_ and 16 hex digits): {workspace_id!r}")
    return await db.fetch_all(
        "list_quarantine",
        workspace_id=workspace_id,
        provider=provider,
        status=status,
        after_id=after_id,
        limit=limit,
    )


async def show_delivery(db: Database, delivery_id: int) -> dict[str, Any] | None:
    """One delivery with its error, headers and body, secrets in the body masked."""
    row = await db.fetch_one("get_quarantine", id=delivery_id)
    if row is None:
        return None
    shown = {key: value for key, value in row.items() if key not in ("raw_body", "headers")}
    shown["headers"] = _stored_headers(row)
    shown["body"] = mask_secrets(orjson.loads(bytes(row["raw_body"])))
    return shown


async def discard(db: Database, delivery_id: int) -> bool:
    """Mark a pending delivery discarded (kept until retention removes it); False when there is
    no pending delivery with that id."""
    changed = await db.execute("discard_quarantine", id=delivery_id, now=dt.datetime.now(dt.UTC))
    return changed == 1


async def pending_deliveries(db: Database, limit: int = 50) -> list[Row]:
    """The newest pending deliveries with their workspace's name (for the status page)."""
    return await db.fetch_all("pending_quarantine", limit=limit)


async def purge_quarantine(db: Database, now: dt.datetime, retention_days: int) -> int:
    """Delete replayed and discarded rows untouched for ``retention_days``; pending rows stay
    until someone acts on them.  Returns how many rows went."""
    purged = await db.execute("purge_quarantine", cutoff=now - dt.timedelta(days=retention_days))
    if purged:
        log.info("quarantine purged", extra={"rows": purged, "retention_days": retention_days})
    return purged


def _stored_headers(row: Row) -> dict[str, str]:
    headers = row["headers"]
    loaded = orjson.loads(headers) if isinstance(headers, (str, bytes)) else headers
    return dict(loaded or {})
