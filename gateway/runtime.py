"""The objects one hookgate process shares, built in the app's lifespan and passed explicitly."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from sql import Database


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    metrics: Metrics
    workspaces: WorkspaceCache
    clock: Callable[[], dt.datetime] = utc_now
