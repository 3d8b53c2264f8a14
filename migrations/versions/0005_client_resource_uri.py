"""Clients: RFC 8707 resource URI of resource servers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:50:28.503031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resource_uri', sa.String(length=2000), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_clients_resource_uri'), ['resource_uri'])



def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_clients_resource_uri'), type_='unique')
        batch_op.drop_column('resource_uri')

