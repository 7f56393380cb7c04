"""Two SQL statements the ORM does not offer, written once for PostgreSQL and SQLite.

- ``insert_returning_new``: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` tells exactly
  which rows were new, so a retried or raced batch stores nothing twice and signals are
  folded only for the events actually stored.
- ``increment_counters``: ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n``, an
  atomic increment without read-then-write.
Values go through each field's ``get_db_prep_save`` so both backends get what they expect.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def _qn(name: str | None) -> str:
    assert name is not None
    return connection.ops.quote_name(name)


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


def _values_sql(
    fields: list[models.Field], rows: Sequence[dict[str, Any]]
) -> tuple[str, list[Any]]:
    params: list[Any] = []
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    for row in rows:
        for f in fields:
            params.append(f.get_db_prep_save(row[f.name], connection))
    return ", ".join([row_sql] * len(rows)), params


def insert_returning_new(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    returning: str,
) -> list[Any]:
    """Insert rows, skip those that conflict; return ``returning`` of the rows inserted."""
    if not rows:
        return []
    qn = connection.ops.quote_name
    names = list(rows[0].keys())
    fields = _columns(model, names)
    values, params = _values_sql(fields, rows)
    ret_field = _columns(model, [returning])[0]
    conflict_columns = ", ".join(_qn(c.column) for c in _columns(model, conflict))
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(_qn(f.column) for f in fields)}) "
        f"VALUES {values} ON CONFLICT ({conflict_columns})"
        f" DO NOTHING RETURNING {_qn(ret_field.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = [r[0] for r in cursor.fetchall()]
    return [ret_field.to_python(value) for value in returned]


def increment_counters(
    model: type[models.Model], rows: Sequence[dict[str, Any]], key: Sequence[str], counter: str
) -> None:
    if not rows:
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    names = list(key) + [counter]
    fields = _columns(model, names)
    ordered = sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))  # fixed lock order
    values, params = _values_sql(fields, ordered)
    col = _qn(_columns(model, [counter])[0].column)
    sql = (
        f"INSERT INTO {table} ({', '.join(_qn(f.column) for f in fields)}) VALUES {values} "
        f"ON CONFLICT ({', '.join(_qn(f.column) for f in fields[:-1])}) "
        f"DO UPDATE SET {col} = {table}.{col} + excluded.{col}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
