from __future__ import annotations

import json
import logging

from gateway.logs import JsonFormatter


def render(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("hookgate.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_is_one_json_object_with_the_extra_fields() -> None:
    line = render("dedupe hit", event="LEAD_REPLIED", message_id=4)
    assert line["msg"] == "dedupe hit"
    assert line["level"] == "info"
    assert line["event"] == "LEAD_REPLIED" and line["message_id"] == 4


def test_secrets_never_appear() -> None:
    line = render(
        "calling https://api.example.test/x?token=abc123&api_key=k9 with Bearer sk-live-1",
        token="abc123",
        smartlead_secret="s3",
        authorization="Bearer sk-live-1",
    )
    text = json.dumps(line)
    for secret in ("abc123", "k9", "sk-live-1", "s3"):
        assert secret not in text
