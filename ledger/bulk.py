"""A batch's row-by-row UPDATEs and INSERTs, written as one statement where the database allows.

A batch that gives each row its own values (a dispatch batch's payouts, the holds it
captures, their events) was an executemany: one statement per row, each parsed, planned and
executed on its own by PostgreSQL, and each row's parameters adapted one by one by the
driver; or, for an INSERT returning ids, one statement with a placeholder per value, which
the driver parses anew each time (a run of 3,000 payouts: 57,000 placeholders). On
PostgreSQL these functions send the batch as one array per column and read it with
``unnest``: one statement, a few placeholders. On SQLite they stay executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ledger.tables import is_postgresql

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
    if is_postgresql(session):
        source = _unnest(table, rows).subquery("v")
        values: Values = {name: source.c[name] for name in names}
        # Also "key = ANY(keys)": an index probe per row even while the table's statistics lag
        # behind its size, when the join alone was planned as a scan of the whole table.
        keys = bindparam("k", [row[key] for row in rows], type_=ARRAY(table.c[key].type))
        session.execute(
            update(table)
            .where(table.c[key] == values[key], table.c[key] == any_(keys))
            .values(assign(values))
        )
        return
    params: Values = {name: bindparam(f"v_{name}", type_=table.c[name].type) for name in names}
    session.execute(
        update(table).where(table.c[key] == params[key]).values(assign(params)),
        [{f"v_{name}": row[name] for name in names} for row in rows],
        execution_options={"synchronize_session": False},
    )


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT INTO table`` the rows, each naming the same columns: on PostgreSQL one statement
    from one array per column (``unnest``), elsewhere an executemany."""
    if not rows:
        return
    if is_postgresql(session):
        session.execute(insert(table).from_select(list(rows[0]), _unnest(table, rows)))
        return
    session.execute(insert(table), list(rows))


def insert_rows_returning_ids(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """``insert_rows`` for a table with a serial ``id``; the new rows' ids, in row order.

    On PostgreSQL the ids are drawn from the table's sequence first and inserted with the rows.
    """
    if not rows:
        return []
    if is_postgresql(session):
        sequence = func.pg_get_serial_sequence(table.name, "id")
        drawn = select(func.nextval(sequence)).select_from(func.generate_series(1, len(rows)))
        ids = [int(i) for i in session.execute(drawn).scalars()]
        insert_rows(session, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
        return ids
    returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(r.id) for r in session.execute(returning, list(rows))]


def _unnest(table: Table, rows: Sequence[Mapping[str, Any]]) -> Select[Any]:
    """``SELECT unnest(:v_a::type[]) AS a, …``: the rows, one array per column, in row order."""
    return select(
        *(
            func.unnest(
                bindparam(f"v_{name}", [row[name] for row in rows], type_=ARRAY(table.c[name].type))
            ).label(name)
            for name in rows[0]
        )
    )
