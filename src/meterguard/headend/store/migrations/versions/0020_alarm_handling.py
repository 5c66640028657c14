"""Who acknowledged and who cleared each alarm, and when (issue 17).

The audit log already records each step (TAMP-2); the alarm row now carries them too, so an
operator's list shows them without reading the log.

Revision ID: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add alarms.acknowledged_by/at and cleared_by/at."""
    op.add_column("alarms", sa.Column("acknowledged_by", sa.String(64), nullable=True))
    op.add_column("alarms", sa.Column("acknowledged_at", sa.BigInteger, nullable=True))
    op.add_column("alarms", sa.Column("cleared_by", sa.String(64), nullable=True))
    op.add_column("alarms", sa.Column("cleared_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop them (the audit log keeps the history)."""
    for column in ("cleared_at", "cleared_by", "acknowledged_at", "acknowledged_by"):
        op.drop_column("alarms", column)
