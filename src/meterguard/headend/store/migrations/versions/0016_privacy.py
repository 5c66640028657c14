"""Data sharing (issue 15): consents per use, recipients, exports, DP releases and their ledger.

Revision ID: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create use_consents, recipients, exports, dp_releases and dp_ledger."""
    op.create_table(
        "use_consents",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("use", sa.String(32), primary_key=True),
        sa.Column("granularity", sa.String(16), nullable=False),
        sa.Column("given_by", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("use", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient_id", sa.Integer, sa.ForeignKey("recipients.id"), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=False),
        sa.Column("granularity", sa.String(16), nullable=False),
        sa.Column("rotation", sa.String(8), nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("included", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
    )
    op.create_index("ix_exports_recipient_id", "exports", ["recipient_id"])
    op.create_table(
        "dp_releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("day", sa.BigInteger, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("homes", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("curve", sa.String(2000), nullable=False),
        sa.UniqueConstraint("scope", "day", "epsilon", name="dp_release_once"),
    )
    op.create_table(
        "dp_ledger",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("day", sa.BigInteger, primary_key=True),
        sa.Column("spent", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    for table in ("dp_ledger", "dp_releases", "exports", "recipients", "use_consents"):
        op.drop_table(table)
