"""Accepted push counters shared by every ingest worker (ADR 6, scale-out).

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``push_counters``: one row per (meter, invocation counter) accepted."""
    op.create_table(
        "push_counters",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("ic", sa.BigInteger, primary_key=True),
    )


def downgrade() -> None:
    """Drop ``push_counters``."""
    op.drop_table("push_counters")
