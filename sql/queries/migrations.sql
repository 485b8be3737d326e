-- name: applied_migrations
SELECT version, name, applied_at FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES (:version, :name);
