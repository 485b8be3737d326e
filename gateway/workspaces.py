"""Workspaces: creation with a fresh token per provider (only hashes are stored), listing, and
the short-lived in-process cache the webhook path reads them through."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from gateway.settings import PROVIDERS, Settings
from sql import Database, Row

WORKSPACE_ID_PREFIX = "ws_"
_HEX_DIGITS = frozenset("0123456789abcdef")

_Entry = TypeVar("_Entry")


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
        and _HEX_DIGITS.issuperset(value[len(WORKSPACE_ID_PREFIX) :])
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
    same row on every delivery.  Unknown ids are kept too: a flood of made-up ``ws_…`` ids then
    costs one query per id per ``ttl_s``, not a pooled connection and a query per request, and
    lookups of one id that arrive together share one query.  A changed token, or a workspace
    created after its id was asked for, takes effect within ``ttl_s`` on every replica.

    Each kind is bounded (``max_ids``, oldest dropped first), and apart: unknown ids can
    neither grow memory nor push the real workspaces out."""

    def __init__(
        self,
        db: Database,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_ids: int = 10_000,
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_ids = max_ids
        # id -> (expiry, row); insertion order is expiry order, as every entry lives ttl_s.
        self._known: dict[str, tuple[float, Row]] = {}
        self._unknown: dict[str, float] = {}
        self._loading: dict[str, asyncio.Task[Row | None]] = {}

    def __len__(self) -> int:
        return len(self._known) + len(self._unknown)

    async def get(self, workspace_id: str) -> Row | None:
        now = self._clock()
        known = self._known.get(workspace_id)
        if known is not None and known[0] > now:
            return known[1]
        unknown_until = self._unknown.get(workspace_id)
        if unknown_until is not None and unknown_until > now:
            return None
        loading = self._loading.get(workspace_id)
        if loading is None:
            loading = asyncio.create_task(self._load(workspace_id))
            self._loading[workspace_id] = loading
            loading.add_done_callback(lambda task: self._loaded(workspace_id, task))
        # Shielded: a cancelled caller must not cancel the lookup the others wait for.
        return await asyncio.shield(loading)

    async def _load(self, workspace_id: str) -> Row | None:
        row = await self._db.fetch_one("get_workspace", id=workspace_id)
        if self._ttl_s > 0:
            expires = self._clock() + self._ttl_s
            if row is None:
                _keep(self._unknown, workspace_id, expires, self._max_ids)
            else:
                _keep(self._known, workspace_id, (expires, row), self._max_ids)
        return row

    def _loaded(self, workspace_id: str, task: asyncio.Task[Row | None]) -> None:
        del self._loading[workspace_id]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller was cancelled


def _keep(entries: dict[str, _Entry], key: str, entry: _Entry, limit: int) -> None:
    entries.pop(key, None)  # re-inserted at the end: the order stays the order of expiry
    while len(entries) >= limit:
        del entries[next(iter(entries))]
    entries[key] = entry
