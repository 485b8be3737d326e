-- Webhook deliveries per minute, provider, outcome and ack-latency bucket: see
-- sql/postgres/015_delivery_stats.sql.

CREATE TABLE delivery_stats (
    minute          TIMESTAMP NOT NULL,
    provider        TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    latency_le_ms   INTEGER NOT NULL,
    deliveries      INTEGER NOT NULL,
    latency_ms_sum  REAL NOT NULL,
    PRIMARY KEY (minute, provider, outcome, latency_le_ms)
);

CREATE TABLE message_copies (
    message_id  INTEGER PRIMARY KEY,
    copies      INTEGER NOT NULL
);
