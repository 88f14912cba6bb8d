"""The `flowsync` command as operators run it: exit codes, messages, and what it never prints."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa

from sync.cli.commands import cli
from sync.simulator import Fault, FaultKind, SimulatorHandle
from sync.store.database import create_engine
from sync.store.run_lock import run_lock
from tests.process import flowsync, flowsync_env

CONTRACT_COMMANDS = ["db", "sync", "run", "status", "history", "show", "demo", "fake-api"]
README = Path(__file__).resolve().parent.parent / "README.md"


def test_help_lists_every_contract_command() -> None:
    """`flowsync --help` names every command of the contract."""
    result = flowsync("--help", env=flowsync_env(None, None, None))
    assert result.returncode == 0
    for command in CONTRACT_COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def leaf_commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command a user can run, by its full name (`db upgrade`), from the real command tree."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


@pytest.mark.parametrize(("name", "command"), [pytest.param(*leaf, id=leaf[0]) for leaf in leaf_commands()])
def test_every_command_and_option_that_help_shows_is_in_the_readme(name: str, command: click.Command) -> None:
    """The README names each command, and each option its `--help` shows, so nothing is only in --help."""
    readme = README.read_text()
    assert f"flowsync {name}" in readme
    shown = [
        option
        for parameter in command.params
        if isinstance(parameter, click.Option) and not parameter.hidden
        for option in parameter.opts
        if option.startswith("--") and option != "--help"
    ]
    assert [option for option in shown if f"`{option}" not in readme and f" {option}" not in readme] == []


def test_every_global_option_is_in_the_readme() -> None:
    """`--config`, `-v`/`--verbose`, `-q`/`--quiet`, `--version`: each spelling appears."""
    readme = README.read_text()
    spelled = [opt for param in cli.params if isinstance(param, click.Option) for opt in param.opts]
    assert [option for option in spelled if f"`{option}" not in readme and option != "--help"] == []


def test_every_command_has_its_own_help() -> None:
    """`flowsync CMD --help` works for every command, through the installed entry point."""
    for name, _command in leaf_commands():
        result = flowsync(*name.split(), "--help", env=flowsync_env(None, None, None))
        assert result.returncode == 0, (name, result.stderr)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["sync"], {"FLOWSYNC_API_KEY": ""}, "FLOWSYNC_API_KEY"),
        (["sync"], {"FLOWSYNC_API_SECRET": ""}, "FLOWSYNC_API_SECRET"),
        (["sync"], {"FLOWSYNC_API_KEY": "clé"}, "FLOWSYNC_API_KEY"),
        (["db", "upgrade"], {"FLOWSYNC_DATABASE_URL": "sqlite:////no/such/folder/x.db"}, "does not exist"),
        (["history", "--limit", "-1"], {}, "--limit"),
        (["status", "--runs", "0"], {}, "--runs"),
        (["history", "--flow-id", "99999999999999999999"], {}, "--flow-id"),
        (["history", "--flow-id", "9223372036854775808"], {}, "--flow-id"),
        (["history", "--flow-id", "0"], {}, "--flow-id"),
        (["history", "--flow-id", "-5"], {}, "--flow-id"),
        (["sync"], {"FLOWSYNC_FLOW_IDS": ""}, "FLOWSYNC_FLOW_IDS"),
        (["sync", "--concurrency", "many"], {}, "--concurrency"),
        (["sync"], {"FLOWSYNC_CONCURRENCY": "0"}, "FLOWSYNC_CONCURRENCY"),
        (["sync"], {"FLOWSYNC_TIMEOUT": "-1"}, "FLOWSYNC_TIMEOUT"),
        (["sync"], {"FLOWSYNC_RETRIES": "lots"}, "FLOWSYNC_RETRIES"),
        (["sync"], {"FLOWSYNC_FLOW_IDS": "1,x"}, "FLOWSYNC_FLOW_IDS"),
        (["sync"], {"FLOWSYNC_BASE_URL": "ftp://example.com"}, "FLOWSYNC_BASE_URL"),
        (["sync"], {"FLOWSYNC_DATABASE_URL": "not a url"}, "FLOWSYNC_DATABASE_URL"),
        (["run"], {"FLOWSYNC_CRON": "61 * * * *"}, "FLOWSYNC_CRON"),
        (["run", "--interval", "0"], {}, "--interval"),
        (["run"], {"FLOWSYNC_API_SECRET": ""}, "FLOWSYNC_API_SECRET"),
        (["run", "--once"], {"FLOWSYNC_FLOW_IDS": ""}, "FLOWSYNC_FLOW_IDS"),
        (["--config", "missing.toml", "sync"], {}, "--config"),
    ],
)
def test_bad_configuration_exits_2_naming_the_setting(
    sim: SimulatorHandle, tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    """Every malformed or missing setting exits 2 with one line naming it, before any request."""
    database = tmp_path / "flowsync.db"
    result = flowsync(*args, env=flowsync_env(sim, f"sqlite:///{database}", **env), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert names in result.stderr
    assert "Traceback" not in result.stderr
    assert sim.stats.requests == {}
    assert not database.exists()


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("concurency = 4\n", "concurency"),
        ("concurrency = 'four'\n", "concurrency in"),
        ("interval = [\n", "flowsync.toml"),
    ],
)
def test_a_bad_settings_file_exits_2_naming_the_key(
    sim: SimulatorHandle, tmp_path: Path, content: str, names: str
) -> None:
    """Unknown keys, bad values and broken TOML in ./flowsync.toml exit 2 and say where."""
    (tmp_path / "flowsync.toml").write_text(content)
    result = flowsync("sync", env=flowsync_env(sim, f"sqlite:///{tmp_path / 'x.db'}"), cwd=tmp_path)
    assert result.returncode == 2
    assert names in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "option", "metavar", "env", "default"),
    [
        ("sync", "--database-url", "URL", "FLOWSYNC_DATABASE_URL", "sqlite:///flowsync.db"),
        ("sync", "--base-url", "URL", "FLOWSYNC_BASE_URL", "https://api.itniotech.com/otp"),
        ("sync", "--flow-ids", "IDS", "FLOWSYNC_FLOW_IDS", None),
        ("sync", "--concurrency", "INTEGER", "FLOWSYNC_CONCURRENCY", "8"),
        ("sync", "--timeout", "FLOAT", "FLOWSYNC_TIMEOUT", "10"),
        ("sync", "--retries", "INTEGER", "FLOWSYNC_RETRIES", "3"),
        ("run", "--interval", "FLOAT", "FLOWSYNC_INTERVAL", "300"),
        ("run", "--cron", "CRONTAB", "FLOWSYNC_CRON", None),
        ("run", "--concurrency", "INTEGER", "FLOWSYNC_CONCURRENCY", "8"),
        ("db upgrade", "--database-url", "URL", "FLOWSYNC_DATABASE_URL", "sqlite:///flowsync.db"),
        ("status", "--database-url", "URL", "FLOWSYNC_DATABASE_URL", "sqlite:///flowsync.db"),
        ("history", "--database-url", "URL", "FLOWSYNC_DATABASE_URL", "sqlite:///flowsync.db"),
    ],
)
def test_help_shows_each_setting_with_its_type_variable_and_default(
    command: str, option: str, metavar: str, env: str, default: str | None
) -> None:
    """A command's --help names each setting's type, environment variable and default."""
    result = flowsync(*command.split(), "--help", env=flowsync_env(None, None, None))
    assert result.returncode == 0, result.stderr
    entry = re.search(rf"^  {option} (\S+)(.*?)(?=^  -)", result.stdout, re.MULTILINE | re.DOTALL)
    assert entry is not None, result.stdout
    assert entry.group(1) == metavar
    text = " ".join(entry.group(2).split())
    assert f"env var: {env}" in text
    assert (f"default: {default}" in text) if default else ("default:" not in text)


@pytest.mark.parametrize("command", ["sync", "run"])
def test_help_names_the_settings_that_have_no_flag(command: str) -> None:
    """`sync --help` and `run --help` say the key and the secret come from the environment or the file."""
    result = flowsync(command, "--help", env=flowsync_env(None, None, None))
    assert re.search(r"^  FLOWSYNC_API_KEY\s.*\[key: api_key\]", result.stdout, re.MULTILINE)
    assert re.search(r"^  FLOWSYNC_API_SECRET\s", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "env", "file", "named"),
    [
        (["--database-url", "postgresql://flowsync:{password}@db:port/x"], {}, "", "--database-url"),
        (
            [],
            {"FLOWSYNC_DATABASE_URL": "postgresql://flowsync:{password}@db:port/x"},
            "",
            "FLOWSYNC_DATABASE_URL",
        ),
        (
            [],
            {},
            'database_url = "postgresql://flowsync:{password}@db:port/x"\n',
            "database_url in flowsync.toml",
        ),
        (["--base-url", "ftp://flowsync:{password}@api.example/otp"], {}, "", "--base-url"),
        (["--base-url", "http://flowsync:{password}@api.example/otp"], {}, "", "--base-url"),
        ([], {"FLOWSYNC_BASE_URL": "https://flowsync:{password}@/otp"}, "", "FLOWSYNC_BASE_URL"),
        ([], {}, 'base_url = "http://flowsync:{password}@127.0.0.1/otp"\n', "base_url in flowsync.toml"),
        ([], {}, 'api_secret = "{password}\\u0007"\n', "api_secret in flowsync.toml"),
    ],
)
def test_a_bad_value_is_named_by_where_it_came_from_and_never_echoed(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str, named: str
) -> None:
    """The error line names the flag, variable or file key that was read, and repeats no password."""
    password = "hunter2-Xq7"
    if file:
        (tmp_path / "flowsync.toml").write_text(file.format(password=password))
    environ = flowsync_env(None, None, None, **{k: v.format(password=password) for k, v in env.items()})
    result = flowsync("sync", *(arg.format(password=password) for arg in args), env=environ, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"flowsync: configuration error: {named}: ")
    assert password not in result.stderr
    assert f"flowsync:{password[:3]}" not in result.stderr  # nor the user:password pair, in part


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["sync", "--config", "x.toml"], "flowsync --config PATH sync"),
        (["sync", "--config=x.toml"], "flowsync --config PATH sync"),
        (["status", "-v"], "flowsync -v status"),
        (["history", "-vv"], "flowsync -v history"),
        (["run", "--quiet"], "flowsync --quiet run"),
        (["db", "upgrade", "-q"], "flowsync -q db upgrade"),
    ],
)
def test_a_global_option_after_the_command_gets_a_hint(args: list[str], hint: str) -> None:
    """-v, -q and --config given after the command exit 2 with a line saying they go before it."""
    result = flowsync(*args, env=flowsync_env(None, None, None))
    assert result.returncode == 2
    assert "goes before the command" in result.stderr
    assert hint in result.stderr


def test_an_unknown_option_after_the_command_is_still_just_unknown() -> None:
    """An option that is nobody's gets click's own answer, not a misleading hint."""
    result = flowsync("sync", "--verbosity", env=flowsync_env(None, None, None))
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "before the command" not in result.stderr


def test_settings_come_from_the_file_when_nothing_overrides_them(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    """A flowsync.toml holding every setting is enough to run a sync; a flag beats it."""
    database = tmp_path / "from-file.db"
    (tmp_path / "flowsync.toml").write_text(
        f'database_url = "sqlite:///{database}"\nbase_url = "{sim.base_url}"\n'
        f'api_key = "{sim.config.api_key}"\napi_secret = "{sim.config.api_secret}"\nflow_ids = [1, "3-4"]\n'
    )
    env = flowsync_env(None, None, None)
    assert flowsync("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert flowsync("sync", env=env, cwd=tmp_path).returncode == 0
    assert sim.stats.requests == {"details": 3}
    assert flowsync("sync", "--flow-ids", "2", env=env, cwd=tmp_path).returncode == 0
    assert sim.stats.requests == {"details": 4}


def test_sync_before_db_upgrade_exits_2_and_writes_nothing(sim: SimulatorHandle, database_url: str) -> None:
    """On a database without flowsync's tables, `sync` says to run `flowsync db upgrade`."""
    result = flowsync("sync", env=flowsync_env(sim, database_url))
    assert result.returncode == 2
    assert "flowsync db upgrade" in result.stderr
    assert sim.stats.requests == {}
    engine = create_engine(database_url)
    try:
        if not database_url.startswith("sqlite"):
            assert sa.inspect(engine).get_table_names() == []
        else:
            assert not Path(database_url.removeprefix("sqlite:///")).exists()
    finally:
        engine.dispose()


def test_exit_codes_follow_the_contract(sim: SimulatorHandle, database_url: str) -> None:
    """0 all stored, 1 a flow failed, 1 account refused, 3 lock held; status and history read the result."""
    env = flowsync_env(sim, database_url, "1-5")
    upgrade = flowsync("db", "upgrade", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert flowsync("db", "upgrade", env=env).returncode == 0, "upgrade is safe to repeat"

    ok = flowsync("sync", env=env)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"run 1 ok in .*: 5 requested, 5 created", ok.stderr)

    sim.faults.persist(2, Fault(FaultKind.EMPTY_BODY))
    assert flowsync("sync", env=env).returncode == 1

    sim.faults.set_account(Fault.api("-2"))
    refused = flowsync("sync", env=env)
    assert refused.returncode == 1
    assert "-2" in refused.stderr
    sim.faults.set_account(None)

    engine = create_engine(database_url)
    try:
        with run_lock(engine):
            locked = flowsync("sync", env=env)
        assert locked.returncode == 3
        assert "another flowsync run" in locked.stderr
    finally:
        engine.dispose()

    status = flowsync("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "partial" in status.stdout
    assert "failed" in status.stdout
    history = flowsync("history", "--flow-id", "2", env=env)
    assert history.returncode == 0
    assert "payload error" in history.stdout
    assert "created" in history.stdout


def test_the_secret_and_signatures_never_appear(sim: SimulatorHandle, database_url: str) -> None:
    """Across failures at DEBUG level, neither the secret nor any Sign value is printed or stored."""
    env = flowsync_env(sim, database_url, "1-6")
    secret = sim.config.api_secret
    started = int(time.time()) - 5
    assert flowsync("db", "upgrade", env=env).returncode == 0
    sim.faults.queue(1, Fault.api("-16"))
    sim.faults.persist(2, Fault.http(500))
    sim.faults.persist(3, Fault.html())
    sim.faults.persist(4, Fault(FaultKind.RESET))
    outputs = [flowsync("-v", "sync", env=env)]
    sim.faults.set_account(Fault.api("-1"))
    outputs.append(flowsync("-v", "sync", env=env))
    outputs.append(flowsync("-v", "run", "--once", env=env))
    outputs.append(flowsync("history", "--limit", "0", env=env))
    outputs.append(flowsync("status", env=env))
    signs = {
        hashlib.md5(f"{sim.config.api_key}{secret}{t}".encode()).hexdigest()
        for t in range(started - 120, int(time.time()) + 120)
    }
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert "flow 2" in text, "the failures were really exercised"
    assert secret not in text
    assert not [s for s in signs if s in text]
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            for table in ("flows", "flow_nodes", "flow_history", "sync_runs"):
                dump = repr(connection.exec_driver_sql(f"SELECT * FROM {table}").all())
                assert secret not in dump
                assert not [s for s in signs if s in dump]
    finally:
        engine.dispose()


def test_the_console_script_and_python_dash_m_are_the_same_command() -> None:
    """The installed `flowsync` script and `python -m sync` give the same answers."""
    script = Path(sys.executable).parent / "flowsync"
    env = flowsync_env(None, None, None)
    by_module = flowsync("--version", env=env)
    by_script = subprocess.run(
        [str(script), "--version"], env=env, capture_output=True, text=True, check=False
    )
    assert by_module.returncode == by_script.returncode == 0
    assert by_module.stdout == by_script.stdout
    assert by_script.stdout.startswith("flowsync, version")


@pytest.mark.parametrize(
    ("args", "env", "ignored", "replacing"),
    [
        (
            ["run", "--once", "--interval", "60"],
            {"FLOWSYNC_CRON": "0 * * * *"},
            "--interval",
            "FLOWSYNC_CRON",
        ),
        (
            ["run", "--once", "--cron", "0 * * * *"],
            {"FLOWSYNC_INTERVAL": "60"},
            "FLOWSYNC_INTERVAL",
            "--cron",
        ),
    ],
)
def test_the_worker_says_when_a_cron_schedule_replaces_a_set_interval(
    sim: SimulatorHandle, tmp_path: Path, args: list[str], env: dict[str, str], ignored: str, replacing: str
) -> None:
    """Both set, wherever from: the run goes ahead on the cron schedule and a warning names both."""
    database = f"sqlite:///{tmp_path / 'flowsync.db'}"
    assert flowsync("db", "upgrade", env=flowsync_env(None, database, None)).returncode == 0
    result = flowsync(*args, env=flowsync_env(sim, database, "1-3", **env), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{ignored} is ignored: the cron schedule ({replacing}) replaces the interval" in result.stderr
