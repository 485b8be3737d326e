"""The application shell: request-path AI attribution, and the heap frozen after startup."""

from __future__ import annotations

import gc

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from clients.context import ai_source, current_ai_source
from gateway.app import RouteAISource, create_app
from sql import Database
from tests.conftest import make_settings


async def test_a_request_attributes_ai_calls_to_its_route_path_and_restores_the_outer() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(current_ai_source())

    app = Starlette(
        routes=[Route("/api/drafts/{id}/send", endpoint, methods=["POST"])],
        middleware=[Middleware(RouteAISource)],
    )
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        with ai_source("outer"):
            answer = await http.post("/api/drafts/7/send")
            assert current_ai_source() == "outer"
    assert answer.text == "route:/api/drafts/7/send"


@pytest.mark.parametrize("freeze", [True, False])
async def test_serve_freezes_the_startup_heap_out_of_the_collector_s_reach(
    database_url: str, db: Database, freeze: bool
) -> None:
    """``hookgate serve``'s app moves what startup made to the permanent generation, so a full
    collection while serving walks only what serving made; an app made for a test does not."""
    app = create_app(
        make_settings(database_url, HOOKGATE_SCHEDULER="false"), freeze_startup_heap=freeze
    )
    assert gc.get_freeze_count() == 0
    try:
        async with app.router.lifespan_context(app):
            assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()
