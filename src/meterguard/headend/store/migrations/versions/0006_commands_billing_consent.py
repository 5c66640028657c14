"""Dual-control commands (API-10), tariffs and signed bills, consumers' consents (PRIV-1).

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``commands``, ``tariffs``, ``meter_tariffs``, ``bills``, ``consents``."""
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("approved_by", sa.String(64)),
        sa.Column("approved_at", sa.BigInteger),
        sa.Column("counter", sa.BigInteger),
        sa.Column("result", sa.Integer),
        sa.Column("control_state", sa.Integer),
        sa.Column("answered_at", sa.BigInteger),
        sa.UniqueConstraint("meter_id", "counter"),
    )
    op.create_index("commands_state", "commands", ["state", "proposed_at"])
    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("standing_e4_per_day", sa.BigInteger, nullable=False),
        sa.Column("bands", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "bills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary(96), nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("meter_id", "period_start", "period_end"),
    )
    op.create_table(
        "consents",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("granularity", sa.String(16), nullable=False),
        sa.Column("given_by", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "meter_tariffs",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("tariff_id", sa.Integer, sa.ForeignKey("tariffs.id"), nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    for table in ("meter_tariffs", "consents", "bills", "tariffs", "commands"):
        op.drop_table(table)
