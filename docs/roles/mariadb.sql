-- Least-privilege accounts for flowsync on MariaDB/MySQL.
-- Run as an administrator after `flowsync db upgrade` has created the tables.
-- The names flowsync, flowsync_writer and flowsync_reader are examples; tests/test_servers.py
-- runs this file as it is, with the names replaced. Restrict '%' to your workers' hosts.
--
-- The account that runs `flowsync db upgrade` needs ALL PRIVILEGES on the database (DDL).
-- flowsync_writer: the worker / cron job. Writes flows and runs, appends history, never deletes it.
-- flowsync_reader: analysts. Reads everything, changes nothing.

CREATE USER 'flowsync_writer'@'%';   -- add IDENTIFIED BY '...'
CREATE USER 'flowsync_reader'@'%';

GRANT SELECT, INSERT, UPDATE ON flowsync.flows TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, DELETE ON flowsync.flow_nodes TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_history TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, UPDATE ON flowsync.sync_runs TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, UPDATE ON flowsync.flow_versions TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_version_nodes TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_changes TO 'flowsync_writer'@'%';
GRANT SELECT ON flowsync.alembic_version TO 'flowsync_writer'@'%';

GRANT SELECT ON flowsync.* TO 'flowsync_reader'@'%';
