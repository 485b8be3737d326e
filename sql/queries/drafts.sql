-- Sending an AI draft (scheduler/drafts.py): exactly one outbound message per draft, however
-- often send is pressed, and at most one provider call for it.

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

-- name: draft_send_message
-- The outbound message a DRAFT_SEND job sends, its draft, and what the provider needs to put it
-- in the inbound message's thread.
SELECT o.id, o.workspace_id, o.channel, o.direction, o.body, o.provider_thread_id,
       d.id AS draft_id, d.status AS draft_status,
       i.email_bison_reply_id AS inbound_reply_id, l.email AS lead_email
FROM messages o
JOIN ai_drafts d ON d.id = o.ai_draft_id AND d.workspace_id = o.workspace_id
JOIN messages i ON i.id = d.message_id
LEFT JOIN leads l ON l.id = o.lead_id
WHERE o.id = :id;

-- name: claim_draft_send
-- The one run that may call the provider: draft -> sending.  No row back: another run has it,
-- or it was sent, or its outcome is unknown.
UPDATE ai_drafts SET status = 'sending', last_error = NULL
WHERE id = :id AND status = 'draft'
RETURNING id;

-- name: finish_draft_send
UPDATE ai_drafts SET status = :status, sent_at = :sent_at, last_error = :error
WHERE id = :id AND status = 'sending';

-- name: mark_stuck_draft_unknown
-- A run found the draft 'sending': an earlier run claimed it and stopped (killed, lease lost)
-- after its provider call may have gone out.  Never sent again; a human decides.
UPDATE ai_drafts SET status = 'send_unknown', last_error = :error
WHERE id = :id AND status = 'sending';

-- name: record_draft_message_sent
-- The provider's id for the sent message, so that its echo webhook is a dedupe hit on this row.
UPDATE messages SET
    sent_at = :now,
    email_bison_reply_id = COALESCE(:email_bison_reply_id, email_bison_reply_id),
    unipile_message_id = COALESCE(:unipile_message_id, unipile_message_id)
WHERE id = :id;
