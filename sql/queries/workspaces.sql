-- name: insert_workspace
INSERT INTO workspaces (
    id, name, emailbison_token_hash, ghl_token_hash, unipile_token_hash, smartlead_token_hash,
    instantly_token_hash, emailbison_workspace_id, emailbison_api_key, emailbison_base_url,
    ghl_location_id, ghl_public_key, unipile_account_id, unipile_own_id, unipile_secret_hash,
    smartlead_secret_hash, instantly_secret_hash, slack_channel, auto_send, created_at
) VALUES (
    :id, :name, :emailbison_token_hash, :ghl_token_hash, :unipile_token_hash,
    :smartlead_token_hash, :instantly_token_hash, :emailbison_workspace_id, :emailbison_api_key,
    :emailbison_base_url, :ghl_location_id, :ghl_public_key, :unipile_account_id,
    :unipile_own_id, :unipile_secret_hash, :smartlead_secret_hash, :instantly_secret_hash,
    :slack_channel, :auto_send, :now
)
RETURNING id;

-- name: get_workspace
SELECT * FROM workspaces WHERE id = :id;

-- name: list_workspaces
SELECT id, name, slack_channel, ghl_location_id, unipile_account_id, unipile_own_id, auto_send,
       created_at
FROM workspaces ORDER BY created_at, id;

-- name: learn_unipile_own_id
-- The account's own LinkedIn member id, as the Unipile account API reports it (the health check).
UPDATE workspaces SET unipile_own_id = :own_id
WHERE id = :id AND (unipile_own_id IS NULL OR unipile_own_id <> :own_id);

-- The workspace's notices (gateway/notices.py): a mark is refreshed only when it is older than
-- since_s (a negative number of seconds), so replicas that all see it due write it once.

-- name: mark_ghl_undated_workflow_sms
UPDATE workspaces SET ghl_undated_workflow_sms_at = now()
WHERE id = :id
  AND (ghl_undated_workflow_sms_at IS NULL OR ghl_undated_workflow_sms_at < now_plus(:since_s));

-- name: mark_ghl_workflow_sms
UPDATE workspaces SET ghl_workflow_sms_at = now()
WHERE id = :id AND (ghl_workflow_sms_at IS NULL OR ghl_workflow_sms_at < now_plus(:since_s));

-- name: mark_ghl_marketplace_sms
UPDATE workspaces SET ghl_marketplace_sms_at = now()
WHERE id = :id
  AND (ghl_marketplace_sms_at IS NULL OR ghl_marketplace_sms_at < now_plus(:since_s));
