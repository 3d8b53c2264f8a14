"""Dynamic client registration: initial access tokens and registration access tokens

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database  # noqa: F401 - column types of ours, when a revision uses them

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registration_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('institution_id', sa.String(length=32), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('uses_left', sa.Integer(), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'],
                            name=op.f('fk_registration_tokens_institution_id_institutions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_registration_tokens_token_hash'))
    )
    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registration_tokens_institution_id'),
                              ['institution_id'], unique=False)

    op.create_table('client_registrations',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'],
                            name=op.f('fk_client_registrations_client_id_clients'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['token_id'], ['registration_tokens.id'],
                            name=op.f('fk_client_registrations_token_id_registration_tokens')),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_client_registrations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_client_registrations_token_hash'))
    )
    with op.batch_alter_table('client_registrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_registrations_token_id'),
                              ['token_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('client_registrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_registrations_token_id'))

    op.drop_table('client_registrations')
    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registration_tokens_institution_id'))

    op.drop_table('registration_tokens')
