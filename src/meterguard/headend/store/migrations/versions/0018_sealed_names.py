"""Encryption at rest of people's names (issue 15): a keyed look-up hash and the sealed name.

``users.login_hash`` is the HMAC of the login name under a key-store secret (what login
looks an account up by), ``users.name_sealed`` the name under the user's data key. The
clear ``username`` becomes nullable: rows from before this migration keep it until the
head-end, which holds the key store, seals them when it opens the accounts
(:meth:`~meterguard.headend.services.accounts.Accounts.seal_clear_names`); from then on it
is NULL. A migration cannot do it: it has no key store.

Revision ID: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add users.login_hash (unique) and users.name_sealed; username may be NULL."""
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("login_hash", sa.LargeBinary(32), nullable=True))
        t.add_column(sa.Column("name_sealed", sa.LargeBinary, nullable=True))
        t.alter_column("username", existing_type=sa.String(64), nullable=True)
        t.create_unique_constraint("users_login_hash", ["login_hash"])


def downgrade() -> None:
    """Drop them (accounts created since have no name left to log in with)."""
    with op.batch_alter_table("users") as t:
        t.drop_constraint("users_login_hash", type_="unique")
        t.drop_column("name_sealed")
        t.drop_column("login_hash")
