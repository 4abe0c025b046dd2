"""One client process of the process-level history check (test_agent_history.py).

Run as ``python tests/agent/history_client.py --broker HOST:PORT --swarm ID --client N
--out FILE --stop FILE --seed S --max-s SECONDS``. It opens its own MQTT connection and
its own exactly-once session (``swarm.client``), then until the stop file appears (or
``--max-s`` passes, so it always ends) it does, one at a time:

- a write: ``set_zone`` of one of the register zones (``--keys``) with a value unique
  across all clients in ``time_ms`` (client * 10**6 + k), or, one time in five, of a
  fresh zone that no other operation touches (so the final map must hold it if the
  write was acknowledged);
- a linearizable read (ReadIndex) of one register zone.

While the file ``--pin`` names a node (the test writes it while that node, the leader
until then, is SIGSTOPped), a client started with ``--pinnable`` sends its reads and
writes to that node alone, one attempt each (no hedging to other nodes, its own
session): they wait in the paused node's socket and meet a deposed leader when it
resumes, the stale read and the lone commit the protocol must make impossible.

Each operation is one JSON line in ``--out``: its kind, key, the value written or read,
and its invocation and completion times on CLOCK_MONOTONIC (one clock for every process
on the machine). An operation whose outcome the client did not learn (a timeout, any
error after which the command may still commit, a ClientError) has ``ret: null``: the
checker treats it as pending (it may take effect at any time after its call, or never).
A read answered with an error had no effect either way and is recorded pending too.
``invalid`` or ``bad_request`` for a write is a bug in this script or the agent: the
process exits 1 after recording it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from swarm.client import ClientError, SwarmClient


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def zone(zid: str, value: int) -> dict[str, Any]:
    lon, lat, d = -122.1, 37.4, 0.005
    return {"type": "set_zone", "id": zid, "status": "burning", "source": "history",
            "time_ms": value,
            "polygon": [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat]]}


def _pinned_node(pin: Path | None) -> int | None:
    try:
        return int(pin.read_text()) if pin is not None else None
    except (FileNotFoundError, ValueError):   # absent, or being written
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--swarm", required=True)
    ap.add_argument("--client", type=int, required=True)
    ap.add_argument("--keys", default="k1,k2")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stop", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-s", type=float, default=120.0)
    ap.add_argument("--op-timeout-s", type=float, default=10.0)
    ap.add_argument("--attempt-timeout-s", type=float, default=2.0)
    ap.add_argument("--pin", type=Path)
    ap.add_argument("--pinnable", action="store_true")
    args = ap.parse_args(argv)

    n = args.client
    keys = args.keys.split(",")
    rng = random.Random(args.seed * 1000 + n)
    client = SwarmClient([args.broker], args.swarm, client_id=f"history-{n}",
                         timeout_s=args.op_timeout_s, attempt_timeout_s=args.attempt_timeout_s)
    client.connect()
    # The pinned operations' own session (numbered here: request() is one raw attempt).
    pinned = SwarmClient([args.broker], args.swarm, client_id=f"history-{n}-pinned",
                         timeout_s=30.0) if args.pinnable else None
    pinned_seq = 0
    if pinned is not None:
        pinned.register()
    end = now() + args.max_s
    written = 0
    status = 0
    with args.out.open("w") as out:
        def record(op: dict[str, Any]) -> None:
            out.write(json.dumps({"client": n, **op}) + "\n")
            out.flush()

        while not args.stop.exists() and now() < end:
            pin = _pinned_node(args.pin) if pinned is not None else None
            if pin is not None and pinned is not None:
                write = rng.random() < 0.5
                key = rng.choice(keys)
                body: dict[str, Any] = {"op": "read", "item": f"zone:{key}"}
                if write:
                    written += 1
                    pinned_seq += 1
                    value = n * 10**6 + written
                    body = {"op": "propose", "session": pinned.session, "seq": pinned_seq,
                            "ack": pinned_seq, "command": zone(key, value)}
                call = now()
                reply = pinned.request(pin, body, timeout_s=args.op_timeout_s)
                ret = now()
                outcome = f"pinned to {pin}: {reply.status} {reply.code or ''}".strip()
                if write:
                    record({"kind": "put", "key": key, "value": str(value), "call": call,
                            "ret": ret if reply.committed else None, "outcome": outcome})
                elif reply.status == "ok" or reply.code == "not_found":
                    output = (str(reply.body["item"]["properties"]["time_ms"])
                              if reply.status == "ok" else None)
                    record({"kind": "get", "key": key, "output": output, "call": call,
                            "ret": ret, "outcome": outcome, "node": pin,
                            "map_version": reply.body.get("map_version")})
                else:
                    record({"kind": "get", "key": key, "call": call, "ret": None,
                            "outcome": outcome})
                continue
            if rng.random() < 0.5:
                written += 1
                value = n * 10**6 + written
                key = f"{keys[0]}-c{n}-{written}" if rng.random() < 0.2 else rng.choice(keys)
                call = now()
                try:
                    reply = client.propose(zone(key, value))
                except ClientError as exc:   # may have been sent: outcome unknown
                    record({"kind": "put", "key": key, "value": str(value), "call": call,
                            "ret": None, "outcome": f"client_error: {exc}"})
                    continue
                ret = now()
                if reply.committed:
                    record({"kind": "put", "key": key, "value": str(value), "call": call,
                            "ret": ret, "outcome": "committed",
                            "index": reply.body.get("index")})
                else:
                    record({"kind": "put", "key": key, "value": str(value), "call": call,
                            "ret": None, "outcome": f"{reply.code}: {reply.message}"})
                    if reply.code in ("invalid", "bad_request"):
                        status = 1
                        break
            else:
                key = rng.choice(keys)
                call = now()
                try:
                    reply = client.read(f"zone:{key}")
                except ClientError as exc:
                    record({"kind": "get", "key": key, "call": call, "ret": None,
                            "outcome": f"client_error: {exc}"})
                    continue
                ret = now()
                if reply.status == "ok":
                    read: str | None = str(reply.body["item"]["properties"]["time_ms"])
                elif reply.code == "not_found":
                    read = None
                else:
                    record({"kind": "get", "key": key, "call": call, "ret": None,
                            "outcome": f"{reply.code}: {reply.message}"})
                    continue
                record({"kind": "get", "key": key, "output": read, "call": call, "ret": ret,
                        "outcome": "ok", "map_version": reply.body.get("map_version"),
                        "node": reply.node})
    client.close()
    if pinned is not None:
        pinned.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
