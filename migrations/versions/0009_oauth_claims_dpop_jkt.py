"""OAuth: approved claims request on grants; dpop_jkt and failed exchanges on codes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 20:21:23.295837
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database  # noqa: F401 - column types of ours, when a revision uses them

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
        # NOT NULL on a table that may hold rows: existing codes start with no failures
        batch_op.add_column(sa.Column("failed_attempts", sa.Integer(), server_default="0",
                                      nullable=False))

    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims_request", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.drop_column("claims_request")

    with op.batch_alter_table("oauth_codes", schema=None) as batch_op:
        batch_op.drop_column("failed_attempts")
        batch_op.drop_column("dpop_jkt")
