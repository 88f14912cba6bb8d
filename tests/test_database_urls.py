"""Database URLs in messages never show a password, wherever the URL keeps it."""

from __future__ import annotations

import pytest

from sync.store.database import database_url, safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://flow:hunter2@db:5432/flows", "postgresql://flow:***@db:5432/flows"),
        ("postgresql://flow@db/flows?password=hunter2&sslmode=require", "sslmode=require"),
        ("mysql://flow@db/flows?passwd=hunter2", "passwd=hidden"),
        ("postgresql://flow@db/flows?sslpassword=hunter2", "sslpassword=hidden"),
        ("sqlite:///flowsync.db", "sqlite:///flowsync.db"),
    ],
)
def test_safe_url_masks_every_password(url: str, shown: str) -> None:
    """Passwords in the user part or the query string are masked; everything else stays readable."""
    assert "hunter2" not in safe_url(url)
    assert shown in safe_url(url)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://db/flows", "postgresql+psycopg"),
        ("postgres://db/flows", "postgresql+psycopg"),
        ("mysql://db/flows", "mysql+pymysql"),
        ("mariadb://db/flows", "mariadb+pymysql"),
        ("postgresql+psycopg2://db/flows", "postgresql+psycopg2"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_bare_schemes_get_the_shipped_driver(url: str, driver: str) -> None:
    """A bare scheme uses the driver flowsync's extras install; an explicit driver is kept."""
    assert database_url(url).drivername == driver
