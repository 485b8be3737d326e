"""Every call hookgate makes to another service goes through this package.

``open_clients(settings, db)`` opens the process's one ``aiohttp.ClientSession`` and builds the
clients on it; at exit it closes the OpenAI client and the session.  Modules:

- ``clients.http``: the HTTP policy (timeouts, failure classes, retries) for provider APIs;
- ``clients.emailbison``, ``clients.unipile``: provider clients on that policy;
- ``clients.ai``: OpenAI chat completions under a time budget, recorded in ``ai_interactions``;
- ``clients.slack``: slack-sdk's ``AsyncWebClient`` on the same session;
- ``clients.context``: the time budget and AI source a call inherits from its caller;
- ``clients.results``: the results callers degrade on instead of catching exceptions.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp

from clients.ai import AIClient
from clients.emailbison import EmailBisonClient
from clients.http import HttpPolicy
from clients.slack import SlackClient
from clients.unipile import UnipileClient
from gateway.settings import Settings
from sql import Database

log = logging.getLogger("hookgate.clients")


@dataclasses.dataclass(frozen=True, slots=True)
class Clients:
    http: HttpPolicy
    ai: AIClient
    slack: SlackClient
    unipile: UnipileClient
    emailbison: EmailBisonClient

    def report_off(self) -> None:
        """Log the services that are off for want of a setting, one line each.  The processes
        that use them call it at start (``serve``, ``worker``); one-shot commands stay quiet."""
        for name, enabled, reason in (
            ("ai", self.ai.enabled, "OPENAI_API_KEY is unset"),
            ("slack", self.slack.enabled, "SLACK_BOT_TOKEN is unset"),
            ("unipile", self.unipile.enabled, "UNIPILE_BASE_URL or UNIPILE_API_KEY is unset"),
        ):
            if not enabled:
                log.info(
                    f"{name} is off: {reason}",
                    extra={"event": "outbound_disabled", "service": name},
                )


@asynccontextmanager
async def open_clients(settings: Settings, db: Database) -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        # slack-sdk uses the shared session's own timeout, not one per request; the HTTP policy
        # sets a timeout on every request it sends, so this default only ever applies to Slack.
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.slack_timeout_s)
        )
        stack.push_async_callback(session.close)
        http = HttpPolicy(session)
        ai = AIClient.from_settings(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=settings.ai_model,
            timeout_s=settings.ai_timeout_s,
            db=db,
        )
        stack.push_async_callback(ai.close)
        clients = Clients(
            http=http,
            ai=ai,
            slack=SlackClient(
                token=settings.slack_bot_token,
                api_url=settings.slack_api_url,
                session=session,
                timeout_s=settings.slack_timeout_s,
            ),
            unipile=UnipileClient(
                http,
                base_url=settings.unipile_base_url,
                api_key=settings.unipile_api_key,
                timeout_s=settings.unipile_timeout_s,
            ),
            emailbison=EmailBisonClient(http, settings.emailbison_timeout_s),
        )
        yield clients
