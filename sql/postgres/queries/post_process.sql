-- The messages of post-process jobs, loaded together (scheduler/messages.py): the ids are a JSON
-- array; each row carries what the job needs of its lead and whether it has a draft.

-- name: post_process_messages
-- One probe per id, as the lookups of sql/postgres/queries/ingest_group.sql and for the same
-- reason: a LATERAL subquery behind OFFSET 0 is not flattened into a hash join over a scan of
-- the whole table.
SELECT m.*
FROM jsonb_array_elements_text(CAST(:ids AS jsonb)) AS i(id)
CROSS JOIN LATERAL (
    SELECT m.id, m.workspace_id, m.lead_id, m.channel, m.direction, m.provider, m.event,
           m.subject, m.body, m.created_at, m.interested, m.sentiment, m.notified_at,
           m.notify_outcome,
           l.email AS lead_email, l.first_name AS lead_first_name, l.last_name AS lead_last_name,
           l.company AS lead_company, l.enriched_at AS lead_enriched_at,
           d.id AS draft_id
    FROM messages m
    LEFT JOIN leads l ON l.id = m.lead_id
    LEFT JOIN ai_drafts d ON d.message_id = m.id
    WHERE m.id = CAST(i.id AS bigint) OFFSET 0) AS m;
