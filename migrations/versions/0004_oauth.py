"""OAuth: grants, authorization codes, refresh-token families, issued access tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:41:51.464125
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_grants',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('resource', sa.JSON(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=True),
    sa.Column('amr', sa.JSON(), nullable=True),
    sa.Column('auth_time', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('login_session_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_oauth_grants_account_id_accounts')),
    sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_oauth_grants_client_id_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_grants'))
    )
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_grants_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_grants_client_id'), ['client_id'], unique=False)

    op.create_table('oauth_access_tokens',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.String(length=32), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False),
    sa.Column('dpop_jkt', sa.String(length=64), nullable=True),
    sa.Column('issued_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_access_tokens_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_oauth_access_tokens'))
    )
    with op.batch_alter_table('oauth_access_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_access_tokens_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_access_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_access_tokens_grant_id'), ['grant_id'], unique=False)

    op.create_table('oauth_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_codes_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_oauth_codes'))
    )
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_codes_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_codes_grant_id'), ['grant_id'], unique=False)

    op.create_table('oauth_refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('dpop_jkt', sa.String(length=64), nullable=True),
    sa.Column('issued_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('superseded_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_refresh_tokens_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_oauth_refresh_tokens'))
    )
    with op.batch_alter_table('oauth_refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_refresh_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_refresh_tokens_grant_id'), ['grant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('oauth_refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_tokens_grant_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_tokens_expires_at'))

    op.drop_table('oauth_refresh_tokens')
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_codes_grant_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_codes_expires_at'))

    op.drop_table('oauth_codes')
    with op.batch_alter_table('oauth_access_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_access_tokens_grant_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_access_tokens_expires_at'))
        batch_op.drop_index(batch_op.f('ix_oauth_access_tokens_client_id'))

    op.drop_table('oauth_access_tokens')
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_grants_client_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_grants_account_id'))

    op.drop_table('oauth_grants')
