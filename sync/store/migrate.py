"""Running the Alembic migrations from inside flowsync.

In a source checkout the migrations sit at the top of the repository next to
`alembic.ini`; an installed wheel carries the same files as `sync/migrations`.
Migrations run under the run lock, so two upgrades (or an upgrade and a sync)
never run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from sync.core.chain import ChainHasher
from sync.store.run_lock import run_lock

UPGRADE_LOCK_WAIT_S = 60.0


def script_location() -> str:
    """Where the migration scripts are, installed or in a checkout."""
    package = Path(str(resources.files("sync")))
    packaged = package / "migrations"
    if (packaged / "env.py").is_file():
        return str(packaged)
    return str(package.parent / "migrations")


def alembic_config(engine: Engine | None = None, chain: ChainHasher | None = None) -> Config:
    """Alembic's configuration; `chain` is how a migration that chains history hashes it."""
    config = Config()
    config.set_main_option("script_location", script_location())
    if engine is not None:
        config.attributes["engine"] = engine
    if chain is not None:
        config.attributes["chain"] = chain
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> set[str]:
    return set(script_directory().get_heads())


def known_revisions() -> set[str]:
    return {script.revision for script in script_directory().walk_revisions()}


def upgrade(
    engine: Engine,
    revision: str = "head",
    lock_wait_s: float = UPGRADE_LOCK_WAIT_S,
    on_wait: Callable[[], None] = lambda: None,
    chain: ChainHasher | None = None,
) -> None:
    """Bring the schema to `revision`; safe to repeat. `on_wait`: a sync holds the lock, and we wait.

    `chain`: the audit chain's hasher (with the audit key, when one is set) for the history that
    an upgrade to 0003 chains.
    """
    with run_lock(engine, wait_s=lock_wait_s, on_wait=on_wait):
        command.upgrade(alembic_config(engine, chain), revision)


def downgrade(engine: Engine, revision: str, lock_wait_s: float = UPGRADE_LOCK_WAIT_S) -> None:
    with run_lock(engine, wait_s=lock_wait_s):
        command.downgrade(alembic_config(engine), revision)
