-- The post-process job of an inbound message (scheduler/post_process.py): enrich the lead,
-- classify sentiment, draft a reply (the Slack notification: lead_notifications.sql).  Each write
-- is safe to repeat: a retried job finds what its earlier attempt stored and does not do it again.
-- The messages the jobs load: post_process_messages in sql/<dialect>/queries/post_process.sql.

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
