-- Least-privilege roles for flowsync on PostgreSQL.
-- Run as a superuser (or the database owner) after `flowsync db upgrade` has created the tables.
-- The names flowsync, flowsync_writer and flowsync_reader are examples; tests/test_servers.py
-- runs this file as it is, with the names replaced.
--
-- flowsync_owner: owns the database and runs `flowsync db upgrade` (migrations need DDL).
-- flowsync_writer: the worker / cron job. Writes flows and runs, appends history, never deletes it.
-- flowsync_reader: analysts. Reads everything, changes nothing.

CREATE ROLE flowsync_writer LOGIN;   -- add PASSWORD '...' unless you authenticate otherwise
CREATE ROLE flowsync_reader LOGIN;

GRANT CONNECT ON DATABASE flowsync TO flowsync_writer, flowsync_reader;
GRANT USAGE ON SCHEMA public TO flowsync_writer, flowsync_reader;

GRANT SELECT, INSERT, UPDATE ON flows TO flowsync_writer;
GRANT SELECT, INSERT, DELETE ON flow_nodes TO flowsync_writer;       -- a changed flow replaces its nodes
GRANT SELECT, INSERT ON flow_history TO flowsync_writer;             -- append-only
GRANT SELECT, INSERT, UPDATE ON sync_runs TO flowsync_writer;
GRANT SELECT, INSERT, UPDATE ON flow_versions TO flowsync_writer;    -- a new version closes the last one
GRANT SELECT, INSERT ON flow_version_nodes TO flowsync_writer;
GRANT SELECT, INSERT ON flow_changes TO flowsync_writer;
GRANT SELECT ON alembic_version TO flowsync_writer;                  -- the schema check before each run
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO flowsync_writer;    -- ids of flow_history, sync_runs, flow_changes

GRANT SELECT ON ALL TABLES IN SCHEMA public TO flowsync_reader;
