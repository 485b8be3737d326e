"""Debian's pgbouncer in transaction-pooling mode, started by a test on a free port in front of
the test PostgreSQL server (pgbouncer refuses to run as root, so as root it runs as postgres)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_cluster import free_port
from tests.system import require_program

PGBOUNCER = "/usr/sbin/pgbouncer"  # Debian's


class PgBouncer:
    def __init__(self, server_host: str, server_port: int) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hg-pgbouncer-"))
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 10\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """``database_url`` rewritten to go through pgbouncer."""
        database = database_url.rsplit("/", 1)[1]
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        binary = require_program(
            PGBOUNCER, "pgbouncer", "in transaction mode in front of the test PostgreSQL server"
        )
        command = [binary, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            for child in self.root.iterdir():
                shutil.chown(child, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        with (self.root / "stderr.log").open("wb") as stderr:  # the child keeps its own copy
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"pgbouncer exited with {self._process.returncode}: {self._why()}"
                    ) from None
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start within 10 s: {self._why()}")

    def _why(self) -> str:
        """What pgbouncer said, on stderr and in its log file."""
        said = [
            path.read_text(errors="replace").strip()
            for path in (self.root / "stderr.log", self.root / "pgbouncer.log")
            if path.exists()
        ]
        return "\n".join(part for part in said if part) or "(it said nothing)"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def bouncer(pg_server_url: str) -> Iterator[PgBouncer]:
    """pgbouncer in transaction mode in front of the test server, for one test."""
    host_port = pg_server_url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    bouncer = PgBouncer(host, int(port or 5432))
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
