"""The fault proxy's blackhole (tests/agent/fault_proxy.py) against a plain TCP server on
loopback: what a blackholed direction holds is delivered at the heal, late and in
order, on the same connection; the other direction keeps flowing; a connection opened
meanwhile reaches no server and is reset at the heal; a close through a direction that
flows ends the connection."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from fault_proxy import FaultProxy

#: How long a test looks for bytes that must *not* arrive (held by a blackhole). A
#: negative check: a loaded machine can only make it pass more easily, never fail.
QUIET_S = 0.3


class _Server:
    """Accepts connections; each one's received bytes go to its own queue."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: "queue.SimpleQueue[tuple[socket.socket, queue.SimpleQueue[bytes]]]" = \
            queue.SimpleQueue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            got: queue.SimpleQueue[bytes] = queue.SimpleQueue()
            self.conns.put((conn, got))
            threading.Thread(target=self._read, args=(conn, got), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, got: "queue.SimpleQueue[bytes]") -> None:
        try:
            while data := conn.recv(65536):
                got.put(data)
        except OSError:
            pass
        got.put(b"")   # end of stream


@pytest.fixture
def rig() -> Iterator[tuple[_Server, FaultProxy]]:
    server = _Server()
    proxy = FaultProxy("127.0.0.1", server.port)
    yield server, proxy
    proxy.close()
    server.sock.close()


def _read_exactly(got: "queue.SimpleQueue[bytes]", n: int, timeout: float = 10.0) -> bytes:
    out = b""
    while len(out) < n:
        chunk = got.get(timeout=timeout)
        assert chunk, f"stream ended after {out!r}"
        out += chunk
    return out


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(10)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"stream ended after {out!r}"
        out += chunk
    return out


def _quiet(sock: socket.socket) -> bool:
    sock.settimeout(QUIET_S)
    try:
        return not sock.recv(1)   # only EOF would end the wait early
    except (TimeoutError, socket.timeout):
        return True


def test_both_ways_held_then_delivered_in_order_on_the_same_connection(rig) -> None:
    server, proxy = rig
    client = socket.create_connection((proxy.host, proxy.port))
    conn, got = server.conns.get(timeout=10)
    client.sendall(b"before")
    assert _read_exactly(got, 6) == b"before"
    proxy.blackhole()
    for k in range(100):
        client.sendall(b"held-%03d;" % k)
    conn.sendall(b"down-held")
    with pytest.raises(queue.Empty):
        got.get(timeout=QUIET_S)
    assert _quiet(client)
    proxy.heal()
    assert _read_exactly(got, 900) == b"".join(b"held-%03d;" % k for k in range(100))
    assert _recv_exactly(client, 9) == b"down-held"
    assert server.conns.empty()   # the same connection, resumed
    client.close()


def test_one_way_holds_one_direction_and_the_other_flows(rig) -> None:
    server, proxy = rig
    client = socket.create_connection((proxy.host, proxy.port))
    conn, got = server.conns.get(timeout=10)
    proxy.blackhole(up=True, down=False)
    client.sendall(b"up")
    conn.sendall(b"down")
    assert _recv_exactly(client, 4) == b"down"
    with pytest.raises(queue.Empty):
        got.get(timeout=QUIET_S)
    # The server closes: its FIN flows down, and the connection is over both ways
    # (what the client wrote meanwhile never reaches it, as with a real reset).
    conn.shutdown(socket.SHUT_RDWR)   # (a close() alone waits for the reader thread)
    conn.close()
    client.settimeout(10)
    assert client.recv(1) == b""
    proxy.heal()
    client.close()


def test_a_connection_opened_during_a_blackhole_reaches_nothing_and_is_reset(rig) -> None:
    server, proxy = rig
    proxy.blackhole(up=False, down=True)
    late = socket.create_connection((proxy.host, proxy.port))
    late.sendall(b"CONNECT")
    assert _quiet(late)
    with pytest.raises(queue.Empty):
        server.conns.get(timeout=QUIET_S)
    proxy.heal()
    late.settimeout(10)
    with pytest.raises(ConnectionResetError):
        late.recv(1)
    late.close()
    assert server.conns.empty()
    # After the heal, a new connection goes through.
    client = socket.create_connection((proxy.host, proxy.port))
    conn, got = server.conns.get(timeout=10)
    client.sendall(b"ok")
    assert _read_exactly(got, 2) == b"ok"
    client.close()
