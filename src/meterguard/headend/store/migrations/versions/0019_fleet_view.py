"""Fleet views for 10^5 meters (issue 17): each meter's newest reading kept on its row.

``meters.last_reading`` is the start of the newest stored interval (ingest raises it in the
commit that stores the reading), so the fleet list sorts and filters by "last seen" without
grouping the readings table; indexes serve the state filter and that sort. Existing rows are
filled from the readings.

Revision ID: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add meters.last_reading (filled), and indexes on state and last_reading."""
    op.add_column("meters", sa.Column("last_reading", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE meters SET last_reading = "
        "(SELECT max(interval_start) FROM readings WHERE readings.meter_id = meters.id)"
    )
    op.create_index("meters_state", "meters", ["state", "id"])
    op.create_index("meters_last_reading", "meters", ["last_reading"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("meters_last_reading", "meters")
    op.drop_index("meters_state", "meters")
    op.drop_column("meters", "last_reading")
