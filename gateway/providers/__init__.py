"""Provider parsers.  Each module turns one provider's delivery into a normalised event
(``gateway.events``); authentication, the transaction, dedupe and answers stay in the shared path
(``gateway.webhooks``).  Adding a provider means adding a module and one line below."""

from __future__ import annotations

from gateway.providers import emailbison, ghl, instantly, smartlead, unipile
from gateway.providers.base import Delivery, Provider

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        emailbison.PROVIDER,
        ghl.PROVIDER,
        unipile.PROVIDER,
        smartlead.PROVIDER,
        instantly.PROVIDER,
    )
}

__all__ = ["PROVIDERS", "Delivery", "Provider"]
