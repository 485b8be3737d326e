"""What every ``hookgate`` subcommand module shares: run a coroutine with the process runtime
open, and print JSON for ``--json``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.runtime import Runtime, open_runtime
from gateway.settings import Settings


def run_with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[int]]) -> int:
    """Open the runtime (database migrated, clients), run ``work``, close it; its exit status."""

    async def main() -> int:
        async with open_runtime(settings) as runtime:
            return await work(runtime)

    return asyncio.run(main())


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))
