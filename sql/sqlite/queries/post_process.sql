-- The messages of post-process jobs, loaded together (scheduler/messages.py): the ids are a JSON
-- array; each row carries what the job needs of its lead and whether it has a draft.

-- name: post_process_messages
SELECT m.id, m.workspace_id, m.lead_id, m.channel, m.direction, m.provider, m.event,
       m.subject, m.body, m.created_at, m.interested, m.sentiment, m.notified_at,
       m.notify_outcome,
       l.email AS lead_email, l.first_name AS lead_first_name, l.last_name AS lead_last_name,
       l.company AS lead_company, l.enriched_at AS lead_enriched_at,
       d.id AS draft_id
FROM messages m
LEFT JOIN leads l ON l.id = m.lead_id
LEFT JOIN ai_drafts d ON d.message_id = m.id
WHERE m.id IN (SELECT value FROM json_each(:ids));
