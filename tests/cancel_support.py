"""Cancelling a coroutine at each of its awaits in turn, as a cancellation arriving there would
(the database port's tests and the ingest group's)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


class CancelAtSuspension:
    """A coroutine for ``asyncio.create_task`` that runs ``coro`` and cancels its task at the
    ``at``-th suspension, exactly as a cancellation arriving during that await would: the task
    is cancelled while the coroutine waits there.  Records where each suspension happened."""

    def __init__(self, coro: Coroutine[Any, Any, None], at: int) -> None:
        self._coro = coro
        self._at = at
        self.suspensions: list[str] = []
        self.suspended = asyncio.Event()

    def send(self, value: Any) -> Any:
        return self._suspended(self._coro.send(value))

    def throw(self, exc: BaseException) -> Any:
        return self._suspended(self._coro.throw(exc))

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("run it as a task")

    def _suspended(self, awaited: Any) -> Any:
        self.suspensions.append(innermost_port_frame(self._coro))
        self.suspended.set()
        if len(self.suspensions) == self._at:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return awaited


def innermost_port_frame(coro: Any) -> str:
    """``function:line`` of the innermost frame in ``sql/`` that ``coro`` is suspended in
    (following ``async with`` into the generator behind an ``@asynccontextmanager``)."""
    where = "?"
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        if "/sql/" in frame.f_code.co_filename:
            where = f"{frame.f_code.co_name}:{frame.f_lineno}"
        awaited = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        manager = frame.f_locals.get("self")
        if frame.f_code.co_name in ("__aenter__", "__aexit__") and hasattr(manager, "gen"):
            awaited = manager.gen
        coro = awaited
    return where
