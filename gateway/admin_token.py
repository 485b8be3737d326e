"""The admin token: what the admin API and the status page check a presented token against.

``HOOKGATE_ADMIN_TOKEN`` is the admin token wherever it is set.  On the embedded default
(SQLite) without it, the first ``hookgate serve`` makes one, keeps only its SHA-256 (table
``admin_token``) and prints a sign-in URL once, as notebook servers do; later starts load the
hash and print nothing, and ``hookgate admin reset-token`` replaces it with a new one (a running
server takes it at its next start).  On PostgreSQL (production, replicas) nothing is made:
without the setting the admin API and the status page stay off.

The status page's session cookie is signed with ``AdminToken.session_key``: the token itself
when it comes from the setting (changing it signs every browser out), and a key of the process's
own when only a hash is stored, because a hash in the database must not be enough to forge a
session (a restart signs browsers out; the sign-in URL signs them in again).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

from gateway.settings import Settings
from gateway.workspaces import hash_secret, secret_matches
from sql import Database

log = logging.getLogger("hookgate.admin")


@dataclasses.dataclass(frozen=True, slots=True)
class AdminToken:
    token_hash: str  # SHA-256 hex of the token
    session_key: str  # signs the status page's session cookie

    @classmethod
    def from_setting(cls, token: str) -> AdminToken:
        return cls(hash_secret(token), token)

    @classmethod
    def from_stored_hash(cls, token_hash: str) -> AdminToken:
        return cls(token_hash, secrets.token_urlsafe(32))

    def matches(self, presented: str) -> bool:
        """Constant time: neither the token nor its length leaks."""
        return secret_matches(presented, self.token_hash)


class AdminTokenError(ValueError):
    """This database keeps no admin token of its own (the setting is the admin token)."""


def makes_its_own(settings: Settings) -> bool:
    """Whether the admin token is hookgate's own: the embedded default without the setting."""
    return not settings.admin_token and settings.database_url.startswith("sqlite:///")


async def load_admin_token(db: Database, settings: Settings) -> AdminToken | None:
    """The admin token in force; None when the admin API and the status page are off."""
    if settings.admin_token:
        return AdminToken.from_setting(settings.admin_token)
    if not makes_its_own(settings):
        return None
    row = await db.fetch_one("get_admin_token")
    return None if row is None else AdminToken.from_stored_hash(row["token_hash"])


async def first_admin_token(db: Database, settings: Settings) -> str | None:
    """On the first start of the embedded default without the setting, a new token (its hash
    stored); otherwise None.  Two first starts at once store one token: only one is told."""
    if not makes_its_own(settings):
        return None
    token = secrets.token_urlsafe(24)
    stored = await db.fetch_one("insert_first_admin_token", token_hash=hash_secret(token))
    return token if stored is not None else None


async def reset_admin_token(db: Database, settings: Settings) -> str:
    """A new token in place of the stored one (``hookgate admin reset-token``)."""
    if settings.admin_token:
        raise AdminTokenError(
            "HOOKGATE_ADMIN_TOKEN is set, and it is the admin token: change it there"
        )
    if not makes_its_own(settings):
        raise AdminTokenError(
            "on PostgreSQL the admin token is the setting HOOKGATE_ADMIN_TOKEN: set it there"
        )
    token = secrets.token_urlsafe(24)
    await db.execute("replace_admin_token", token_hash=hash_secret(token))
    return token


def report_admin_token(admin_token: AdminToken | None, settings: Settings) -> None:
    """One line at start when there is no setting to tell how to get in (or that nobody can)."""
    if admin_token is None:
        log.info("the admin API and the status page are off: HOOKGATE_ADMIN_TOKEN is unset")
    elif makes_its_own(settings):
        log.info(
            "status page: sign in with the URL printed at the first start; "
            "`hookgate admin reset-token` prints a new one"
        )


def sign_in_url(base_url: str, token: str) -> str:
    """The URL that signs a browser in to the status page (``GET /status/login?token=``)."""
    return f"{base_url.rstrip('/')}/status/login?token={token}"
