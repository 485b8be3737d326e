-- Drafts that send themselves, and a send claim that says how long it holds (issues 13 and 14).
-- ai_drafts.confidence is the model's own confidence in its draft (0..1); sending_until is how
-- long a 'sending' claim can still be in progress (the database's clock: the send's timeout
-- plus a margin), after which a run that finds it may call the outcome unknown.  auto_send
-- records the auto-send decision — scheduled (due at auto_send_at), skipped, cancelled, sent or
-- unknown — with auto_send_reason saying why, and auto_send_decided_at when.

ALTER TABLE ai_drafts ADD COLUMN confidence double precision;
ALTER TABLE ai_drafts ADD COLUMN sending_until timestamptz;
ALTER TABLE ai_drafts ADD COLUMN auto_send text
    CHECK (auto_send IN ('scheduled', 'skipped', 'cancelled', 'sent', 'unknown'));
ALTER TABLE ai_drafts ADD COLUMN auto_send_reason text;
ALTER TABLE ai_drafts ADD COLUMN auto_send_at timestamptz;
ALTER TABLE ai_drafts ADD COLUMN auto_send_decided_at timestamptz;
