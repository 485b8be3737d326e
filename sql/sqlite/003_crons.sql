-- Crons (issue 8).  cron_leases keeps each cron's last run (the status page reads it); alerts
-- gain a send claim that a failed Slack send gives back; integration_health remembers what the
-- workspace's channel was last told, so a reconnection is announced once; a workspace has at
-- most one context pack waiting or being built (a second request finds the first).

ALTER TABLE cron_leases ADD COLUMN last_started_at TIMESTAMP;
ALTER TABLE cron_leases ADD COLUMN last_finished_at TIMESTAMP;
ALTER TABLE cron_leases ADD COLUMN last_outcome TEXT;
ALTER TABLE cron_leases ADD COLUMN last_error TEXT;
ALTER TABLE cron_leases ADD COLUMN breaker_opened_at TIMESTAMP;

ALTER TABLE alerts ADD COLUMN claimed_at TIMESTAMP;
ALTER TABLE alerts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_error TEXT;

ALTER TABLE integration_health ADD COLUMN notified_status TEXT;

ALTER TABLE context_packs ADD COLUMN leads_failed INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX context_packs_open ON context_packs (workspace_id)
    WHERE status IN ('pending', 'building');
