"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the app's own routes.

Each documented endpoint carries its operation in its docstring, as YAML after a ``---`` line
(Starlette's ``SchemaGenerator`` reads it); ``openapi.yaml`` beside this module holds what no
one route owns (security schemes, shared parameters, bodies and answers).  A route without such
a block (the status page's HTML) is left out.  The document is built once, when the app is
made, so a malformed block fails the start instead of a request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

BASE = Path(__file__).with_name("openapi.yaml")


class _Generator(SchemaGenerator):
    def parse_docstring(self, func_or_method: Callable[..., Any]) -> dict[str, Any]:
        # Only the docstrings that have an operation block: plain prose is not YAML to parse.
        if "---" not in (func_or_method.__doc__ or ""):
            return {}
        return super().parse_docstring(func_or_method)


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    base: dict[str, Any] = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    return _Generator(base).get_schema(list(routes))


def route(routes: Sequence[BaseRoute]) -> Route:
    """The ``GET /openapi.json`` route describing ``routes``."""
    body = orjson.dumps(document(routes))

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
