"""What an outbound call inherits from the code that makes it: a time budget and an AI source.

Both live in ``contextvars`` so that they follow a job through every ``await`` (and into tasks
it starts) without being passed by hand.  The scheduler wraps each job in
``ai_source("background_job:<TYPE>")`` and ``time_budget(<what the job may still spend>)``;
``clients.http`` and ``clients.ai`` read them.

- ``time_budget(seconds)``: a deadline on the monotonic clock.  Nested budgets keep the earlier
  deadline, so an inner block can only shorten the time its caller granted.
- ``ai_source(name)``: the label that ``ai_interactions.source`` records.  Nested sources
  replace the outer one for the inner block and restore it afterwards.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "hookgate_deadline", default=None
)
_AI_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "hookgate_ai_source", default="unknown"
)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Give the block at most ``seconds`` (from now) for its outbound calls."""
    deadline = time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining_budget() -> float | None:
    """Seconds left before the innermost budget's deadline (negative once it has passed), or
    ``None`` outside any budget."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    return deadline - time.monotonic()


class ai_source:  # named as a function, used as one: ``with ai_source(name):``
    """Attribute every AI call made inside the block to ``name``.  A class rather than a
    ``@contextmanager`` generator: every HTTP request enters one (``gateway.app``)."""

    __slots__ = ("_name", "_token")

    def __init__(self, name: str) -> None:
        self._name = name

    def __enter__(self) -> None:
        self._token = _AI_SOURCE.set(self._name)

    def __exit__(self, *exc: object) -> None:
        _AI_SOURCE.reset(self._token)


def current_ai_source() -> str:
    return _AI_SOURCE.get()
