"""The role scripts of `docs/roles/`, run as written (names replaced) on a fresh server database.

`documented_roles(url)` runs the script of the URL's server as an administrator would run it
with `psql` or the `mariadb` client, and yields a connection URL for each account it creates.
The script is split into statements the way those clients do: `--` comments, quoted text,
PostgreSQL's `$$` bodies and MariaDB's `DELIMITER` lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from sync.store import migrate
from sync.store.database import create_engine
from tests.conftest import backend_of

ROLES = Path(__file__).resolve().parent.parent / "docs" / "roles"
ACCOUNTS = ("writer", "reader", "maintenance")


def statements(script: str) -> list[str]:
    """The statements of a SQL script, split as `psql` and the `mariadb` client split them."""
    found: list[str] = []
    delimiter, current = ";", ""
    quote: str | None = None  # "'" inside a string, "$$" inside a dollar-quoted body
    for line in script.splitlines():
        if quote is None and not current.strip() and line.strip().upper().startswith("DELIMITER "):
            delimiter = line.split()[1]
            continue
        index = 0
        while index < len(line):
            if quote is not None:
                end = line.find(quote, index)
                if end < 0:
                    current += line[index:]
                    break
                current += line[index : end + len(quote)]
                index, quote = end + len(quote), None
            elif line.startswith("--", index):
                break
            elif line.startswith(delimiter, index):
                found.append(current.strip())
                current, index = "", index + len(delimiter)
            elif line.startswith("$$", index) or line[index] == "'":
                quote = "$$" if line[index] == "$" else "'"
                current += quote
                index += len(quote)
            else:
                current += line[index]
                index += 1
        current += "\n"
    assert quote is None, f"unterminated quote in: {current!r}"
    assert not current.strip(), f"a statement without its delimiter: {current!r}"
    return [statement for statement in found if statement]


@dataclass(frozen=True)
class Accounts:
    """The administrator's engine and a URL for each account the script created."""

    owner: sa.Engine
    urls: dict[str, str]

    def engine(self, account: str) -> sa.Engine:
        return create_engine(self.urls[account])


@contextmanager
def documented_roles(server_database_url: str) -> Iterator[Accounts]:
    """The database upgraded, then the documented role script run on it; the accounts dropped after."""
    backend = backend_of(server_database_url)
    database = sa.make_url(server_database_url).database
    suffix = uuid.uuid4().hex[:8]
    names = {account: f"fs_{account[:5]}_{suffix}" for account in ACCOUNTS}
    script = (ROLES / ("postgresql.sql" if backend == "postgresql" else "mariadb.sql")).read_text()
    for account, name in names.items():
        script = script.replace(f"flowsync_{account}", name)
    script = script.replace("flowsync.", f"{database}.").replace(
        "DATABASE flowsync ", f"DATABASE {database} "
    )
    owner = create_engine(server_database_url)
    migrate.upgrade(owner)
    try:
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            cursor = connection.connection.cursor()
            for statement in statements(script):
                cursor.execute(statement)  # no parameters: `%` is text, as in the clients
            cursor.close()
        url = sa.make_url(server_database_url)
        yield Accounts(
            owner,
            {
                account: url.set(username=name, password=None).render_as_string(hide_password=False)
                for account, name in names.items()
            },
        )
    finally:
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            cursor = connection.connection.cursor()
            if backend == "postgresql":
                listed = ", ".join(names.values())
                cursor.execute(f"DROP OWNED BY {listed}")
                cursor.execute(f"DROP ROLE {listed}")
            else:
                cursor.execute("DROP USER " + ", ".join(f"'{n}'@'%'" for n in names.values()))
            cursor.close()
        owner.dispose()
