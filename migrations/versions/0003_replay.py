"""Replay store: one-time values (DPoP proof and client assertion jti) seen until they expire

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replay_entries',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_replay_entries'))
    )
    with op.batch_alter_table('replay_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replay_entries_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('replay_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replay_entries_expires_at'))

    op.drop_table('replay_entries')
