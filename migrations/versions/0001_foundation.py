"""Foundation: registry, signing keys, audit chain, job leases

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 17:50:22.794309
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import authz.database

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The application never updates or deletes audit rows; the database refuses it too. Someone
# with owner rights can still drop these triggers, which is what `authz audit verify` detects.
APPEND_ONLY = {
    "postgresql": [
        """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$""",
        """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
        """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
    ],
    "sqlite": [
        """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
        """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    ],
}
DROP_APPEND_ONLY = {
    "postgresql": ["DROP TRIGGER audit_events_no_truncate ON audit_events",
                   "DROP TRIGGER audit_events_append_only ON audit_events",
                   "DROP FUNCTION audit_events_append_only()"],
    "sqlite": ["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"],
}


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('time', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=True),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_institution_seq', ['institution_id', 'seq'], unique=False)
        batch_op.create_index('ix_audit_events_patient_seq', ['patient_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_time'), ['time'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_type'), ['type'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('institutions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('emergency', sa.Boolean(), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_institutions')),
    sa.UniqueConstraint('code', name=op.f('uq_institutions_code'))
    )
    op.create_table('job_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('lease_until', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_leases'))
    )
    op.create_table('signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('slot', sa.String(length=16), nullable=True),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_enc', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('activated_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retiring_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retired_at', authz.database.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys')),
    sa.UniqueConstraint('slot', name=op.f('uq_signing_keys_slot'))
    )
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signing_keys_state'), ['state'], unique=False)

    op.create_table('clients',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('institution_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('auth_method', sa.String(length=32), nullable=False),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('jwks', sa.JSON(), nullable=True),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', authz.database.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_clients_institution_id_institutions')),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_clients'))
    )
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clients_institution_id'), ['institution_id'], unique=False)

    # The chain starts empty: sequence 0, hash of 32 zero bytes.
    head = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
                    sa.column("hash", sa.LargeBinary))
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": bytes(32)}])
    for statement in APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clients_institution_id'))

    op.drop_table('clients')
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_keys_state'))

    op.drop_table('signing_keys')
    op.drop_table('job_leases')
    op.drop_table('institutions')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_type'))
        batch_op.drop_index(batch_op.f('ix_audit_events_time'))
        batch_op.drop_index('ix_audit_events_patient_seq')
        batch_op.drop_index('ix_audit_events_institution_seq')

    op.drop_table('audit_events')
