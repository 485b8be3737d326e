"""The hookgate command, run as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.settings import PROVIDERS, Settings
from tests.conftest import ROOT, make_settings, rows, start_server, stop_server


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


@pytest.mark.parametrize(
    ("command", "value", "error"),
    [
        ("migrate", "many", "JOB_CONCURRENCY must be an integer, got 'many'"),
        ("serve", "0", "JOB_CONCURRENCY must be greater than 0, got 0"),
    ],
)
def test_a_malformed_setting_stops_the_command_with_one_line_naming_it(
    command: str, value: str, error: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", command],
        env={**os.environ, "JOB_CONCURRENCY": value},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr == f"hookgate: {error}\n"


def test_workspace_create_needs_a_name(settings: Settings) -> None:
    done = hookgate(settings, "workspace", "create", "--name", "  ")
    assert done.returncode == 2
    assert "non-empty --name" in done.stderr


READ_ONLY = [["jobs", "stats"], ["jobs", "list"], ["crons", "list"], ["deliveries", "list"]]
OFF_LINES = ("ai is off", "slack is off", "unipile is off")


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_print_their_output_and_nothing_else(
    args: list[str], tmp_path: Path
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'hookgate.db'}")  # migrated by this run
    done = hookgate(settings, *args, LOG_LEVEL="INFO")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def _stderr_once(path: Path, wanted: str, timeout_s: float = 20) -> str:
    """The file's text once ``wanted`` is in it (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while wanted not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_say_once_which_services_are_off(command: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'hookgate.db'}", "LOG_LEVEL": "INFO"}
    env |= {"HOOKGATE_ADMIN_TOKEN": "t", "OPENAI_API_KEY": "", "SLACK_BOT_TOKEN": ""}
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        server = start_server(env, command=command, stderr=stderr)
        try:
            text = _stderr_once(log, "scheduler started")
        finally:
            stop_server(server)
    for line in OFF_LINES:
        assert text.count(line) == 1, text


def test_a_start_aborted_by_a_busy_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    """uvicorn starts the app (and its scheduler, whose first poll is running) before it binds;
    a port in use then stops everything at once.  Three times, since the poll is not always
    caught mid-query."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'hookgate.db'}"}
    env |= {"LOG_LEVEL": "INFO", "HOOKGATE_ADMIN_TOKEN": "t"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", port],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 3
            assert "address already in use" in done.stderr
            assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr


def test_a_stop_right_after_the_start_logs_no_traceback(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'hookgate.db'}", "LOG_LEVEL": "INFO"}
    env |= {"HOOKGATE_ADMIN_TOKEN": "t", "JOB_POLL_INTERVAL_MS": "10"}
    for attempt in range(3):
        log = tmp_path / f"stderr-{attempt}.log"
        with log.open("wb") as stderr:
            stop_server(start_server(env, stderr=stderr))
        text = log.read_text()
        assert "Application shutdown complete" in text
        assert "Traceback" not in text and "CancelledError" not in text
