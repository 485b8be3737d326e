-- name: record_integration_status
-- ``since`` moves only when the status changes; ``last_error`` keeps the latest failure.
INSERT INTO integration_health (workspace_id, integration, status, reason, since, last_error,
                                checked_at)
VALUES (:workspace_id, :integration, :status, :reason, :now, :last_error, :now)
ON CONFLICT (workspace_id, integration) DO UPDATE SET
    since      = CASE WHEN integration_health.status = excluded.status
                      THEN integration_health.since ELSE excluded.since END,
    status     = excluded.status,
    reason     = excluded.reason,
    last_error = COALESCE(excluded.last_error, integration_health.last_error),
    checked_at = excluded.checked_at
RETURNING workspace_id, integration, status, reason, since, last_error, checked_at;
