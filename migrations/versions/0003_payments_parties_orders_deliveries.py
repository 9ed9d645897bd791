"""payments parties orders deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 07:39:39.620264
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('principal', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('content_type', sa.String(length=100), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('organizations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('available_account_id', sa.BigInteger(), nullable=True),
    sa.Column('commission_account_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('buyer','intermediary')", name=op.f('ck_organizations_kind')),
    sa.ForeignKeyConstraint(['available_account_id'], ['ledger_accounts.id'], name=op.f('fk_organizations_available_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['commission_account_id'], ['ledger_accounts.id'], name=op.f('fk_organizations_commission_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.BigInteger(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('admin','buyer','intermediary','auditor')", name=op.f('ck_api_keys_role')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_api_keys_organization_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('public_id', name=op.f('uq_api_keys_public_id'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_organization_id'), ['organization_id'], unique=False)

    op.create_table('homeworkers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name_enc', sa.Text(), nullable=False),
    sa.Column('phone_enc', sa.Text(), nullable=False),
    sa.Column('phone_index', sa.String(length=64), nullable=False),
    sa.Column('phone_masked', sa.String(length=32), nullable=False),
    sa.Column('nik_enc', sa.Text(), nullable=True),
    sa.Column('nik_index', sa.String(length=64), nullable=True),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('wallet_provider', sa.String(length=32), nullable=False),
    sa.Column('wallet_channel', sa.String(length=32), nullable=False),
    sa.Column('wallet_account_enc', sa.Text(), nullable=False),
    sa.Column('wallet_registered', sa.Boolean(), nullable=False),
    sa.Column('wallet_verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('consent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pin_hash', sa.Text(), nullable=True),
    sa.Column('pin_failures', sa.Integer(), nullable=False),
    sa.Column('pin_locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registered_by', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['registered_by'], ['organizations.id'], name=op.f('fk_homeworkers_registered_by_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_homeworkers')),
    sa.UniqueConstraint('nik_index', name=op.f('uq_homeworkers_nik_index')),
    sa.UniqueConstraint('phone_index', name=op.f('uq_homeworkers_phone_index'))
    )
    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('product', sa.String(length=200), nullable=False),
    sa.Column('rate', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('minutes_per_piece', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('intermediary_id', sa.BigInteger(), nullable=True),
    sa.Column('commission_kind', sa.String(length=16), nullable=True),
    sa.Column('commission_rate', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('held_account_id', sa.BigInteger(), nullable=True),
    sa.Column('hold_amount', sa.BigInteger(), nullable=False),
    sa.Column('fair_rate', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('open','closed','cancelled')", name=op.f('ck_orders_status')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_orders_quantity_positive')),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_orders_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['held_account_id'], ['ledger_accounts.id'], name=op.f('fk_orders_held_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['intermediary_id'], ['organizations.id'], name=op.f('fk_orders_intermediary_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('buyer_id', 'reference', name='uq_orders_buyer_reference')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_buyer_id'), ['buyer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_intermediary_id'), ['intermediary_id'], unique=False)

    op.create_table('assignments',
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('accepted', sa.BigInteger(), nullable=False),
    sa.Column('rejected', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('accepted + rejected <= delivered', name=op.f('ck_assignments_within_delivered')),
    sa.CheckConstraint('accepted <= quantity', name=op.f('ck_assignments_accepted_within_quantity')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_assignments_quantity_positive')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_assignments_homeworker_id_homeworkers')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_assignments_order_id_orders')),
    sa.PrimaryKeyConstraint('order_id', 'homeworker_id', name=op.f('pk_assignments'))
    )
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index('ix_assignments_homeworker', ['homeworker_id'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('pieces', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('accepted', sa.BigInteger(), nullable=True),
    sa.Column('rejected', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('earning', sa.BigInteger(), nullable=True),
    sa.Column('commission', sa.BigInteger(), nullable=True),
    sa.Column('recovered', sa.BigInteger(), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.Column('recorded_by', sa.BigInteger(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('awaiting_confirmation','confirmed')", name=op.f('ck_deliveries_status')),
    sa.CheckConstraint('pieces > 0', name=op.f('ck_deliveries_pieces_positive')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_deliveries_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_deliveries_homeworker_id_homeworkers')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_deliveries_order_id_orders')),
    sa.ForeignKeyConstraint(['recorded_by'], ['organizations.id'], name=op.f('fk_deliveries_recorded_by_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_homeworker_id'), ['homeworker_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_order_id'), ['order_id'], unique=False)

    op.create_table('earnings_accounts',
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_earnings_accounts_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_earnings_accounts_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_earnings_accounts_homeworker_id_homeworkers')),
    sa.PrimaryKeyConstraint('homeworker_id', 'buyer_id', name=op.f('pk_earnings_accounts')),
    sa.UniqueConstraint('account_id', name=op.f('uq_earnings_accounts_account_id'))
    )
    op.create_table('homeworker_links',
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('organization_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_homeworker_links_homeworker_id_homeworkers')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_homeworker_links_organization_id_organizations')),
    sa.PrimaryKeyConstraint('homeworker_id', 'organization_id', name=op.f('pk_homeworker_links'))
    )
    op.create_table('adjustments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=False),
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('delivery_id', sa.BigInteger(), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('allowance','bonus','advance','recovery')", name=op.f('ck_adjustments_kind')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_adjustments_amount_positive')),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_adjustments_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_adjustments_delivery_id_deliveries')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_adjustments_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_adjustments_homeworker_id_homeworkers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adjustments'))
    )
    with op.batch_alter_table('adjustments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adjustments_buyer_id'), ['buyer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_adjustments_homeworker_id'), ['homeworker_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('adjustments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adjustments_homeworker_id'))
        batch_op.drop_index(batch_op.f('ix_adjustments_buyer_id'))

    op.drop_table('adjustments')
    op.drop_table('homeworker_links')
    op.drop_table('earnings_accounts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_order_id'))
        batch_op.drop_index(batch_op.f('ix_deliveries_homeworker_id'))

    op.drop_table('deliveries')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_assignments_homeworker')

    op.drop_table('assignments')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_intermediary_id'))
        batch_op.drop_index(batch_op.f('ix_orders_buyer_id'))

    op.drop_table('orders')
    op.drop_table('homeworkers')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_organization_id'))

    op.drop_table('api_keys')
    op.drop_table('organizations')
    op.drop_table('idempotency_keys')
