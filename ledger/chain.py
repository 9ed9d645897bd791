"""Tamper evidence: a SHA-256 hash chain over sealed entries, and signed checkpoints.

Entries are sealed in sequence after they commit (sealing never sits on the posting
path). Each seal's digest covers the entry, its postings and the previous digest in a
canonical JSON encoding, so changing any sealed amount, account or date — even with raw
SQL and the triggers disabled — breaks the chain at that sequence number. Every N seals
(and on demand) a checkpoint signs ``seq:digest`` with an Ed25519 key, so an auditor
holding only the public key can check that the chain was not rebuilt.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class SealInput:
    """What a seal covers: one committed entry with its postings, in posting-id order."""

    entry_id: int
    key: str
    effective_at: datetime
    description: str
    metadata: Any
    reverses_id: int | None
    postings: Sequence[tuple[int, int, str]]  # (account_id, amount, currency)


def canonical_bytes(seq: int, item: SealInput) -> bytes:
    doc = {
        "seq": seq,
        "entry_id": item.entry_id,
        "key": item.key,
        "effective_at": _utc_iso(item.effective_at),
        "description": item.description,
        "metadata": item.metadata,
        "reverses_id": item.reverses_id,
        "postings": [[a, amt, cur] for a, amt, cur in item.postings],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(prev_digest: str, seq: int, item: SealInput) -> str:
    h = hashlib.sha256()
    h.update(prev_digest.encode("ascii"))
    h.update(canonical_bytes(seq, item))
    return h.hexdigest()


def checkpoint_message(seq: int, chain_digest: str) -> bytes:
    return f"upah-ledger-checkpoint:{seq}:{chain_digest}".encode("ascii")


def load_private_key(text: str) -> Ed25519PrivateKey:
    """Accept a PEM private key, or the raw 32-byte seed in base64."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(stripped.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(stripped, validate=True))


def generate_private_key_text() -> str:
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, chain_digest: str) -> str:
    return base64.b64encode(key.sign(checkpoint_message(seq, chain_digest))).decode()


def verify_checkpoint(public_pem: str, seq: int, chain_digest: str, signature_b64: str) -> bool:
    public = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(public, Ed25519PublicKey):
        return False
    try:
        public.verify(base64.b64decode(signature_b64), checkpoint_message(seq, chain_digest))
    except (InvalidSignature, ValueError):
        return False
    return True


def _utc_iso(moment: datetime) -> str:
    """Naive datetimes are UTC (SQLite returns them so); aware ones are converted."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds")
