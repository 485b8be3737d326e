"""The handler registry: job type → ``async def handler(ctx, job)``.

A module registers its handlers at import::

    from scheduler.handlers import JobContext, register
    from scheduler.queue import Job

    @register("DRAFT_SEND", timeout_s=30)
    async def send_draft(ctx: JobContext, job: Job) -> None: ...

The runner imports ``BUILTIN_MODULES`` and the modules named by ``JOB_HANDLER_MODULES``
(comma-separated), so an operator or a test can add job types without editing hookgate.
A handler returns to succeed and raises to fail the run (it is retried with backoff, then
dead); it runs inside ``ai_source("background_job:<TYPE>")`` and ``time_budget(<timeout>)``
and is cancelled when its timeout passes.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Awaitable, Callable, Iterable

from gateway.runtime import Runtime
from scheduler.queue import Job

BUILTIN_MODULES = ("scheduler.post_process", "scheduler.drafts")


@dataclasses.dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its job: the process's shared objects and its deadline."""

    runtime: Runtime
    worker: str
    deadline: float  # on the time.monotonic() clock

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


class JobDataError(RuntimeError):
    """The job's data does not fit: retrying is unlikely to help, but the error is recorded."""


Handler = Callable[[JobContext, Job], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    handler: Handler
    timeout_s: float | None  # None: the JOB_TIMEOUT_S setting


class HandlerRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(
        self, job_type: str, *, timeout_s: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: run ``job_type`` jobs with the decorated handler, within ``timeout_s``."""
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s for {job_type} must be positive, got {timeout_s}")

        def add(handler: Handler) -> Handler:
            if job_type in self._specs:
                raise ValueError(f"a handler for job type {job_type!r} is already registered")
            self._specs[job_type] = HandlerSpec(handler, timeout_s)
            return handler

        return add

    def get(self, job_type: str) -> HandlerSpec | None:
        return self._specs.get(job_type)

    def types(self) -> list[str]:
        return sorted(self._specs)


REGISTRY = HandlerRegistry()
register = REGISTRY.register


def load_handler_modules(extra: str | Iterable[str] = ()) -> None:
    """Import the built-in handler modules and ``extra`` (a comma-separated string or names);
    each registers its handlers in ``REGISTRY`` when first imported."""
    names = extra.split(",") if isinstance(extra, str) else list(extra)
    for name in (*BUILTIN_MODULES, *names):
        if name.strip():
            importlib.import_module(name.strip())
