-- Integration alerts: at most one Slack alert per (workspace, kind, day), sent off the webhook
-- path by the scheduler (scheduler/alerts.py).  kind is '<integration>_disconnected' or
-- '<integration>_reconnected'; day is the UTC date.  A row is due while outcome and claimed_at
-- are both NULL; a claim is stamped with the database clock when it is taken, and the same stamp
-- fences the claim's verdict (mark_alert_sent, mark_alert_unknown, release_alert_claim).  The
-- statements from mark_alert_sent on serve the quarantine alerts too.

-- name: count_suppressed_alert
-- A repeated report of a state whose alert went out today already: the claim held it back.
UPDATE alerts SET suppressed = suppressed + 1
WHERE workspace_id = :workspace_id AND kind = :kind AND day = :day AND outcome IS NOT NULL;

-- name: due_integration_alerts
-- What a workspace's channel has not been told yet: an account disconnected with no alert sent,
-- being sent or of unknown outcome today, or back to ok after the channel heard (or may have
-- heard) that it was disconnected.
SELECT h.workspace_id, h.integration, h.status, h.reason, h.since, w.name AS workspace_name,
       w.slack_channel
FROM integration_health h JOIN workspaces w ON w.id = h.workspace_id
WHERE w.slack_channel IS NOT NULL AND w.slack_channel <> ''
  AND ((h.status = 'disconnected' AND NOT EXISTS (
            SELECT 1 FROM alerts a
            WHERE a.workspace_id = h.workspace_id AND a.kind = h.integration || '_disconnected'
              AND a.day = :day AND (a.outcome IS NOT NULL OR a.claimed_at IS NOT NULL)))
    OR (h.status = 'ok' AND h.notified_status = 'disconnected' AND NOT EXISTS (
            SELECT 1 FROM alerts a
            WHERE a.workspace_id = h.workspace_id AND a.kind = h.integration || '_reconnected'
              AND a.day = :day AND (a.outcome IS NOT NULL OR a.claimed_at IS NOT NULL))))
ORDER BY h.workspace_id, h.integration
LIMIT :limit;

-- name: claim_integration_alert
-- The claim: the row for (workspace, kind, day), taken by inserting it or by taking one whose
-- earlier claim was given back (Slack refused the post); never one with an outcome or a claim.
-- No row back: someone else has it.
INSERT INTO alerts (workspace_id, kind, day, message, claimed_at, created_at)
VALUES (:workspace_id, :kind, :day, :message, now(), now())
ON CONFLICT (workspace_id, kind, day) DO UPDATE SET
    claimed_at = excluded.claimed_at,
    message    = excluded.message
WHERE alerts.outcome IS NULL AND alerts.claimed_at IS NULL
RETURNING id, claimed_at;

-- name: set_notified_status
UPDATE integration_health SET notified_status = :status
WHERE workspace_id = :workspace_id AND integration = :integration;

-- name: settle_stale_alert_claims
-- A claim older than :stale_s seconds with no verdict belongs to a sender that stopped (died,
-- was cancelled, or could not write the verdict) after it may have posted: its outcome is
-- unknown, and it is never taken over and posted again.
UPDATE alerts
SET outcome = 'unknown', attempts = attempts + 1,
    last_error = 'the sender stopped before it recorded what Slack answered'
WHERE outcome IS NULL AND claimed_at < now_plus(-CAST(:stale_s AS double precision));

-- name: mark_alert_sent
UPDATE alerts SET outcome = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = :id AND claimed_at = :claimed_at;

-- name: mark_alert_unknown
-- Slack may or may not have posted it: never posted again automatically.
UPDATE alerts SET outcome = 'unknown', attempts = attempts + 1, last_error = :error
WHERE id = :id AND claimed_at = :claimed_at;

-- name: release_alert_claim
-- Slack certainly did not post it: the claim is given back, and a later pass retries.
UPDATE alerts SET claimed_at = NULL, outcome = NULL, attempts = attempts + 1, last_error = :error
WHERE id = :id AND claimed_at = :claimed_at;

-- name: claim_alert_resend
-- An operator's resend (`hookgate alerts resend ID`) takes an alert of unknown outcome, and only
-- such a one: of two resends at once, one posts.
UPDATE alerts SET claimed_at = now(), outcome = NULL
WHERE id = :id AND outcome = 'unknown'
RETURNING id, claimed_at;

-- name: get_alert
SELECT a.id, a.workspace_id, w.name AS workspace_name, w.slack_channel, a.kind, a.day,
       a.message, a.outcome, a.claimed_at, a.sent_at, a.attempts, a.suppressed, a.last_error
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE a.id = :id;

-- name: list_alerts
-- For `hookgate alerts list`: newest first, optionally one outcome ('unknown') or workspace.
SELECT a.id, a.workspace_id, w.name AS workspace_name, a.kind, a.day, a.outcome, a.claimed_at,
       a.sent_at, a.attempts, a.suppressed, a.last_error
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE (CAST(:outcome AS text) IS NULL OR a.outcome = :outcome)
  AND (CAST(:workspace_id AS text) IS NULL OR a.workspace_id = :workspace_id)
ORDER BY a.id DESC
LIMIT :limit;

-- name: recent_alerts
SELECT a.id, a.workspace_id, w.name AS workspace_name, a.kind, a.day, a.outcome, a.sent_at,
       a.suppressed, a.attempts, a.last_error
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE a.day >= :since_day
ORDER BY a.day DESC, w.name, a.kind
LIMIT :limit;
