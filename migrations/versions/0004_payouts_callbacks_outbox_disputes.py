"""payouts callbacks outbox disputes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:48:46.581112
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('relayed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_available_at'), ['available_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_relayed_at'), ['relayed_at'], unique=False)

    op.create_table('disputes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('session_id', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('notes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_disputes_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_disputes_homeworker_id_homeworkers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('reference', name=op.f('uq_disputes_reference')),
    sa.UniqueConstraint('session_id', name=op.f('uq_disputes_session_id'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_buyer_id'), ['buyer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disputes_homeworker_id'), ['homeworker_id'], unique=False)

    op.create_table('payout_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=False),
    sa.Column('approved_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('created','awaiting_approval','dispatching','completed')", name=op.f('ck_payout_runs_status')),
    sa.ForeignKeyConstraint(['approved_by'], ['api_keys.id'], name=op.f('fk_payout_runs_approved_by_api_keys')),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_payout_runs_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['created_by'], ['api_keys.id'], name=op.f('fk_payout_runs_created_by_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_runs'))
    )
    with op.batch_alter_table('payout_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_runs_buyer_id'), ['buyer_id'], unique=False)

    op.create_table('payouts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('buyer_id', sa.BigInteger(), nullable=False),
    sa.Column('homeworker_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('account_enc', sa.Text(), nullable=False),
    sa.Column('provider_reference', sa.String(length=100), nullable=True),
    sa.Column('earned_account_id', sa.BigInteger(), nullable=False),
    sa.Column('hold_id', sa.BigInteger(), nullable=True),
    sa.Column('fee_hold_id', sa.BigInteger(), nullable=True),
    sa.Column('dispatch_entry_id', sa.BigInteger(), nullable=True),
    sa.Column('pieces', sa.BigInteger(), nullable=False),
    sa.Column('period_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('period_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('created','submitted','unknown','succeeded','failed','reversed')", name=op.f('ck_payouts_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payouts_amount_positive')),
    sa.ForeignKeyConstraint(['buyer_id'], ['organizations.id'], name=op.f('fk_payouts_buyer_id_organizations')),
    sa.ForeignKeyConstraint(['dispatch_entry_id'], ['ledger_entries.id'], name=op.f('fk_payouts_dispatch_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['earned_account_id'], ['ledger_accounts.id'], name=op.f('fk_payouts_earned_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['fee_hold_id'], ['ledger_holds.id'], name=op.f('fk_payouts_fee_hold_id_ledger_holds')),
    sa.ForeignKeyConstraint(['hold_id'], ['ledger_holds.id'], name=op.f('fk_payouts_hold_id_ledger_holds')),
    sa.ForeignKeyConstraint(['homeworker_id'], ['homeworkers.id'], name=op.f('fk_payouts_homeworker_id_homeworkers')),
    sa.ForeignKeyConstraint(['run_id'], ['payout_runs.id'], name=op.f('fk_payouts_run_id_payout_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_payouts_idempotency_key')),
    sa.UniqueConstraint('reference', name=op.f('uq_payouts_reference'))
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payouts_buyer_id'), ['buyer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_homeworker_id'), ['homeworker_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_provider_reference'), ['provider_reference'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_status'), ['status'], unique=False)
        batch_op.create_index('ix_payouts_run_status', ['run_id', 'status'], unique=False)

    op.create_table('payout_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('payout_id', sa.BigInteger(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_events_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_events'))
    )
    with op.batch_alter_table('payout_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_events_payout_id'), ['payout_id'], unique=False)

    op.create_table('provider_callbacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('payout_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_provider_callbacks_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_callbacks')),
    sa.UniqueConstraint('provider', 'event_id', name='uq_provider_callbacks_event')
    )
    with op.batch_alter_table('provider_callbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_callbacks_payout_id'), ['payout_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('provider_callbacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_callbacks_payout_id'))

    op.drop_table('provider_callbacks')
    with op.batch_alter_table('payout_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_events_payout_id'))

    op.drop_table('payout_events')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payouts_status'))
        batch_op.drop_index('ix_payouts_run_status')
        batch_op.drop_index(batch_op.f('ix_payouts_run_id'))
        batch_op.drop_index(batch_op.f('ix_payouts_provider_reference'))
        batch_op.drop_index(batch_op.f('ix_payouts_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_payouts_homeworker_id'))
        batch_op.drop_index(batch_op.f('ix_payouts_buyer_id'))

    op.drop_table('payouts')
    with op.batch_alter_table('payout_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_runs_buyer_id'))

    op.drop_table('payout_runs')
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disputes_homeworker_id'))
        batch_op.drop_index(batch_op.f('ix_disputes_buyer_id'))

    op.drop_table('disputes')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_relayed_at'))
        batch_op.drop_index(batch_op.f('ix_outbox_available_at'))

    op.drop_table('outbox')
