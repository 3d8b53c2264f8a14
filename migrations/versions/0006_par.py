"""OAuth: pushed authorization requests (RFC 9126)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 18:55:08.381761
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_pushed_requests',
    sa.Column('handle_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('handle_hash', name=op.f('pk_oauth_pushed_requests'))
    )
    with op.batch_alter_table('oauth_pushed_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_pushed_requests_expires_at'), ['expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('oauth_pushed_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_pushed_requests_expires_at'))

    op.drop_table('oauth_pushed_requests')
