-- The post-process job of an inbound message (scheduler/post_process.py): enrich the lead,
-- classify sentiment, draft a reply (the Slack notification: lead_notifications.sql).  Each write
-- is safe to repeat: a retried job finds what its earlier attempt stored and does not do it again.

-- name: post_process_message
SELECT m.id, m.workspace_id, m.lead_id, m.channel, m.direction, m.provider, m.event,
       m.subject, m.body, m.created_at, m.interested, m.sentiment, m.notified_at,
       m.notify_outcome,
       l.email AS lead_email, l.first_name AS lead_first_name, l.last_name AS lead_last_name,
       l.company AS lead_company, l.enriched_at AS lead_enriched_at,
       d.id AS draft_id
FROM messages m
LEFT JOIN leads l ON l.id = m.lead_id
LEFT JOIN ai_drafts d ON d.message_id = m.id
WHERE m.id = :id;

-- name: enrich_lead
-- What the provider knows about the lead wins over what the webhook said; a field it leaves
-- out keeps the stored value.
UPDATE leads SET
    first_name = COALESCE(:first_name, first_name),
    last_name  = COALESCE(:last_name, last_name),
    company    = COALESCE(:company, company),
    title      = COALESCE(:title, title),
    status     = COALESCE(:status, status),
    enriched_at = :now,
    updated_at = :now
WHERE id = :id;

-- name: set_message_sentiment
-- The first classification stays: a retried job reuses it instead of asking the model again.
UPDATE messages SET sentiment = :sentiment WHERE id = :id AND sentiment IS NULL;

-- name: set_lead_sentiment
-- The lead carries the sentiment of its latest classified message.
UPDATE leads SET sentiment = :sentiment, updated_at = :now WHERE id = :id;

-- name: insert_ai_draft
INSERT INTO ai_drafts (workspace_id, message_id, lead_id, body, confidence, status, created_at)
VALUES (:workspace_id, :message_id, :lead_id, :body, :confidence, 'draft', :now)
ON CONFLICT (message_id) DO NOTHING
RETURNING id;
