"""The `flowsync` command: parse, configure logging, call the library, map errors to exit codes.

Exit codes: 0 success; 1 a run finished with failed flows or ended early; 2 usage,
configuration or schema problem (nothing contacted); 3 another run holds the lock.

What only one command needs (Alembic, APScheduler, the simulator, the demo, rich's
tables) is imported inside that command, so a `flowsync sync` started by cron every
few minutes does not pay for loading them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from sync import __version__
from sync.app import jobs
from sync.app.settings import SETTINGS, Settings, load_settings
from sync.cli.logs import configure_logging
from sync.cli.options import FlowsyncGroup
from sync.cli.progress_bar import progress_for
from sync.core.instants import parse_instant
from sync.core.safe_text import escape_unsafe
from sync.core.selection import MAX_FLOW_ID, MIN_FLOW_ID
from sync.errors import ConfigError, FlowsyncError, LockHeld, SchemaError, StoreError
from sync.pipeline.loop import DeletionGuard
from sync.pipeline.stop import StopRequest
from sync.store.database import safe_url, schema_revisions
from sync.vocabulary import Trigger

log = logging.getLogger("sync")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
PIPED_WIDTH = 200
FORMATS = ("table", "json", "csv")
NEVER_FETCHED_LISTED = 1000  # beyond that, a range was most likely mistyped: the total says how many


def _say(message: str) -> None:
    """One line on stderr; a message may quote the database or the vendor, so it is escaped."""
    click.echo(f"flowsync: {escape_unsafe(message)}", err=True)


def _fail(message: str, code: int) -> NoReturn:
    _say(message)
    sys.exit(code)


def _stop_at_closed_pipe() -> NoReturn:
    """The reader of our output went away (`flowsync status | head`): stop quietly and exit 0, as `cat` does.

    Standard output is pointed at /dev/null first, so that the flush at exit does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_OK)


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """Every deliberate error becomes one line on stderr and its exit code; no tracebacks."""
    try:
        yield
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_USAGE)
    except SchemaError as exc:
        _fail(str(exc), EXIT_USAGE)
    except LockHeld as exc:
        _fail(f"{exc}; nothing done", EXIT_LOCKED)
    except StoreError as exc:
        _fail(f"database error: {exc}", EXIT_FAILED)
    except FlowsyncError as exc:
        _fail(str(exc), EXIT_FAILED)
    except BrokenPipeError:
        _stop_at_closed_pipe()
    except Exception as exc:
        # A bug, not an operator's mistake: one line by default, the traceback with -v.
        log.debug("unexpected error", exc_info=True)
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (run with -v for details)", EXIT_FAILED)


class Context:
    """What the group options leave for the commands."""

    def __init__(self, config_file: Path | None, verbosity: int) -> None:
        self.config_file = config_file
        self.verbosity = verbosity

    def settings(
        self, flags: Mapping[str, str | None], only: Sequence[str] | None = None, quieter: int = 0
    ) -> Settings:
        """The settings (and the logging they ask for), from the flags, the environment and the file."""
        settings = load_settings(flags, os.environ, self.config_file, only)
        secrets = [settings.api_secret.get_secret_value() if settings.api_secret else ""]
        secrets.append(settings.audit_key.get_secret_value() if settings.audit_key else "")
        secrets.append(settings.notify_url or "")
        configure_logging(self.verbosity - quieter, secrets=secrets, log_format=settings.log_format)
        return settings


pass_context = click.make_pass_decorator(Context)


LOGGING = ("log_format",)
DATABASE = ("database_url", *LOGGING)
AUDIT = ("audit_key",)  # what chains the history, and checks it
API = (
    "base_url",
    "api_key",
    "api_secret",
    "flow_ids",
    "concurrency",
    "timeout",
    "retries",
    "max_details_bytes",
    "max_listing_bytes",
)
SCHEDULE = ("interval", "cron")
WATCHED = ("metrics_file", "notify_url")  # what a run reports to, besides its own tables
SERVED = ("metrics_port", "metrics_host")  # what only the long-running worker serves


@click.group(cls=FlowsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowsync")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PATH",
    help="TOML settings file  [default: ./flowsync.toml when present]",
)
@click.option("-v", "--verbose", count=True, help="more log output (DEBUG)")
@click.option("-q", "--quiet", count=True, help="less log output (warnings and errors only)")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, verbose: int, quiet: int) -> None:
    """Keep a SQL database in step with the OTP vendor's task flows, with a change history."""
    ctx.obj = Context(config_file, verbose - quiet)


@cli.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade", settings=DATABASE + AUDIT)
@pass_context
def db_upgrade(context: Context, /, **flags: str | None) -> None:
    """Bring the schema to the latest migration; safe to repeat."""
    from sync.store import migrate

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        where = safe_url(settings.database_url)

        def say_waiting() -> None:
            _say(
                f"database {where}: a sync holds the run lock; waiting up to "
                f"{migrate.UPGRADE_LOCK_WAIT_S:g} s for it to finish"
            )

        with jobs.database(settings) as engine:
            before = schema_revisions(engine)
            migrate.upgrade(engine, on_wait=say_waiting, chain=settings.chain)
            after = schema_revisions(engine)
        now_at = ", ".join(sorted(after))
        if context.verbosity < 0:
            return  # -q: the exit status says it
        if before == after:
            _say(f"database {where} was already at the latest schema ({now_at})")
        elif not before:
            _say(f"database {where}: created flowsync's tables (schema {now_at})")
        else:
            _say(f"database {where}: upgraded schema {', '.join(sorted(before))} -> {now_at}")


@cli.command(settings=DATABASE + API + AUDIT + WATCHED)
@click.option(
    "--confirm-deletions",
    is_flag=True,
    help="let this run's flow list mark more than half of the known flows deleted (all mode)",
)
@pass_context
def sync(context: Context, /, *, confirm_deletions: bool, **flags: str | None) -> None:
    """Run one sync over the configured flows, then exit."""
    with _errors_to_exit_codes():
        settings = context.settings(flags)
        api = settings.require_api()
        stop = StopRequest()
        _stop_on_signals(stop)
        with jobs.database(settings) as engine:
            report = jobs.sync_once(
                settings,
                api,
                engine,
                triggered_by=Trigger.MANUAL,
                stop=stop,
                progress=progress_for(Console(stderr=True)),
                guard=DeletionGuard(confirmed=confirm_deletions),
            )
        sys.exit(report.exit_code)


@cli.command(settings=DATABASE + API + AUDIT + SCHEDULE + WATCHED + SERVED)
@click.option("--once", is_flag=True, help="run one sync now and exit with its status, like `sync`")
@pass_context
def run(context: Context, /, *, once: bool, **flags: str | None) -> None:
    """The worker: sync at start, then on the interval or cron schedule, until SIGTERM/SIGINT/SIGHUP."""
    from sync.app.worker import run_worker

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        api = settings.require_api()
        if settings.interval_ignored:
            log.warning(
                "%s is ignored: the cron schedule (%s) replaces the interval",
                settings.source("interval"),
                settings.source("cron"),
            )
        stop = StopRequest()
        _stop_on_signals(stop)
        with jobs.database(settings) as engine:
            if once:
                report = jobs.sync_once(settings, api, engine, triggered_by=Trigger.SCHEDULE, stop=stop)
                sys.exit(report.exit_code)
            jobs.check_ready(engine)  # a worker that can never succeed should say so at once
            with jobs.served_metrics(settings) as metrics:
                run_worker(
                    lambda: jobs.sync_once(
                        settings, api, engine, triggered_by=Trigger.SCHEDULE, stop=stop, metrics=metrics
                    ),
                    interval_s=settings.interval_s,
                    cron=settings.cron,
                    stop=stop,
                )


@cli.command("config", settings=tuple(SETTINGS))
@pass_context
def config(context: Context, /, **flags: str | None) -> None:
    """The effective settings and where each came from (flag, environment, file or default)."""
    from sync.app.settings import effective

    with _errors_to_exit_codes():
        rows = effective(context.settings(flags))
        width = max(len(key) for key, _, _ in rows)
        value_width = min(60, max(len(value) for _, value, _ in rows))
        for key, value, source in rows:
            click.echo(escape_unsafe(f"{key:<{width}}  {value:<{value_width}}  {source}"))


@cli.command(settings=DATABASE)
@click.option(
    "--max-age",
    "max_age_s",
    type=click.FloatRange(min=0, min_open=True),
    help="seconds the latest successful run may be old [default: three intervals of the schedule]",
)
@click.option(
    "--max-failing", type=click.IntRange(min=0), help="flows that may be failing [default: no limit]"
)
@pass_context
def check(
    context: Context, /, *, max_age_s: float | None, max_failing: int | None, **flags: str | None
) -> None:
    """Health for monitors and probes: 0 healthy, 1 not (with why), 2 no usable database."""
    from sync.app.health import default_max_age_s, evaluate

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        now = jobs.utc_now()
        try:
            with jobs.database(settings) as engine:
                jobs.check_ready(engine)
                facts = jobs.health_facts(engine)
        except (SchemaError, StoreError) as exc:
            _fail(f"check: no usable database: {exc}", EXIT_USAGE)
        limit_s = (
            max_age_s if max_age_s is not None else default_max_age_s(settings.interval_s, settings.cron, now)
        )
        verdict = evaluate(facts, now=now, max_age_s=limit_s, max_failing=max_failing)
        # The reason may quote a run's stored error, which holds the vendor's text.
        click.echo(escape_unsafe(f"{'healthy' if verdict.healthy else 'unhealthy'}: {verdict.reason}"))
        sys.exit(EXIT_OK if verdict.healthy else EXIT_FAILED)


def _format_option() -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="a table for people; json or csv (exact values, the tables' column names) for programs",
    )


class _Moment(click.ParamType[datetime]):
    """A command-line moment: `YYYY-MM-DD` or ISO 8601, UTC when it has no offset."""

    name = "DATE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@cli.command(settings=(*DATABASE, "flow_ids"))
@click.option("--all", "show_all", is_flag=True, help="list every flow, not just the first 100 (table)")
@click.option(
    "--runs", default=10, show_default=True, type=click.IntRange(min=1), help="how many recent runs"
)
@_format_option()
@pass_context
def status(
    context: Context, /, *, show_all: bool, runs: int, output_format: str, **flags: str | None
) -> None:
    """The latest runs, every flow's sync state, and requested flows never fetched."""
    from sync.cli import records
    from sync.cli.render import flows_table, never_fetched_table, runs_table
    from sync.cli.wording import status_notes
    from sync.store import reports

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        every = show_all or output_format != "table"  # a program gets every flow, never a first page
        with jobs.database(settings) as engine:
            jobs.check_ready(engine)
            report = reports.status(
                engine,
                runs=runs,
                flow_limit=None if every else 100,
                requested=settings.flow_ids,
                never_fetched_limit=NEVER_FETCHED_LISTED if every else 100,
            )
        if output_format == "json":
            _out(records.as_json(records.status_record(report)))
        elif output_format == "csv":
            _out(records.as_csv(*records.status_rows(report)), end="")
        else:
            console = _stdout_console()
            console.print(runs_table(report))
            console.print(flows_table(report))
            if report.never_fetched_total:
                console.print(never_fetched_table(report))
        for note in status_notes(report):
            _say(note)


@cli.command(settings=DATABASE)
@click.option("--flow-id", type=click.IntRange(MIN_FLOW_ID, MAX_FLOW_ID), help="only this flow")
@click.option("--run-id", type=click.IntRange(1, MAX_FLOW_ID), help="only this run")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="how many rows (0: all); a table counts a grouped error streak as one",
)
@_format_option()
@pass_context
def history(
    context: Context,
    /,
    *,
    flow_id: int | None,
    run_id: int | None,
    limit: int,
    output_format: str,
    **flags: str | None,
) -> None:
    """Change and error events, newest first, with readable diffs; repeated errors grouped in the table."""
    from sync.cli import records
    from sync.cli.render import history_table
    from sync.cli.streaks import group_streaks
    from sync.cli.wording import history_notes
    from sync.store import reports

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        with jobs.database(settings) as engine:
            jobs.check_ready(engine)
            if output_format == "table":
                pages = reports.history_pages(engine, flow_id=flow_id, run_id=run_id)
                rows = group_streaks(
                    pages,
                    limit or None,
                    lambda newest: reports.error_streak(engine, newest, run_id=run_id),
                )
                entries = [row.newest for row in rows]
            else:  # one record per stored row, for programs
                entries = reports.history(engine, flow_id=flow_id, run_id=run_id, limit=limit or None)
            if not entries:
                _fail_when_unknown(reports.unknown(engine, flow_id=flow_id, run_id=run_id))
        if output_format == "json":
            _out(records.as_json(records.history_records(entries)))
        elif output_format == "csv":
            _out(records.as_csv(*records.history_rows(entries)), end="")
        else:
            _stdout_console().print(history_table(rows))
        for note in history_notes(entries):
            _say(note)


def _fail_when_unknown(unknown: list[str]) -> None:
    """`history --run-id N` / `--flow-id N` naming what the database has never held: exit 1 saying so."""
    if unknown:
        _fail(f"no {' and no '.join(unknown)} in this database", EXIT_FAILED)


@cli.command(settings=DATABASE)
@click.argument("flow_id", type=click.IntRange(1, MAX_FLOW_ID))
@click.option(
    "--as-of",
    metavar="TIMESTAMP",
    type=_Moment(),
    help="the configuration current at this instant: ISO 8601, UTC unless it has an offset "
    "(2026-11-24, 2026-11-24T12:00:00, 2026-11-24T14:00:00+02:00)",
)
@_format_option()
@pass_context
def show(
    context: Context,
    /,
    *,
    flow_id: int,
    as_of: datetime | None,
    output_format: str,
    **flags: str | None,
) -> None:
    """One flow's configuration, now or as of an instant, with the labels of its codes."""
    from sync.cli import records
    from sync.cli.render import config_view
    from sync.cli.wording import describe_missing
    from sync.store import reports

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        with jobs.database(settings) as engine:
            jobs.check_ready(engine)
            config = reports.flow_config(engine, flow_id, as_of)
        if isinstance(config, reports.NoConfig):
            _fail(describe_missing(config), EXIT_FAILED)
        if output_format == "json":
            _out(records.as_json(records.config_record(config)))
        elif output_format == "csv":
            _out(records.as_csv(*records.config_rows(config)), end="")
        else:
            _stdout_console().print(config_view(config))


@cli.command(settings=DATABASE)
@click.option(
    "--before",
    type=_Moment(),
    help="prune what is older than this: YYYY-MM-DD or ISO 8601 (UTC when no offset is given)",
)
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="instead of --before: prune what is older than this many days (for cron)",
)
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@pass_context
def prune(
    context: Context,
    /,
    *,
    before: datetime | None,
    keep_days: int | None,
    dry_run: bool,
    **flags: str | None,
) -> None:
    """Delete error events and unreferenced runs older than a date; configuration events are kept."""
    if (before is None) == (keep_days is None):
        raise click.UsageError("give exactly one of --before DATE and --keep-days DAYS")
    with _errors_to_exit_codes():
        settings = context.settings(flags)
        cutoff = before if before is not None else jobs.utc_now() - timedelta(days=keep_days or 0)

        def say_waiting() -> None:
            _say(f"a sync holds the run lock; waiting up to {jobs.PRUNE_LOCK_WAIT_S:g} s for it to finish")

        with jobs.database(settings) as engine:
            counts = jobs.prune_history(engine, cutoff, dry_run=dry_run, on_wait=say_waiting)
        verb = "would delete" if dry_run else "deleted"
        when = cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"flow_history: {verb} {counts.flow_history} error events older than {when}")
        click.echo(
            f"sync_runs: {verb} {counts.sync_runs} runs older than {when} that no kept event refers to"
        )


@cli.command(settings=DATABASE + AUDIT)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="one line per disagreement and a summary, or one JSON document",
)
@pass_context
def verify(context: Context, /, *, output_format: str, **flags: str | None) -> None:
    """Recompute the audit chain, replay the history against the tables: 0 agree, 1 not, 2 no database."""
    from sync.cli.audit_report import JsonReport, TableReport
    from sync.store.verify import Verification

    with _errors_to_exit_codes():
        settings = context.settings(flags)
        report = JsonReport() if output_format == "json" else TableReport()
        try:
            with jobs.database(settings) as engine:
                jobs.check_ready(engine)
                verification = Verification(engine, settings.chain)
                for disagreement in verification:
                    report.disagreement(disagreement)
        except (SchemaError, StoreError) as exc:
            _fail(f"verify: no usable database: {exc}", EXIT_USAGE)
        report.summary(verification.summary)
        sys.exit(EXIT_OK if verification.summary.ok else EXIT_FAILED)


@cli.command(settings=LOGGING)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("flowsync-demo"),
    show_default=True,
    help="where the demo's SQLite file goes (recreated on every demo)",
)
@pass_context
def demo(context: Context, /, *, directory: Path, **flags: str | None) -> None:
    """A self-contained tour: simulator, several sync rounds into SQLite, then status and history."""
    from sync.cli.demo import run_demo

    with _errors_to_exit_codes():
        context.settings(flags, only=LOGGING, quieter=1)
        if context.verbosity <= 0:
            # The tour prints each run's outcome itself; the runs' own log lines would say it twice.
            logging.getLogger("sync.pipeline.loop").setLevel(logging.CRITICAL)
        run_demo(directory, _stdout_console())


@cli.command("fake-api", settings=LOGGING)
@click.option("--host", default="127.0.0.1", show_default=True, help="loopback address to listen on")
@click.option("--port", default=8080, show_default=True, help="port to listen on (0 picks a free one)")
@click.option("--flows", "flow_count", default=50, show_default=True, help="how many flows the account has")
@click.option("--latency-ms", default=0.0, show_default=True, help="added to every answer")
@click.option("--seed", default=1, show_default=True, help="seed for the generated flows")
@click.option("--api-key", default="demo-key", show_default=True)
@click.option("--api-secret", default="demo-secret", show_default=True)
@pass_context
def fake_api(
    context: Context,
    /,
    *,
    host: str,
    port: int,
    flow_count: int,
    latency_ms: float,
    seed: int,
    api_key: str,
    api_secret: str,
    **flags: str | None,
) -> None:
    """Serve the built-in simulator of the vendor API on loopback."""
    from sync.simulator import SimulatorConfig, serve_forever

    with _errors_to_exit_codes():
        context.settings(flags, only=LOGGING)
    try:
        config = SimulatorConfig(
            api_key=api_key,
            api_secret=api_secret,
            flow_count=flow_count,
            seed=seed,
            latency_s=latency_ms / 1000,
        )
        serve_forever(config, host=host, port=port)
    except (ValueError, OSError) as exc:
        _fail(f"fake-api: {exc}", EXIT_USAGE)


def _out(text: str, end: str = "\n") -> None:
    """Machine output (JSON, CSV) to stdout, exactly as encoded."""
    click.echo(text + end, nl=False)


class _StdoutConsole(Console):
    def on_broken_pipe(self) -> None:
        # rich's own handling exits 1; a reader that stopped reading is not a failure.
        _stop_at_closed_pipe()


def _stdout_console() -> Console:
    """The terminal's width on a terminal; piped, a fixed 200 columns whatever `COLUMNS` says, wide
    enough that only the free-text columns (a run's error, an event's text) fold, never an ID or a time."""
    return _StdoutConsole() if sys.stdout.isatty() else _StdoutConsole(width=PIPED_WIDTH)


def _stop_on_signals(stop: StopRequest) -> None:
    """SIGTERM, SIGINT and SIGHUP ask the run to finish the flows in hand and stop; a second one kills.

    A hang-up (the terminal or SSH session closing) would otherwise kill the process mid-run and
    leave its run `running`. One that was ignored when the process started (`nohup`) stays
    ignored: whoever started flowsync asked for it to outlive the terminal.
    """

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        log.warning(
            "received %s: stopping after the flows already fetched are written", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handler)


def main() -> None:
    try:
        cli(prog_name="flowsync")
    except BrokenPipeError:  # raised outside a command, by click's own output
        _stop_at_closed_pipe()
