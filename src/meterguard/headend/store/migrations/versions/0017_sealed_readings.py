"""Encryption at rest of readings (issue 15): the sealed values and their data-key version.

A sealed reading keeps -1 in ``import_wh`` and ``export_wh`` (registers are never negative)
and its values in ``sealed`` under the meter's data key ``key_version``. Rows stored before
this migration stay as they were.

Revision ID: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add readings.key_version and readings.sealed (on PostgreSQL, to every partition)."""
    op.add_column("readings", sa.Column("key_version", sa.Integer, nullable=True))
    op.add_column("readings", sa.Column("sealed", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    """Drop them (sealed rows lose their values)."""
    op.drop_column("readings", "sealed")
    op.drop_column("readings", "key_version")
