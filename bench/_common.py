"""Shared plumbing for the benchmarks: throwaway databases, server subprocesses, wrk, RSS.

Nothing here installs anything.  wrk comes from Debian (``apt-get install -y wrk``); everything
else is already in hookgate's own virtualenv.  Every server is bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
HOOKGATE = str(VENV_BIN / "hookgate")
HOST = "127.0.0.1"

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------------------------------------
# PostgreSQL: one throwaway database per run, dropped at the end.


def _pg_url(dbname: str) -> str:
    parts = urllib.parse.urlsplit(PG_ADMIN_URL)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# ``off`` (``--sync-commit off``) sets ``synchronous_commit = off`` on the throwaway database
# only (``ALTER DATABASE``; the server's own settings are left alone): commits stop waiting for
# the WAL flush, so the run prices the application's CPU rather than the disk's fsync rate.
SYNC_COMMIT = {"value": "on"}


@contextlib.contextmanager
def pg_database(tag: str) -> Iterator[str]:
    """``CREATE DATABASE hg_bench_<tag>_<random>``; yields its URL; drops it afterwards."""
    name = f"hg_bench_{tag}_{secrets.token_hex(3)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    if SYNC_COMMIT["value"] != "on":
        asyncio.run(_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield _pg_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="hg_bench_sqlite_")
    try:
        yield f"sqlite:///{folder}/hookgate.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def database(backend: str, tag: str) -> Iterator[str]:
    if backend == "postgres":
        with pg_database(tag) as url:
            yield url
    elif backend == "sqlite":
        with sqlite_database() as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}")


async def pg_fetch(url: str, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def db_fetch(url: str, sql: str) -> list[dict[str, Any]]:
    """Run one read query against either backend (SQLite through the stdlib)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql).fetchall()]
    return asyncio.run(pg_fetch(url, sql))


# ---------------------------------------------------------------------------------------------
# hookgate and the bench apps as subprocesses.


# A backlog: what a gateway that has run for a while holds before the measured traffic, so a
# run measures the steady state rather than an empty database's first seconds.  Earlier
# replies of the workspace (four per lead), each with its lead and its finished job; keys that
# the load generator never sends.  PostgreSQL's autovacuum would have analyzed such tables, so
# the backlog ends with ANALYZE there; hookgate never analyzes SQLite, so neither does this.
BACKLOG_SQL = """
INSERT INTO leads (workspace_id, email, created_at, updated_at)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {leads})
SELECT '{workspace}', 'backlog-' || n || '@example.com', '{at}', '{at}' FROM g;
INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event, subject, body,
                      sent_at, interested, created_at, email_bison_reply_id)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {messages})
SELECT '{workspace}', l.id, 'email', 'inbound', 'emailbison', 'LEAD_REPLIED', 'Re: an earlier note',
       'An earlier reply.', '{at}', false, '{at}', 'backlog-' || n
FROM g JOIN leads l ON l.workspace_id = '{workspace}'
                   AND l.email = 'backlog-' || (n % {leads} + 1) || '@example.com';
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at, finished_at)
SELECT 'EMAIL_INBOUND_POST_PROCESS', 'EMAIL_INBOUND_POST_PROCESS:' || id, workspace_id, id, '{{}}',
       'succeeded', created_at, 1, 5, created_at, created_at, created_at
FROM messages;
"""


def fill_backlog(database_url: str, workspace_id: str, messages: int) -> None:
    """Store ``messages`` earlier replies of the workspace (see BACKLOG_SQL); 0: none."""
    if messages <= 0:
        return
    sql = BACKLOG_SQL.format(
        workspace=workspace_id.replace("'", "''"),
        leads=max(messages // 4, 1),
        messages=messages,
        at="2026-11-30 12:00:00",
    )
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            conn.executescript(f"BEGIN; {sql} COMMIT;")
        return

    async def fill() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(fill())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def hookgate_env(database_url: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        HOOKGATE_PUBLIC_URL=f"http://{HOST}:{port}",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclasses.dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    emailbison_path: str  # path and query (with the token), to append to http://host:port


def create_workspace(database_url: str) -> Workspace:
    """``hookgate workspace create --name bench --json`` (it migrates the database first)."""
    out = subprocess.run(
        [HOOKGATE, "workspace", "create", "--name", "bench", "--json"],
        env=hookgate_env(database_url, 8000),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    created = json.loads(out)
    url = urllib.parse.urlsplit(created["webhooks"]["emailbison"])
    return Workspace(created["id"], f"{url.path}?{url.query}")


class Server:
    """A server subprocess on 127.0.0.1:port, its stderr in a log file, stopped with SIGTERM."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.base_url = f"http://{HOST}:{port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed in stop()
            prefix=f"hg_bench_{name}_", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            list(argv), env=env, stdout=self._log, stderr=self._log, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> str:
        return self._log.name

    def wait_ready(self, path: str = "/healthz", timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; log: {self.tail()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s; log: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def problems(self, limit: int = 3) -> list[str]:
        """The last few warning/error lines of the server's log (JSON lines or tracebacks)."""
        text = Path(self._log.name).read_text(errors="replace")
        found = [
            line[:300]
            for line in text.splitlines()
            if '"level":"error"' in line or '"level":"warning"' in line or "Error" in line
        ]
        return found[-limit:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_hookgate(database_url: str, env_extra: dict[str, str] | None = None) -> Server:
    port = free_port()
    server = Server(
        "hookgate",
        [HOOKGATE, "serve", "--host", HOST, "--port", str(port)],
        {**hookgate_env(database_url, port), **(env_extra or {})},
        port,
    )
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_uvicorn_app(name: str, app: str, env_extra: dict[str, str]) -> Server:
    """A bench app served the way ``hookgate serve`` serves hookgate: uvicorn, one worker,
    loop and http implementation left on ``auto`` (uvloop + httptools), no access log."""
    port = free_port()
    env = dict(os.environ)
    env.update(env_extra)
    env["PYTHONUNBUFFERED"] = "1"
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = Server(name, argv, env, port)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------------------------------
# /proc readings.


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own threads included), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_backend_pids(url: str) -> list[int]:
    """PostgreSQL backends connected to this (throwaway) database, the caller's excepted."""
    rows = asyncio.run(
        pg_fetch(
            url,
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    )
    return [int(r["pid"]) for r in rows]


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each process still alive."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[pid] = cpu_seconds(pid)
    return found


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu_by_pid`` readings: a process that appeared in between
    counts whole (it started during the interval), one that exited counts nothing past its
    first reading (what it spent after that is lost with it)."""
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg at start": load,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for package in ("starlette", "uvicorn", "uvloop", "httptools", "asyncpg", "aiosqlite"):
        try:
            found[package] = version(package)
        except Exception:
            found[package] = "missing"
    try:
        rows = asyncio.run(pg_fetch(PG_ADMIN_URL, "SHOW server_version"))
        found["postgresql"] = str(rows[0]["server_version"])
    except Exception as exc:
        found["postgresql"] = f"unreachable ({type(exc).__name__})"
    wrk = shutil.which("wrk")
    if wrk:
        first = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        found["wrk"] = (first.splitlines() or ["?"])[0].split(" [")[0]
    return found


def print_header(title: str) -> None:
    print(f"## {title}\n")
    info = {**machine(), **versions()}
    print("| " + " | ".join(info) + " |")
    print("|" + "---|" * len(info))
    print("| " + " | ".join(info.values()) + " |\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def now_s() -> float:
    return time.perf_counter()
