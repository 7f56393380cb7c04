"""The few SQL fragments that differ between PostgreSQL and SQLite.

Rollups are plain SQL over the personalization tables; everything else in them is
portable. PostgreSQL is production; SQLite serves ``make run``.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection, models, transaction


class Dialect:
    def __init__(self, vendor: str) -> None:
        self.pg = vendor == "postgresql"

    def json_text(self, column: str, *path: str) -> str:
        """A JSON value at ``path`` as text (NULL when absent)."""
        if self.pg:
            head = "".join(f"->'{p}'" for p in path[:-1])
            return f"({column}{head}->>'{path[-1]}')"
        return f"json_extract({column}, '$.{'.'.join(path)}')"

    def to_float(self, expr: str) -> str:
        return f"CAST({expr} AS {'DOUBLE PRECISION' if self.pg else 'REAL'})"

    def seconds_between(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
        # julianday() carries ~10 µs of float error: rounded to the millisecond.
        return f"ROUND((julianday({later}) - julianday({earlier})) * 86400.0, 3)"

    def within_seconds(self, ts: str, start: str, seconds: str) -> str:
        """``start <= ts <= start + seconds``."""
        if self.pg:
            return f"({ts} >= {start} AND {ts} <= {start} + {seconds} * INTERVAL '1 second')"
        return f"({ts} >= {start} AND julianday({ts}) <= julianday({start}) + {seconds} / 86400.0)"

    def scan(self, column: str) -> str:
        """A column SQLite must not pick an index by (its planner has no statistics and
        would range-scan a time index instead of looking a visitor up)."""
        return column if self.pg else f"+{column}"

    def hour(self, column: str) -> str:
        if self.pg:
            return f"date_trunc('hour', {column})"
        return f"strftime('%%Y-%%m-%%d %%H:00:00', {column})"  # %% : SQL with params

    def day(self, column: str) -> str:
        return f"CAST({column} AS date)" if self.pg else f"date({column})"

    def week(self, column: str) -> str:
        """The Monday of the (UTC) week of a timestamp."""
        if self.pg:
            return f"CAST(date_trunc('week', {column}) AS date)"
        return f"date({column}, '-6 days', 'weekday 1')"

    def unnest(self, json_array: str, alias: str) -> tuple[str, str]:
        """(join clause, value expression) over the elements of a JSON array."""
        if self.pg:
            return (
                f"CROSS JOIN LATERAL jsonb_array_elements({json_array}) AS {alias}(item)",
                f"{alias}.item",
            )
        return f"JOIN json_each({json_array}) AS {alias}", f"{alias}.value"

    def element_text(self, element: str, key: str | None = None) -> str:
        """An unnested element (or its ``key``) as text."""
        if self.pg:
            return f"({element}->>'{key}')" if key else f"({element} #>> '{{}}')"
        return f"json_extract({element}, '$.{key}')" if key else element

    def array_at(self, column: str, key: str) -> str:
        """The JSON array under ``key`` of a JSON object column; an empty one when the key
        is missing or holds anything else (null, a string), which would stop the rollup."""
        if self.pg:
            value = f"{column}->'{key}'"
            return f"(CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} ELSE '[]'::jsonb END)"
        return (
            f"(CASE WHEN json_type({column}, '$.{key}') = 'array' "
            f"THEN json_extract({column}, '$.{key}') ELSE '[]' END)"
        )


def dialect() -> Dialect:
    return Dialect(connection.vendor)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    """Run a query; datetimes are passed as each backend stores them."""
    values = [
        connection.ops.adapt_datetimefield_value(p) if isinstance(p, datetime) else p
        for p in params
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # JIT compiling these wide statements costs more than running them (measured:
            # 0.5–10 s per statement against 0.2–4 s of work).
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, values)
        return cursor.fetchall()


def insert_rows(model: type[models.Model], rows: Sequence[models.Model]) -> int:
    """Insert unsaved rows with ``executemany``: bulk_create's per-value preparation costs
    more than the insert itself for rollup-sized batches. Rollup fields are numbers, text,
    booleans, dates and datetimes; only the last two need adapting."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    names = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column or f.attname) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    ops = connection.ops

    def adapt(value: Any) -> Any:
        if isinstance(value, datetime):
            return ops.adapt_datetimefield_value(value)
        if isinstance(value, date):
            return ops.adapt_datefield_value(value)
        return value

    values = [tuple(adapt(row.__dict__[name]) for name in names) for row in rows]
    with connection.cursor() as cursor:
        for start in range(0, len(values), 5000):
            cursor.executemany(sql, values[start : start + 5000])
    return len(values)


def as_datetime(value: Any) -> datetime:
    """A timestamp from either backend (SQLite returns text from expressions)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# Consent to personalization, read from the decision's consent record. The record's
# ``granted`` list is matched as text, so the same SQL runs on jsonb and on SQLite.
GRANTS_PERSONALIZATION = '%"personalization"%'


def group_sql(record: str, decision: str) -> str:
    """The arm of a decision: not consented, else holdout, else personalized (one param)."""
    return (
        f"CASE WHEN {record}.id IS NULL OR CAST({record}.granted AS TEXT) NOT LIKE %s "
        f"THEN 'not_consented' WHEN {decision}.holdout THEN 'holdout' ELSE 'personalized' END"
    )
