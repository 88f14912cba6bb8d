"""The built-in simulator of the vendor API, specified from the outside.

Every test talks to a real simulator over loopback with a plain `httpx.Client`
and signs its requests itself, as the vendor documents, so these tests also pin
down the protocol the real client must speak.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from sync.simulator import (
    LIST,
    Fault,
    FaultKind,
    FlowCatalog,
    SimulatorConfig,
    SimulatorHandle,
    running_simulator,
)

CONFIG = SimulatorConfig(flow_count=5, seed=7)


def signed(
    config: SimulatorConfig,
    *,
    timestamp: int | str | None = None,
    key: str | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    """Request headers as the vendor wants them: Sign = md5(apiKey + apiSecret + Timestamp), lowercase hex."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    key = config.api_key if key is None else key
    secret = config.api_secret if secret is None else secret
    sign = hashlib.md5((key + secret + timestamp).encode(), usedforsecurity=False).hexdigest()
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": key,
        "Timestamp": timestamp,
        "Sign": sign,
    }


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(CONFIG) as handle:
        yield handle


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=2.0) as http:
        yield http


def get(client: httpx.Client, sim: SimulatorHandle, path: str) -> httpx.Response:
    return client.get(path, headers=signed(sim.config))


def api_status(response: httpx.Response) -> str:
    status: str = response.json()["status"]
    return status


# --- authentication and the server clock ---------------------------------------------------------


def test_signed_request_gets_the_flow(sim: SimulatorHandle, client: httpx.Client) -> None:
    """A correctly signed request gets the vendor's success envelope with the flow as stored."""
    response = get(client, sim, "/flow/details/1")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert response.json() == {"status": "0", "reason": "success", "data": sim.catalog.get(1)}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(signed(CONFIG, key="other-key"), id="unknown key"),
        pytest.param(signed(CONFIG, secret="other-secret"), id="wrong secret"),
        pytest.param({**signed(CONFIG), "Sign": signed(CONFIG)["Sign"].upper()}, id="uppercase sign"),
        pytest.param({**signed(CONFIG), "Timestamp": "1"}, id="sign of another timestamp"),
        pytest.param({}, id="no headers"),
    ],
)
def test_bad_credentials_answer_minus_1(
    sim: SimulatorHandle, client: httpx.Client, headers: dict[str, str]
) -> None:
    """A wrong key or Sign is refused with `-1`, before anything else is looked at."""
    sim.faults.queue(1, Fault.http(503))
    response = client.get("/flow/details/1", headers=headers)
    assert (response.status_code, api_status(response)) == (200, "-1")
    assert sim.faults.pending(1) == 1, "a refused request must not use up a queued fault"


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [(-120, "-16"), (-50, "0"), (0, "0"), (50, "0"), (120, "-16")],
)
def test_timestamp_must_be_within_the_window(
    sim: SimulatorHandle, client: httpx.Client, offset_s: int, expected: str
) -> None:
    """A timestamp more than `timestamp_window_s` (60 s) from the server clock answers `-16`."""
    headers = signed(sim.config, timestamp=int(time.time()) + offset_s)
    assert api_status(client.get("/flow/details/1", headers=headers)) == expected


@pytest.mark.parametrize(
    "timestamp",
    [str(int(time.time() * 1000)), f"{time.time():.3f}", "now", ""],
    ids=["milliseconds", "fractional", "word", "empty"],  # stable ids: xdist workers must collect alike
)
def test_timestamp_must_be_decimal_seconds(
    sim: SimulatorHandle, client: httpx.Client, timestamp: str
) -> None:
    """Milliseconds, fractions or words, even correctly signed, answer `-16`."""
    headers = signed(sim.config, timestamp=timestamp)
    assert api_status(client.get("/flow/details/1", headers=headers)) == "-16"


def test_server_clock_offset_shows_in_date_and_in_the_window() -> None:
    """A server clock 10 minutes ahead is announced in `Date` and judges timestamps by itself."""
    config = SimulatorConfig(flow_count=1, clock_offset_s=600)
    with running_simulator(config) as sim, httpx.Client(base_url=sim.base_url) as client:
        ours = client.get("/flow/details/1", headers=signed(config))
        theirs = client.get("/flow/details/1", headers=signed(config, timestamp=int(time.time()) + 600))
    assert api_status(ours) == "-16"
    assert api_status(theirs) == "0"
    server_now = parsedate_to_datetime(ours.headers["Date"]).timestamp()
    assert abs(server_now - (time.time() + 600)) < 5


# --- routes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow_id", ["999", "0", "abc", "1.5", "+1", "-1", "%201", "１"])
def test_unknown_or_malformed_flow_id_answers_minus_22(
    sim: SimulatorHandle, client: httpx.Client, flow_id: str
) -> None:
    """Only an existing flow's ID in plain ASCII digits finds it; anything else is a parameter error."""
    body = get(client, sim, f"/flow/details/{flow_id}").json()
    assert body["status"] == "-22"
    assert body["reason"].startswith("parameter error")


def test_list_returns_every_flow(sim: SimulatorHandle, client: httpx.Client) -> None:
    """`/flow/list` answers every live flow, in full, in one envelope."""
    body = get(client, sim, "/flow/list").json()
    assert body["status"] == "0"
    assert body["data"] == sim.catalog.listing()
    assert [flow["flowId"] for flow in body["data"]] == [1, 2, 3, 4, 5]


def test_prefix_is_configurable() -> None:
    """The routes hang under `prefix`, which ends up in `base_url`."""
    config = SimulatorConfig(flow_count=1, prefix="/v2/otp")
    with running_simulator(config) as sim, httpx.Client(base_url=sim.base_url) as client:
        assert sim.base_url.endswith("/v2/otp")
        assert api_status(client.get("/flow/list", headers=signed(config))) == "0"


# --- the catalog ----------------------------------------------------------------------------------


def test_generated_flows_are_valid_and_deterministic() -> None:
    """Generation follows the vendor's documented ranges and depends on the seed alone."""
    catalog = FlowCatalog.generate(200, seed=3)
    flows = catalog.listing()
    assert catalog.ids() == list(range(1, 201))
    assert len({flow["name"] for flow in flows}) == 200
    for flow in flows:
        assert 4 <= len(flow["name"]) <= 32
        assert 1 <= len(flow["flow"]) <= 4
        for node in flow["flow"]:
            assert set(node) == {"waitingTime", "status", "channel", "channelCut"}
            assert 30 <= node["waitingTime"] <= 120
            assert node["status"] in (1, 2)
            assert node["channel"] in ("sms", "call")
            assert node["channelCut"] in (0, 1)
    assert FlowCatalog.generate(200, seed=3).listing() == flows
    assert FlowCatalog.generate(200, seed=4).listing() != flows


def test_mutate_changes_each_chosen_flow_and_keeps_it_valid() -> None:
    """Every mutated flow differs from before, names stay unique, node counts stay within 1-4."""
    catalog = FlowCatalog.generate(50, seed=1)
    before = {flow["flowId"]: flow for flow in catalog.listing()}
    changed = catalog.mutate(0.2, random.Random(2))
    assert len(changed) == 10
    after = {flow["flowId"]: flow for flow in catalog.listing()}
    assert {i for i in after if after[i] != before[i]} == set(changed)
    assert len({flow["name"] for flow in after.values()}) == 50
    assert all(1 <= len(flow["flow"]) <= 4 for flow in after.values())


def test_delete_restore_and_add() -> None:
    """Deleted flows vanish, come back unchanged when restored, and their IDs are never reused."""
    catalog = FlowCatalog.generate(3)
    original = catalog.get(2)
    assert catalog.delete([2, 99]) == [2]
    assert catalog.get(2) is None
    assert catalog.deleted_ids() == [2]
    assert catalog.add(1, random.Random(0)) == [4]
    assert catalog.restore([2]) == [2]
    assert catalog.get(2) == original
    assert catalog.ids() == [1, 2, 3, 4]


def test_evolve_reports_disjoint_changes() -> None:
    """One round restores, deletes and changes distinct flows, and says which."""
    catalog = FlowCatalog.generate(40, seed=5)
    catalog.delete([1, 2, 3, 4])
    round_ = catalog.evolve(random.Random(9), change=0.25, delete=0.1, restore=0.5)
    assert len(round_.restored) == 2
    assert set(round_.restored) <= {1, 2, 3, 4}
    assert len(round_.deleted) == 4
    assert not set(round_.changed) & (set(round_.deleted) | set(round_.restored))
    assert set(round_.deleted) == set(catalog.deleted_ids()) - {1, 2, 3, 4}


def test_catalog_hands_out_copies() -> None:
    """Editing a returned flow never edits the catalog."""
    catalog = FlowCatalog.generate(1)
    flow = catalog.get(1)
    assert flow is not None
    flow["flow"][0]["waitingTime"] = 0
    catalog.listing()[0]["name"] = "changed"
    assert catalog.get(1) != flow
    assert catalog.listing()[0]["name"] != "changed"


def test_catalog_changes_are_served(sim: SimulatorHandle, client: httpx.Client) -> None:
    """What the server answers follows the catalog as it evolves: changes, deletions, restorations."""
    before = get(client, sim, "/flow/details/1").json()["data"]
    sim.catalog.mutate(1.0, random.Random(0))
    after = get(client, sim, "/flow/details/1").json()["data"]
    assert after != before
    assert after == sim.catalog.get(1)

    sim.catalog.delete([2])
    assert api_status(get(client, sim, "/flow/details/2")) == "-22"
    assert 2 not in [flow["flowId"] for flow in get(client, sim, "/flow/list").json()["data"]]
    sim.catalog.restore([2])
    assert get(client, sim, "/flow/details/2").json()["data"] == sim.catalog.get(2)


# --- faults ---------------------------------------------------------------------------------------

RETRY_DATE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def not_json(response: httpx.Response) -> bool:
    try:
        json.loads(response.content)
    except ValueError:
        return True
    return False


RESPONSE_FAULTS: list[Any] = [
    pytest.param(
        Fault.api("-18"), 200, lambda r: r.json() == {"status": "-18", "reason": "system error"}, id="-18"
    ),
    pytest.param(Fault.api("-2"), 200, lambda r: r.json()["status"] == "-2", id="-2"),
    pytest.param(Fault.api("E42"), 200, lambda r: r.json()["status"] == "E42", id="any string"),
    pytest.param(Fault.http(500), 500, not_json, id="http 500"),
    pytest.param(Fault.http(404), 404, not_json, id="http 404"),
    pytest.param(
        Fault.http(429, 7), 429, lambda r: r.headers["Retry-After"] == "7", id="retry-after seconds"
    ),
    pytest.param(
        Fault.http(503, RETRY_DATE),
        503,
        lambda r: parsedate_to_datetime(r.headers["Retry-After"]) == RETRY_DATE,
        id="retry-after date",
    ),
    pytest.param(
        Fault.http(429, "soon"), 429, lambda r: r.headers["Retry-After"] == "soon", id="retry-after odd"
    ),
    pytest.param(Fault.html(), 200, lambda r: r.headers["Content-Type"] == "text/html", id="html 200"),
    pytest.param(Fault.html(502), 502, lambda r: b"502 Bad Gateway" in r.content, id="html 502"),
    pytest.param(Fault(FaultKind.EMPTY_BODY), 200, lambda r: r.content == b"", id="empty"),
    pytest.param(Fault(FaultKind.TRUNCATED), 200, not_json, id="truncated"),
    pytest.param(Fault(FaultKind.NOT_OBJECT), 200, lambda r: not isinstance(r.json(), dict), id="not object"),
    pytest.param(Fault(FaultKind.WRONG_ID), 200, lambda r: r.json()["data"]["flowId"] != 1, id="wrong id"),
    pytest.param(
        Fault(FaultKind.NULL_DATA),
        200,
        lambda r: r.json() == {"status": "0", "reason": "success", "data": None},
        id="null",
    ),
    pytest.param(Fault.delay(0.01), 200, lambda r: r.json()["status"] == "0", id="delay"),
    pytest.param(
        Fault.bomb(100_000),
        200,
        lambda r: (r.headers["Content-Encoding"], r.content) == ("gzip, gzip", b" " * 100_000),
        id="bomb, gzip twice",
    ),
    pytest.param(
        Fault.bomb(3 * 2**20 + 5, layers=1),  # several of the repeated blocks, then a tail
        200,
        lambda r: (r.headers["Content-Encoding"], r.content) == ("gzip", b" " * (3 * 2**20 + 5)),
        id="bomb, gzip once",
    ),
    pytest.param(
        Fault.oversize(200_000),
        200,
        lambda r: (
            (r.headers["Content-Length"], len(r.content), r.json()["data"]["flowId"])
            == ("200000", 200_000, 1)
        ),
        id="oversize",
    ),
]


@pytest.mark.parametrize(("fault", "http_status", "check"), RESPONSE_FAULTS)
def test_queued_fault_shapes_one_response(
    sim: SimulatorHandle,
    client: httpx.Client,
    fault: Fault,
    http_status: int,
    check: Callable[[httpx.Response], bool],
) -> None:
    """Each fault kind answers as it says, for one request only, and is counted by kind."""
    sim.faults.queue(1, fault)
    response = get(client, sim, "/flow/details/1")
    assert response.status_code == http_status
    assert check(response)
    assert "Date" in response.headers
    assert api_status(get(client, sim, "/flow/details/1")) == "0"
    assert sim.stats.faults == {fault.kind.value: 1}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        pytest.param(Fault(FaultKind.RESET), httpx.RemoteProtocolError, id="reset"),
        pytest.param(Fault(FaultKind.CLOSE_MID_BODY), httpx.RemoteProtocolError, id="close mid-body"),
        pytest.param(Fault.hang(), httpx.ReadTimeout, id="hang"),
    ],
)
def test_connection_faults_raise_transport_errors(
    sim: SimulatorHandle, fault: Fault, error: type[httpx.TransportError]
) -> None:
    """A reset, a close mid-body or a hang is a transport error in the client; then service resumes."""
    sim.faults.queue(1, fault)
    with httpx.Client(base_url=sim.base_url, timeout=30) as client:
        with pytest.raises(error):  # a short read timeout ends the hang; the answers need none
            client.get("/flow/details/1", headers=signed(sim.config), timeout=httpx.Timeout(30, read=0.3))
        assert api_status(get(client, sim, "/flow/details/1")) == "0"


def test_an_endless_body_goes_on_until_the_client_leaves(sim: SimulatorHandle) -> None:
    """The endless fault sends the right answer's start, then spaces for as long as anyone reads."""
    sim.faults.queue(1, Fault.endless())
    with httpx.Client(base_url=sim.base_url, timeout=5) as client:
        with client.stream("GET", "/flow/details/1", headers=signed(sim.config)) as response:
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if len(received) > 4 * 2**20:
                    break
        assert received.startswith(b'{"status":"0"')
        assert received.endswith(b" " * 1000)
        assert api_status(get(client, sim, "/flow/details/1")) == "0"
    assert sim.stats.faults == {"endless": 1}


def test_stopping_releases_a_hung_request() -> None:
    """Stopping the simulator aborts a request it holds hanging instead of waiting for it."""
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=30) as client:
        with running_simulator(CONFIG) as sim:
            sim.faults.persist(1, Fault.hang())
            pending = pool.submit(client.get, f"{sim.base_url}/flow/details/1", headers=signed(CONFIG))
            deadline = time.monotonic() + 5
            while sim.stats.faults.get("hang") != 1 and time.monotonic() < deadline:
                time.sleep(0.005)  # until the server holds the request
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=5)
    assert sim.stats.responses == {"aborted": 1}


def test_queued_faults_are_used_up_in_order(sim: SimulatorHandle, client: httpx.Client) -> None:
    """ "Fail twice, then succeed" is two queued faults; other flows are untouched."""
    sim.faults.queue(1, Fault.http(503), Fault.api("-18"))
    assert get(client, sim, "/flow/details/2").status_code == 200
    assert get(client, sim, "/flow/details/1").status_code == 503
    assert api_status(get(client, sim, "/flow/details/1")) == "-18"
    assert api_status(get(client, sim, "/flow/details/1")) == "0"
    assert sim.faults.pending(1) == 0


def test_persistent_fault_lasts_until_cleared(sim: SimulatorHandle, client: httpx.Client) -> None:
    """A persistent fault answers every request for its flow until set to None."""
    sim.faults.persist(3, Fault(FaultKind.NULL_DATA))
    for _ in range(3):
        assert get(client, sim, "/flow/details/3").json()["data"] is None
    sim.faults.persist(3, None)
    assert get(client, sim, "/flow/details/3").json()["data"] == sim.catalog.get(3)


def test_list_faults_hit_only_the_list(sim: SimulatorHandle, client: httpx.Client) -> None:
    """Faults for `LIST` fail `/flow/list` and leave flow details alone."""
    sim.faults.queue(LIST, Fault.http(502))
    assert get(client, sim, "/flow/details/1").status_code == 200
    assert get(client, sim, "/flow/list").status_code == 502
    assert get(client, sim, "/flow/list").status_code == 200


@pytest.mark.parametrize("code", ["-1", "-2"])
def test_account_fault_answers_every_request(sim: SimulatorHandle, client: httpx.Client, code: str) -> None:
    """An account-wide fault wins over everything, on every endpoint, until cleared."""
    sim.faults.set_account(Fault.api(code))
    sim.faults.queue(1, Fault.http(503))
    for path in ("/flow/details/1", "/flow/details/2", "/flow/list", "/flow/details/999"):
        assert api_status(get(client, sim, path)) == code
    sim.faults.set_account(None)
    assert get(client, sim, "/flow/details/1").status_code == 503


def test_random_faults_follow_rate_and_seed(sim: SimulatorHandle, client: httpx.Client) -> None:
    """A random rate picks among the given faults, reproducibly, sparing the list unless asked."""

    def outcome() -> list[str]:
        sim.faults.set_random(0.5, [Fault.api("-18"), Fault.http(503)], seed=11)
        return [str(get(client, sim, f"/flow/details/{i % 5 + 1}").status_code) for i in range(40)]

    first = outcome()
    assert first == outcome()
    assert {"200", "503"} <= set(first)
    assert all(api_status(get(client, sim, "/flow/list")) == "0" for _ in range(10))
    sim.faults.set_random(1.0, [Fault.http(503)], on_list=True)
    assert get(client, sim, "/flow/list").status_code == 503


def test_random_rate_is_validated(sim: SimulatorHandle) -> None:
    """A rate outside 0..1, or a rate without faults to pick from, is refused."""
    for rate, faults in ((1.5, [Fault.http(500)]), (-0.1, [Fault.http(500)]), (0.5, [])):
        with pytest.raises(ValueError, match="rate"):
            sim.faults.set_random(rate, faults)


# --- statistics -----------------------------------------------------------------------------------


def test_stats_count_requests_responses_and_faults(sim: SimulatorHandle, client: httpx.Client) -> None:
    """Requests are counted by endpoint, answers by status, faults by kind."""
    sim.faults.queue(2, Fault.http(429, 1), Fault(FaultKind.TRUNCATED))
    for path in ("/flow/list", "/flow/details/1", "/flow/details/2", "/flow/details/2", "/flow/details/9"):
        get(client, sim, path)
    client.get("/flow/details/1", headers={})
    assert sim.stats.requests == {"list": 1, "details": 5}
    assert sim.stats.responses == {"0": 2, "http 429": 1, "http 200": 1, "-22": 1, "-1": 1}
    assert sim.stats.faults == {"http_status": 1, "truncated": 1}
    sim.stats.reset()
    assert (sim.stats.requests, sim.stats.responses, sim.stats.faults, sim.stats.served) == ({}, {}, {}, {})


def test_served_records_the_last_state_each_flow_was_served_in(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    """`served` holds what a client was last told about each flow: a flow, or None for gone."""
    get(client, sim, "/flow/details/1")
    old = sim.catalog.get(1)
    sim.catalog.mutate(1.0, random.Random(0))
    sim.faults.queue(1, Fault.http(503), Fault(FaultKind.WRONG_ID))
    get(client, sim, "/flow/details/1")
    get(client, sim, "/flow/details/1")
    assert sim.stats.served == {1: old}, "failed answers do not count as served"

    get(client, sim, "/flow/list")
    assert sim.stats.served == {flow["flowId"]: flow for flow in sim.catalog.listing()}
    sim.catalog.delete([4])
    sim.faults.queue(5, Fault(FaultKind.NULL_DATA))
    get(client, sim, "/flow/list")
    get(client, sim, "/flow/details/5")
    assert sim.stats.served[4] is None
    assert sim.stats.served[5] is None


# --- configuration and binding --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com", ""])
def test_only_loopback_addresses_are_accepted(host: str) -> None:
    """The simulator prints its secret and has no TLS, so it refuses to listen beyond loopback."""
    with pytest.raises(ValueError, match="loopback"), running_simulator(CONFIG, host=host):
        pass


@pytest.mark.parametrize(
    "changes",
    [
        {"flow_count": -1},
        {"latency_s": -0.1},
        {"timestamp_window_s": 0},
        {"prefix": "otp"},
        {"prefix": "/otp/"},
    ],
)
def test_config_is_validated(changes: dict[str, Any]) -> None:
    """Nonsensical settings fail when the config is built."""
    with pytest.raises(ValueError, match="must"):
        SimulatorConfig(**changes)


def test_latency_and_localhost() -> None:
    """A base latency delays answers without changing them; `localhost` means 127.0.0.1."""
    config = SimulatorConfig(flow_count=1, latency_s=0.01)
    with running_simulator(config, host="localhost") as slow, httpx.Client(base_url=slow.base_url) as client:
        assert slow.base_url.startswith("http://127.0.0.1:")
        assert api_status(client.get("/flow/details/1", headers=signed(config))) == "0"
