"""Dashboard sessions that were signed out: their cookies are refused until they expire.

The dashboard's session cookie is sealed and stateless (``api.dashboard``): it carries the
API key, the time it was issued and a random session id. Deleting the cookie in the browser
does not stop a copy of it from working, so signing out records the id here together with
the cookie's own expiry; every page checks the id with one primary-key read. A row is
needed only until that expiry (the cookie is refused by its age afterwards), so the beat
purges older rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from ledger.tables import insert_or_ignore, table_of
from payments.tables import DashboardSessionEndedRow

_ended = table_of(DashboardSessionEndedRow)


def end(session: Session, *, session_id: str, expires_at: datetime) -> None:
    """Record a session as signed out (again is harmless: the first record stands)."""
    session.execute(
        insert_or_ignore(session, _ended, ["session_id"]).values(session_id=session_id, expires_at=expires_at)
    )


def is_ended(session: Session, session_id: str) -> bool:
    """Whether a session was signed out: one read by primary key."""
    found = session.execute(select(_ended.c.session_id).where(_ended.c.session_id == session_id)).first()
    return found is not None


def purge_ended(session: Session, *, now: datetime) -> int:
    """Forget signed-out sessions whose cookies expired before ``now``; returns how many."""
    result = cast("CursorResult[Any]", session.execute(delete(_ended).where(_ended.c.expires_at < now)))
    return int(result.rowcount or 0)
