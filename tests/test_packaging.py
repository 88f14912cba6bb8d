"""A plain (non-editable) install carries the migrations: `db upgrade` works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sync.simulator import SimulatorHandle
from sync.store import migrate
from sync.store.database import create_engine
from tests.process import flowsync_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and unpacked, as `pip install .` would place it in site-packages."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("flowsync-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_ships_the_migrations(unpacked_wheel: Path) -> None:
    """`sync/migrations` holds env.py, the script template and every version file."""
    shipped = unpacked_wheel / "sync" / "migrations"
    assert (shipped / "env.py").is_file()
    assert (shipped / "script.py.mako").is_file()
    versions = {p.name for p in (shipped / "versions").glob("*.py")}
    assert versions == {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}


def test_db_upgrade_from_the_installed_package_in_another_directory(
    unpacked_wheel: Path, tmp_path: Path
) -> None:
    """From an unrelated directory, the installed `flowsync db upgrade` creates the schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSYNC_")}
    env["PYTHONPATH"] = str(unpacked_wheel)  # ahead of the checkout, which must not be used
    env["FLOWSYNC_DATABASE_URL"] = f"sqlite:///{tmp_path / 'installed.db'}"
    probe = "import sync, sys; assert sync.__file__.startswith(sys.argv[1]), sync.__file__"
    subprocess.run([sys.executable, "-c", probe, str(unpacked_wheel)], env=env, cwd=tmp_path, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "sync", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "installed.db").is_file()


ONLY_OTHER_COMMANDS = ("alembic", "apscheduler", "sync.simulator", "sync.cli.demo", "sync.store.migrate")


def modules_loaded_by_a_sync(env: dict[str, str], report: Path) -> list[str]:
    """Run `flowsync sync` to its exit and list the modules of ONLY_OTHER_COMMANDS it had loaded by then."""
    probe = f"""
import atexit, sys

def report():
    watched = {ONLY_OTHER_COMMANDS!r}
    loaded = [m for m in sorted(sys.modules) if any(m == w or m.startswith(w + ".") for w in watched)]
    with open({str(report)!r}, "w") as out:
        out.write(" ".join(loaded))

atexit.register(report)
from sync.cli.commands import main
main()
"""
    result = subprocess.run(
        [sys.executable, "-c", probe, "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return report.read_text().split()


@pytest.mark.parametrize("cron", [None, "*/5 * * * *"])
def test_a_sync_does_not_load_what_only_other_commands_need(
    sim: SimulatorHandle, tmp_path: Path, cron: str | None
) -> None:
    """A whole `flowsync sync` loads no Alembic, simulator or demo, and APScheduler only for a cron."""
    database_url = f"sqlite:///{tmp_path / 'flowsync.db'}"
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    env = flowsync_env(sim, database_url, "1-3", **({"FLOWSYNC_CRON": cron} if cron else {}))
    loaded = modules_loaded_by_a_sync(env, tmp_path / "loaded.txt")
    assert sim.stats.requests == {"details": 3}, "a real sync ran"
    if cron is None:
        assert loaded == []
    else:  # validating the schedule needs APScheduler's triggers, and only them
        assert loaded
        assert {module.split(".")[0] for module in loaded} == {"apscheduler"}
        assert not [module for module in loaded if module.startswith("apscheduler.schedulers")]
