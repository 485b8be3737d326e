-- Insights context packs (scheduler/context_packs.py).  A pack is pending, then building, then
-- done; it has one context_pack_items row per lead it has finished (done or failed).

-- name: create_context_pack
-- A workspace has at most one open pack (the partial unique index context_packs_open): a
-- second request gets no row back and finds the open one instead.
INSERT INTO context_packs (workspace_id, status, created_at)
VALUES (:workspace_id, 'pending', :now)
ON CONFLICT (workspace_id) WHERE status IN ('pending', 'building') DO NOTHING
RETURNING id, workspace_id, status, leads_total, leads_done, leads_failed, last_error,
          created_at, started_at, finished_at;

-- name: open_context_pack
SELECT id, workspace_id, status, leads_total, leads_done, leads_failed, last_error, created_at,
       started_at, finished_at
FROM context_packs WHERE workspace_id = :workspace_id AND status IN ('pending', 'building');

-- name: packs_to_build
SELECT id, workspace_id FROM context_packs
WHERE status IN ('pending', 'building')
ORDER BY id
LIMIT :limit;

-- name: start_context_pack
-- (Re)start building: leads_total is the workspace's lead count now; progress is kept.
UPDATE context_packs SET
    status      = 'building',
    started_at  = COALESCE(started_at, :now),
    leads_total = (SELECT count(*) FROM leads WHERE leads.workspace_id = context_packs.workspace_id)
WHERE id = :id AND status IN ('pending', 'building')
RETURNING id, workspace_id, leads_total, leads_done, leads_failed;

-- name: context_pack_leads
-- The next batch of the workspace's leads that this pack has not finished, in id order.
SELECT l.id, l.email, l.phone, l.linkedin_id, l.first_name, l.last_name, l.company, l.title,
       l.status, l.interested, l.sentiment
FROM leads l
WHERE l.workspace_id = :workspace_id AND l.id > :after_id
  AND NOT EXISTS (SELECT 1 FROM context_pack_items i WHERE i.pack_id = :pack_id AND i.lead_id = l.id)
ORDER BY l.id
LIMIT :limit;

-- name: lead_conversation
-- The lead's newest messages (the caller puts them back in time order).
SELECT direction, channel, subject, body, sent_at, created_at
FROM messages
WHERE workspace_id = :workspace_id AND lead_id = :lead_id
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: insert_context_pack_item
-- A retried write (its commit's answer was lost) finds the row and changes nothing.
INSERT INTO context_pack_items (pack_id, lead_id, status, summary, error, created_at)
VALUES (:pack_id, :lead_id, :status, :summary, :error, :now)
ON CONFLICT (pack_id, lead_id) DO NOTHING
RETURNING id;

-- name: count_context_pack_item
UPDATE context_packs SET leads_done = leads_done + 1, leads_failed = leads_failed + :failed
WHERE id = :id;

-- name: finish_context_pack
UPDATE context_packs SET status = 'done', finished_at = :now, leads_total = leads_done,
    last_error = NULL
WHERE id = :id AND status = 'building';

-- name: record_context_pack_error
UPDATE context_packs SET last_error = :error WHERE id = :id;

-- name: get_context_pack
SELECT id, workspace_id, status, leads_total, leads_done, leads_failed, last_error, created_at,
       started_at, finished_at
FROM context_packs WHERE id = :id;

-- name: recent_context_packs
SELECT p.id, p.workspace_id, w.name AS workspace_name, p.status, p.leads_total, p.leads_done,
       p.leads_failed, p.last_error, p.created_at, p.finished_at
FROM context_packs p JOIN workspaces w ON w.id = p.workspace_id
ORDER BY p.id DESC
LIMIT :limit;
