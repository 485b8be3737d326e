"""What a provider is to the shared path: a parser, its authentication, its retry answer."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from gateway.ingest import Event
from gateway.workspaces import secret_matches
from sql import Row

Payload = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One authenticated-or-not request, as providers see it."""

    provider: str
    workspace: Row
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    raw_body: bytes
    received_at: dt.datetime

    @property
    def token(self) -> str | None:
        """The workspace token, from ``Authorization: Bearer …`` or ``?token=…``."""
        authorization = self.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return authorization[7:].strip() or None
        return self.query.get("token") or None


def token_auth(delivery: Delivery) -> bool:
    return secret_matches(delivery.token, delivery.workspace[f"{delivery.provider}_token_hash"])


def accept_payload(payload: Payload, delivery: Delivery) -> bool:
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class Provider:
    name: str
    parse: Callable[[Payload, Delivery], Event]
    # Checked before the body is parsed (token, header secret, signature over the raw bytes).
    authenticate: Callable[[Delivery], bool] = token_auth
    # Checked after the body is parsed, for secrets carried inside it (SmartLead's secret_key).
    verify_payload: Callable[[Payload, Delivery], bool] = accept_payload
    # The status that makes this provider retry later (GoHighLevel retries only a 429).
    retry_status: int = 503
