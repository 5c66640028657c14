"""When the head-end received each alarm, beside the meter's own time of it.

Revision ID: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``alarms.received_at`` (head-end time; null for alarms stored before)."""
    op.add_column("alarms", sa.Column("received_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("alarms", "received_at")
