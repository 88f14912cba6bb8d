"""How the suite finds the database servers of the machine it runs on (tests/conftest.py)."""

from __future__ import annotations

import socket
import threading

from tests.conftest import LOCAL_SERVERS, probe_server


def test_a_port_where_nothing_listens_is_reported_at_once() -> None:
    """A closed port: refused, with the reason the summary line shows."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    _, _, url = LOCAL_SERVERS["postgresql"]
    assert probe_server("127.0.0.1", port, url.replace(":5432", f":{port}")) == "Connection refused"


def test_a_listener_that_is_not_a_database_is_not_used() -> None:
    """Something answers at the port but is no server flowsync can log in to: not used, and why."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            connections = [listener.accept()[0] for _ in range(2)]  # the port probe, then the login
            for connection in connections:
                connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        _, _, url = LOCAL_SERVERS["mariadb"]
        problem = probe_server("127.0.0.1", port, url.replace(":3306", f":{port}"))
        thread.join(timeout=10)
    assert problem is not None
    assert problem != "Connection refused"
