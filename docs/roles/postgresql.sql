-- Least-privilege roles for flowsync on PostgreSQL, and the guard that keeps the history append-only.
-- Run as a superuser (or the database owner) after `flowsync db upgrade` has created the tables,
-- for example `psql -d flowsync -v ON_ERROR_STOP=1 -f postgresql.sql`. The names flowsync,
-- flowsync_writer, flowsync_reader and flowsync_maintenance are examples; tests/test_servers.py
-- and tests/test_audit_roles.py run this file as it is, with the names replaced.
--
-- flowsync_owner: owns the database and runs `flowsync db upgrade` (migrations need DDL).
-- flowsync_writer: the worker / cron job. Writes flows and runs, appends history, never changes
--   or deletes it.
-- flowsync_reader: analysts. Reads everything, changes nothing.
-- flowsync_maintenance: runs `flowsync prune`. Deletes error events and unreferenced runs; the
--   triggers at the end keep it (and everyone else) from deleting a configuration event.

CREATE ROLE flowsync_writer LOGIN;   -- add PASSWORD '...' unless you authenticate otherwise
CREATE ROLE flowsync_reader LOGIN;
CREATE ROLE flowsync_maintenance LOGIN;

GRANT CONNECT ON DATABASE flowsync TO flowsync_writer, flowsync_reader, flowsync_maintenance;
GRANT USAGE ON SCHEMA public TO flowsync_writer, flowsync_reader, flowsync_maintenance;

GRANT SELECT, INSERT, UPDATE ON flows TO flowsync_writer;
GRANT SELECT, INSERT, DELETE ON flow_nodes TO flowsync_writer;       -- a changed flow replaces its nodes
GRANT SELECT, INSERT ON flow_history TO flowsync_writer;             -- append-only: no UPDATE, no DELETE
GRANT SELECT, INSERT, UPDATE ON sync_runs TO flowsync_writer;
GRANT SELECT, INSERT, UPDATE ON flow_versions TO flowsync_writer;    -- a new version closes the last one
GRANT SELECT, INSERT ON flow_version_nodes TO flowsync_writer;
GRANT SELECT, INSERT ON flow_changes TO flowsync_writer;
GRANT SELECT ON alembic_version TO flowsync_writer;                  -- the schema check before each run
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO flowsync_writer;    -- ids of flow_history, sync_runs, flow_changes

GRANT SELECT ON ALL TABLES IN SCHEMA public TO flowsync_reader;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO flowsync_maintenance;
GRANT DELETE ON flow_history, sync_runs TO flowsync_maintenance;     -- error events, unreferenced runs

-- flow_history is append-only for every account, the owner's included: an event's recorded
-- columns are never updated, and only `error` events are ever deleted (by `flowsync prune`).
-- Columns added by later migrations (such as the chain hash) stay writable, so that a
-- migration can fill them. A superuser or the owner can still drop these triggers: they
-- guard against mistakes and against the writer and maintenance accounts, not against them.
CREATE FUNCTION flowsync_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.event IS DISTINCT FROM 'error' THEN
            RAISE EXCEPTION 'flow_history is append-only: event % (%) cannot be deleted', OLD.id, OLD.event
                USING HINT = 'Only error events can be deleted, with flowsync prune.';
        END IF;
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        -- The columns are compared here rather than listed in `UPDATE OF`, which would keep a
        -- migration from changing their types. JSON has no equality operator: compare its text.
        IF (NEW.id, NEW.run_id, NEW.flow_id, NEW.occurred_at, NEW.event, NEW.changes::text,
            NEW.snapshot::text, NEW.content_hash, NEW.error_kind, NEW.error_code, NEW.error_message)
           IS DISTINCT FROM
           (OLD.id, OLD.run_id, OLD.flow_id, OLD.occurred_at, OLD.event, OLD.changes::text,
            OLD.snapshot::text, OLD.content_hash, OLD.error_kind, OLD.error_code, OLD.error_message) THEN
            RAISE EXCEPTION 'flow_history is append-only: event % (%) cannot be changed', OLD.id, OLD.event;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'flow_history is append-only: it cannot be truncated'
        USING HINT = 'Only error events can be deleted, with flowsync prune.';
END
$$;

CREATE TRIGGER flow_history_no_delete BEFORE DELETE ON flow_history
    FOR EACH ROW EXECUTE FUNCTION flowsync_history_append_only();
CREATE TRIGGER flow_history_no_update BEFORE UPDATE ON flow_history
    FOR EACH ROW EXECUTE FUNCTION flowsync_history_append_only();
CREATE TRIGGER flow_history_no_truncate BEFORE TRUNCATE ON flow_history
    FOR EACH STATEMENT EXECUTE FUNCTION flowsync_history_append_only();
