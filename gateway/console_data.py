"""The reads behind the operator console's lists and detail views (``gateway.console``) and its
overview (``gateway.status``).  Every statement is a named query (``sql/queries/console.sql``
and those of the modules that own a table); these functions shape rows for the templates."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import orjson

from gateway import charts
from gateway.api import banner
from gateway.charts import Figure, Series, Window, aligned
from gateway.delivery_stats import LATENCY_BOUNDS_MS, OUTCOMES, quantile
from gateway.events import IDENTITY_COLUMNS
from gateway.integrations import alert_day, alert_kind
from gateway.notices import workspace_warnings
from scheduler.queue import NO_ID_LIMIT
from sql import Database, Row

PAGE_SIZE = 50
DIRECTIONS = ("inbound", "outbound")
ALERT_SERIES = ("sent", "suppressed", "unknown")
ALERT_COLORS = {"sent": "#2f9e61", "suppressed": "#9aa3b5", "unknown": "#d64545"}
OUTCOME_COLORS = {
    "stored": "#2f9e61",
    "deduped": "#0e9fb0",
    "ignored": "#9aa3b5",
    "quarantined": "#e3a008",
    "rejected": "#d64545",
    "unavailable": "#8b5cf6",
    "error": "#7f1d1d",
}
LATENCY_COLORS = {"p50": "#4457d6", "p99": "#ea7a2e"}


@dataclasses.dataclass(frozen=True, slots=True)
class MessageFilter:
    workspace_id: str | None = None
    provider: str | None = None
    direction: str | None = None
    lead_id: int | None = None
    before_id: int = NO_ID_LIMIT


def identity_key(message: Row) -> tuple[str, str] | None:
    """The column and value that make the message unique in its workspace (its dedupe key)."""
    for column in IDENTITY_COLUMNS:
        if message.get(column) is not None:
            return column, str(message[column])
    return None


def lead_label(row: Row) -> str | None:
    """How a message's lead is shown: its name, else whichever identity it has."""
    if row.get("lead_id") is None:
        return None
    name = " ".join(p for p in (row.get("lead_first_name"), row.get("lead_last_name")) if p)
    identity = row.get("lead_email") or row.get("lead_phone") or row.get("lead_linkedin_id")
    return name or identity or f"lead {row['lead_id']}"


def _shown(message: Row) -> dict[str, Any]:
    return {**message, "identity": identity_key(message), "lead": lead_label(message)}


async def messages(db: Database, where: MessageFilter) -> list[dict[str, Any]]:
    rows = await db.fetch_all("console_messages", **dataclasses.asdict(where), limit=PAGE_SIZE)
    return [_shown(row) for row in rows]


async def message_detail(db: Database, message_id: int) -> dict[str, Any] | None:
    message = await db.fetch_one("console_message", id=message_id)
    if message is None:
        return None
    return {
        "message": _shown(message),
        "jobs": await db.fetch_all("console_message_jobs", message_id=message_id),
        "drafts": await db.fetch_all("console_message_drafts", message_id=message_id),
    }


async def job_detail(db: Database, job_id: int) -> dict[str, Any] | None:
    job = await db.fetch_one("console_job", id=job_id)
    if job is None:
        return None
    payload = orjson.loads(job["payload"] or "{}")  # jsonb and TEXT both arrive as text
    return {**job, "payload": orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()}


async def workspace_names(db: Database) -> dict[str, str]:
    """``{id: name}`` of every workspace, in the order the filters list them."""
    return {row["id"]: row["name"] for row in await db.fetch_all("list_workspaces")}


async def workspaces(db: Database, now: dt.datetime, alerts: list[Row]) -> list[dict[str, Any]]:
    """Each workspace with its set-up warnings and its integrations, each with the banner a UI
    shows when it is not ok and today's alert about it (from ``alerts``, the recent ones)."""
    today = alert_day(now)
    todays = {(a["workspace_id"], a["kind"]): a for a in alerts if a["day"] == today}
    found: dict[str, dict[str, Any]] = {}
    for row in await db.fetch_all("integration_banners", limit=1000):
        entry = found.setdefault(
            row["workspace_id"],
            {
                "id": row["workspace_id"],
                "name": row["workspace_name"],
                "warnings": workspace_warnings(row, now),
                "integrations": [],
            },
        )
        if row["integration"] is None:
            continue
        shown = banner(row)
        alert = todays.get((row["workspace_id"], alert_kind(row["integration"], row["status"])))
        entry["integrations"].append({**row, "banner": shown, "alert_today": alert})
    return list(found.values())


async def delivery_totals(db: Database, since: dt.datetime) -> list[dict[str, Any]]:
    """Each provider's deliveries since ``since``: ``{"provider", "total", <outcome>: n}``, the
    busiest first."""
    found: dict[str, dict[str, Any]] = {}
    for row in await db.fetch_all("delivery_totals", since=since):
        entry = found.setdefault(row["provider"], {"provider": row["provider"], "total": 0})
        entry[row["outcome"]] = int(row["deliveries"])
        entry["total"] += int(row["deliveries"])
    return sorted(found.values(), key=lambda entry: (-entry["total"], entry["provider"]))


def _job_type(source: str) -> str:
    """How an AI call's ``source`` is shown: its job type for a job, else as recorded."""
    return source.removeprefix("background_job:")


def _mean(totals: Series, counts: Series) -> Series:
    """Per bucket, ``totals / counts`` where there is a count, else a gap."""
    return {
        name: [
            None if not n else (total or 0.0) / n
            for total, n in zip(totals[name], counts[name], strict=True)
        ]
        for name in counts
    }


async def delivery_figures(
    db: Database, window: Window, now: dt.datetime, provider: str | None
) -> list[Figure]:
    """Deliveries by outcome, and their ack latency's p50 and p99 (estimated from the latency
    buckets of ``delivery_stats``), over ``window``, from one provider or (None) all."""
    starts = window.starts(now)
    found = await db.fetch_all(
        "chart_deliveries", since=window.since(now), bucket_s=window.bucket_s, provider=provider
    )
    by_outcome = aligned(found, starts, "outcome", "deliveries")
    buckets: dict[int, list[tuple[int, float]]] = {}
    for row in found:
        buckets.setdefault(int(row["bucket"]), []).append(
            (int(row["latency_le_ms"]), float(row["deliveries"]))
        )
    latency: Series = {
        name: [quantile(buckets.get(start, ()), q) for start in starts]
        for name, q in (("p50", 0.5), ("p99", 0.99))
    }
    note = "Estimated within latency buckets of {} ms, from request to answer.".format(
        ", ".join(str(bound) for bound in LATENCY_BOUNDS_MS)
    )
    everything = [bucket for found_in in buckets.values() for bucket in found_in]
    count = sum(n for _, n in everything)
    if count:
        mean = sum(float(row["latency_ms_sum"]) for row in found) / count
        p50, p99 = quantile(everything, 0.5) or 0.0, quantile(everything, 0.99) or 0.0
        overall = ", ".join(
            f"{name} {charts.number(value)} ms"
            for name, value in (("p50", p50), ("p99", p99), ("mean", mean))
        )
        note = f"Over the range: {overall}. {note}"
    return [
        Figure(
            "deliveries",
            "Deliveries by outcome",
            "bars",
            "deliveries",
            {name: by_outcome[name] for name in OUTCOMES if name in by_outcome},
            OUTCOME_COLORS,
        ),
        Figure(
            "ack-latency",
            "Ack latency p50 / p99",
            "lines",
            "ms",
            latency if count else {},
            LATENCY_COLORS,
            note=note,
        ),
    ]


async def chart_figures(
    db: Database, window: Window, now: dt.datetime, provider: str | None = None
) -> list[Figure]:
    """The overview's charts over ``window`` up to ``now`` (the database's clock); the
    deliveries' from ``provider`` only, when one is given."""
    starts = window.starts(now)
    params = {"since": window.since(now), "bucket_s": window.bucket_s}
    depth = await db.fetch_all("chart_queue_depth", **params)
    dead = await db.fetch_all("chart_dead_jobs", **params)
    ai = [
        {**row, "source": _job_type(row["source"])}
        for row in await db.fetch_all("chart_ai_calls", **params)
    ]
    calls = aligned(ai, starts, "source", "calls")
    busiest = sorted(calls, key=lambda n: -sum(v or 0.0 for v in calls[n]))[: charts.MAX_SERIES]
    latency = _mean(
        aligned(ai, starts, "source", "latency_ms", gaps=True),
        {name: calls[name] for name in sorted(busiest)},
    )
    alerts = [
        {"bucket": row["bucket"], "outcome": outcome, "n": row[outcome]}
        for row in await db.fetch_all("chart_alerts", **params)
        for outcome in ALERT_SERIES
    ]
    by_type = {
        "queue-depth": charts.fold(aligned(depth, starts, "type", "depth")),
        "dead-jobs": charts.fold(aligned(dead, starts, "type", "jobs")),
        "ai-calls": charts.fold(calls),
        "ai-tokens": charts.fold(aligned(ai, starts, "source", "tokens")),
        "ai-latency": latency,
    }
    colors = charts.colors_for(name for series in by_type.values() for name in series)
    return [
        *await delivery_figures(db, window, now, provider),
        Figure(
            "queue-depth",
            "Job queue depth",
            "bars",
            "jobs",
            by_type["queue-depth"],
            colors,
            peaks=True,
        ),
        Figure("dead-jobs", "Jobs that died", "bars", "jobs", by_type["dead-jobs"], colors),
        Figure("ai-calls", "AI calls by job type", "bars", "calls", by_type["ai-calls"], colors),
        Figure(
            "ai-tokens", "AI tokens by job type", "bars", "tokens", by_type["ai-tokens"], colors
        ),
        Figure(
            "ai-latency",
            "AI call latency by job type (mean)",
            "lines",
            "ms",
            by_type["ai-latency"],
            colors,
        ),
        Figure(
            "alerts",
            "Slack alerts",
            "bars",
            "alerts",
            aligned(alerts, starts, "outcome", "n"),
            ALERT_COLORS,
        ),
    ]
