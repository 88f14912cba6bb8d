"""Column types that behave the same on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite only auto-numbers an INTEGER PRIMARY KEY, so big keys are plain integers there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp that comes back timezone-aware on every database.

    PostgreSQL stores `timestamptz`; SQLite and MariaDB have no zone, so the value is
    stored as naive UTC (microseconds kept) and UTC is attached again on the way out.
    Naive datetimes are refused on the way in: a local time would be stored as UTC.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # Each dialect's types are imported when that dialect uses them, not by every run.
        if dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql  # noqa: PLC0415

            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql  # noqa: PLC0415

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored_timestamp(value: object) -> datetime:
    """A `UtcDateTime` value read raw (SQLite's text, a server's datetime) as aware UTC, else `ValueError`.

    For reading rows that may be corrupt one at a time: SQLite keeps any text in a timestamp column.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: a {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def raw_columns(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The columns as the driver gives them, to decode row by row: timestamps and dates raw, JSON as text.

    One damaged value (SQLite keeps any text in any column) then fails its own row, not the query.
    """
    columns: list[sa.ColumnElement[Any]] = []
    for column in table.columns:
        if isinstance(column.type, UtcDateTime | sa.Date):
            columns.append(sa.type_coerce(column, sa.Text()).label(column.name))
        elif isinstance(column.type, sa.JSON):
            columns.append(sa.cast(column, sa.Text).label(column.name))
        else:
            columns.append(column)
    return columns
