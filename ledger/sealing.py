"""The sealer: extends the hash chain over committed entries, after they commit.

It runs apart from the posting path (a periodic task, or on demand), takes entries not
yet sealed in id order, and signs a checkpoint every ``checkpoint_every`` seals. Only one
sealer extends the chain at a time: on PostgreSQL a transaction-scoped advisory lock,
on SQLite the database's single writer.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from ledger import chain
from ledger.reports import seal_inputs
from ledger.tables import CheckpointRow, EntryRow, SealRow, is_postgresql, table_of

_seals = table_of(SealRow)
_entries = table_of(EntryRow)
_checkpoints = table_of(CheckpointRow)

SEALER_LOCK = 0x75706168  # "upah"


def seal(
    session: Session,
    *,
    now: datetime,
    signing_key: Ed25519PrivateKey,
    checkpoint_every: int = 1000,
    limit: int = 10_000,
) -> int:
    """Seal up to ``limit`` unsealed entries; returns how many were sealed."""
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEALER_LOCK})
    last = session.execute(
        select(_seals.c.seq, _seals.c.digest).order_by(_seals.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq, last.digest) if last is not None else (0, chain.GENESIS)
    sealed_ids = select(_seals.c.entry_id)
    ids = (
        session.execute(
            select(_entries.c.id).where(_entries.c.id.not_in(sealed_ids)).order_by(_entries.c.id).limit(limit)
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    rows = []
    for item in seal_inputs(session, list(ids)):
        seq += 1
        prev = chain.digest(prev, seq, item)
        rows.append({"seq": seq, "entry_id": item.entry_id, "digest": prev, "sealed_at": now})
        if seq % checkpoint_every == 0:
            _sign(session, signing_key, seq, prev, now)
    session.execute(insert(_seals), rows)
    return len(rows)


def checkpoint(session: Session, *, now: datetime, signing_key: Ed25519PrivateKey) -> int | None:
    """Sign the chain's head now (on demand); returns the sequence number signed."""
    head = session.execute(
        select(_seals.c.seq, _seals.c.digest).order_by(_seals.c.seq.desc()).limit(1)
    ).first()
    if head is None:
        return None
    _sign(session, signing_key, head.seq, head.digest, now)
    return int(head.seq)


def _sign(session: Session, key: Ed25519PrivateKey, seq: int, chain_digest: str, now: datetime) -> None:
    session.execute(
        insert(_checkpoints),
        {
            "seq": seq,
            "digest": chain_digest,
            "signature": chain.sign_checkpoint(key, seq, chain_digest),
            "public_key": chain.public_key_pem(key),
            "created_at": now,
        },
    )
