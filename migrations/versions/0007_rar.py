"""OAuth grants: approved authorization_details (RFC 9396)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 18:59:07.016983
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database  # noqa: F401 - column types of ours, when a revision uses them

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorization_details', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.drop_column('authorization_details')

