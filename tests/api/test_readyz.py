"""``/readyz`` follows the database down and back up without restarting the app (PostgreSQL).

A small TCP proxy sits between the app and PostgreSQL. Stopping it closes the listening socket
and every live connection, which is what the app sees when the database restarts: pooled
connections die and new ones are refused. Refused connections fail at once, so the test never
waits for ``connect_timeout``.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Callable
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from authz.extensions import db as flask_db

PG_URL = os.environ.get("AUTHZ_TEST_DATABASE_URL")

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="needs PostgreSQL: set AUTHZ_TEST_DATABASE_URL (CI's PostgreSQL pass does)")


class TcpProxy:
    """Forward 127.0.0.1:port to an upstream address: one selector thread, stop and restart."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The previous listener's accepted connections linger in TIME_WAIT on this port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._run, args=(listener, self._wake[1]),
                                        name="pg-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every live connection; return once they are closed."""
        assert self._thread is not None and self._wake is not None
        self._wake[0].send(b"x")
        self._thread.join()
        self._wake[0].close()
        self._thread = self._wake = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self, listener: socket.socket, wake: socket.socket) -> None:
        peers: dict[socket.socket, socket.socket] = {}
        selector = selectors.DefaultSelector()

        def close_pair(sock: socket.socket) -> None:
            other = peers.pop(sock)
            del peers[other]
            for end in (sock, other):
                selector.unregister(end)
                end.close()

        selector.register(listener, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        running = True
        while running:
            for key, _events in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is wake:
                    running = False
                elif sock is listener:
                    downstream, _ = listener.accept()
                    try:
                        upstream = socket.create_connection(self.upstream)
                    except OSError:
                        downstream.close()
                        continue
                    peers[downstream], peers[upstream] = upstream, downstream
                    selector.register(downstream, selectors.EVENT_READ)
                    selector.register(upstream, selectors.EVENT_READ)
                elif sock in peers:
                    try:
                        data = sock.recv(65536)
                        if data:
                            peers[sock].sendall(data)
                            continue
                    except OSError:
                        pass
                    close_pair(sock)  # one side closed or failed: close both
        selector.close()
        for sock in [listener, wake, *peers]:
            sock.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    assert PG_URL is not None
    url = make_url(PG_URL)
    server = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    server.start()
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def proxied_app(app_factory: Callable[..., Flask], proxy: TcpProxy) -> Iterator[Flask]:
    assert PG_URL is not None
    through_proxy = make_url(PG_URL).set(host="127.0.0.1", port=proxy.port)
    application = app_factory(
        AUTHZ_DATABASE_URL=through_proxy.render_as_string(hide_password=False))
    yield application
    with application.app_context():
        flask_db.session.remove()
        flask_db.engine.dispose()


def test_readyz_recovers_when_the_database_returns(proxied_app, proxy):
    client = proxied_app.test_client()
    assert client.get("/readyz").status_code == 200
    with proxied_app.app_context():
        assert flask_db.engine.pool.checkedin() >= 1  # a pooled connection that will die

    proxy.stop()
    for _ in range(2):  # the dead pooled connection, then a refused new one
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.mimetype == "application/problem+json"
        body = down.get_json(force=True)
        assert body["type"].endswith("/problems/not_ready")
        assert body["status"] == 503
        assert body["request_id"] == down.headers["X-Request-ID"]
        assert down.headers["Retry-After"].isdigit()
        assert str(proxy.port) not in down.get_data(as_text=True)

    proxy.start()  # same port: the app's URL has not changed
    up = client.get("/readyz")
    assert up.status_code == 200
    assert up.get_json() == {"status": "ready"}
