-- One claim, one run (issue 13): every claim of a background job increments claim_token, a
-- fencing token.  The run that claim started renews, finishes, retries or releases the job only
-- while the row still carries its token, so a run whose lease lapsed and whose job was claimed
-- again (by another replica, or by this same worker after a database outage) writes nothing.

ALTER TABLE background_jobs ADD COLUMN claim_token bigint NOT NULL DEFAULT 0;
