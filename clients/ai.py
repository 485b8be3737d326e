"""Model calls through ``openai.AsyncOpenAI``, each under a time budget and each recorded.

``AIClient.complete`` runs one chat completion and returns an ``AIResult``; it never raises
(except the caller's own ``CancelledError``).  Every call that reaches the model step writes one
``ai_interactions`` row (source from ``ai_source``, model, purpose, tokens, latency, status
ok|timeout|error, error, workspace) whatever its outcome, including a caller that cancels
mid-call (``status=error``, ``error="cancelled"``, written under ``asyncio.shield``).  A row that
cannot be written (database down) is logged, never raised: the answer is still useful.

``json_object=True`` asks for OpenAI's JSON mode (``response_format={"type": "json_object"}``):
the answer is one JSON object (the prompt must say which); reading it is the caller's job.

Timeout: the smaller of ``AI_TIMEOUT_MS`` and what is left of the context's ``time_budget``.
It is given to the SDK (per request) and also bounds the whole call with ``asyncio.timeout``,
because the SDK's timeout applies per read, not to the call as a whole.

Retries: ``max_retries=0``.  The SDK would retry 429s, 5xx and connection errors by itself,
re-sending a paid completion, sleeping past our budget, and hiding the failed attempts from
``ai_interactions``.  The retry decision belongs to the job runner, which retries the whole
job with backoff and records each attempt.

An unset ``OPENAI_API_KEY`` turns AI off: ``complete`` answers ``status="disabled"`` and writes
nothing (``open_clients`` logs it once at start).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Literal

import openai
from openai.types.chat.completion_create_params import ResponseFormat

from clients.context import ai_source, current_ai_source, remaining_budget, time_budget
from clients.http import provider_error_type
from sql import Database, DatabaseError

__all__ = [
    "AIClient",
    "AIResult",
    "ai_source",
    "current_ai_source",
    "remaining_budget",
    "time_budget",
]

log = logging.getLogger("hookgate.clients.ai")

AIStatus = Literal["ok", "timeout", "error", "disabled"]


@dataclasses.dataclass(frozen=True, slots=True)
class AIResult:
    status: AIStatus
    text: str | None = None
    error: str | None = None
    # timeout, connection, http_status, invalid_response, cancelled (None when ok or disabled)
    error_class: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int = 0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AIClient:
    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI | None,
        model: str,
        timeout_s: float,
        db: Database,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._client = client
        self._model = model
        self._timeout_s = timeout_s
        self._db = db
        self._clock = clock

    @classmethod
    def from_settings(
        cls, *, api_key: str, base_url: str, model: str, timeout_s: float, db: Database
    ) -> AIClient:
        client = None
        if api_key:
            client = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
            )
        return cls(client=client, model=model, timeout_s=timeout_s, db=db)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def complete(
        self,
        *,
        purpose: str,
        system: str,
        prompt: str,
        workspace_id: str | None,
        json_object: bool = False,
    ) -> AIResult:
        if self._client is None:
            return AIResult("disabled", error="OPENAI_API_KEY is unset")
        source = current_ai_source()
        timeout_s = self._timeout_s
        budget = remaining_budget()
        if budget is not None:
            timeout_s = min(timeout_s, budget)
        started = time.monotonic()
        if timeout_s <= 0:
            result = AIResult("timeout", error="the time budget was spent", error_class="timeout")
        else:
            try:
                result = await self._call(
                    self._client, system, prompt, timeout_s, started, json_object
                )
            except asyncio.CancelledError:
                cancelled = AIResult(
                    "error", error="cancelled", error_class="cancelled", latency_ms=_ms(started)
                )
                await asyncio.shield(self._record(cancelled, source, purpose, workspace_id))
                raise
        await self._record(result, source, purpose, workspace_id)
        return result

    async def _call(
        self,
        client: openai.AsyncOpenAI,
        system: str,
        prompt: str,
        timeout_s: float,
        started: float,
        json_object: bool,
    ) -> AIResult:
        response_format: ResponseFormat | openai.Omit = (
            {"type": "json_object"} if json_object else openai.omit
        )
        try:
            async with asyncio.timeout(timeout_s):
                completion = await client.chat.completions.create(
                    model=self._model,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": prompt},
                    ],
                    response_format=response_format,
                    timeout=timeout_s,
                )
        except (TimeoutError, openai.APITimeoutError):
            # APITimeoutError subclasses APIConnectionError: it must be caught first.
            error = f"no answer within {timeout_s:.3g} s"
            return AIResult("timeout", error=error, error_class="timeout", latency_ms=_ms(started))
        except openai.APIConnectionError as exc:
            return AIResult(
                "error", error=str(exc), error_class="connection", latency_ms=_ms(started)
            )
        except openai.APIStatusError as exc:
            error_type = provider_error_type({"error": exc.body}) or provider_error_type(exc.body)
            error = f"status {exc.status_code}" + (f" {error_type}" if error_type else "")
            return AIResult(
                "error", error=error, error_class="http_status", latency_ms=_ms(started)
            )
        except openai.OpenAIError as exc:
            error = f"{type(exc).__name__}: {exc}"
            return AIResult(
                "error", error=error, error_class="invalid_response", latency_ms=_ms(started)
            )
        usage = completion.usage
        prompt_tokens = usage.prompt_tokens if usage else None
        completion_tokens = usage.completion_tokens if usage else None
        text = completion.choices[0].message.content if completion.choices else None
        if not text:
            return AIResult(
                "error",
                error="the completion has no text",
                error_class="invalid_response",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_ms=_ms(started),
            )
        return AIResult(
            "ok",
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=_ms(started),
        )

    async def _record(
        self, result: AIResult, source: str, purpose: str, workspace_id: str | None
    ) -> None:
        if result.status != "ok":
            log.warning(
                "ai_call_failed",
                extra={
                    "event": "ai_call_failed",
                    "source": source,
                    "purpose": purpose,
                    "model": self._model,
                    "status": result.status,
                    "error_class": result.error_class,
                    "error": result.error,
                    "workspace_id": workspace_id,
                },
            )
        try:
            await self._db.execute(
                "insert_ai_interaction",
                workspace_id=workspace_id,
                source=source,
                model=self._model,
                purpose=purpose,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                latency_ms=result.latency_ms,
                status=result.status,
                error=result.error,
                now=self._clock(),
            )
        except DatabaseError as exc:
            log.error(
                "ai_interaction_not_recorded",
                extra={
                    "event": "ai_interaction_not_recorded",
                    "purpose": purpose,
                    "error": str(exc),
                },
            )


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
