"""`Date` and `Retry-After` as a hostile or broken server may send them: never more than a flow's error.

The client reads two headers: `Date` (the server's clock, to correct a `-16`, and the base of a
`Retry-After` date) and `Retry-After`. Whatever they hold, the outcome of a request is the flow
or an error of the client's tree (`FlowError`), never a Python error that ends the whole run; and
a `Date` that would move the signing clock by more than a day is refused, not applied.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from sync.errors import ClockSkewError, FlowError
from sync.simulator import SimulatorHandle
from sync.store.schema import flow_history
from sync.vendor.client import MAX_CLOCK_OFFSET_S, Backoff
from tests.conftest import settings_for
from tests.test_client import (
    EXPECTED_7,
    NOW,
    Answer,
    ScriptedApi,
    SkewedServer,
    http_date,
    success,
)
from tests.test_sync_run import rows, sync

TWENTY_DIGITS = "9" * 20
MALFORMED_DATES = [
    pytest.param(f"Mon, 01 Jan 2026 00:00:00 +{TWENTY_DIGITS}", id="twenty-digit zone offset"),
    pytest.param(f"Mon, 01 Jan {TWENTY_DIGITS} 00:00:00 GMT", id="twenty-digit year"),
    pytest.param("Mon, 01 Jan 10000 00:00:00 GMT", id="year 10000"),
    pytest.param("Mon, 01 Jan 2026 99:99:99 GMT", id="hour 99"),
    pytest.param("Mon, 99 Foo 2026 00:00:00 GMT", id="no such month"),
    pytest.param("Mon, 01 Jan 0001 00:00:00 +2359", id="year 1 east of UTC"),
]


def header(name: str, value: str | bytes) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value if isinstance(value, bytes) else value.encode("utf-8"))]


def minus_16(date: str | bytes) -> Answer:
    return lambda request: httpx.Response(
        200, json={"status": "-16", "reason": "timestamp expired"}, headers=header("Date", date)
    )


def minus_16_with(headers: list[tuple[bytes, bytes]]) -> Answer:
    return lambda request: httpx.Response(200, json={"status": "-16"}, headers=headers)


def busy(status: int, headers: list[tuple[bytes, bytes]]) -> Answer:
    return lambda request: httpx.Response(status, content=b"busy", headers=headers)


@pytest.mark.parametrize("date", MALFORMED_DATES)
def test_a_malformed_date_on_minus_16_is_a_clock_skew_error(date: str) -> None:
    """A `-16` whose `Date` cannot be read fails that flow as a clock error naming the header."""
    api = ScriptedApi(minus_16(date))
    error = api.details_error(retries=3)
    assert type(error) is ClockSkewError
    assert "Date header" in error.message
    assert len(api.requests) == 1


@pytest.mark.parametrize("date", MALFORMED_DATES)
@pytest.mark.parametrize("status", [429, 503])
def test_a_malformed_date_beside_retry_after_still_retries(date: str, status: int) -> None:
    """A `Date` that cannot be read does not stop a `Retry-After` date from being read on our clock."""
    headers = header("Date", date) + header("Retry-After", http_date(NOW + 5))
    api = ScriptedApi(busy(status, headers), success())
    assert api.details() == EXPECTED_7
    assert api.delays == [pytest.approx(5.0)]


@pytest.mark.parametrize(
    "value",
    [
        *MALFORMED_DATES,
        pytest.param("9" * 5000, id="five thousand digits"),
        pytest.param("-" + TWENTY_DIGITS, id="negative twenty digits"),
    ],
)
def test_a_malformed_retry_after_falls_back_to_the_backoff(value: str) -> None:
    """A `Retry-After` that cannot be read (or is absurd) never ends the request with a Python error."""
    api = ScriptedApi(busy(503, header("Retry-After", value)), success())
    assert api.details(backoff=Backoff(initial_s=1.0, max_s=2.0, retry_after_cap_s=60.0)) == EXPECTED_7
    assert len(api.delays) == 1
    assert 0.0 <= api.delays[0] <= 60.0


@pytest.mark.parametrize(
    "skew_s",
    [
        pytest.param(MAX_CLOCK_OFFSET_S + 1, id="a day and a second ahead"),
        pytest.param(-MAX_CLOCK_OFFSET_S - 1, id="a day and a second behind"),
        pytest.param(253_402_300_799 - NOW, id="year 9999"),
        pytest.param(-NOW, id="1970"),
    ],
)
def test_a_clock_offset_beyond_a_day_is_refused_not_applied(skew_s: float) -> None:
    """A `Date` more than a day from our clock is refused: the client does not sign with it."""
    api = ScriptedApi(SkewedServer(skew_s))

    async def fetch() -> tuple[BaseException | None, float]:
        async with api.client(retries=3) as client:
            try:
                await client.flow_details(7)
            except FlowError as exc:
                return exc, client.clock_offset_s
            return None, client.clock_offset_s

    error, offset_s = asyncio.run(fetch())
    assert type(error) is ClockSkewError
    assert "Date header" in error.message
    assert "24 h" in error.message
    assert offset_s == 0.0
    assert len(api.requests) == 1


@pytest.mark.parametrize("skew_s", [MAX_CLOCK_OFFSET_S - 60, -(MAX_CLOCK_OFFSET_S - 60)])
def test_a_clock_offset_within_a_day_is_still_corrected(skew_s: float) -> None:
    """A server clock hours off (a wrong time zone, say) is still corrected, as before."""
    api = ScriptedApi(SkewedServer(skew_s))
    assert api.details() == EXPECTED_7
    assert api.timestamps == [int(NOW), int(NOW + skew_s)]


# --- fuzzing: no header value escapes the client's error tree ------------------------------------

DAYS = st.sampled_from(["Mon", "Tue", "Sun", "Xyz", ""])
MONTHS = st.sampled_from(["Jan", "Feb", "Dec", "Foo", "0"])
NUMBERS = st.one_of(st.integers(-100, 100), st.integers(), st.integers(-(10**30), 10**30))
ZONES = st.one_of(
    st.sampled_from(["GMT", "UTC", "-0000", "+0000", "EST", "Z", ""]),
    NUMBERS.map(lambda n: f"{n:+d}"),
    st.integers(-9999, 9999).map(lambda n: f"{n:+05d}"),
)
HTTP_DATES = st.builds(
    "{}, {} {} {} {}:{}:{} {}".format, DAYS, NUMBERS, MONTHS, NUMBERS, NUMBERS, NUMBERS, NUMBERS, ZONES
)
HEADER_VALUES = st.one_of(
    HTTP_DATES,
    st.builds(http_date, st.floats(min_value=-62_135_500_000.0, max_value=253_402_200_000.0)),  # years 1-9999
    NUMBERS.map(str),
    st.text(max_size=40),
    st.binary(max_size=40).filter(lambda value: b"\r" not in value and b"\n" not in value),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from(["-16", 429, 503]),
    date=st.one_of(st.none(), HEADER_VALUES),
    retry_after=st.one_of(st.none(), HEADER_VALUES),
)
def test_no_date_or_retry_after_escapes_the_error_tree(
    status: str | int, date: str | bytes | None, retry_after: str | bytes | None
) -> None:
    """Any `Date` and `Retry-After`, on a `-16`, a 429 or a 503: the flow, or a `FlowError`."""
    headers: list[tuple[bytes, bytes]] = []
    if date is not None:
        headers += header("Date", date)
    if retry_after is not None:
        headers += header("Retry-After", retry_after)
    first = minus_16_with(headers) if status == "-16" else busy(int(status), headers)
    api = ScriptedApi(first, success())
    outcome: object
    try:
        outcome = api.details(retries=1)
    except FlowError as error:
        outcome = error
    assert outcome == EXPECTED_7 or isinstance(outcome, FlowError)
    assert all(0.0 <= delay <= Backoff().retry_after_cap_s for delay in api.delays)


# --- a whole run: one malformed header costs one flow, not the run ------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "events"),
    [
        pytest.param("1-3", "partial", 3, id="ids: each flow fails"),
        pytest.param("all", "failed", 1, id="all: the listing fails"),
    ],
)
def test_a_malformed_date_fails_the_flows_not_the_run(
    engine: Engine, sim: SimulatorHandle, database_url: str, mode: str, status: str, events: int
) -> None:
    """The run records clock errors naming the `Date` header and finishes; nothing escapes it."""
    transport = httpx.MockTransport(minus_16(f"Mon, 01 Jan 2026 00:00:00 +{TWENTY_DIGITS}"))
    report = sync(settings_for(sim, database_url, mode), engine, transport=transport)
    assert report.status == status
    recorded = rows(engine, flow_history, "id")
    assert len(recorded) == events
    assert {(e["event"], e["error_kind"], e["error_code"]) for e in recorded} == {("error", "api", "-16")}
    assert all("Date header" in e["error_message"] for e in recorded)
