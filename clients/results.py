"""Results that provider clients hand back instead of raising, so a job can degrade: log the
failure and carry on without the data.

``error_class`` is one of:
- ``timeout``, ``connection``, ``http_status``: the call failed (``clients.http``);
- ``invalid_response``: the provider answered 2xx with a body we cannot read;
- ``disabled``: the service is switched off for the process (its key or base URL is unset);
- ``not_configured``: the workspace has no credentials for this provider.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clients.http import OutboundError, OutboundStatusError


@dataclasses.dataclass(frozen=True, slots=True)
class FetchResult:
    ok: bool
    data: dict[str, Any] | None = None
    error_class: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, exc: OutboundError) -> FetchResult:
        return cls(False, None, exc.error_class, describe(exc))


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    provider_message_id: str | None = None
    error_class: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, exc: OutboundError) -> SendResult:
        return cls(False, None, exc.error_class, describe(exc))


def describe(exc: OutboundError) -> str:
    """A one-line description of a failure, safe to store and show (no request details)."""
    if isinstance(exc, OutboundStatusError):
        detail = f"status {exc.status}"
        if exc.error_type:
            detail += f" {exc.error_type}"
        return detail
    return str(exc)
