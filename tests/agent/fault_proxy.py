"""A fault-injecting TCP proxy between one agent and the broker: forwards bytes both
ways, and on command cuts every connection (and refuses new ones), delays each chunk
(latency: each arrives that much later, chunks keep their spacing), blackholes one
direction or both (a silent loss: nothing flows, nothing is closed), or heals. Threads
only; loopback only; stops by itself with close().

Directions are named from the agent's side: ``up`` is agent -> broker, ``down`` is
broker -> agent."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time

from swarm.bus.broker import free_port

UP, DOWN = "up", "down"
#: How often a pump held by a blackhole looks again (heal, cut, close).
_POLL_S = 0.05


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.delay_s = 0.0
        self._cut = threading.Event()
        self._closed = threading.Event()
        #: Set while that direction forwards; cleared by blackhole().
        self._flowing = {UP: threading.Event(), DOWN: threading.Event()}
        for e in self._flowing.values():
            e.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        #: Connections accepted during a blackhole: no broker connection behind them.
        self._held: list[socket.socket] = []
        self._server = socket.create_server((self.host, self.port))
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")
        self._thread.start()

    # -- faults

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until heal()."""
        self._cut.set()
        self._close_conns()

    def blackhole(self, up: bool = True, down: bool = True) -> None:
        """A silent loss of the link (a radio out of range, a Wi-Fi access point gone):
        from now the chosen directions forward nothing, and nothing is closed, so
        neither end is told. Each end learns only by its own timers: paho by its MQTT
        keepalive (a PINGREQ after ``keepalive`` s without a byte in, the socket closed
        after ``keepalive`` s more without one), the broker by its keepalive timeout
        (1.5 x the client's keepalive without a packet in); a FIN or reset one end sends
        meanwhile reaches the other only through a direction that still flows.

        What does not flow is *held*, not dropped: the pump stops reading, so the bytes
        wait in the kernel's socket buffers (and at most one chunk here), and the
        sender's writes succeed until those buffers fill, as a TCP sender's do while
        its peer's window stays shut. That is what TCP does over a dead link: it
        retransmits, loses nothing and reorders nothing, so a connection either
        delivers every byte late or dies; dropping bytes inside a connection that
        survives would tear MQTT's framing, which no real link does. A new connection
        attempt while any direction is blackholed is accepted (the loopback kernel
        completes the handshake before accept(); a real SYN or SYN-ACK would be lost)
        but gets no broker connection and is reset at heal(): the client gives up on
        it by its own timeout and retries, as it would after a lost handshake."""
        if up:
            self._flowing[UP].clear()
        if down:
            self._flowing[DOWN].clear()

    def heal(self) -> None:
        """Back to a clean link. A connection that outlived a blackhole (no end gave
        up on it) resumes: what was held is delivered, late and in order, as TCP's
        retransmissions would deliver it when the link returns. One that an end closed
        meanwhile ends now, the other end seeing the close or a reset (a real peer's
        kernel answers the retransmissions of a connection it no longer has with RST)."""
        self.delay_s = 0.0
        self._cut.clear()
        with self._lock:
            held, self._held = self._held, []
        for e in self._flowing.values():
            e.set()
        for c in held:
            _reset(c)

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def close(self) -> None:
        self._closed.set()
        self._close_conns()
        self._server.close()
        self._thread.join(5)

    # -- forwarding

    def _blackholed(self) -> bool:
        return not all(e.is_set() for e in self._flowing.values())

    def _close_conns(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
            held, self._held = self._held, []
        for c in held:
            _reset(c)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            if self._blackholed():
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            done = threading.Event()
            for a, b, direction in ((client, upstream, UP), (upstream, client, DOWN)):
                threading.Thread(target=self._pump, args=(a, b, direction, done),
                                 daemon=True).start()

    def _wait_flowing(self, direction: str, done: threading.Event) -> bool:
        """Block while ``direction`` is blackholed; False once the connection is over."""
        flowing = self._flowing[direction]
        while not flowing.wait(_POLL_S):
            if done.is_set() or self._cut.is_set() or self._closed.is_set():
                return False
        return not (done.is_set() or self._cut.is_set())

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str,
              done: threading.Event) -> None:
        """Read ``src``; a writer sends each chunk to ``dst`` when it is due (read time
        plus the delay in force then), in order. So a delay is latency, as on a slow
        link: chunks keep their spacing. (Sleeping before each send instead would hold
        every chunk read meanwhile for up to twice the delay and deliver them in bursts
        a delay apart: gaps between a leader's heartbeats longer than an election
        timeout on a loaded machine, an election where the test expects a hand-over.)
        While ``direction`` is blackholed neither reads nor writes (see blackhole())."""
        chunks: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        writer = threading.Thread(target=self._write, args=(chunks, dst, direction, done),
                                  daemon=True)
        writer.start()
        try:
            while self._wait_flowing(direction, done):
                data = src.recv(65536)
                if not data or self._cut.is_set():
                    break
                chunks.put((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        finally:
            chunks.put(None)
            writer.join(5)
            # One direction ended (an end closed, or a write failed): the connection is
            # over, in both directions, as the existing cut() and EOF handling had it.
            done.set()
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _write(self, chunks: "queue.SimpleQueue[tuple[float, bytes] | None]",
               dst: socket.socket, direction: str, done: threading.Event) -> None:
        try:
            while (item := chunks.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self._cut.is_set():
                    return  # what was in flight when the link was cut is lost
                if not self._wait_flowing(direction, done):
                    return  # held by a blackhole, and the connection ended meanwhile
                dst.sendall(data)
        except OSError:
            pass


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a kernel answers a segment for a connection it
    does not have."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
