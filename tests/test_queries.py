"""Every query of docs/queries.md and every SQL example of the README, run and checked on each backend.

A scripted history of six runs spread over twenty days is written through the real
client and store, with the run clock set to each run's instant (the run's seam for
time); then each documented query runs as written, for the database at hand, and its
answer is compared with what the script implies. The example instant and day in the
documents are replaced by ones inside the script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.simulator import Fault, FaultKind, SimulatorConfig, running_simulator
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import BACKENDS, backend_of, settings_for

ROOT = Path(__file__).resolve().parent.parent
COOKBOOK = ROOT / "docs" / "queries.md"
README = ROOT / "README.md"
EXAMPLE_INSTANT = "2026-11-24 12:00:00"
EXAMPLE_DAY = "2026-11-22"
VARIANT = {"all databases": None, "PostgreSQL": "postgresql", "MariaDB/MySQL": "mariadb", "SQLite": "sqlite"}
FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)
NOW = datetime.now(UTC).replace(microsecond=0)
NOON = NOW.replace(hour=12, minute=0, second=0)
RUNS = [NOON - timedelta(days=days) for days in (20, 10, 5, 2, 1)] + [NOW - timedelta(hours=1)]
# An hour before the second run, on the same day: a timestamp literal written in the wrong form
# (`2026-11-24T12:00:00` on SQLite) picks the version after it instead, and the test fails.
AS_OF = RUNS[1] - timedelta(hours=1)
SINCE_DAY = (NOON - timedelta(days=6)).date()


@dataclass(frozen=True)
class Query:
    question: str
    backend: str | None  # None: the same text on every database
    sql: str


def cookbook() -> list[Query]:
    """Every SQL block of docs/queries.md with the question it answers and the database it is for."""
    queries = []
    for section in re.split(r"^## ", COOKBOOK.read_text(), flags=re.MULTILINE)[1:]:
        question = section.splitlines()[0]
        for block in re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL):
            label, _, sql = block.partition("\n")
            queries.append(Query(question, VARIANT[label.removeprefix("-- ").strip()], sql))
    return queries


def statements(sql: str) -> list[str]:
    """The statements of an SQL text, without comment lines, whitespace made single."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


def node(waiting_time: int, status: int, channel: str, channel_cut: int) -> dict[str, Any]:
    return {"waitingTime": waiting_time, "status": status, "channel": channel, "channelCut": channel_cut}


def flow(flow_id: int, name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"flowId": flow_id, "name": name, "flow": list(nodes)}


@pytest.fixture
def history(engine: Engine, database_url: str) -> Engine:
    """Six runs: created; two changes; a deletion and a node added; a restore changed and a flow
    starting to fail; failing again; one more change while it still fails."""
    with running_simulator(SimulatorConfig(flow_count=0)) as sim:
        sim.catalog.put(flow(1, "Login OTP", node(30, 1, "sms", 0), node(60, 2, "call", 0)))
        sim.catalog.put(flow(2, "Signup OTP", node(45, 1, "sms", 0)))
        sim.catalog.put(flow(3, "Payment", node(90, 2, "call", 1)))
        sim.catalog.put(flow(4, "Reset", node(30, 1, "sms", 0), node(60, 2, "sms", 0)))
        settings = settings_for(sim, database_url, "1-4")

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
        sim.catalog.put(flow(1, "Login OTP", node(30, 1, "sms", 0), node(90, 2, "call", 0)))
        sim.catalog.put(flow(2, "Signup OTP v2", node(45, 1, "sms", 0)))
        run(RUNS[1])
        sim.faults.persist(3, Fault(FaultKind.NULL_DATA))
        sim.catalog.put(
            flow(4, "Reset", node(30, 1, "sms", 0), node(60, 2, "sms", 0), node(120, 1, "call", 1))
        )
        run(RUNS[2])
        sim.faults.persist(3, None)
        sim.catalog.put(flow(3, "Payment", node(90, 1, "call", 1)))
        sim.faults.persist(2, Fault.html())
        run(RUNS[3])
        sim.faults.persist(2, Fault.api("-22"))
        run(RUNS[4])
        sim.catalog.put(flow(1, "Login OTP", node(30, 1, "call", 0), node(90, 2, "call", 0)))
        run(RUNS[5])
    return engine


def normalized(value: Any) -> Any:
    """One form for what the drivers return: aware UTC datetimes, dates, ints."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", value):
        value = datetime.fromisoformat(value)
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        return date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, Decimal):
        return int(value)
    return value


def answer(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    sql = sql.replace(EXAMPLE_INSTANT, AS_OF.strftime("%Y-%m-%d %H:%M:%S"))
    sql = sql.replace(EXAMPLE_DAY, SINCE_DAY.isoformat())
    with engine.connect() as connection:
        return [tuple(normalized(v) for v in row) for row in connection.exec_driver_sql(sql)]


def expected_changes_since_the_day() -> list[tuple[Any, ...]]:
    added = [("waiting_time", "120"), ("status", "1"), ("channel", "call"), ("channel_cut", "1")]
    return [
        *((RUNS[2], 4, f"nodes[3].{a}", "added", None, v) for a, v in added),
        (RUNS[3], 3, "nodes[1].status", "modified", "2", "1"),
        (RUNS[5], 1, "nodes[1].channel", "modified", "sms", "call"),
    ]


EXPECTED: dict[str, Any] = {
    "1. The current configuration of a flow, with labels": [
        (1, 30, 1, "sending failed", "call", 0, "switch channel"),
        (2, 90, 2, "not verified", "call", 0, "switch channel"),
    ],
    "2. What changed since a day, one row per changed value": expected_changes_since_the_day(),
    "3. A flow's full configuration as of a past instant": [
        (1, "Login OTP", 1, 30, 1, "sms", 0),
        (1, "Login OTP", 2, 60, 2, "call", 0),
    ],
    "4. Every version of a flow, and how long it stayed current": [
        (1, "Login OTP", RUNS[0], RUNS[1], "created", "changed", 10 * 86400),
        (2, "Login OTP", RUNS[1], RUNS[5], "changed", "changed", (RUNS[5] - RUNS[1]) // timedelta(seconds=1)),
        (3, "Login OTP", RUNS[5], None, "changed", None, None),
    ],
    "5. Which flows are failing now, since when, with what error": [
        (2, "Signup OTP v2", RUNS[3], 3, "api", "-22", "API status -22 (parameter error)"),
    ],
    "6. Configuration changes per flow per day": [
        (1, RUNS[1].date(), 1, 1),
        (2, RUNS[1].date(), 1, 1),
        (4, RUNS[2].date(), 1, 4),
        (3, RUNS[3].date(), 1, 1),
        (1, RUNS[5].date(), 1, 1),
    ],
    "7. Which flows were deleted, and which came back, when": [(3, RUNS[2], RUNS[3])],
    "8. The total wait before a flow's first `call` node": [(1, 30), (3, 90), (4, 210)],
    "9. How many flows had a `call` node at a past instant, against now": [(2, 3)],
}


def expected_failed_runs(rows: list[tuple[Any, ...]]) -> None:
    """Question 10: the three runs where flow 2 failed, each with its error, and no other row."""
    assert [row[:7] for row in rows] == [
        (4, RUNS[3], "partial", None, 2, "payload", None),
        (5, RUNS[4], "partial", None, 2, "api", "-22"),
        (6, RUNS[5], "partial", None, 2, "api", "-22"),
    ]
    assert rows[0][7].startswith("body is an HTML page")


QUERIES = cookbook()


def test_the_cookbook_answers_every_question_the_analysts_asked() -> None:
    """Ten questions, each with one query for all databases or one per database."""
    questions = {q.question for q in QUERIES}
    assert questions == {*EXPECTED, "10. Runs that did not fully succeed, with their per-flow errors"}
    for question in questions:
        backends = {q.backend for q in QUERIES if q.question == question}
        assert backends in (
            {None},
            {"postgresql", "mariadb", "sqlite"},
            {None, "postgresql", "mariadb", "sqlite"},
        )


@pytest.mark.parametrize(
    ("query", "database_url"),
    [
        pytest.param(
            query, backend, id=f"{query.question.split('.')[0]}-{backend}-{'own' if query.backend else 'all'}"
        )
        for query in QUERIES
        for backend in ([query.backend] if query.backend else BACKENDS)
    ],
    indirect=["database_url"],
)
def test_each_cookbook_query_gives_the_answer_the_history_implies(
    history: Engine, database_url: str, query: Query
) -> None:
    """The query, as documented for this database, answers its question."""
    assert query.backend in (None, backend_of(database_url))
    rows = answer(history, query.sql)
    if query.question.startswith("10."):
        expected_failed_runs(rows)
    else:
        assert rows == EXPECTED[query.question]


def test_every_sql_example_in_the_readme_is_a_checked_cookbook_query() -> None:
    """The README shows only queries this suite checks: each of its statements is in the cookbook."""
    checked = {s for q in QUERIES for s in statements(q.sql)}
    examples = [
        s
        for block in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.DOTALL)
        for s in statements(block)
    ]
    analyst_examples = [s for s in examples if not s.upper().startswith(("CREATE", "GRANT"))]
    assert analyst_examples, "the README shows some analyst queries"
    assert [s for s in analyst_examples if s not in checked] == []
