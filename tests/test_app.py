"""The application shell: request-path AI attribution."""

from __future__ import annotations

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from clients.context import ai_source, current_ai_source
from gateway.app import RouteAISource


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
