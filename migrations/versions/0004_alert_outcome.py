"""alert outcome: sync_runs.alert_status, sync_runs.alert_error

A change alert is delivered after its run has recorded itself; these columns record how that
delivery ended, so that an alert that could not be delivered is never lost silently:
`alert_status` is `sent` or `failed`, and null when no alert was due (or no URL was set);
`alert_error` says why the last attempt failed. Runs recorded before this revision sent
their alerts, if any, without recording the outcome: they keep null in both, which reads
as "no outcome recorded", the same as a run that had no alert to send.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER: a batch copy of sync_runs would fail its foreign keys on SQLite.
    op.add_column("sync_runs", sa.Column("alert_status", sa.String(length=16), nullable=True))
    op.add_column("sync_runs", sa.Column("alert_error", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE sync_runs DROP COLUMN alert_error")
    op.execute("ALTER TABLE sync_runs DROP COLUMN alert_status")
