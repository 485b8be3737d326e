"""The operator console's lists and detail views, under ``/status`` (signed in as for the
overview: ``gateway.status``; the buttons they show post to ``gateway.console_actions``).

Lists filter by query parameters (a plain GET form, no JavaScript) and page by id:
``/status/messages`` (``workspace``, ``provider``, ``direction``, ``lead``), ``/status/jobs``
(``type``, ``status``, ``workspace``), ``/status/quarantine`` (``workspace``, ``provider``,
``status``), ``/status/alerts`` (``outcome``, ``workspace``) and ``/status/workspaces``
(integration health and context packs); a row opens its detail view (``/status/messages/{id}``,
``/status/jobs/{id}``, ``/status/quarantine/{id}``).  A filter value that is not one of its
choices is a 400 page saying so; an unknown id is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import console_data, quarantine
from gateway.admin import MAX_ROW_ID
from gateway.console_data import DIRECTIONS, MessageFilter
from gateway.integrations import alert_day
from gateway.runtime import Runtime
from gateway.settings import PROVIDERS
from gateway.status import BadFilter, Operator, not_found, page, render
from scheduler import queue
from scheduler.lead_notifications import unknown_notifications

ALERT_OUTCOMES = ("sent", "unknown")


def _choice(params: QueryParams, name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in allowed:
        raise BadFilter(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _number(params: QueryParams, name: str) -> int | None:
    value = params.get(name) or None
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_ROW_ID:
        raise BadFilter(f"{name} must be a whole number from 0 to {MAX_ROW_ID}; got {value!r}")
    return int(value)


def _older(params: QueryParams, rows: Sequence[Mapping[str, Any]], key: str) -> str | None:
    """The query string of the next page (rows past the last one shown), if there may be one."""
    if len(rows) < console_data.PAGE_SIZE:
        return None
    kept = {k: v for k, v in params.items() if k not in ("before", "after")}
    return str(QueryParams({**kept, key: str(rows[-1]["id"])}))


async def messages_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    params = request.query_params
    names = await console_data.workspace_names(runtime.db)
    where = MessageFilter(
        workspace_id=_choice(params, "workspace", tuple(names)),
        provider=_choice(params, "provider", PROVIDERS),
        direction=_choice(params, "direction", DIRECTIONS),
        lead_id=_number(params, "lead"),
        before_id=_number(params, "before") or queue.NO_ID_LIMIT,
    )
    rows = await console_data.messages(runtime.db, where)
    context = {
        "tab": "messages",
        "messages": rows,
        "filters": where,
        "workspaces": names,
        "providers": PROVIDERS,
        "directions": DIRECTIONS,
        "older": _older(params, rows, "before"),
    }
    return render(request, "messages.html", context, operator)


async def message_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    message_id: int = request.path_params["id"]
    found = await console_data.message_detail(runtime.db, message_id)
    if found is None:
        return not_found(request, operator, "message", message_id)
    return render(request, "message.html", {"tab": "messages", **found}, operator)


async def jobs_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    params = request.query_params
    names = await console_data.workspace_names(runtime.db)
    counts = await queue.job_counts(runtime.db)
    status = _choice(params, "status", queue.STATUSES)
    job_type = params.get("type") or None
    workspace_id = _choice(params, "workspace", tuple(names))
    rows = await queue.list_jobs(
        runtime.db,
        status=status,
        job_type=job_type,
        workspace_id=workspace_id,
        before_id=_number(params, "before") or queue.NO_ID_LIMIT,
        limit=console_data.PAGE_SIZE,
    )
    context = {
        "tab": "jobs",
        "jobs": rows,
        "counts": counts,
        "filters": {"status": status, "type": job_type, "workspace": workspace_id},
        "statuses": queue.STATUSES,
        "workspaces": names,
        "older": _older(params, rows, "before"),
    }
    return render(request, "jobs.html", context, operator)


async def job_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    job_id: int = request.path_params["id"]
    job = await console_data.job_detail(runtime.db, job_id)
    if job is None:
        return not_found(request, operator, "job", job_id)
    return render(request, "job.html", {"tab": "jobs", "job": job}, operator)


async def quarantine_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    params = request.query_params
    names = await console_data.workspace_names(runtime.db)
    filters = {
        "workspace": _choice(params, "workspace", tuple(names)),
        "provider": _choice(params, "provider", PROVIDERS),
        "status": _choice(params, "status", quarantine.STATUSES),
    }
    rows = await quarantine.list_deliveries(
        runtime.db,
        workspace_id=filters["workspace"],
        provider=filters["provider"],
        status=filters["status"],
        after_id=_number(params, "after") or 0,
        limit=console_data.PAGE_SIZE,
    )
    context = {
        "tab": "quarantine",
        "deliveries": rows,
        "filters": filters,
        "workspaces": names,
        "providers": PROVIDERS,
        "statuses": quarantine.STATUSES,
        "newer": _older(params, rows, "after"),
    }
    return render(request, "quarantine.html", context, operator)


async def delivery_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    delivery_id: int = request.path_params["id"]
    shown = await quarantine.show_delivery(runtime.db, delivery_id)
    if shown is None:
        return not_found(request, operator, "quarantined delivery", delivery_id)
    names = await console_data.workspace_names(runtime.db)
    context = {"tab": "quarantine", "delivery": shown, "workspaces": names}
    return render(request, "delivery.html", context, operator)


async def alerts_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    params = request.query_params
    names = await console_data.workspace_names(runtime.db)
    outcome = _choice(params, "outcome", ALERT_OUTCOMES)
    workspace_id = _choice(params, "workspace", tuple(names))
    context = {
        "tab": "alerts",
        "alerts": await runtime.db.fetch_all(
            "list_alerts",
            outcome=outcome,
            workspace_id=workspace_id,
            limit=console_data.PAGE_SIZE,
        ),
        "notifications": await unknown_notifications(
            runtime.db, workspace_id=workspace_id, limit=console_data.PAGE_SIZE
        ),
        "filters": {"outcome": outcome, "workspace": workspace_id},
        "outcomes": ALERT_OUTCOMES,
        "workspaces": names,
    }
    return render(request, "alerts.html", context, operator)


async def workspaces_page(request: Request, operator: Operator) -> Response:
    runtime: Runtime = request.app.state.runtime
    now = runtime.clock()
    alerts = await runtime.db.fetch_all("recent_alerts", since_day=alert_day(now), limit=200)
    context = {
        "tab": "workspaces",
        "workspaces": await console_data.workspaces(runtime.db, now, alerts),
        "packs": await runtime.db.fetch_all("recent_context_packs", limit=console_data.PAGE_SIZE),
    }
    return render(request, "workspaces.html", context, operator)


ROUTES = [
    Route("/status/messages", page(messages_page), methods=["GET"]),
    Route("/status/messages/{id:row_id}", page(message_page), methods=["GET"]),
    Route("/status/jobs", page(jobs_page), methods=["GET"]),
    Route("/status/jobs/{id:row_id}", page(job_page), methods=["GET"]),
    Route("/status/quarantine", page(quarantine_page), methods=["GET"]),
    Route("/status/quarantine/{id:row_id}", page(delivery_page), methods=["GET"]),
    Route("/status/alerts", page(alerts_page), methods=["GET"]),
    Route("/status/workspaces", page(workspaces_page), methods=["GET"]),
]
