"""A fault-injecting TCP proxy between one agent and the broker: forwards bytes both
ways, and on command cuts every connection (and refuses new ones), delays each chunk
(latency: each arrives that much later, chunks keep their spacing), or heals. Threads
only; loopback only; stops by itself with close()."""

from __future__ import annotations

import queue
import socket
import threading
import time

from swarm.bus.broker import free_port


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.delay_s = 0.0
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.create_server((self.host, self.port))
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")
        self._thread.start()

    # -- faults

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until heal()."""
        self._cut.set()
        self._close_conns()

    def heal(self) -> None:
        self.delay_s = 0.0
        self._cut.clear()

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def close(self) -> None:
        self._closed.set()
        self._close_conns()
        self._server.close()
        self._thread.join(5)

    # -- forwarding

    def _close_conns(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
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
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Read ``src``; a writer sends each chunk to ``dst`` when it is due (read time
        plus the delay in force then), in order. So a delay is latency, as on a slow
        link: chunks keep their spacing. (Sleeping before each send instead would hold
        every chunk read meanwhile for up to twice the delay and deliver them in bursts
        a delay apart: gaps between a leader's heartbeats longer than an election
        timeout on a loaded machine, an election where the test expects a hand-over.)"""
        chunks: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        writer = threading.Thread(target=self._write, args=(chunks, dst), daemon=True)
        writer.start()
        try:
            while True:
                data = src.recv(65536)
                if not data or self._cut.is_set():
                    break
                chunks.put((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        finally:
            chunks.put(None)
            writer.join(5)
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _write(self, chunks: "queue.SimpleQueue[tuple[float, bytes] | None]",
               dst: socket.socket) -> None:
        try:
            while (item := chunks.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self._cut.is_set():
                    return  # what was in flight when the link was cut is lost
                dst.sendall(data)
        except OSError:
            pass
