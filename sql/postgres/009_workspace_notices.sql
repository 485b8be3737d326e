-- Issue 14.  The Unipile account's own LinkedIn member id (learnt from the account API by the
-- health check, or given at workspace create): a message from it is the owner's, outbound.
-- The GoHighLevel notices (gateway/notices.py): when a delivery last showed each set-up mistake,
-- refreshed at most hourly, read by the status page of every replica.

ALTER TABLE workspaces ADD COLUMN unipile_own_id text;
ALTER TABLE workspaces ADD COLUMN ghl_undated_workflow_sms_at timestamptz;
ALTER TABLE workspaces ADD COLUMN ghl_workflow_sms_at timestamptz;
ALTER TABLE workspaces ADD COLUMN ghl_marketplace_sms_at timestamptz;
