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

from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import quarantine
from gateway.admin_token import AdminToken
from gateway.runtime import Runtime
from gateway.webhooks import json_response

MAX_LIST_LIMIT = 1000
MAX_ROW_ID = 10**18 - 1  # fits every 64-bit id column on both backends


class RowIdConvertor(IntegerConvertor):
    """``{id:row_id}``: a row id of 1 to 18 digits.  A longer or zero id matches no route (a
    404) instead of overflowing a 64-bit parameter in the database."""

    regex = "[1-9][0-9]{0,17}"


register_url_convertor("row_id", RowIdConvertor())


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


def _query(request: Request, *known: str) -> QueryParams:
    """The query parameters, refused when one is unknown: a misspelt filter would otherwise
    widen a listing or a replay to every delivery."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r} (known: {', '.join(known)})")
    return request.query_params


def _not_found(delivery_id: int, what: str = "quarantined delivery") -> Response:
    return json_response(404, {"success": False, "error": f"no {what} {delivery_id}"})


async def list_quarantine(request: Request) -> Response:
    """Quarantined deliveries, oldest first, without their bodies.
    ---
    summary: List quarantined deliveries
    tags: [admin]
    security: [{adminToken: []}]
    parameters:
      - {name: workspace, in: query, schema: {$ref: '#/components/schemas/WorkspaceId'}}
      - {name: provider, in: query, schema: {$ref: '#/components/schemas/Provider'}}
      - {name: status, in: query, schema: {enum: [pending, replayed, discarded]}}
      - name: after_id
        in: query
        description: Only deliveries with a larger id (the last id of the previous page).
        schema: {type: integer, minimum: 0, maximum: 999999999999999999, default: 0}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
    responses:
      "200":
        description: One page of deliveries.
        content:
          application/json:
            schema:
              type: object
              required: [success, deliveries]
              properties:
                success: {const: true}
                deliveries:
                  type: array
                  items: {$ref: '#/components/schemas/QuarantinedDelivery'}
      "400": {$ref: '#/components/responses/BadRequest'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    try:
        params = _query(request, "workspace", "provider", "status", "after_id", "limit")
        limit = int(params.get("limit", "100"))
        after_id = int(params.get("after_id", "0"))
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        if not 0 <= after_id <= MAX_ROW_ID:
            raise ValueError(f"after_id must be between 0 and {MAX_ROW_ID}")
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
    """One delivery with its error, kept headers and body (secrets in the body masked).
    ---
    summary: Show a quarantined delivery
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/DeliveryId'}]
    responses:
      "200":
        description: The delivery.
        content:
          application/json:
            schema:
              type: object
              required: [success, delivery]
              properties:
                success: {const: true}
                delivery:
                  allOf:
                    - {$ref: '#/components/schemas/QuarantinedDelivery'}
                    - type: object
                      required: [body_hash, headers, body]
                      properties:
                        body_hash: {type: string}
                        headers: {type: object, additionalProperties: {type: string}}
                        body: {type: object}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
    """
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
    read the delivery (it stays as it was, with the new error).
    ---
    summary: Replay a quarantined delivery through today's parser
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/DeliveryId'}]
    responses:
      "200":
        description: Stored, deduped or ignored; the delivery is `replayed`.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Replayed'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
      "422":
        description: The parser still cannot read it (`error`); it stays as it was.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Replayed'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    delivery_id: int = request.path_params["id"]
    result = await quarantine.replay(runtime.db, runtime.settings, delivery_id)
    if result is None:
        return _not_found(delivery_id)
    return json_response(200 if result.ok else 422, {"success": result.ok, **result.as_dict()})


async def replay_all_quarantine(request: Request) -> Response:
    """Every pending delivery (of one provider with ``?provider=``) through today's parsers.
    ---
    summary: Replay every pending quarantined delivery
    tags: [admin]
    security: [{adminToken: []}]
    parameters:
      - {name: provider, in: query, schema: {$ref: '#/components/schemas/Provider'}}
    responses:
      "200":
        description: What each replay did.
        content:
          application/json:
            schema:
              type: object
              required: [success, replayed, still_pending, results]
              properties:
                success: {const: true}
                replayed: {type: integer, minimum: 0}
                still_pending: {type: integer, minimum: 0}
                results:
                  type: array
                  items: {$ref: '#/components/schemas/ReplayResult'}
      "400": {$ref: '#/components/responses/BadRequest'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    try:
        provider = _query(request, "provider").get("provider")
        results = await quarantine.replay_pending(runtime.db, runtime.settings, provider=provider)
    except ValueError as exc:
        return json_response(400, {"success": False, "error": str(exc)})
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
    """Mark a pending delivery discarded (retention deletes it later).
    ---
    summary: Discard a pending quarantined delivery
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/DeliveryId'}]
    responses:
      "200":
        description: The delivery is `discarded`.
        content:
          application/json:
            schema:
              type: object
              required: [success, id, status]
              properties:
                success: {const: true}
                id: {$ref: '#/components/schemas/RowId'}
                status: {const: discarded}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404":
        description: No pending delivery with this id.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
    """
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
    Route("/api/quarantine/{id:row_id}", show_quarantine, methods=["GET"]),
    Route("/api/quarantine/{id:row_id}/replay", replay_quarantine, methods=["POST"]),
    Route("/api/quarantine/{id:row_id}/discard", discard_quarantine, methods=["POST"]),
]
