-- Webhook deliveries per minute, provider, outcome and ack-latency bucket, for the console's
-- charts (issue 16): every process that serves webhooks adds its counts every few seconds
-- (gateway/delivery_stats.py), so the figures cover every replica and outlive restarts.
-- latency_le_ms is the upper bound of a fixed latency bucket (2147483647: above the largest), so
-- p50/p99 of any set of rows come from their summed bucket counts.  The primary key leads with
-- the minute: the charts read time ranges, the retention deletes old minutes.

CREATE TABLE delivery_stats (
    minute          timestamptz NOT NULL,
    provider        text NOT NULL,
    outcome         text NOT NULL,
    latency_le_ms   integer NOT NULL,
    deliveries      bigint NOT NULL,
    latency_ms_sum  double precision NOT NULL,
    PRIMARY KEY (minute, provider, outcome, latency_le_ms)
);

-- How many deliveries were answered `deduped` as copies of each message (the console's messages
-- list), added by the same writes.  No foreign key: these writes stay off the messages' rows.
CREATE TABLE message_copies (
    message_id  bigint PRIMARY KEY,
    copies      bigint NOT NULL
);
