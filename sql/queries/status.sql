-- Reads for the integrations API and the status page (gateway/api.py, gateway/status.py).

-- name: workspace_integrations
SELECT integration, status, reason, since, last_error, checked_at, notified_status
FROM integration_health WHERE workspace_id = :workspace_id ORDER BY integration;

-- name: integration_banners
-- Every workspace, with its notices' marks (gateway/notices.py) and its integrations' state
-- (none yet: one row of NULLs).
SELECT w.id AS workspace_id, w.name AS workspace_name, w.ghl_undated_workflow_sms_at,
       w.ghl_workflow_sms_at, w.ghl_marketplace_sms_at, h.integration, h.status, h.reason,
       h.since, h.last_error, h.checked_at
FROM workspaces w LEFT JOIN integration_health h ON h.workspace_id = w.id
ORDER BY w.name, w.id, h.integration
LIMIT :limit;
