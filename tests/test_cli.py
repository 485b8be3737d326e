"""The hookgate command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gateway.settings import PROVIDERS, Settings
from tests.conftest import ROOT, rows


def hookgate(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "HOOKGATE_PUBLIC_URL": "https://hooks.example.test",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_workspace_create_prints_a_url_per_provider_and_stores_only_hashes(
    settings: Settings,
) -> None:
    done = hookgate(
        settings, "workspace", "create", "--name", "Acme", "--slack-channel", "#replies", "--json"
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert set(created["webhooks"]) == set(PROVIDERS)
    for provider, url in created["webhooks"].items():
        prefix = f"https://hooks.example.test/webhooks/{provider}/{created['id']}?token="
        assert url.startswith(prefix)
    [row] = await rows(settings.database_url, "SELECT * FROM workspaces")
    assert row["id"] == created["id"] and row["slack_channel"] == "#replies"
    tokens = {url.split("token=")[1] for url in created["webhooks"].values()}
    assert len(tokens) == len(PROVIDERS)
    stored = " ".join(str(v) for v in row.values())
    assert not any(token in stored for token in tokens)

    listed = hookgate(settings, "workspace", "list", "--json")
    assert [w["id"] for w in json.loads(listed.stdout)] == [created["id"]]
    assert not any(token in listed.stdout for token in tokens)


async def test_migrate_is_idempotent(settings: Settings) -> None:
    for _ in range(2):
        done = hookgate(settings, "migrate")
        assert done.returncode == 0, done.stderr
        assert "schema is at version" in done.stdout


@pytest.mark.parametrize(
    "args", [[], ["serve"], ["migrate"], ["workspace"], ["workspace", "create"]]
)
def test_every_command_has_help(args: list[str], tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0
    assert "usage: hookgate" in done.stdout


def test_a_malformed_setting_stops_the_command_with_its_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "migrate"],
        env={**os.environ, "JOB_CONCURRENCY": "many"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "JOB_CONCURRENCY must be an integer" in done.stderr


def test_workspace_create_needs_a_name(settings: Settings) -> None:
    done = hookgate(settings, "workspace", "create", "--name", "  ")
    assert done.returncode == 2
    assert "non-empty --name" in done.stderr
