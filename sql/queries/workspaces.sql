-- name: insert_workspace
INSERT INTO workspaces (
    id, name, emailbison_token_hash, ghl_token_hash, unipile_token_hash, smartlead_token_hash,
    instantly_token_hash, emailbison_workspace_id, emailbison_api_key, emailbison_base_url,
    ghl_location_id, ghl_public_key, unipile_account_id, unipile_secret_hash,
    smartlead_secret_hash, instantly_secret_hash, slack_channel, auto_send, created_at
) VALUES (
    :id, :name, :emailbison_token_hash, :ghl_token_hash, :unipile_token_hash,
    :smartlead_token_hash, :instantly_token_hash, :emailbison_workspace_id, :emailbison_api_key,
    :emailbison_base_url, :ghl_location_id, :ghl_public_key, :unipile_account_id,
    :unipile_secret_hash, :smartlead_secret_hash, :instantly_secret_hash, :slack_channel,
    :auto_send, :now
)
RETURNING id;

-- name: get_workspace
SELECT * FROM workspaces WHERE id = :id;

-- name: list_workspaces
SELECT id, name, slack_channel, ghl_location_id, unipile_account_id, auto_send, created_at
FROM workspaces ORDER BY created_at, id;
