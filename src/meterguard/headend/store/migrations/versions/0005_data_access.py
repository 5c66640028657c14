"""The consumer-visible data access log (API-11, LOG-6), apart from operator and system logs.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``data_access``."""
    op.create_table(
        "data_access",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("what", sa.String(128), nullable=False),
    )
    op.create_index("data_access_meter", "data_access", ["meter_id", "at"])


def downgrade() -> None:
    """Drop ``data_access``."""
    op.drop_table("data_access")
