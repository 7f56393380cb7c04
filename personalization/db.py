"""Two SQL statements the ORM does not offer, written once for PostgreSQL and SQLite.

- ``insert_returning_new``: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` tells exactly
  which rows were new, so a retried or raced batch stores nothing twice and signals are
  folded only for the events actually stored.
- ``increment_counters``: ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n``, an
  atomic increment without read-then-write.
Values go through each field's ``get_db_prep_save`` so both backends get what they expect.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from django.db import connection, models
from django.utils.dateparse import parse_datetime

from .guard_rails import BIG, COOLDOWN, FREQUENCY_CAP, GuardRails, verdict
from .models import Rule, RuleCounter


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


def _dumps(value: Any) -> str:
    """orjson takes a tenth of json.dumps's time; json.dumps for what orjson refuses
    (integers beyond 64 bits, which JSON allows and a quarantined event may hold)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _pg_arrays(
    fields: list[models.Field], rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[str], list[Any]]:
    """PostgreSQL: one array parameter per column, so the statement has a fixed shape
    whatever the batch size (no per-cell placeholders to build, parse or plan)."""
    types, selects, params = [], [], []
    for i, f in enumerate(fields):
        if isinstance(f, models.JSONField):
            types.append("text[]")
            selects.append(f"u.c{i}::jsonb")
            params.append([None if r[f.name] is None else _dumps(r[f.name]) for r in rows])
        else:
            # psycopg adapts str, int, UUID and aware datetimes itself; Django's per-value
            # preparation would cost more than the insert.
            types.append(f"{f.db_type(connection)}[]")
            selects.append(f"u.c{i}")
            params.append([r[f.name] for r in rows])
    return types, selects, params


def _pg_execute(sql: str, params: list[Any]) -> list[tuple]:
    """Run one statement with server-side parameter binding on Django's own connection
    (same transaction). Django's default client-side binding would quote every array
    element into the SQL text, which costs more than the rest of the statement."""
    connection.ensure_connection()
    # Django's wrapper turns psycopg's errors into django.db's, as its own cursors do.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _unnest_sql(types: list[str]) -> str:
    # %b: binary parameters; text-format arrays escape every element with a regex.
    args = ", ".join(f"%b::{t}" for t in types)
    names = ", ".join(f"c{i}" for i in range(len(types)))
    return f"unnest({args}) AS u({names})"


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
    if connection.vendor == "postgresql" and len(rows) > 1:
        # (One row: the plain VALUES form below costs less than the arrays' set-up.)
        types, selects, params = _pg_arrays(fields, rows)
        ret_field = _columns(model, [returning])[0]
        conflict_columns = ", ".join(_qn(c.column) for c in _columns(model, conflict))
        sql = (
            f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(_qn(f.column) for f in fields)}) "
            f"SELECT {', '.join(selects)} FROM {_unnest_sql(types)} "
            f"ON CONFLICT ({conflict_columns}) DO NOTHING RETURNING {_qn(ret_field.column)}"
        )
        return [ret_field.to_python(r[0]) for r in _pg_execute(sql, params)]
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


def rule_counter_apply(
    *,
    property_id: int,
    visitor_id: str,
    rule_id: int,
    session_key: str,
    day_key: str,
    week_key: str,
    now: Any,
    rails: GuardRails,
) -> str | None:
    """Count one application of a rule, only if its guard rails (``guard_rails``: cooldown
    and caps) still allow it now, and the rule still exists. Returns None when counted,
    else why not (the specification's ``verdict`` on the row that refused it).

    One conditional upsert: two concurrent decisions can never both take the last unit
    of a cap, whatever the isolation level. Its ``WHERE`` is ``guard_rails.verdict``
    negated: a cap applies to its window's count only while the window's key is the
    current one, and the cooldown allows an application from exactly its end (no
    cooldown: no condition on the time at all).
    """
    t = _qn(RuleCounter._meta.db_table)
    r = _qn(Rule._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    cutoff = rails.cooldown_cutoff(now)
    cap_session, cap_day, cap_week = (BIG if c is None else c for c in rails.caps())
    sql = (
        f"INSERT INTO {t} (property_id, visitor_id, rule_id, session_key, session_count, "
        "day_key, day_count, week_key, week_count, last_applied_at) "
        "SELECT %s, %s, %s, %s, 1, %s, 1, %s, 1, %s "
        # A rule deleted since this process compiled its rules counts nothing (and is not
        # served): the log never points at a row that is gone.
        f"WHERE EXISTS (SELECT 1 FROM {r} WHERE id = %s) "
        "ON CONFLICT (property_id, visitor_id, rule_id) DO UPDATE SET "
        f"session_count = CASE WHEN {t}.session_key = excluded.session_key "
        f"THEN {t}.session_count + 1 ELSE 1 END, "
        f"day_count = CASE WHEN {t}.day_key = excluded.day_key THEN {t}.day_count + 1 ELSE 1 END, "
        f"week_count = CASE WHEN {t}.week_key = excluded.week_key "
        f"THEN {t}.week_count + 1 ELSE 1 END, "
        "session_key = excluded.session_key, day_key = excluded.day_key, "
        "week_key = excluded.week_key, last_applied_at = excluded.last_applied_at "
        f"WHERE ({t}.session_key <> excluded.session_key OR {t}.session_count < %s) "
        f"AND ({t}.day_key <> excluded.day_key OR {t}.day_count < %s) "
        f"AND ({t}.week_key <> excluded.week_key OR {t}.week_count < %s) "
        + ("" if cutoff is None else f"AND {t}.last_applied_at <= %s ")
        + "RETURNING 1"
    )
    params: list[Any] = [
        property_id,
        visitor_id,
        rule_id,
        session_key,
        day_key,
        week_key,
        adapt(now),
        rule_id,
        cap_session,
        cap_day,
        cap_week,
    ]
    if cutoff is not None:
        params.append(adapt(cutoff))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.fetchone() is not None:
            return None
    # Refused: say why, as the specification does (on PostgreSQL the upsert locked the row
    # until the transaction ends, so this is the state that refused it).
    reason = rule_counter_verdict(
        property_id=property_id,
        visitor_id=visitor_id,
        rule_id=rule_id,
        session_key=session_key,
        day_key=day_key,
        week_key=week_key,
        now=now,
        rails=rails,
    )
    # (None: the rule is gone; the reason such a refusal was always given)
    return reason or (COOLDOWN if rails.cooldown_s else FREQUENCY_CAP)


def rule_counter_verdict(
    *,
    property_id: int,
    visitor_id: str,
    rule_id: int,
    session_key: str,
    day_key: str,
    week_key: str,
    now: Any,
    rails: GuardRails,
) -> str | None:
    """The specification's verdict (``guard_rails.verdict``) on the rule's stored counters,
    counting nothing."""
    row = RuleCounter.objects.filter(
        property_id=property_id, visitor_id=visitor_id, rule_id=rule_id
    ).first()
    return verdict(rails, row, now, session_key, day_key, week_key)


def insert_rows(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows (dicts keyed by field name) in one statement."""
    if not rows:
        return
    table = _qn(model._meta.db_table)
    fields = _columns(model, list(rows[0].keys()))
    columns = ", ".join(_qn(f.column) for f in fields)
    if connection.vendor == "postgresql":
        types, selects, params = _pg_arrays(fields, rows)
        _pg_execute(
            f"INSERT INTO {table} ({columns}) SELECT {', '.join(selects)} "
            f"FROM {_unnest_sql(types)}",
            params,
        )
        return
    values, params = _values_sql(fields, rows)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values}", params)


def update_rows(
    model: type[models.Model], rows: Sequence[dict[str, Any]], fields: list[str]
) -> None:
    """Update ``fields`` of many rows by primary key (``rows``: dicts with ``pk`` and fields).

    PostgreSQL: one ``UPDATE … FROM unnest(…)``; elsewhere one statement per row.
    """
    if not rows:
        return
    table = _qn(model._meta.db_table)
    cols = _columns(model, fields)
    pk = model._meta.pk
    assert pk is not None
    if connection.vendor == "postgresql":
        keyed = [{pk.name: r["pk"], **r} for r in rows]
        types, selects, params = _pg_arrays([pk, *cols], keyed)
        sets = ", ".join(
            f"{_qn(c.column)} = {sel}" for c, sel in zip(cols, selects[1:], strict=True)
        )
        sql = (
            f"UPDATE {table} SET {sets} FROM {_unnest_sql(types)} "
            f"WHERE {table}.{_qn(pk.column)} = u.c0"
        )
        _pg_execute(sql, params)
        return
    sets = ", ".join(f"{_qn(c.column)} = %s" for c in cols)
    sql = f"UPDATE {table} SET {sets} WHERE {_qn(pk.column)} = %s"
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [[c.get_db_prep_save(r[c.name], connection) for c in cols] + [r["pk"]] for r in rows],
        )


def upsert_locked(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    touch: str,
    returning: Sequence[str],
) -> list[tuple]:
    """Insert missing rows and lock all of them, in the rows' order, in one statement.

    Pass the rows sorted by the conflict key.

    ``ON CONFLICT DO UPDATE SET touch = touch`` takes the row lock of existing rows, so
    concurrent batches lock their rows in one sorted order: no deadlock between them.
    """
    if not rows:
        return []
    table = _qn(model._meta.db_table)
    fields = _columns(model, list(rows[0].keys()))
    conflict_columns = ", ".join(_qn(c.column) for c in _columns(model, conflict))
    touch_col = _qn(_columns(model, [touch])[0].column)
    ret = ", ".join(_qn(c.column) for c in _columns(model, list(returning)))
    tail = (
        f"ON CONFLICT ({conflict_columns}) DO UPDATE SET {touch_col} = {table}.{touch_col} "
        f"RETURNING {ret}"
    )
    columns = ", ".join(_qn(f.column) for f in fields)
    if connection.vendor == "postgresql":
        types, selects, params = _pg_arrays(fields, rows)
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {', '.join(selects)} "
            f"FROM {_unnest_sql(types)} {tail}"
        )
        return _pg_execute(sql, params)
    values, params = _values_sql(fields, rows)
    sql = f"INSERT INTO {table} ({columns}) VALUES {values} {tail}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def from_db_datetime(value: Any) -> Any:
    """A raw cursor's timestamp: aware already (PostgreSQL), or naive UTC or text (SQLite)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def from_db_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def insert_with_children(
    parent: type[models.Model],
    parent_row: dict[str, Any],
    child: type[models.Model],
    child_rows: Sequence[dict[str, Any]],
    fk: str,
) -> None:
    """Insert one row and its children (``fk`` pointing at it) in one round trip."""
    pfields = _columns(parent, list(parent_row))
    cfields = _columns(child, list(child_rows[0])) if child_rows else []
    if connection.vendor != "postgresql" or not child_rows:
        obj = parent._default_manager.create(**{f.attname: parent_row[f.name] for f in pfields})
        child._default_manager.bulk_create(
            [child(**{fk: obj}, **{f.attname: r[f.name] for f in cfields}) for r in child_rows]
        )
        return
    pcols = ", ".join(_qn(f.column) for f in pfields)
    pvals = ", ".join("%s::jsonb" if isinstance(f, models.JSONField) else "%s" for f in pfields)
    pparams = [
        json.dumps(parent_row[f.name]) if isinstance(f, models.JSONField) else parent_row[f.name]
        for f in pfields
    ]
    types, selects, cparams = _pg_arrays(cfields, child_rows)
    fk_col = _qn(_columns(child, [fk])[0].column)
    ccols = ", ".join(_qn(f.column) for f in cfields)
    sql = (
        f"WITH p AS (INSERT INTO {_qn(parent._meta.db_table)} ({pcols}) VALUES ({pvals}) "
        f"RETURNING {_qn(parent._meta.pk.column)}) "  # type: ignore[union-attr]
        f"INSERT INTO {_qn(child._meta.db_table)} ({fk_col}, {ccols}) "
        f"SELECT p.{_qn(parent._meta.pk.column)}, {', '.join(selects)} "  # type: ignore[union-attr]
        f"FROM p, {_unnest_sql(types)}"
    )
    _pg_execute(sql, [*pparams, *cparams])
