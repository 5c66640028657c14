"""The grid behind the meters (feeders), theft scores and revenue-protection cases (issue 14).

Revision ID: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create feeders, feeder_members, theft_scores and theft_cases."""
    op.create_table(
        "feeders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False, unique=True
        ),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "feeder_members",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("feeder_id", sa.Integer, sa.ForeignKey("feeders.id"), nullable=False),
    )
    op.create_index("ix_feeder_members_feeder_id", "feeder_members", ["feeder_id"])
    op.create_table(
        "theft_scores",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("week_end", sa.BigInteger, nullable=False),
        sa.Column("scored_at", sa.BigInteger, nullable=False),
        sa.Column("evidence", sa.String(4000), nullable=False),
    )
    op.create_table(
        "theft_cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("assignee", sa.String(64)),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("closed_at", sa.BigInteger),
        sa.Column("outcome", sa.String(32)),
        sa.Column("note", sa.String(500), nullable=False, server_default=""),
    )
    op.create_index("ix_theft_cases_meter_id", "theft_cases", ["meter_id"])


def downgrade() -> None:
    """Drop them."""
    for table in ("theft_cases", "theft_scores", "feeder_members", "feeders"):
        op.drop_table(table)
