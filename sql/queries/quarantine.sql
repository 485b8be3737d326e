-- The webhook quarantine (gateway/quarantine.py): authenticated deliveries that no parser could
-- read, kept raw for replay.  Times are passed in (:now), except that an alert's send claim is
-- stamped with the database clock.
-- quarantine_lock (per dialect, sql/<dialect>/queries/quarantine.sql) serialises a workspace's
-- quarantine transactions so that the flood-guard count below is exact.

-- name: insert_quarantine
INSERT INTO webhook_quarantine (workspace_id, provider, body_hash, raw_body, headers, error,
                                status, received_at, updated_at)
VALUES (:workspace_id, :provider, :body_hash, :raw_body, :headers, :error, 'pending', :now, :now)
ON CONFLICT (workspace_id, body_hash) DO NOTHING
RETURNING id;

-- name: find_quarantine_by_hash
SELECT id FROM webhook_quarantine WHERE workspace_id = :workspace_id AND body_hash = :body_hash;

-- name: count_recent_quarantine
-- The flood guard: rows this workspace quarantined since :since (whatever their status now).
SELECT count(*) AS n FROM webhook_quarantine
WHERE workspace_id = :workspace_id AND received_at > :since;

-- name: claim_quarantine_alert
-- The day's first quarantined delivery claims the alert (sent later, off the request path, by
-- send_quarantine_alerts); every later one that day only counts as suppressed.
INSERT INTO alerts (workspace_id, kind, day, suppressed, created_at)
VALUES (:workspace_id, 'quarantine', :day, 0, :now)
ON CONFLICT (workspace_id, kind, day) DO UPDATE SET suppressed = alerts.suppressed + 1;

-- name: list_quarantine
SELECT id, workspace_id, provider, status, error, received_at, updated_at, replayed_message_id,
       length(raw_body) AS body_bytes
FROM webhook_quarantine
WHERE (CAST(:workspace_id AS text) IS NULL OR workspace_id = :workspace_id)
  AND (CAST(:provider AS text) IS NULL OR provider = :provider)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND id > :after_id
ORDER BY id
LIMIT :limit;

-- name: get_quarantine
SELECT id, workspace_id, provider, body_hash, raw_body, headers, error, status, received_at,
       updated_at, replayed_message_id
FROM webhook_quarantine WHERE id = :id;

-- name: mark_quarantine_replayed
UPDATE webhook_quarantine
SET status = 'replayed', replayed_message_id = :message_id, updated_at = :now
WHERE id = :id;

-- name: record_quarantine_error
-- A replay the parser still cannot read: the row keeps its status, with the newest error.
UPDATE webhook_quarantine SET error = :error, updated_at = :now WHERE id = :id;

-- name: discard_quarantine
UPDATE webhook_quarantine SET status = 'discarded', updated_at = :now
WHERE id = :id AND status = 'pending';

-- name: purge_quarantine
-- Retention: replayed and discarded rows go after QUARANTINE_RETENTION_DAYS; pending rows stay.
DELETE FROM webhook_quarantine
WHERE status IN ('replayed', 'discarded') AND updated_at < :cutoff;

-- name: pending_quarantine
-- For the status page: the newest pending deliveries, with their workspace's name.
SELECT q.id, q.workspace_id, w.name AS workspace_name, q.provider, q.error, q.received_at
FROM webhook_quarantine q JOIN workspaces w ON w.id = q.workspace_id
WHERE q.status = 'pending'
ORDER BY q.received_at DESC, q.id DESC
LIMIT :limit;

-- name: pending_quarantine_alerts
-- Claimed quarantine alerts (the webhook wrote the row) that are due: no outcome, nobody sending
-- them, recent (:max_age_s) and with attempts left, so a refused post is retried, not forever.
SELECT a.id, a.workspace_id, a.day, w.slack_channel
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE a.kind = 'quarantine' AND a.outcome IS NULL AND a.claimed_at IS NULL
  AND a.created_at >= now_plus(-CAST(:max_age_s AS double precision))
  AND a.attempts < :max_attempts
  AND w.slack_channel IS NOT NULL AND w.slack_channel <> ''
ORDER BY a.id
LIMIT :limit;

-- name: take_quarantine_alert
-- One sender (of however many replicas) takes each alert, stamped with the database clock and
-- with the text it is about to post (what a resend posts); the UPDATE that changes the row wins.
-- Its verdict is written by the alerts statements (mark_alert_sent, …).
UPDATE alerts SET claimed_at = now(), message = :message
WHERE id = :id AND outcome IS NULL AND claimed_at IS NULL
RETURNING id, claimed_at;

-- name: quarantine_counts_since
-- What the alert tells: the deliveries quarantined since the start of its day, by provider.
SELECT provider, count(*) AS n FROM webhook_quarantine
WHERE workspace_id = :workspace_id AND received_at >= :since
GROUP BY provider
ORDER BY provider;
