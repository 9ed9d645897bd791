"""Row-by-row UPDATEs of a batch, written as one statement where the database allows it.

A batch that gives each row its own values (a dispatch batch's payouts, the holds it
captures) was an executemany: one UPDATE per row, each parsed, planned and executed on its
own by PostgreSQL, and each row's parameters adapted one by one by the driver. On PostgreSQL
``update_rows`` sends the batch as one array per column and joins them with ``unnest``: one
statement updates the rows. On SQLite it stays an executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

Values = Mapping[str, ColumnElement[Any]]


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    assign: Callable[[Values], Mapping[str, Any]],
) -> None:
    """``UPDATE table SET assign(values) WHERE table.<key> = values.<key>``, once per row.

    Every row maps the same names, each a column of ``table`` whose type its values take:
    ``key`` and the values ``assign`` uses. ``assign`` is called once and returns the new
    column values, as expressions over the row's values (``values["held"]``) or constants.
    Each row names a different key: the set-based form would apply only one of two.
    """
    if not rows:
        return
    names = list(rows[0])
    if len({row[key] for row in rows}) != len(rows):
        raise ValueError(f"update_rows: the rows name a {key} twice")
    if session.get_bind().dialect.name == "postgresql":
        source = select(
            *(
                func.unnest(
                    bindparam(f"v_{name}", [row[name] for row in rows], type_=ARRAY(table.c[name].type))
                ).label(name)
                for name in names
            )
        ).subquery("v")
        values: Values = {name: source.c[name] for name in names}
        session.execute(update(table).where(table.c[key] == values[key]).values(assign(values)))
        return
    params: Values = {name: bindparam(f"v_{name}", type_=table.c[name].type) for name in names}
    session.execute(
        update(table).where(table.c[key] == params[key]).values(assign(params)),
        [{f"v_{name}": row[name] for name in names} for row in rows],
        execution_options={"synchronize_session": False},
    )
