"""Row classes and value conversion derived from the SQLAlchemy models, so that each table's
columns are declared once (models.py) and every writer and reader follows them.

- `row_class(table, ...)`: a frozen dataclass with one keyword field per column; a column that is
  nullable or has a server default may be left out (None: NULL, or the column's default).
- `RowWriter(table)`: turns rows into database values by column type (floats, ints, bools,
  UTC datetimes, JSON text with NaN as null, text arrays) and upserts them, in bulk through COPY.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from heimdall_pipeline.db.engine import json_dumps


def row_class(table: sa.Table, name: str, doc: str, **namespace: Any) -> type:
    """A frozen keyword-only dataclass named `name` with one field per column of `table`."""
    fields = []
    for column in table.columns:
        kind = column.type.python_type
        if column.nullable or column.server_default is not None:
            fields.append((column.name, kind | None, dataclasses.field(default=None)))
        else:
            fields.append((column.name, kind))
    cls = dataclasses.make_dataclass(name, fields, frozen=True, kw_only=True,
                                     namespace={"__doc__": doc, **namespace})
    cls.__module__ = sys._getframe(1).f_globals.get("__name__", cls.__module__)
    return cls


def utc(value: datetime, field: str) -> datetime:
    """An aware UTC datetime; naive values are taken as UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is timezone.utc:
        return value
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


_NONE = type(None)


def _column_converter(column: sa.Column) -> Callable[[list], list]:
    """Converts one column of values (None stays None) to plain Python values or JSON text, from
    any value a writer may hold (numpy scalars included). Columnar, so the common case (values
    already of the right type) costs one C-level type scan per column, not a call per value."""
    kind = column.type
    name = column.name

    def by_value(convert: Callable[[Any], Any], plain: type) -> Callable[[list], list]:
        def run(values: list) -> list:
            if set(map(type, values)) <= {plain, _NONE}:
                return values
            return [None if v is None else convert(v) for v in values]
        return run

    if isinstance(kind, sa.DateTime):
        def run_time(values: list) -> list:
            if set(map(type, values)) <= {datetime} and set(map(attrgetter("tzinfo"), values)) <= {timezone.utc}:
                return values
            return [None if v is None else utc(v, name) for v in values]
        return run_time
    if isinstance(kind, sa.Double):
        return by_value(float, float)
    if isinstance(kind, sa.Boolean):
        return by_value(bool, bool)
    if isinstance(kind, (sa.BigInteger, sa.Integer)):
        return by_value(int, int)
    if isinstance(kind, JSONB):  # sent as text, parsed by the server
        return lambda values: [None if v is None else json_dumps(v) for v in values]
    if isinstance(kind, ARRAY):
        return lambda values: [None if v is None else [str(item) for item in v] for v in values]
    return by_value(str, str)


def _default_sql(column: sa.Column) -> str | None:
    """The SQL of a column's server default (for rows that leave it out), or None."""
    default = column.server_default
    if default is None:
        return None
    arg = default.arg
    if isinstance(arg, str):
        return "'" + arg.replace("'", "''") + "'"
    if hasattr(arg, "text"):
        return arg.text
    return str(arg.compile(dialect=sa.dialects.postgresql.dialect()))


class RowWriter:
    """Writes rows of one table. `key` is its conflict target (the primary key by default)."""

    def __init__(self, table: sa.Table, key: Iterable[str] | None = None):
        self.table = table
        self.columns = tuple(c.name for c in table.columns)
        self.key = tuple(key) if key is not None else tuple(c.name for c in table.primary_key.columns)
        self._converters = tuple(_column_converter(c) for c in table.columns)
        self._getter = attrgetter(*self.columns)
        staging = f"{table.name}_incoming"
        cols = ", ".join(self.columns)
        keys = ", ".join(self.key)
        selected = ", ".join(
            f"COALESCE({c.name}, {_default_sql(c)})" if _default_sql(c) and not c.nullable else c.name
            for c in table.columns)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in self.key)
        # CREATE ... AS copies the column types but not NOT NULL, so left-out values reach the
        # COALESCE with the column's default; ON COMMIT DROP: gone with the transaction. The
        # arrival number lets the merge keep the last row of a key that came more than once.
        defaulted = [c for c in table.columns if _default_sql(c) and not c.nullable]
        self._defaulted_positions = tuple(self.columns.index(c.name) for c in defaulted)
        # the defaults as COPY takes them (JSON as text), evaluated by the server at each upsert
        self._defaults = "SELECT " + ", ".join(
            f"({_default_sql(c)})::text" if isinstance(c.type, JSONB) else _default_sql(c) for c in defaulted)
        self._drop_staging = f"DROP TABLE IF EXISTS pg_temp.{staging}"
        self._create_staging = (
            f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {table.name} WITH NO DATA",
            f"ALTER TABLE {staging} ADD COLUMN heimdall_arrival bigint GENERATED ALWAYS AS IDENTITY")
        self._copy = f"COPY {staging} ({cols}) FROM STDIN"
        self._merge = (f"INSERT INTO {table.name} ({cols}) "
                       f"SELECT {selected} FROM (SELECT DISTINCT ON ({keys}) * FROM {staging} "
                       f"ORDER BY {keys}, heimdall_arrival DESC) AS incoming "
                       f"ON CONFLICT ({keys}) DO UPDATE SET {updates}")

    def value_columns(self, rows: Iterable[Any]) -> list[list]:
        """The database values of `rows`, one list per column in column order (None stays None)."""
        rows = list(rows)
        if not rows:
            return [[] for _ in self.columns]
        columns = zip(*map(self._getter, rows))
        return [convert(list(values)) for convert, values in zip(self._converters, columns)]

    def upsert(self, conn: sa.Connection, rows: Iterable[Any]) -> int:
        """Inserts or replaces `rows` within the connection's transaction; returns the number of
        distinct keys written (rows with the same key: the last one wins).

        Rows whose keys are all new and distinct (a partition's first materialisation) go straight
        into the table by COPY; otherwise (nothing of that attempt is kept) they are COPYed into a
        temporary table and merged by one INSERT ... ON CONFLICT DO UPDATE of each key's last row."""
        columns = self.value_columns(rows)
        count = len(columns[0])
        if not count:
            return 0
        import psycopg  # the driver SQLAlchemy loaded for this connection

        cursor = conn.connection.driver_connection.cursor()
        statement = self._defaults
        try:
            if self._copy_new_rows(cursor, columns):
                return count
            statement = self._drop_staging  # a second upsert in the same transaction
            cursor.execute(statement)
            for statement in self._create_staging:
                cursor.execute(statement)
            statement = self._copy
            with cursor.copy(statement) as copy:
                for row in zip(*columns):
                    copy.write_row(row)
            statement = self._merge
            return cursor.execute(statement).rowcount
        except psycopg.Error as exc:  # the same exceptions as statements through SQLAlchemy
            raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
        finally:
            cursor.close()

    def _copy_new_rows(self, cursor: Any, columns: list[list]) -> bool:
        """COPY straight into the table when no key exists yet and none repeats; False (and
        nothing written) otherwise."""
        import psycopg

        names = list(self.columns)
        columns = list(columns)
        omitted = []
        for position in self._defaulted_positions:
            column = columns[position]
            if None not in column:
                continue
            if all(value is None for value in column):  # left out of every row: the server fills it
                omitted.append(position)
            else:  # some rows left it out: they take the default the server gives now
                default = cursor.execute(self._defaults).fetchone()[self._defaulted_positions.index(position)]
                columns[position] = [default if value is None else value for value in column]
        for position in reversed(omitted):
            del names[position], columns[position]
        cursor.execute("SAVEPOINT heimdall_copy_new_rows")
        try:
            with cursor.copy(f"COPY {self.table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in zip(*columns):
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT heimdall_copy_new_rows")
            return False
        cursor.execute("RELEASE SAVEPOINT heimdall_copy_new_rows")
        return True

    def read(self, row_type: type, mapping: Any) -> Any:
        return row_type(**{c: mapping[c] for c in self.columns})
