-- One row per model call, whatever its outcome (clients/ai.py).

-- name: insert_ai_interaction
INSERT INTO ai_interactions (workspace_id, source, model, purpose, prompt_tokens,
                             completion_tokens, latency_ms, status, error, created_at)
VALUES (:workspace_id, :source, :model, :purpose, :prompt_tokens, :completion_tokens,
        :latency_ms, :status, :error, :now);
