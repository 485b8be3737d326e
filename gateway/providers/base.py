"""What a provider is to the shared path: a parser, its authentication, its retry answer."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from gateway.events import Event
from gateway.settings import Settings
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
    settings: Settings

    @property
    def token(self) -> str | None:
        """The workspace token, from ``Authorization: Bearer …`` or ``?token=…``."""
        authorization = self.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return authorization[7:].strip() or None
        return self.query.get("token") or None


def token_auth(delivery: Delivery) -> bool:
    return secret_matches(delivery.token, delivery.workspace[f"{delivery.provider}_token_hash"])


def token_or_header(header: str) -> Callable[[Delivery], bool]:
    """The URL/Bearer token, or else the secret header the workspace chose at webhook creation
    (compared with ``<provider>_secret_hash``), for providers that can send custom headers."""

    def authenticate(delivery: Delivery) -> bool:
        presented = delivery.headers.get(header)
        stored = delivery.workspace[f"{delivery.provider}_secret_hash"]
        return token_auth(delivery) or secret_matches(presented, stored)

    return authenticate


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
    # The answer to a delivery kept in the quarantine: accepted, not yet read.  A provider that
    # retries anything but exactly 200 (Unipile) gets 200, or it re-sends what is already kept.
    quarantine_status: int = 202
