"""The admin API: the bearer check every admin route shares, and the quarantine routes.

Every admin route starts with ``require_admin``, which answers ``None`` for a request carrying
``Authorization: Bearer <the admin token>`` (``gateway.admin_token``: HOOKGATE_ADMIN_TOKEN, or the
embedded default's own; compared in constant time) and otherwise the response to send: 403
while the admin API is off (no admin token), 401 for a missing or wrong token::

    async def handler(request: Request) -> Response:
        if (denied := require_admin(request)) is not None:
            return denied
        ...

Quarantine routes (mirroring ``hookgate deliveries``; bodies are shown with secrets masked):
``GET /api/quarantine`` (``?workspace=&provider=&status=&after_id=&limit=``),
``GET /api/quarantine/{id}``, ``POST /api/quarantine/{id}/replay``,
``POST /api/quarantine/{id}/discard`` and ``POST /api/quarantine/replay`` (every pending
delivery, ``?provider=`` to narrow it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import quarantine
from gateway.admin_token import AdminToken
from gateway.runtime import Runtime
from gateway.webhooks import json_response

MAX_LIST_LIMIT = 1000


def require_admin(request: Request) -> Response | None:
    """``None`` when the request may use the admin API, else the 401/403 answer to send."""
    admin_token: AdminToken | None = request.app.state.admin_token
    if admin_token is None:
        return json_response(
            403, {"success": False, "error": "admin API is off: HOOKGATE_ADMIN_TOKEN is unset"}
        )
    authorization = request.headers.get("authorization", "")
    presented = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    if not admin_token.matches(presented):
        return json_response(401, {"success": False, "error": "unauthorized"})
    return None


def _not_found(delivery_id: int, what: str = "quarantined delivery") -> Response:
    return json_response(404, {"success": False, "error": f"no {what} {delivery_id}"})


async def list_quarantine(request: Request) -> Response:
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    params = request.query_params
    try:
        limit = int(params.get("limit", "100"))
        after_id = int(params.get("after_id", "0"))
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        rows = await quarantine.list_deliveries(
            runtime.db,
            workspace_id=params.get("workspace"),
            provider=params.get("provider"),
            status=params.get("status"),
            after_id=after_id,
            limit=limit,
        )
    except ValueError as exc:
        return json_response(400, {"success": False, "error": str(exc)})
    return json_response(200, {"success": True, "deliveries": rows})


async def show_quarantine(request: Request) -> Response:
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    delivery_id: int = request.path_params["id"]
    shown = await quarantine.show_delivery(runtime.db, delivery_id)
    if shown is None:
        return _not_found(delivery_id)
    return json_response(200, {"success": True, "delivery": shown})


async def replay_quarantine(request: Request) -> Response:
    """200 with the stored (or deduped, or ignored) outcome; 422 when the parser still cannot
    read the delivery (it stays as it was, with the new error)."""
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    delivery_id: int = request.path_params["id"]
    result = await quarantine.replay(runtime.db, runtime.settings, delivery_id)
    if result is None:
        return _not_found(delivery_id)
    return json_response(200 if result.ok else 422, {"success": result.ok, **result.as_dict()})


async def replay_all_quarantine(request: Request) -> Response:
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    results = await quarantine.replay_pending(
        runtime.db, runtime.settings, provider=request.query_params.get("provider")
    )
    return json_response(
        200,
        {
            "success": True,
            "replayed": sum(result.ok for result in results),
            "still_pending": sum(not result.ok for result in results),
            "results": [result.as_dict() for result in results],
        },
    )


async def discard_quarantine(request: Request) -> Response:
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    delivery_id: int = request.path_params["id"]
    if not await quarantine.discard(runtime.db, delivery_id):
        return _not_found(delivery_id, "pending quarantined delivery")
    return json_response(200, {"success": True, "id": delivery_id, "status": "discarded"})


ROUTES = [
    Route("/api/quarantine", list_quarantine, methods=["GET"]),
    Route("/api/quarantine/replay", replay_all_quarantine, methods=["POST"]),
    Route("/api/quarantine/{id:int}", show_quarantine, methods=["GET"]),
    Route("/api/quarantine/{id:int}/replay", replay_quarantine, methods=["POST"]),
    Route("/api/quarantine/{id:int}/discard", discard_quarantine, methods=["POST"]),
]
