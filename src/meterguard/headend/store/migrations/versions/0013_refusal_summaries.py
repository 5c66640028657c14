"""Refusals summarised: security events and quarantined samples with counts (issue 12 item 2).

Repeats of one (meter, event) or (meter, kind of refusal) within a window become a count on
one row, not a row each: nothing one identity sends grows storage without bound (DOS-1).

Revision ID: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add counts, last times, the quarantine's meter and kind, and the summary indexes."""
    with op.batch_alter_table("security_events") as t:
        t.add_column(sa.Column("count", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("last_at", sa.BigInteger, nullable=True))
    with op.batch_alter_table("quarantine") as t:
        t.add_column(sa.Column("meter_id", sa.String(32), nullable=True))
        t.add_column(sa.Column("kind", sa.String(64), nullable=False, server_default="refused"))
        t.add_column(sa.Column("count", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("last_at", sa.BigInteger, nullable=True))
    op.create_index("security_events_summary", "security_events", ["meter_id", "event", "at"])
    op.create_index("quarantine_summary", "quarantine", ["meter_id", "kind", "at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("quarantine_summary", "quarantine")
    op.drop_index("security_events_summary", "security_events")
    with op.batch_alter_table("quarantine") as t:
        for name in ("last_at", "count", "kind", "meter_id"):
            t.drop_column(name)
    with op.batch_alter_table("security_events") as t:
        t.drop_column("last_at")
        t.drop_column("count")
