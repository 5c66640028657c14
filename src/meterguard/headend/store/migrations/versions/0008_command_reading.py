"""A command's reported register value (on-demand reads).

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``commands.reading`` (Wh)."""
    op.add_column("commands", sa.Column("reading", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("commands", "reading")
