-- Sending an AI draft (scheduler/drafts.py): exactly one outbound message per draft, however
-- often send is pressed, and at most one provider call for it.  Auto-send (scheduler/auto_send.py)
-- decides once per draft and is checked again when the send is due.

-- name: draft_with_inbound
SELECT d.id, d.workspace_id, d.message_id AS inbound_id, d.lead_id, d.body, d.status,
       i.channel, i.provider, i.subject, i.provider_thread_id
FROM ai_drafts d JOIN messages i ON i.id = d.message_id
WHERE d.id = :id;

-- name: insert_draft_message
INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event, subject, body,
                      created_at, ai_draft_id, provider_thread_id)
VALUES (:workspace_id, :lead_id, :channel, 'outbound', :provider, 'AI_DRAFT_SEND', :subject,
        :body, :now, :ai_draft_id, :provider_thread_id)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: find_draft_message
SELECT id FROM messages WHERE workspace_id = :workspace_id AND ai_draft_id = :ai_draft_id;

-- name: defer_auto_send_job
-- The auto-send's DRAFT_SEND job is due when the draft's auto-send window ends.
UPDATE background_jobs SET run_at = (SELECT auto_send_at FROM ai_drafts WHERE id = :draft_id)
WHERE id = :job_id AND status = 'pending';

-- name: draft_send_message
-- The outbound message a DRAFT_SEND job sends, its draft, what the provider needs to put it in
-- the inbound message's thread, and whether the workspace still has auto-send on.
SELECT o.id, o.workspace_id, o.channel, o.direction, o.body, o.provider_thread_id,
       d.id AS draft_id, d.status AS draft_status, d.auto_send,
       i.email_bison_reply_id AS inbound_reply_id, l.email AS lead_email,
       w.auto_send AS workspace_auto_send
FROM messages o
JOIN ai_drafts d ON d.id = o.ai_draft_id AND d.workspace_id = o.workspace_id
JOIN messages i ON i.id = d.message_id
JOIN workspaces w ON w.id = o.workspace_id
LEFT JOIN leads l ON l.id = o.lead_id
WHERE o.id = :id;

-- name: newer_reply_in_thread
-- Someone answered the lead in this thread after its message: an outbound message sent on the
-- lead's channel since then — a person's, or another draft hookgate sent — other than this
-- draft's own.  A campaign's scheduled emails are not answers.
SELECT o.id, o.event
FROM ai_drafts d
JOIN messages i ON i.id = d.message_id
JOIN messages o ON o.lead_id = i.lead_id AND o.workspace_id = i.workspace_id
                AND o.channel = i.channel
WHERE d.id = :draft_id
  AND o.direction = 'outbound'
  AND o.sent_at >= COALESCE(i.sent_at, i.created_at)
  AND o.inboxxia_scheduled_email_id IS NULL
  AND (o.ai_draft_id IS NULL OR o.ai_draft_id <> d.id)
ORDER BY o.sent_at
LIMIT 1;

-- name: claim_draft_send
-- The one run that may call the provider: draft -> sending, held until :hold_s from now by the
-- database's clock (the call's timeout and a margin).  An auto-send run claims only while its
-- auto-send is still scheduled, so a cancel and the send never both win.  No row back: another
-- run has it, or it was sent, or its outcome is unknown, or the auto-send was stopped.
UPDATE ai_drafts SET status = 'sending', sending_until = now_plus(:hold_s), last_error = NULL
WHERE id = :id AND status = 'draft' AND (NOT :auto OR auto_send = 'scheduled')
RETURNING id;

-- name: draft_send_state
SELECT status, sending_until, auto_send FROM ai_drafts WHERE id = :id;

-- name: finish_draft_send
-- The provider refused (status 'draft': the claim is given back) or its answer is unknown
-- ('send_unknown', which also settles a scheduled auto-send as 'unknown').
UPDATE ai_drafts SET
    status = :status, last_error = :error, sending_until = NULL,
    auto_send = CASE WHEN :status = 'send_unknown' AND auto_send = 'scheduled' THEN 'unknown'
                     ELSE auto_send END
WHERE id = :id AND status = 'sending';

-- name: record_draft_sent
-- The provider sent it.  Also over 'send_unknown': a run that outlived its claim's hold may
-- have been called unknown by another run, and the provider's answer says what happened.
UPDATE ai_drafts SET
    status = 'sent', sent_at = :sent_at, last_error = NULL, sending_until = NULL,
    auto_send = CASE WHEN auto_send IN ('scheduled', 'unknown') THEN 'sent' ELSE auto_send END,
    auto_send_reason = CASE WHEN auto_send IN ('scheduled', 'unknown') THEN NULL
                            ELSE auto_send_reason END
WHERE id = :id AND status IN ('sending', 'send_unknown');

-- name: mark_stuck_draft_unknown
-- A run found the draft 'sending' after its claim's hold passed: the run that claimed it
-- stopped (killed, lease lost) after its provider call may have gone out.  Never sent again; a
-- human decides.
UPDATE ai_drafts SET
    status = 'send_unknown', last_error = :error, sending_until = NULL,
    auto_send = CASE WHEN auto_send = 'scheduled' THEN 'unknown' ELSE auto_send END,
    auto_send_reason = CASE WHEN auto_send = 'scheduled' THEN :error ELSE auto_send_reason END
WHERE id = :id AND status = 'sending' AND (sending_until IS NULL OR sending_until <= now())
RETURNING id;

-- name: take_draft_echo
-- The provider's echo of a sent draft, stored as a message of its own because it arrived before
-- the send's answer: deleted (its job and anything else of its own go with it) so that the
-- draft's message can take the provider id, keeping what the echo carried.
DELETE FROM messages
WHERE workspace_id = :workspace_id AND id <> :id AND ai_draft_id IS NULL
  AND (email_bison_reply_id = :email_bison_reply_id OR unipile_message_id = :unipile_message_id)
RETURNING id, sent_at, delivery_id, provider_thread_id;

-- name: record_draft_message_sent
-- The provider's id for the sent message, so that its echo webhook is a dedupe hit on this row.
UPDATE messages SET
    sent_at = :sent_at,
    email_bison_reply_id = COALESCE(:email_bison_reply_id, email_bison_reply_id),
    unipile_message_id = COALESCE(:unipile_message_id, unipile_message_id),
    delivery_id = COALESCE(delivery_id, :delivery_id),
    provider_thread_id = COALESCE(provider_thread_id, :provider_thread_id)
WHERE id = :id;

-- name: repoint_quarantine_replay
-- A quarantined delivery whose replay stored the echo now points at the message it became.
UPDATE webhook_quarantine SET replayed_message_id = :message_id
WHERE workspace_id = :workspace_id AND replayed_message_id = :echo_id;

-- name: auto_send_candidate
SELECT d.id, d.workspace_id, d.message_id, d.auto_send, d.confidence, i.channel
FROM ai_drafts d JOIN messages i ON i.id = d.message_id
WHERE d.id = :id;

-- name: schedule_auto_send
-- The one auto-send decision per draft (of however many post-process runs): send it when the
-- window ends, by the database's clock.
UPDATE ai_drafts SET
    auto_send = 'scheduled', auto_send_reason = NULL, auto_send_at = now_plus(:delay_s),
    auto_send_decided_at = now()
WHERE id = :id AND auto_send IS NULL AND status = 'draft'
RETURNING auto_send_at;

-- name: skip_auto_send
UPDATE ai_drafts SET auto_send = 'skipped', auto_send_reason = :reason, auto_send_decided_at = now()
WHERE id = :id AND auto_send IS NULL
RETURNING id;

-- name: cancel_auto_send
-- An operator stops a scheduled auto-send (or takes it over by pressing send); too late once
-- the send has been claimed.
UPDATE ai_drafts SET
    auto_send = 'cancelled', auto_send_reason = :reason, auto_send_decided_at = now()
WHERE id = :id AND auto_send = 'scheduled' AND status = 'draft'
RETURNING id;

-- name: skip_scheduled_auto_send
-- At send time the auto-send no longer applies (auto-send turned off, someone answered).
UPDATE ai_drafts SET auto_send = 'skipped', auto_send_reason = :reason, auto_send_decided_at = now()
WHERE id = :id AND auto_send = 'scheduled' AND status = 'draft';

-- name: draft_auto_send_state
SELECT id, workspace_id, message_id, status, confidence, auto_send, auto_send_reason,
       auto_send_at, auto_send_decided_at, last_error
FROM ai_drafts WHERE id = :id;

-- name: list_drafts
SELECT id, workspace_id, message_id, status, confidence, auto_send, auto_send_reason,
       auto_send_at, auto_send_decided_at, last_error, created_at
FROM ai_drafts
WHERE (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
  AND (CAST(:auto_send AS TEXT) IS NULL OR auto_send = :auto_send)
ORDER BY id DESC
LIMIT :limit;

-- name: set_workspace_auto_send
UPDATE workspaces SET auto_send = :auto_send WHERE id = :id RETURNING id;
