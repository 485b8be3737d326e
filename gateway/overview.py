"""``GET /status``: the console's overview.  The charts (``gateway.console_data``,
``gateway.charts``) over ``?range=1h|24h|7d`` on the database's clock, under tiles with the
figures an operator reads first; then each workspace's set-up warnings (``gateway.notices``) and
integration banners (with the day's alert and the repeats it suppressed), jobs by type and
status, deliveries by provider and outcome over the range, cron runs (last start and end,
outcome, when a breaker last opened), recent alerts with their outcome (an ``unknown`` one with
the command that re-sends it), interested-lead notifications of unknown outcome, context packs,
and pending quarantined deliveries.  The delivery charts (``?provider=`` narrows them to one)
and table read ``delivery_stats`` (``gateway.delivery_stats``): every replica's answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import console_data
from gateway.charts import WINDOWS, Figure, draw
from gateway.delivery_stats import OUTCOMES
from gateway.integrations import alert_day
from gateway.quarantine import pending_deliveries
from gateway.runtime import Runtime
from gateway.settings import PROVIDERS
from gateway.status import BadFilter, Operator, page, render
from scheduler.crons import CronService
from scheduler.lead_notifications import unknown_notifications
from sql import database_now

ALERT_DAYS = 7
JOB_STATUSES = ("pending", "running", "succeeded", "dead")
DEFAULT_WINDOW = "24h"
DELIVERY_CHARTS = ("deliveries", "ack-latency")  # ?provider= narrows these to one provider


async def overview_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    window = WINDOWS.get(request.query_params.get("range") or DEFAULT_WINDOW)
    if window is None:
        raise BadFilter(f"range must be one of {', '.join(WINDOWS)}")
    provider = request.query_params.get("provider") or None
    if provider is not None and provider not in PROVIDERS:
        raise BadFilter(f"provider must be one of {', '.join(PROVIDERS)}")
    crons: CronService | None = getattr(request.app.state, "crons", None)
    context = await collect(runtime, crons)
    now = await database_now(runtime.db)  # the charts cover every replica: the database's clock
    figures = await console_data.chart_figures(runtime.db, window, now, provider)
    by_provider = await console_data.delivery_totals(runtime.db, window.since(now))
    page = {
        "tab": "overview",
        **dataclasses.asdict(context),
        "window": window,
        "windows": WINDOWS,
        "provider": provider,
        "providers": PROVIDERS,
        "outcomes": OUTCOMES,
        "by_provider": by_provider,
        "tiles": _tiles(context, figures),
        "charts": [
            {
                "key": f.key,
                "title": f.title,
                "unit": f.unit,
                "peaks": f.peaks,
                "totals": f.totals,
                "note": f.note,
                "per_provider": f.key in DELIVERY_CHARTS,
                "svg": draw(f, window, now),
            }
            for f in figures
        ],
    }
    return render(request, "status.html", page, operator)


def _tiles(context: StatusContext, figures: list[Figure]) -> list[dict[str, Any]]:
    """The figures an operator reads first, above the charts."""
    totals = {f.key: f.series for f in figures}

    def total(key: str, name: str | None = None) -> int:
        return int(
            sum(v or 0 for n, values in totals[key].items() if name in (None, n) for v in values)
        )

    queued = sum(job["pending"] + job["running"] for job in context.jobs)
    dead = sum(job["dead"] for job in context.jobs)
    unknown = total("alerts", "unknown") + len(context.unknown_notifications)
    turned_away = total("deliveries", "rejected") + total("deliveries", "unavailable")
    return [
        {
            "label": "Deliveries",
            "value": total("deliveries"),
            "sub": f"{turned_away:,} rejected or asked to retry",
        },
        {
            "label": "Queue now",
            "value": queued,
            "sub": "pending and running jobs",
            "href": "/status/jobs?status=pending",
        },
        {
            "label": "Dead jobs",
            "value": dead,
            "bad": dead > 0,
            "sub": "waiting for a retry",
            "href": "/status/jobs?status=dead",
        },
        {"label": "AI calls", "value": total("ai-calls"), "sub": f"{total('ai-tokens'):,} tokens"},
        {
            "label": "Slack unknown",
            "value": unknown,
            "bad": unknown > 0,
            "sub": "alerts and notifications to check",
            "href": "/status/alerts?outcome=unknown",
        },
    ]


@dataclasses.dataclass
class StatusContext:
    now: dt.datetime
    workspaces: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    crons: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    unknown_notifications: list[dict[str, Any]]
    packs: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]


async def collect(runtime: Runtime, crons: CronService | None) -> StatusContext:
    db = runtime.db
    now = runtime.clock()
    since_day = alert_day(now - dt.timedelta(days=ALERT_DAYS - 1))
    alerts = await db.fetch_all("recent_alerts", since_day=since_day, limit=200)

    jobs: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(JOB_STATUSES, 0))
    for row in await db.fetch_all("job_counts"):
        jobs[row["type"]][row["status"]] = int(row["n"])

    runs = {row["name"]: row for row in await db.fetch_all("list_cron_runs")}
    leases_now = await database_now(db)  # leases expire by the database's clock
    specs = crons.specs if crons is not None else {}
    cron_rows = []
    for name in sorted(set(runs) | set(specs)):
        run = runs.get(name, {})
        started, finished = run.get("last_started_at"), run.get("last_finished_at")
        unfinished = started is not None and (finished is None or finished < started)
        expires = run.get("expires_at")
        spec = specs.get(name)
        cron_rows.append(
            {
                "name": name,
                "every_s": spec.interval_s if spec else None,
                "running": unfinished and expires is not None and expires > leases_now,
                "abandoned": unfinished and (expires is None or expires <= leases_now),
                **{
                    k: run.get(k)
                    for k in (
                        "last_started_at",
                        "last_finished_at",
                        "last_outcome",
                        "last_error",
                        "breaker_opened_at",
                        "holder",
                    )
                },
            }
        )

    return StatusContext(
        now=now,
        workspaces=await console_data.workspaces(db, now, alerts),
        jobs=[{"type": t, **counts} for t, counts in sorted(jobs.items())],
        crons=cron_rows,
        alerts=alerts,
        unknown_notifications=await unknown_notifications(db, limit=20),
        packs=await db.fetch_all("recent_context_packs", limit=10),
        quarantine=await pending_deliveries(db, limit=10),
    )


ROUTES = [Route("/status", page(overview_page), methods=["GET"])]
