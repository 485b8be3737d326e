"""Lookups that arrive while one is in flight are answered together, by one call for them all.

The job runner's runs end, and load their messages, side by side: a statement each would be a
round trip and (for a write) a commit each.  ``Coalescing(fetch)`` turns ``fetch(keys) →
{key: value}`` into ``get(key) → value | None``: the first ``get`` of a burst starts a task that
calls ``fetch`` for every key waiting, and while that call is in flight the next keys wait for
the one after it (no added delay: a lone ``get`` is one call, as before).  A failed call fails
each ``get`` it held with its error; a cancelled ``get`` leaves the call, and its neighbours,
alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescing(Generic[K, V]):
    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """``fetch``'s value for ``key`` (None when it returned none), from the next call."""
        answer: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, answer))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return await asyncio.shield(answer)

    async def _run(self) -> None:
        batch: list[tuple[K, asyncio.Future[V | None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    found = await self._fetch(list(dict.fromkeys(key for key, _ in batch)))
                except Exception as exc:
                    for _, answer in batch:
                        answer.set_exception(exc)
                else:
                    for key, answer in batch:
                        answer.set_result(found.get(key))
        finally:
            # Cancelled (the loop is closing): nobody is left waiting for ever.
            for _, answer in (*batch, *self._waiting):
                if not answer.done():
                    answer.cancel()
            self._waiting = []
            self._task = None

    async def drain(self) -> None:
        """Wait for the call in flight and the ones queued behind it."""
        while self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
