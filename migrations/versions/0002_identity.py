"""Identity: accounts, proofing records, card transactions, login sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 18:07:08.252418
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('person_link_id', sa.String(length=64), nullable=False),
    sa.Column('assurance', sa.String(length=32), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('person_link_id', name=op.f('uq_accounts_person_link_id'))
    )
    op.create_table('card_transactions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('browser', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.Integer(), nullable=False),
    sa.Column('short_code', sa.String(length=8), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('responses', sa.Integer(), nullable=False),
    sa.Column('bad_codes', sa.Integer(), nullable=False),
    sa.Column('person_link_id', sa.String(length=64), nullable=True),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('medium', sa.String(length=8), nullable=True),
    sa.Column('acr', sa.String(length=64), nullable=True),
    sa.Column('amr', sa.JSON(), nullable=True),
    sa.Column('auth_time', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_transactions'))
    )
    with op.batch_alter_table('card_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_transactions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_card_transactions_state'), ['state'], unique=False)

    op.create_table('account_certificates',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('medium', sa.String(length=8), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('not_after', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reference', sa.LargeBinary(), nullable=False),
    sa.Column('first_seen_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_certificates_account_id_accounts')),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_account_certificates'))
    )
    with op.batch_alter_table('account_certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_certificates_account_id'), ['account_id'], unique=False)

    op.create_table('login_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=False),
    sa.Column('amr', sa.JSON(), nullable=False),
    sa.Column('auth_time', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_sessions_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_login_sessions_token_hash'))
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_account_id'), ['account_id'], unique=False)

    op.create_table('verifications',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('verified_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('trust_framework', sa.String(length=200), nullable=False),
    sa.Column('evidence_ref', sa.String(length=32), nullable=False),
    sa.Column('certificate', sa.String(length=64), nullable=False),
    sa.Column('attributes', sa.LargeBinary(), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_verifications_account_id_accounts')),
    sa.ForeignKeyConstraint(['certificate'], ['account_certificates.fingerprint'], name=op.f('fk_verifications_certificate_account_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verifications'))
    )
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verifications_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verifications_account_id'))

    op.drop_table('verifications')
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_account_id'))

    op.drop_table('login_sessions')
    with op.batch_alter_table('account_certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_certificates_account_id'))

    op.drop_table('account_certificates')
    with op.batch_alter_table('card_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_transactions_state'))
        batch_op.drop_index(batch_op.f('ix_card_transactions_expires_at'))

    op.drop_table('card_transactions')
    op.drop_table('accounts')
