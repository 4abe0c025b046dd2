"""``swarm gcs`` as a real process: SIGTERM (a service manager stopping it) and SIGINT
(Ctrl-C) shut it down gracefully: the open live stream ends cleanly (the browser sees
the end and reconnects, rather than a reset), the station leaves the broker with a
DISCONNECT, and the process exits 0 with no traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

import pytest

from gcs_helpers import free_port, http, wait_for
from swarm.bus.broker import LocalBroker

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_the_station_down_gracefully(broker: LocalBroker, sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "gcs", "--swarm", "proc", "--broker",
         f"127.0.0.1:{broker.port}", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"

        def connected() -> bool:
            try:
                return http("GET", url + "/api/status", timeout=2)[1]["broker_connected"]
            except OSError:
                return False

        wait_for(connected, 30, "the station up and connected to the broker")
        stream = urllib.request.urlopen(url + "/api/stream", timeout=15)
        assert stream.readline().startswith(b"event: snapshot")
        proc.send_signal(sig)
        rest = stream.read()  # to the end of the chunked body: IncompleteRead if cut off
        stream.close()
        assert b"event: snapshot" not in rest  # (sanity: the same stream)
        assert proc.wait(20) == 0
        out, err = proc.communicate(timeout=10)
        assert b"ground station stopped" in out, out
        assert b"disconnected from the broker" in err and b"Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_taken_port_is_a_clear_error_and_leaves_nothing_running(broker: LocalBroker) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "swarm", "gcs", "--swarm", "proc", "--broker",
             f"127.0.0.1:{broker.port}", "--port", str(port)],
            capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot serve on 127.0.0.1:{port}".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
