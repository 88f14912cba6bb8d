-- Least-privilege accounts for flowsync on MariaDB/MySQL, and the guard that keeps the history append-only.
-- Run as an administrator after `flowsync db upgrade` has created the tables, with the `mariadb`
-- (or `mysql`) client, which reads the DELIMITER lines: `mariadb flowsync < mariadb.sql`.
-- The names flowsync, flowsync_writer, flowsync_reader and flowsync_maintenance are examples;
-- tests/test_servers.py and tests/test_audit_roles.py run this file as it is, with the names
-- replaced. Restrict '%' to your workers' hosts.
--
-- The account that runs `flowsync db upgrade` needs ALL PRIVILEGES on the database (DDL).
-- flowsync_writer: the worker / cron job. Writes flows and runs, appends history, never changes
--   or deletes it.
-- flowsync_reader: analysts. Reads everything, changes nothing.
-- flowsync_maintenance: runs `flowsync prune`. Deletes error events and unreferenced runs; the
--   triggers at the end keep it (and everyone else) from deleting a configuration event.

CREATE USER 'flowsync_writer'@'%';   -- add IDENTIFIED BY '...'
CREATE USER 'flowsync_reader'@'%';
CREATE USER 'flowsync_maintenance'@'%';

GRANT SELECT, INSERT, UPDATE ON flowsync.flows TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, DELETE ON flowsync.flow_nodes TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_history TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, UPDATE ON flowsync.sync_runs TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT, UPDATE ON flowsync.flow_versions TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_version_nodes TO 'flowsync_writer'@'%';
GRANT SELECT, INSERT ON flowsync.flow_changes TO 'flowsync_writer'@'%';
GRANT SELECT ON flowsync.alembic_version TO 'flowsync_writer'@'%';

GRANT SELECT ON flowsync.* TO 'flowsync_reader'@'%';

GRANT SELECT ON flowsync.* TO 'flowsync_maintenance'@'%';
GRANT DELETE ON flowsync.flow_history TO 'flowsync_maintenance'@'%';   -- error events only (trigger below)
GRANT DELETE ON flowsync.sync_runs TO 'flowsync_maintenance'@'%';      -- runs no event refers to

-- flow_history is append-only for every account, the administrator's included: an event's
-- recorded columns are never updated, and only `error` events are ever deleted (by
-- `flowsync prune`). Columns added by later migrations (such as the chain hash) stay writable,
-- so that a migration can fill them. TRUNCATE needs the DROP privilege, which neither the
-- writer nor the maintenance account has. An account with the TRIGGER privilege can drop
-- these triggers: they guard against mistakes and against the writer and maintenance
-- accounts, not against the administrator.
DELIMITER //
CREATE TRIGGER flowsync.flow_history_no_delete BEFORE DELETE ON flowsync.flow_history
FOR EACH ROW
BEGIN
    IF NOT (OLD.event <=> 'error') THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT =
            'flow_history is append-only: a configuration event cannot be deleted (only error events can, with flowsync prune)';
    END IF;
END//
CREATE TRIGGER flowsync.flow_history_no_update BEFORE UPDATE ON flowsync.flow_history
FOR EACH ROW
BEGIN
    IF NOT (NEW.id <=> OLD.id AND NEW.run_id <=> OLD.run_id AND NEW.flow_id <=> OLD.flow_id
            AND NEW.occurred_at <=> OLD.occurred_at AND NEW.event <=> OLD.event
            AND NEW.changes <=> OLD.changes AND NEW.snapshot <=> OLD.snapshot
            AND NEW.content_hash <=> OLD.content_hash AND NEW.error_kind <=> OLD.error_kind
            AND NEW.error_code <=> OLD.error_code AND NEW.error_message <=> OLD.error_message) THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'flow_history is append-only: an event cannot be changed';
    END IF;
END//
DELIMITER ;
