"""The test helpers that drive system programs say why when they cannot: which Debian package
is missing, or what the program itself said when it would not start."""

from __future__ import annotations

import pytest

from tests.pgbouncer import PgBouncer
from tests.system import require_program


def test_a_missing_program_fails_the_test_naming_its_package() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        require_program("/usr/sbin/no-such-pgbouncer", "pgbouncer", "to pool connections")
    message = str(failed.value)
    assert "/usr/sbin/no-such-pgbouncer is missing" in message
    assert "needs Debian's pgbouncer to pool connections" in message
    assert "apt-get install pgbouncer" in message


def test_a_pgbouncer_that_will_not_start_says_what_it_said() -> None:
    bouncer = PgBouncer("127.0.0.1", 5432)
    (bouncer.root / "pgbouncer.ini").write_text("[pgbouncer]\nlisten_port = not-a-port\n")
    try:
        with pytest.raises(RuntimeError) as failed:
            bouncer.start()
    finally:
        bouncer.stop()
    message = str(failed.value)
    assert message.startswith("pgbouncer exited with 1:")
    assert 'invalid value "not-a-port" for parameter listen_port' in message
