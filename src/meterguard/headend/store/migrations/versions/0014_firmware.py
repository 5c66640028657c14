"""Firmware campaigns, their meters, and each meter's reported firmware (issue 13).

Revision ID: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create firmware_campaigns, campaign_meters and meter_firmware."""
    op.create_table(
        "firmware_campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", sa.BigInteger, nullable=False),
        sa.Column("approved_by", sa.String(64)),
        sa.Column("approved_at", sa.BigInteger),
        sa.Column("activation_by", sa.String(64)),
        sa.Column("activation_at", sa.BigInteger),
        sa.Column("activated_by", sa.String(64)),
        sa.Column("activated_at", sa.BigInteger),
    )
    op.create_table(
        "campaign_meters",
        sa.Column(
            "campaign_id", sa.Integer, sa.ForeignKey("firmware_campaigns.id"), primary_key=True
        ),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(128), nullable=False, server_default=""),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("campaign_meters_state", "campaign_meters", ["campaign_id", "state"])
    op.create_table(
        "meter_firmware",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("attestation_key", sa.String(512), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("slot", sa.String(1)),
        sa.Column("counter", sa.Integer),
        sa.Column("result", sa.String(64)),
        sa.Column("reported_at", sa.BigInteger),
        sa.Column("attestation", sa.String(16), nullable=False, server_default="unknown"),
        sa.Column("attested_at", sa.BigInteger),
        sa.Column("nonce", sa.String(128)),
        sa.Column("nonce_at", sa.BigInteger),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("meter_firmware")
    op.drop_index("campaign_meters_state", "campaign_meters")
    op.drop_table("campaign_meters")
    op.drop_table("firmware_campaigns")
