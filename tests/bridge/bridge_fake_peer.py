"""A scripted TCP peer on loopback, for link-level tests (banner, garbage, hang-ups).

Each accepted connection is handed to ``script(sock, conn_index)`` in the peer's one
thread; the peer stops (and closes everything) on ``close()``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402


def encoder(sysid: int = 1, compid: int = 1, key: bytes | None = None) -> mavlink.MAVLink:
    mav = mavlink.MAVLink(None, srcSystem=sysid, srcComponent=compid)
    if key is not None:
        mav.signing.secret_key = key
        mav.signing.sign_outgoing = True
        mav.signing.link_id = 0
        mav.signing.timestamp = int((time.time() - 1420070400) * 100000)
    return mav


def heartbeat(mav: mavlink.MAVLink, custom_mode: int = 0, armed: bool = False) -> bytes:
    base = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (
        mavlink.MAV_MODE_FLAG_SAFETY_ARMED if armed else 0)
    return mavlink.MAVLink_heartbeat_message(
        mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA, base, custom_mode,
        mavlink.MAV_STATE_STANDBY, 3).pack(mav)


def _listener(backlog: int) -> socket.socket:
    """A TCP listener on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


class FakePeer:
    def __init__(self, script: Callable[[socket.socket, int], None]) -> None:
        self.listener = _listener(8)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepts = 0
        self.received = bytearray()
        self._script = script
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self.accepts += 1
            try:
                self._script(sock, self.accepts - 1)
            except OSError:
                pass
            finally:
                sock.close()

    def serve_for(self, sock: socket.socket, seconds: float, every: float,
                  send: Callable[[], bytes]) -> None:
        """Send ``send()`` every ``every`` s for ``seconds`` (or until closed), reading input."""
        sock.settimeout(every)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stop.is_set():
            sock.sendall(send())
            try:
                data = sock.recv(65536)
                if not data:
                    return
                self.received += data
            except socket.timeout:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        assert not self._thread.is_alive()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until ``predicate()``; a bounded wait, not a timing assertion."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class TcpProxy:
    """Loopback TCP proxy between the bridge and a simulator, to cut the link, pause it
    (a vehicle that stops answering) or inject garbage towards the bridge. One thread."""

    def __init__(self, upstream_port: int,
                 drop_to_bridge: Callable[[object], bool] | None = None) -> None:
        self.upstream_port = upstream_port
        # When set, the vehicle->bridge stream is parsed frame by frame and frames for
        # which it returns True are dropped (the original bytes of the others go through).
        self.drop_to_bridge = drop_to_bridge
        self._parser = mavlink.MAVLink(None)
        self._parser.robust_parsing = True
        self.dropped = 0
        self.listener = _listener(4)
        self.port = self.listener.getsockname()[1]
        self.accepts = 0
        self.paused = threading.Event()
        self._cut = threading.Event()
        self._inject: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Close the current connection pair (both ends see EOF)."""
        self._cut.set()

    def inject(self, data: bytes) -> None:
        with self._lock:
            self._inject.append(data)

    def _run(self) -> None:
        import select as _select
        pair: tuple[socket.socket, socket.socket] | None = None
        while not self._stop.is_set():
            socks = [self.listener] + (list(pair) if pair else [])
            readable, _, _ = _select.select(socks, [], [], 0.02)
            if self._cut.is_set():
                self._cut.clear()
                if pair:
                    for s in pair:
                        s.close()
                    pair = None
                continue
            if pair:
                with self._lock:
                    chunks, self._inject = self._inject, []
                for chunk in chunks:
                    pair[0].sendall(chunk)
            for s in readable:
                if s is self.listener:
                    client, _ = self.listener.accept()
                    if pair:  # one client at a time, like a SITL UART
                        client.close()
                        continue
                    try:
                        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                    except OSError:
                        client.close()
                        continue
                    self.accepts += 1
                    pair = (client, upstream)
                    break
                if not pair:
                    break
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for x in pair:
                        x.close()
                    pair = None
                    break
                if self.paused.is_set():
                    continue  # swallowed in both directions: a link that went quiet
                if s is pair[1] and self.drop_to_bridge is not None:
                    data = self._filter(data)
                (pair[1] if s is pair[0] else pair[0]).sendall(data)
        if pair:
            for s in pair:
                s.close()

    def _filter(self, data: bytes) -> bytes:
        out = bytearray()
        for msg in self._parser.parse_buffer(data) or ():
            if msg.get_type() == "BAD_DATA":
                out += bytes(msg.data)
            elif self.drop_to_bridge(msg):  # type: ignore[misc]
                self.dropped += 1
            else:
                out += bytes(msg.get_msgbuf())
        return bytes(out)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        assert not self._thread.is_alive()
