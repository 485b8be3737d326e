"""Workspaces: creation with a fresh token per provider (only hashes are stored), listing, and
the short-lived in-process cache the webhook path reads them through."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import time
from typing import Any

from gateway.settings import PROVIDERS, Settings
from sql import Database, Row

WORKSPACE_ID_PREFIX = "ws_"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secret_matches(presented: str | None, stored_hash: str | None) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    if not presented or not stored_hash:
        return False
    return hmac.compare_digest(hash_secret(presented), stored_hash)


def new_workspace_id() -> str:
    return WORKSPACE_ID_PREFIX + secrets.token_hex(8)


def is_workspace_id(value: str) -> bool:
    return (
        len(value) == len(WORKSPACE_ID_PREFIX) + 16
        and value.startswith(WORKSPACE_ID_PREFIX)
        and all(c in "0123456789abcdef" for c in value[len(WORKSPACE_ID_PREFIX) :])
    )


@dataclasses.dataclass(frozen=True, slots=True)
class WorkspaceOptions:
    slack_channel: str | None = None
    emailbison_workspace_id: str | None = None
    emailbison_api_key: str | None = None
    emailbison_base_url: str | None = None
    ghl_location_id: str | None = None
    ghl_public_key: str | None = None
    unipile_account_id: str | None = None
    # The account owner's LinkedIn member id, for Unipile payloads that do not say who sent a
    # message (the health check learns it from the account API when an API key is set).
    unipile_own_id: str | None = None
    unipile_secret: str | None = None
    smartlead_secret: str | None = None
    instantly_secret: str | None = None
    auto_send: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedWorkspace:
    id: str
    name: str
    tokens: dict[str, str]  # provider -> plain token, shown once

    def webhooks(self, settings: Settings) -> dict[str, str]:
        return {p: settings.webhook_url(p, self.id, t) for p, t in self.tokens.items()}


def _optional_hash(value: str | None) -> str | None:
    return hash_secret(value) if value else None


async def create_workspace(db: Database, name: str, options: WorkspaceOptions) -> CreatedWorkspace:
    if not name.strip():
        raise ValueError("a workspace needs a non-empty --name")
    tokens = {provider: secrets.token_urlsafe(24) for provider in PROVIDERS}
    workspace_id = new_workspace_id()
    await db.execute(
        "insert_workspace",
        id=workspace_id,
        name=name.strip(),
        **{f"{p}_token_hash": hash_secret(t) for p, t in tokens.items()},
        emailbison_workspace_id=options.emailbison_workspace_id,
        emailbison_api_key=options.emailbison_api_key,
        emailbison_base_url=options.emailbison_base_url,
        ghl_location_id=options.ghl_location_id,
        ghl_public_key=options.ghl_public_key,
        unipile_account_id=options.unipile_account_id,
        unipile_own_id=options.unipile_own_id,
        unipile_secret_hash=_optional_hash(options.unipile_secret),
        smartlead_secret_hash=_optional_hash(options.smartlead_secret),
        instantly_secret_hash=_optional_hash(options.instantly_secret),
        slack_channel=options.slack_channel,
        auto_send=options.auto_send,
        now=dt.datetime.now(dt.UTC),
    )
    return CreatedWorkspace(workspace_id, name.strip(), tokens)


async def list_workspaces(db: Database) -> list[Row]:
    return await db.fetch_all("list_workspaces")


class WorkspaceCache:
    """Workspace rows by id, kept for ``ttl_s`` seconds so the webhook path does not read the
    same row on every delivery.  A changed token takes effect within ``ttl_s`` on every replica.
    Misses are not cached, so a workspace created a moment ago is found at once."""

    def __init__(self, db: Database, ttl_s: float, clock: Any = time.monotonic) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._rows: dict[str, tuple[float, Row]] = {}

    async def get(self, workspace_id: str) -> Row | None:
        now = self._clock()
        cached = self._rows.get(workspace_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._db.fetch_one("get_workspace", id=workspace_id)
        if row is not None and self._ttl_s > 0:
            if len(self._rows) > 10_000:
                self._rows.clear()
            self._rows[workspace_id] = (now + self._ttl_s, row)
        return row
