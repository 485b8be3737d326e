"""PostgreSQL ``LISTEN`` on a connection of its own, outside the pool.

A pooled connection cannot listen: the pool hands it to other work between statements, and
behind pgbouncer in transaction mode ``LISTEN`` does not work at all (the caller then passes a
direct URL, ``DATABASE_LISTEN_URL``).  asyncpg drops the listeners of a lost connection without
a word, so a ``Listener`` says when its connection is gone: ``lost`` is set by asyncpg's
termination callback (a reset, a terminated backend, a server shutting down) or by ``check()``
when the server stops answering (a connection that died silently), and the caller opens a new
one.  Notifications sent while no connection listened are lost; the caller must assume it
missed some.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from sql.errors import classify
from sql.postgres import PostgresConnection


class Listener:
    def __init__(self, conn: asyncpg.Connection, timeout_s: float) -> None:
        self._conn = conn
        self._timeout_s = timeout_s
        self.lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self.lost.set())

    @classmethod
    async def open(
        cls, url: str, channel: str, on_notify: Callable[[], None], *, timeout_s: float
    ) -> Listener:
        """Connect to ``url`` and listen on ``channel``; ``on_notify`` runs on the event loop
        for every notification (its payload is not passed on)."""
        try:
            conn = await asyncpg.connect(
                url.replace("postgres://", "postgresql://", 1),
                timeout=timeout_s,
                statement_cache_size=0,
            )
        except Exception as exc:
            raise classify(exc) from exc
        listener = cls(conn, timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                await conn.add_listener(channel, lambda *_: on_notify())
        except BaseException as exc:
            listener.close()
            if isinstance(exc, Exception):
                raise classify(exc) from exc
            raise
        return listener

    async def check(self) -> None:
        """One round trip to the server; a connection that fails it or does not answer
        within the timeout is closed (``lost`` is set) and the error raised."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await PostgresConnection(self._conn).execute("ping")
        except Exception as exc:
            self.close()
            raise classify(exc) from exc

    def close(self) -> None:
        """Drop the connection at once (the server ends its session, and the listening with
        it); sets ``lost``."""
        self._conn.terminate()
        self.lost.set()
