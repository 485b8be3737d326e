-- Crons (issue 8).  cron_leases keeps each cron's last run (the status page reads it); alerts
-- gain a send claim that a failed Slack send gives back; integration_health remembers what the
-- workspace's channel was last told, so a reconnection is announced once; a workspace has at
-- most one context pack waiting or being built (a second request finds the first).

ALTER TABLE cron_leases ADD COLUMN last_started_at timestamptz;
ALTER TABLE cron_leases ADD COLUMN last_finished_at timestamptz;
ALTER TABLE cron_leases ADD COLUMN last_outcome text;
ALTER TABLE cron_leases ADD COLUMN last_error text;
ALTER TABLE cron_leases ADD COLUMN breaker_opened_at timestamptz;

ALTER TABLE alerts ADD COLUMN claimed_at timestamptz;
ALTER TABLE alerts ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_error text;

ALTER TABLE integration_health ADD COLUMN notified_status text;

ALTER TABLE context_packs ADD COLUMN leads_failed integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX context_packs_open ON context_packs (workspace_id)
    WHERE status IN ('pending', 'building');
