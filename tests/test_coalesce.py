"""``scheduler.coalesce``: lookups made while one is in flight are answered by one call."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.coalesce import Coalescing


class Lookup:
    """A fetch that records each call's keys and holds it until released."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_on = fail_on

    async def __call__(self, keys: list[int]) -> dict[int, str]:
        self.calls.append(keys)
        await self.release.wait()
        if self.fail_on in keys:
            raise LookupError(f"no {self.fail_on}")
        return {k: f"v{k}" for k in keys if k % 10 != 9}  # 9, 19, …: not found


async def test_gets_made_while_a_call_is_in_flight_share_the_next_call() -> None:
    lookup = Lookup()
    coalescing = Coalescing(lookup)
    first = asyncio.create_task(coalescing.get(0))
    await asyncio.sleep(0)  # its call is in flight
    rest = [asyncio.create_task(coalescing.get(k)) for k in (*range(1, 20), 3)]
    await asyncio.sleep(0.01)
    assert lookup.calls == [[0]]
    lookup.release.set()
    answers = [await first, *await asyncio.gather(*rest)]
    assert lookup.calls == [[0], list(range(1, 20))]  # the repeated key asked for once
    assert answers == [f"v{k}" if k % 10 != 9 else None for k in (*range(20), 3)]


async def test_a_lone_get_is_one_call_without_waiting() -> None:
    lookup = Lookup()
    lookup.release.set()
    coalescing = Coalescing(lookup)
    assert await coalescing.get(5) == "v5"
    assert await coalescing.get(9) is None
    assert lookup.calls == [[5], [9]]


async def test_a_failed_call_fails_only_the_gets_it_held() -> None:
    lookup = Lookup(fail_on=1)
    coalescing = Coalescing(lookup)
    held = [asyncio.create_task(coalescing.get(k)) for k in (1, 2)]
    await asyncio.sleep(0)
    later = asyncio.create_task(coalescing.get(3))
    lookup.release.set()
    results = await asyncio.gather(*held, return_exceptions=True)
    assert [type(r) for r in results] == [LookupError, LookupError]
    assert await later == "v3"


async def test_a_cancelled_get_leaves_the_call_and_its_neighbours_alone() -> None:
    lookup = Lookup()
    coalescing = Coalescing(lookup)
    gets = [asyncio.create_task(coalescing.get(k)) for k in (1, 2, 3)]
    await asyncio.sleep(0)
    gets[0].cancel()
    await asyncio.sleep(0)
    lookup.release.set()
    with pytest.raises(asyncio.CancelledError):
        await gets[0]
    assert [await g for g in gets[1:]] == ["v2", "v3"]
    assert lookup.calls == [[1, 2, 3]]


async def test_drain_waits_for_the_call_in_flight_and_the_one_queued_behind_it() -> None:
    lookup = Lookup()
    coalescing = Coalescing(lookup)
    gets = [asyncio.create_task(coalescing.get(1))]
    await asyncio.sleep(0)
    gets.append(asyncio.create_task(coalescing.get(2)))
    drained = asyncio.create_task(coalescing.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    lookup.release.set()
    await drained
    assert all(g.done() for g in gets)
    assert lookup.calls == [[1], [2]]


async def test_a_call_cancelled_in_flight_cancels_its_gets_and_the_next_get_calls_again() -> None:
    """The call's task itself cancelled (the loop closing) while its fetch waits: every get it
    held, and every get queued behind it, ends cancelled — none waits for ever — and a later
    get starts a call of its own."""
    lookup = Lookup()
    coalescing = Coalescing(lookup)
    held = asyncio.create_task(coalescing.get(1))
    await asyncio.sleep(0)
    queued = asyncio.create_task(coalescing.get(2))
    await asyncio.sleep(0)
    task = coalescing._task  # private: nothing but a closing loop cancels it
    assert task is not None
    task.cancel()
    results = await asyncio.gather(held, queued, return_exceptions=True)
    assert [type(r) for r in results] == [asyncio.CancelledError, asyncio.CancelledError]
    lookup.release.set()
    assert await coalescing.get(3) == "v3"
    assert lookup.calls == [[1], [3]]
