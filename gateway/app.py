"""The Starlette application: routes, and a lifespan that opens and closes what the process
shares (the database, migrated at start)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from clients.context import ai_source
from gateway import admin, api, console, console_actions, openapi, overview, status
from gateway.admin_token import load_admin_token, report_admin_token
from gateway.delivery_stats import flushing
from gateway.runtime import Runtime, open_runtime
from gateway.settings import Settings
from gateway.webhooks import json_response, receive
from scheduler.crons import CronService
from scheduler.service import running_scheduler
from sql import DatabaseError


async def healthz(request: Request) -> Response:
    """The process is up.
    ---
    summary: Liveness
    tags: [health]
    responses:
      "200":
        description: The process answers.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
    """
    return json_response(200, {"ok": True})


async def readyz(request: Request) -> Response:
    """The database answers.
    ---
    summary: Readiness
    tags: [health]
    responses:
      "200":
        description: The database answers.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
      "503":
        description: The database does not answer (`error` says why).
        headers:
          Retry-After: {$ref: '#/components/headers/RetryAfter'}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
    """
    runtime: Runtime = request.app.state.runtime
    try:
        await runtime.db.fetch_one("ping")
    except DatabaseError as exc:
        return json_response(503, {"ok": False, "error": str(exc)}, {"Retry-After": "5"})
    return json_response(200, {"ok": True})


async def metrics(request: Request) -> Response:
    """This process's Prometheus metrics.
    ---
    summary: Prometheus metrics
    tags: [health]
    responses:
      "200":
        description: The text exposition format.
        content:
          text/plain:
            schema: {type: string}
    """
    runtime: Runtime = request.app.state.runtime
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (no such route 404, wrong method 405) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return json_response(exc.status_code, {"success": False, "error": exc.detail}, headers)


class RouteAISource:
    """Attributes every AI call made while a request is handled to ``route:<path>`` (jobs use
    ``background_job:<TYPE>``, crons ``cron:<name>``).  A bare ASGI wrapper: one contextvar set
    per request, nothing else on the hot path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with ai_source(f"route:{scope['path']}"):
            await self.app(scope, receive, send)


def create_app(settings: Settings, *, freeze_startup_heap: bool = False) -> Starlette:
    """The app; ``freeze_startup_heap`` (``hookgate serve``) moves every object alive once
    startup is done out of the collector's reach (``gc.freeze``): a full collection otherwise
    walks all of them (the imports of openai, slack-sdk, Starlette: 67 ms here, every request in
    flight stalled behind it; bench/RESULTS.md, "The storm and the collector")."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            app.state.admin_token = await load_admin_token(runtime.db, settings)
            report_admin_token(app.state.admin_token, settings)
            if runtime.clients is not None:
                runtime.clients.report_off()
            # The crons exist even with the scheduler off: POST /cron/{name} runs them.
            app.state.crons = CronService(runtime)
            # The scheduler stops (runs drained or released), and the last delivery stats are
            # written, before the database closes.
            async with (
                flushing(runtime.delivery_stats, runtime.db, settings.delivery_stats_flush_s),
                running_scheduler(runtime, app.state.crons),
            ):
                if freeze_startup_heap:
                    gc.freeze()
                yield

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/webhooks/{provider}/{workspace_id}", receive, methods=["POST"]),
        *admin.ROUTES,
        *api.ROUTES,
        *status.ROUTES,
        *overview.ROUTES,
        *console.ROUTES,
        *console_actions.ROUTES,
    ]
    routes.append(openapi.route(routes))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RouteAISource)],
        exception_handlers={HTTPException: http_error},
    )
