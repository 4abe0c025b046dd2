"""Ground-station load: server CPU and memory with N drones at R Hz telemetry, and how
long a map commit takes to reach a browser's live stream.

Runs a real mosquitto (swarm.bus.broker), the station as its own process
(``python -m swarm gcs``, so its CPU is measured alone, from /proc/<pid>/stat), a
publisher speaking docs/protocol.md (status every second, telemetry at R Hz per drone,
a map commit every 2 s), and K stream readers standing in for browsers (each reads
/api/stream). Prints CPU % of one core, peak RSS, messages ingested, and the
publish-to-stream latency of the map commits (p50 / p95 / max).

    python bench/gcs_load.py [--drones 10] [--hz 10] [--browsers 2] [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm.bus.broker import LocalBroker, free_port  # noqa: E402

SWARM = "bench"
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _status(node: int, version: int) -> bytes:
    return json.dumps({
        "v": 1, "node": node, "name": f"drone-{node}", "online": True,
        "t": int(time.time() * 1000), "role": "leader" if node == 1 else "follower",
        "term": 3, "leader": 1, "commit": version, "applied": version, "last_index": version,
        "map_version": version, "link_score": 0.8,
        "fc": {"connected": True, "map_version_held": version, "mode": "AUTO", "armed": True},
        **({"peers": {str(n): {"match": version, "lag": 0, "last_contact_ms": 20}
                      for n in range(2, 11)}} if node == 1 else {})}).encode()


def _map(version: int) -> bytes:
    # A modest map: a search area and one zone per version (growing), like a real fire.
    features = [{"type": "Feature", "id": f"zone:z{k}", "properties": {
        "kind": "zone", "id": f"z{k}", "status": "burning", "hazard": True, "source": "d1",
        "time_ms": 1}, "geometry": {"type": "Polygon", "coordinates": [[
            [-121.62 + k * 1e-3, 39.76], [-121.619 + k * 1e-3, 39.76],
            [-121.619 + k * 1e-3, 39.761], [-121.62 + k * 1e-3, 39.76]]]}}
        for k in range(min(version, 200))]
    return json.dumps({"type": "FeatureCollection", "v": 1, "version": version, "term": 3,
                       "node": 1, "features": features}).encode()


class _Reader(threading.Thread):
    """One stand-in browser: reads the SSE stream, notes when each map version arrives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/api/stream")
        self.response = self.conn.getresponse()  # chunked: http.client decodes it
        self.seen: dict[int, float] = {}
        self.bytes = 0
        self.stop = False

    def run(self) -> None:
        event = ""
        while not self.stop:
            try:
                line = self.response.readline()
            except (OSError, ValueError, AttributeError, http.client.HTTPException):
                # (AttributeError: http.client once the connection is closed at the end)
                return
            if not line:
                return
            self.bytes += len(line)
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            elif line.startswith(b"data: ") and event == "map":
                version = json.loads(line[6:])["version"]
                self.seen.setdefault(version, time.monotonic())


def run(drones: int, hz: float, browsers: int, seconds: float) -> None:
    broker = LocalBroker("auto")
    host, mqtt_port = broker.start()
    http_port = free_port()
    station = subprocess.Popen(
        [sys.executable, "-m", "swarm", "gcs", "--swarm", SWARM, "--broker",
         f"{host}:{mqtt_port}", "--port", str(http_port)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub",
                      protocol=mqtt.MQTTv5)
    pub.max_queued_messages_set(0)
    readers: list[_Reader] = []
    try:
        pub.connect(host, mqtt_port)
        pub.loop_start()
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or station.poll() is not None:
                    raise SystemExit("the station did not come up")
                time.sleep(0.2)
        readers = [_Reader(http_port) for _ in range(browsers)]
        for r in readers:
            r.start()
        root = f"swarm/{SWARM}/"
        version = 1
        pub.publish(root + "map", _map(version), 1, True)
        published: dict[int, float] = {}
        time.sleep(1.0)  # warm-up, not measured
        cpu0, t0 = _cpu_seconds(station.pid), time.monotonic()
        sent = 0
        period = 1.0 / hz
        next_tick = time.monotonic()
        last_status = last_map = 0.0
        while (now := time.monotonic()) - t0 < seconds:
            for node in range(1, drones + 1):
                doc = {"v": 1, "node": node, "name": f"drone-{node}", "t": int(time.time() * 1000),
                       "lat": 39.76 + node * 1e-4, "lon": -121.62 + (now % 60) * 1e-5,
                       "alt_rel_m": 30.0, "heading_deg": (now * 10) % 360, "groundspeed_ms": 8.0,
                       "battery_pct": 80.0, "mode": "AUTO", "armed": True, "link_score": 0.8,
                       "mission_seq": 3, "fc_connected": True}
                pub.publish(root + f"telemetry/{node}", json.dumps(doc).encode(), 0)
                sent += 1
            if now - last_status >= 1.0:
                last_status = now
                for node in range(1, drones + 1):
                    pub.publish(root + f"status/{node}", _status(node, version), 1, True)
                    sent += 1
            if now - last_map >= 2.0:
                last_map = now
                version += 1
                published[version] = time.monotonic()
                pub.publish(root + "map", _map(version), 1, True)
                sent += 1
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
        elapsed = time.monotonic() - t0
        cpu = _cpu_seconds(station.pid) - cpu0
        time.sleep(1.0)  # let the last commit arrive
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status"))
        latencies = sorted((r.seen[v] - t) * 1000 for r in readers for v, t in published.items()
                           if v in r.seen)
        missing = sum(1 for r in readers for v in published if v not in r.seen)
        print(f"ground station: {drones} drones x {hz:g} Hz telemetry, {browsers} browsers, "
              f"{elapsed:.1f} s")
        print(f"  messages published   {sent} ({sent / elapsed:.0f}/s); station received "
              f"{status['received']}, dropped {status['dropped']}")
        print(f"  server CPU           {100 * cpu / elapsed:.1f} % of one core")
        print(f"  server peak RSS      {_rss_mb(station.pid):.0f} MiB")
        print(f"  stream bytes/browser {sum(r.bytes for r in readers) / max(1, browsers) / elapsed / 1024:.1f} KiB/s")
        if latencies:
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            print(f"  map commit -> stream {statistics.median(latencies):.1f} ms p50, "
                  f"{p95:.1f} ms p95, {latencies[-1]:.1f} ms max "
                  f"({len(latencies)} deliveries, {missing} missing)")
    finally:
        for r in readers:
            r.stop = True
            r.conn.close()
        pub.loop_stop()
        pub.disconnect()
        station.terminate()
        try:
            station.wait(10)
        except subprocess.TimeoutExpired:
            station.kill()
            station.wait(5)
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--drones", type=int, default=10)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--browsers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not (1 <= args.drones <= 64 and 0 < args.hz <= 50 and 0 <= args.browsers <= 20
            and 1 <= args.seconds <= 600):
        parser.error("drones 1..64, hz in (0, 50], browsers 0..20, seconds 1..600")
    run(args.drones, args.hz, args.browsers, args.seconds)


if __name__ == "__main__":
    main()
