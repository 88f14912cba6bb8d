"""`show`, `--format json|csv`, never-fetched flows, partial runs and grouped error streaks, as
operators run them: the real command on a scripted history written by real syncs.

One history per database, built once per module and only read by the tests: six runs over
twenty days with the run clock set to each run's instant, through the simulator and the real
store. Flow 1 changes a node's status; flow 3 is deleted and comes back; flow 2 fails with an
HTML body and then twice with `-22`; flow 4 is deleted in the last run; flow 5 never exists.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.cli.records import FLOW_COLUMNS, HISTORY_COLUMNS
from sync.simulator import Fault, FaultKind, SimulatorConfig, running_simulator
from sync.store import migrate
from sync.store.database import create_engine
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import BACKENDS, fresh_database, settings_for
from tests.process import COMMAND, flowsync, flowsync_env

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)
NOW = datetime.now(UTC).replace(microsecond=0)
NOON = NOW.replace(hour=12, minute=0, second=0)
RUNS = [NOON - timedelta(days=days) for days in (20, 10, 5, 2, 1)] + [NOW - timedelta(hours=1)]
MISSING_REASON = "API status -22 (parameter error: flow 5 does not exist)"


def node(waiting_time: int, status: int, channel: str, channel_cut: int) -> dict[str, Any]:
    return {"waitingTime": waiting_time, "status": status, "channel": channel, "channelCut": channel_cut}


def flow(flow_id: int, name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"flowId": flow_id, "name": name, "flow": list(nodes)}


@dataclass(frozen=True)
class Scripted:
    database_url: str
    engine: Engine

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return flowsync(*args, env=flowsync_env(None, self.database_url, flow_ids=None))


def write_history(engine: Engine, database_url: str) -> None:
    with running_simulator(SimulatorConfig(flow_count=0)) as sim:
        sim.catalog.put(flow(1, "Login OTP", node(30, 2, "sms", 0), node(60, 2, "call", 1)))
        sim.catalog.put(flow(2, "Signup [bold]OTP[/bold]", node(45, 1, "sms", 0)))
        sim.catalog.put(flow(3, "Payment", node(90, 2, "call", 1)))
        sim.catalog.put(flow(4, "Reset", node(30, 1, "sms", 0)))
        settings = settings_for(sim, database_url, "1-5")

        def run(at: datetime) -> None:
            jobs.sync_once(
                settings,
                settings.require_api(),
                engine,
                triggered_by=Trigger.SCHEDULE,
                backoff=FAST,
                clock=lambda: at,
            )

        run(RUNS[0])
        sim.catalog.put(flow(1, "Login OTP", node(30, 1, "sms", 0), node(60, 2, "call", 1)))
        run(RUNS[1])
        sim.faults.persist(3, Fault(FaultKind.NULL_DATA))
        run(RUNS[2])
        sim.faults.persist(3, None)
        sim.faults.persist(2, Fault.html())
        run(RUNS[3])
        sim.faults.persist(2, Fault.api("-22"))
        run(RUNS[4])
        sim.faults.persist(4, Fault(FaultKind.NULL_DATA))
        run(RUNS[5])


@contextmanager
def scripted_on(backend: str, tmp_path: Path) -> Iterator[Scripted]:
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine)
            write_history(engine, url)
            yield Scripted(url, engine)
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def scripted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    """The scripted history on one database, shared by the read-only tests of this module."""
    with scripted_on(request.param, tmp_path_factory.mktemp(request.param)) as history:
        yield history


@pytest.fixture(scope="module")
def scripted_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    """The same history on SQLite alone, for what does not depend on the database (the output side)."""
    with scripted_on("sqlite", tmp_path_factory.mktemp("output")) as history:
        yield history


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def csv_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def iso(moment: datetime) -> str:
    return moment.isoformat()


def flat(text: str) -> str:
    """Table text without borders and spacing, so a cell folded over lines still compares."""
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│┃")


# show


def test_show_prints_the_current_configuration_with_labels(scripted: Scripted) -> None:
    """`show 1` names the version and since when, and every code with its label."""
    result = scripted.run("show", "1")
    assert result.returncode == 0, result.stderr
    assert f'flow 1 "Login OTP": version 2, current since {RUNS[1]:%Y-%m-%d %H:%M:%S}' in result.stdout
    assert "1 (sending failed)" in result.stdout
    assert "2 (not verified)" in result.stdout
    assert "1 (do not switch)" in result.stdout
    assert "0 (switch channel)" in result.stdout


def test_show_json_is_the_snapshot_shape_with_labels_and_the_version(scripted: Scripted) -> None:
    """The JSON document is exactly the snapshot shape plus labels, the version and its time span."""
    assert json_of(scripted.run("show", "1", "--format", "json")) == {
        "flow_id": 1,
        "name": "Login OTP",
        "nodes": [
            {
                "position": 1,
                "waiting_time": 30,
                "status": 1,
                "status_label": "sending failed",
                "channel": "sms",
                "channel_cut": 0,
                "channel_cut_label": "switch channel",
            },
            {
                "position": 2,
                "waiting_time": 60,
                "status": 2,
                "status_label": "not verified",
                "channel": "call",
                "channel_cut": 1,
                "channel_cut_label": "do not switch",
            },
        ],
        "version_no": 2,
        "valid_from": iso(RUNS[1]),
        "valid_to": None,
        "deleted": False,
        "deleted_at": None,
        "as_of": None,
        "sync_state": "ok",
        "last_error": None,
    }


@pytest.mark.parametrize(
    "as_of",
    [
        (RUNS[1] - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        (RUNS[1] - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        (RUNS[1] - timedelta(hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        (RUNS[1] + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+03:00"),  # 2 h before RUNS[1] in UTC
        (RUNS[1] - timedelta(days=1)).strftime("%Y-%m-%d"),
    ],
    ids=["iso-T", "iso-space", "iso-Z", "offset", "date-only"],
)
def test_show_as_of_gives_the_version_current_then(scripted: Scripted, as_of: str) -> None:
    """Before the second run flow 1 was at version 1 (both nodes `not verified`), in every accepted form."""
    shown = json_of(scripted.run("show", "1", "--as-of", as_of, "--format", "json"))
    assert shown["version_no"] == 1
    assert [n["status_label"] for n in shown["nodes"]] == ["not verified", "not verified"]
    assert shown["valid_from"] == iso(RUNS[0])
    assert shown["valid_to"] == iso(RUNS[1])
    text = scripted.run("show", "1", "--as-of", as_of)
    assert "version 1, current from" in text.stdout
    assert f"until {RUNS[1]:%Y-%m-%d %H:%M:%S}" in text.stdout


def test_show_as_of_a_deletion_shows_the_flow_deleted_with_its_last_configuration(scripted: Scripted) -> None:
    """Between its deletion and its return, flow 3 shows as deleted, with the configuration it had."""
    between = (RUNS[2] + timedelta(hours=1)).isoformat()
    shown = json_of(scripted.run("show", "3", "--as-of", between, "--format", "json"))
    assert shown["deleted"] is True
    assert shown["deleted_at"] == iso(RUNS[2])
    assert shown["version_no"] == 1
    assert [n["waiting_time"] for n in shown["nodes"]] == [90]
    text = scripted.run("show", "3", "--as-of", between)
    assert f"deleted (at {RUNS[2]:%Y-%m-%d %H:%M:%S})" in text.stdout
    later = json_of(scripted.run("show", "3", "--format", "json"))
    assert (later["deleted"], later["version_no"]) == (False, 2)


def test_show_a_flow_deleted_now_says_so(scripted: Scripted) -> None:
    """Flow 4 was deleted by the last run: `show` says deleted and keeps its last nodes."""
    shown = json_of(scripted.run("show", "4", "--format", "json"))
    assert (shown["deleted"], shown["deleted_at"], shown["sync_state"]) == (True, iso(RUNS[5]), "deleted")
    assert len(shown["nodes"]) == 1
    assert "deleted (at" in scripted.run("show", "4").stdout


def test_show_csv_has_a_header_and_one_row_per_node(scripted: Scripted) -> None:
    """CSV: one header row, then each node with its flow, version and labels."""
    rows = csv_of(scripted.run("show", "1", "--format", "csv"))
    assert [(r["position"], r["status"], r["status_label"], r["version_no"]) for r in rows] == [
        ("1", "1", "sending failed", "2"),
        ("2", "2", "not verified", "2"),
    ]
    assert all(r["name"] == "Login OTP" for r in rows)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "99"], 1, "no flow 99 in this database"),
        (["show", "5"], 1, "no flow 5 in this database"),
        (["show", "1", "--as-of", "2000-01-01"], 1, "flow 1 did not exist yet at 2000-01-01 00:00:00 UTC"),
        (["show", "1", "--as-of", "yesterday"], 2, "expected YYYY-MM-DD or an ISO 8601 timestamp"),
        (["show", "0"], 2, "FLOW_ID"),
        (["history", "--run-id", "999"], 1, "no run 999 in this database"),
        (["history", "--flow-id", "99"], 1, "no flow 99 in this database"),
        (["history", "--flow-id", "99", "--format", "json"], 1, "no flow 99 in this database"),
    ],
)
def test_what_is_not_there_is_said_with_exit_1_and_bad_input_exits_2(
    scripted: Scripted, args: list[str], code: int, message: str
) -> None:
    """An unknown flow or run, or an instant before the flow existed, is named; bad input is a usage error."""
    result = scripted.run(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_a_known_run_without_events_is_an_empty_history_not_an_error(scripted: Scripted) -> None:
    """`history --run-id` for a run that changed nothing shows an empty table and exits 0."""
    records = json_of(scripted.run("history", "--run-id", "1", "--flow-id", "1", "--format", "json"))
    assert [r["event"] for r in records] == ["created"]
    assert json_of(scripted.run("history", "--run-id", "2", "--flow-id", "3", "--format", "json")) == []


# status


def test_status_json_keeps_the_column_names_and_lists_the_never_fetched_flow(scripted: Scripted) -> None:
    """Runs and flows carry their tables' columns; flow 5, requested but never stored, is listed apart."""
    report = json_of(scripted.run("status", "--format", "json"))
    assert [run["id"] for run in report["runs"]] == [6, 5, 4, 3, 2, 1]
    assert set(FLOW_COLUMNS) <= set(report["flows"][0])
    assert {f["flow_id"]: f["sync_state"] for f in report["flows"]} == {
        1: "ok",
        2: "error",
        3: "ok",
        4: "deleted",
    }
    assert report["requested"] == "1-5"
    assert report["never_fetched_total"] == 1
    (missing,) = report["never_fetched"]
    assert missing == {
        "flow_id": 5,
        "attempts": 6,
        "last_attempt_at": iso(RUNS[5]),
        "last_error_kind": "api",
        "last_error_code": "-22",
        "last_error": MISSING_REASON,
    }
    latest = report["runs"][0]
    assert latest["status"] == "partial"
    assert [(f["flow_id"], f["error_kind"], f["error_code"]) for f in latest["failed_flows"]] == [
        (2, "api", "-22"),
        (5, "api", "-22"),
    ]
    failing = next(f for f in report["flows"] if f["flow_id"] == 2)
    assert (failing["consecutive_failures"], failing["failing_since"]) == (3, iso(RUNS[3]))


def test_status_csv_is_one_row_per_flow_with_never_fetched_marked(scripted: Scripted) -> None:
    """CSV: the `flows` columns, one row per flow, the never-fetched flow with state `never_fetched`."""
    result = scripted.run("status", "--format", "csv")
    rows = csv_of(result)
    assert result.stdout.splitlines()[0] == ",".join(f'"{c}"' for c in (*FLOW_COLUMNS, "corrupt"))
    assert [(r["flow_id"], r["sync_state"]) for r in rows] == [
        ("2", "error"),
        ("4", "deleted"),
        ("1", "ok"),
        ("3", "ok"),
        ("5", "never_fetched"),
    ]
    assert rows[0]["name"] == "Signup [bold]OTP[/bold]"  # exact, never read as markup
    assert rows[-1]["last_error_code"] == "-22"


def test_status_table_explains_partial_runs_streaks_and_never_fetched_flows(scripted: Scripted) -> None:
    """The table says which flows failed in a partial run, how long a flow has failed, and what never came."""
    result = scripted.run("status")
    assert result.returncode == 0, result.stderr
    text = flat(result.stdout)
    assert flat("2 flows failed: 2 (api -22), 5 (api -22)") in text
    assert flat("1 flow failed: 5 (api -22)") in text  # the first run: only the missing flow
    since = f"{RUNS[3]:%Y-%m-%d %H:%M}"
    assert flat(f"(3 failed fetches in a row since {since})") in text
    assert flat("Requested but never fetched (1 of flows 1-5)") in text
    assert flat(f"never fetched │ 6 │ {RUNS[5]:%Y-%m-%d %H:%M:%S}") in text
    assert "Signup [bold]OTP[/bold]" in result.stdout


def test_status_counts_never_fetched_flows_against_the_configured_ids(scripted: Scripted) -> None:
    """With flow IDs configured, those without a stored row are listed, untried ones as such."""
    report = json_of(scripted.run("status", "--flow-ids", "4-7", "--format", "json"))
    assert report["requested"] == "4-7"
    assert [(m["flow_id"], m["attempts"]) for m in report["never_fetched"]] == [(5, 6), (6, 0), (7, 0)]
    assert "not tried yet" in scripted.run("status", "--flow-ids", "4-7").stdout


def test_a_huge_requested_range_is_counted_not_listed(scripted: Scripted) -> None:
    """A million requested IDs: all counted, a thousand listed in JSON, a hundred in the table."""
    report = json_of(scripted.run("status", "--flow-ids", "1-1000000", "--format", "json"))
    assert report["never_fetched_total"] == 1_000_000 - 4
    assert [m["flow_id"] for m in report["never_fetched"]][:3] == [5, 6, 7]
    assert len(report["never_fetched"]) == 1000
    table = flat(scripted.run("status", "--flow-ids", "1-1000000").stdout)
    assert flat("Requested but never fetched (999996 of flows 1-1000000)") in table
    assert flat("999896 more not shown (use --all)") in table


def test_show_prints_a_name_as_text_never_markup(scripted: Scripted) -> None:
    """Brackets in a vendor's name are shown as typed in the table and kept exact in JSON."""
    assert 'flow 2 "Signup [bold]OTP[/bold]"' in scripted.run("show", "2").stdout
    assert json_of(scripted.run("show", "2", "--format", "json"))["name"] == "Signup [bold]OTP[/bold]"


# history


def test_history_groups_a_streak_of_identical_errors(scripted: Scripted) -> None:
    """Flow 5's six `-22` errors are one row with the count and the first time; flow 2's others stay apart."""
    text = flat(scripted.run("history", "--limit", "0").stdout)
    first = f"{RUNS[0]:%Y-%m-%d %H:%M}"
    assert flat(f"flow 5: api error -22, 6 times since {first}: {MISSING_REASON}") in text
    assert flat(f"api error -22, 2 times since {RUNS[4]:%Y-%m-%d %H:%M}") in text
    assert flat("payload error") in text
    assert text.count(flat("flow 5:")) == 1


def test_history_limit_counts_shown_rows_and_reads_past_them(scripted: Scripted) -> None:
    """`--limit 1` for flow 5 is one row that still counts the whole streak."""
    result = scripted.run("history", "--flow-id", "5", "--limit", "1")
    assert result.returncode == 0, result.stderr
    assert flat("6 times since") in flat(result.stdout)


def test_history_counts_a_streak_that_goes_on_past_the_rows_shown(scripted: Scripted) -> None:
    """The three newest rows are the last run's events; each streak among them is counted in full."""
    text = flat(scripted.run("history", "--limit", "3").stdout)
    assert flat(f"flow 5: api error -22, 6 times since {RUNS[0]:%Y-%m-%d %H:%M}") in text
    assert flat(f"api error -22, 2 times since {RUNS[4]:%Y-%m-%d %H:%M}") in text
    assert flat("payload error") not in text


def test_history_json_and_csv_keep_one_record_per_row(scripted: Scripted) -> None:
    """Machine output is not grouped: each stored event is one record, with the table's column names."""
    records = json_of(scripted.run("history", "--limit", "0", "--format", "json"))
    assert sum(1 for r in records if r["flow_id"] == 5) == 6
    assert list(records[0]) == [*HISTORY_COLUMNS, "corrupt"]
    assert records == sorted(records, key=lambda r: -r["id"])
    change = next(r for r in records if r["event"] == "changed")
    assert change["changes"] == [{"field": "nodes[1].status", "old": 2, "new": 1}]
    rows = csv_of(scripted.run("history", "--limit", "0", "--format", "csv"))
    assert len(rows) == len(records)
    assert json.loads(next(r for r in rows if r["event"] == "changed")["changes"]) == change["changes"]


def test_history_diffs_show_codes_with_their_labels(scripted: Scripted) -> None:
    """A changed status reads `2 (not verified) -> 1 (sending failed)`."""
    result = scripted.run("history", "--flow-id", "1")
    assert flat('flow 1 "Login OTP": nodes[1].status 2 (not verified) -> 1 (sending failed)') in flat(
        result.stdout
    )


# a closed pipe


@pytest.mark.parametrize(
    "args",
    [["status"], ["history", "--limit", "0"], ["show", "1"], ["status", "--format", "json"]],
    ids=["status", "history", "show", "status-json"],
)
def test_a_reader_that_stops_reading_ends_the_command_quietly(
    scripted_sqlite: Scripted, args: list[str]
) -> None:
    """`flowsync status | head`: output into a closed pipe exits 0 with nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        result = subprocess.run(
            [*COMMAND, *args],
            env=flowsync_env(None, scripted_sqlite.database_url, flow_ids=None),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")
