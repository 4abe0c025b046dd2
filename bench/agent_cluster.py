"""The agent as a process, and its peer, in one run: real agents (`swarm agent`, SQLite
with fsync) on mosquitto on loopback, and a 3-node PySyncObj cluster (docs/benchmarks.md,
"Agent").

Prints:

* for 3 and 5 agents (``--nodes``), once per state machine (``--state-machine``,
  default ``both``: the register, then the map, one after the other in the same run):
  each agent's idle CPU (% of one core) and RSS; committed commands per second with W
  outstanding requests (``--outstanding``, default 1, 100, 1000, 10000) and the p50/p99
  commit latency at 1 outstanding, as a client sees it (request published ->
  ``committed`` reply). With the register (``[node] state_machine = "register"``) the
  commands are ``put`` of a 32-character value over 50 keys: the figures are the
  consensus path's (client protocol, sessions, Raft, SQLite, the bus); with the map
  they are ``set_zone`` over 50 zone ids (the map stays the same size): the map's own
  committed commands/s through consensus; each agent's RSS after the load, and again
  SETTLE_S later. A table of both (and the peer) ends the run;
* the same for 3 PySyncObj 0.3.17 nodes, each its own process on loopback, default
  configuration (its batching on), no fsync (PySyncObj has none), a trivial replicated
  ``set``; its load is issued inside the leader's process (PySyncObj has no client
  protocol), so it saves the agent's client -> broker -> leader hop;
* failover for each profile (``--profiles``): SIGKILL of the leader -> the next committed
  write of a ``swarm.client`` that proposes right after the kill, over ``--kills`` kills
  (the killed agent is restarted and the cluster converges before the next).

Load: W outstanding commands are kept in flight by one MQTT 5 connection, sent to the
leader, each retried with the same session and sequence number after
``busy``/``no_leader``/``timeout`` (as swarm.client does, with its backoff after a
refusal: 50 ms doubling to 1 s while a slot is refused in a row). For each ``--batch`` size B
(default ``1,64``): B 1 is one command per request message (a pipelined generator over
ceil(W/16) sessions, 16 commands in flight per session); B > 1 is batched proposals
(docs/protocol.md, "Batches"): W split into batches of at most B commands, one batch in
flight per session, the next sent as soon as its reply comes (the retried members plus
new commands, so W stay outstanding). Both are printed, so the per-command figures stay
comparable with earlier runs. Every loop is bounded by time.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

#: Commands in flight per session (the session table keeps 64 unacknowledged results).
PER_SESSION = 16
#: A request with no reply after this long is sent again with the same session and seq
#: (a request dropped by a full queue, or a lost reply). Long: every resend of a request
#: that is only late adds load exactly when the agents have too much.
RESEND_AFTER_S = 20.0
#: A retry's pause after a timeout or an error; after ``busy`` / ``no_leader`` it backs
#: off as swarm.client's (swarm/client.py _with_retries): 50 ms, doubling to 1 s.
RETRY_AFTER_S = 0.02
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0
#: The second "after load" RSS sample is taken this long after the first (the agents
#: are idle by then; docs/agent.md, "Memory after a burst").
SETTLE_S = 3.0
#: Zone ids (register keys) the commands cycle over (the state stays this size).
ZONE_IDS = 50
#: What each state machine's load is called in the output, and the bench's command.
COMMAND_NAMES = {"register": "register puts", "map": "map commands"}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _zone(zid: str) -> dict[str, Any]:
    lon, lat, d = -122.1, 37.4, 0.005
    return {"type": "set_zone", "id": zid, "status": "burning", "source": "bench", "time_ms": 1,
            "polygon": [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat]]}


def _command(machine: str, slot: int) -> dict[str, Any]:
    """The load's command for ``slot`` (see the module docstring)."""
    if machine == "register":
        return {"type": "put", "key": f"k{slot % ZONE_IDS}", "value": f"{slot:032d}"}
    return _zone(f"z{slot % ZONE_IDS}")


# ------------------------------------------------------------------ agent load generator


class LoadGen:
    """Keeps ``outstanding`` proposals in flight against one node (see the module
    docstring). Replies arrive on paho's network thread, which also sends the next
    request; a small timer thread re-sends retryable answers after a pause."""

    def __init__(self, host: str, port: int, swarm: str, machine: str = "map") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from swarm.bus import topics

        self._topics = topics
        self._props = lambda: Properties(PacketTypes.PUBLISH)
        self.swarm = swarm
        self.machine = machine
        self.cid = f"bench-{os.getpid()}-{os.urandom(3).hex()}"
        self.reply_topic = f"swarm-client/{self.cid}/reply"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.cid,
                                  protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the load generator could not connect to the broker")
        self.client.subscribe(self.reply_topic, qos=1)
        self.target = 0
        self._ids = itertools.count(1)
        #: request id -> (kind, slot or nonce, body, sent at, run); a reply or resend of
        #: an earlier run (a level's stragglers after its drain) is ignored.
        self._pending: dict[str, tuple[str, Any, dict[str, Any], float, int]] = {}
        self._retry: list[tuple[float, int, dict[str, Any], str, Any, int]] = []
        self._run = 0
        self._retry_seq = itertools.count()
        #: slot -> refusals (busy, no_leader) in a row: the retry backs off as
        #: swarm.client's does (RETRY_BACKOFF_S doubling to RETRY_BACKOFF_MAX_S).
        self._refusals: dict[Any, int] = {}
        self._sessions: dict[str, int] = {}
        self._registered = threading.Event()
        self._want_sessions = 0
        self.running = False
        self.batch = 1
        self._sizes: list[int] = []   # batch mode: slot -> its batch size
        self.committed = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] | None = None
        #: per session: next seq, outstanding seqs
        self._next_seq: dict[int, int] = {}
        self._open: dict[int, set[int]] = {}
        self._slots: list[int] = []  # slot -> session
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._retry_loop, daemon=True)
        self._timer.start()

    def close(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()

    # -- wire ---------------------------------------------------------------------------

    def _publish(self, body: dict[str, Any], kind: str, key: Any) -> None:
        rid = f"{self.cid}-{next(self._ids)}"
        body = {**body, "v": 1, "id": rid}
        props = self._props()
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = rid.encode()
        with self.lock:
            self._pending[rid] = (kind, key, body, time.monotonic(), self._run)
        self.client.publish(self._topics.request(self.swarm, self.target),
                            json.dumps(body).encode(), qos=1, properties=props)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        rid = msg.properties.CorrelationData.decode() if getattr(
            msg.properties, "CorrelationData", None) else None
        with self.lock:
            entry = self._pending.pop(rid, None) if rid else None
        if entry is None or entry[4] != self._run:
            return
        kind, key, body, sent, _ = entry
        reply = json.loads(msg.payload)
        status, code = reply.get("status"), reply.get("code")
        if kind == "register":
            if status == "registered":
                with self.lock:
                    self._sessions[key] = int(reply["session"])
                    if len(self._sessions) >= self._want_sessions:
                        self._registered.set()
            else:
                self._later(body, kind, key)
            return
        if kind == "batch":
            self._on_batch(key, body, reply, now - sent)
            return
        if status == "committed":
            session, seq = body["session"], body["seq"]
            with self.lock:
                self._refusals.pop(key, None)
                self._open[session].discard(seq)
                if self.running:
                    self.committed += 1
                    if self.latencies is not None:
                        self.latencies.append((now - sent) * 1000)
            if self.running:
                self._propose(key)
            return
        self.errors[str(code)] = self.errors.get(str(code), 0) + 1
        if code in ("busy", "no_leader", "timeout"):
            self._later({k: v for k, v in body.items() if k not in ("v", "id")}, kind, key,
                        str(code))
        else:
            with self.lock:
                self._open[body["session"]].discard(body["seq"])
            if self.running:
                self._propose(key)

    def _on_batch(self, slot: int, body: dict[str, Any], reply: dict[str, Any],
                  waited: float) -> None:
        """A batch's reply: count what committed, send the retryable members again
        (with new commands to fill the batch while running) after a pause."""
        code = reply.get("code")
        if reply.get("status") != "batch":   # the request as a whole: busy (no room)
            self.errors[str(code)] = self.errors.get(str(code), 0) + 1
            self._later(body, "batch", slot, str(code))
            return
        session = body["session"]
        sent = {c["seq"]: c["command"] for c in body["commands"]}
        retry: list[tuple[int, dict[str, Any]]] = []
        refused: str | None = None
        with self.lock:
            opened = self._open[session]
            for r in reply.get("results", ()):
                seq = r.get("seq")
                if r.get("status") == "committed":
                    self._refusals.pop(slot, None)
                    opened.discard(seq)
                    if self.running:
                        self.committed += 1
                        if self.latencies is not None:
                            self.latencies.append(waited * 1000)
                    continue
                c = str(r.get("code"))
                self.errors[c] = self.errors.get(c, 0) + 1
                if c in ("busy", "no_leader", "timeout") and seq in sent:
                    retry.append((seq, sent[seq]))
                    if c != "timeout":
                        refused = c
                else:
                    opened.discard(seq)
        if retry:
            self._later({}, "refill", (slot, retry), refused)
        elif self.running:
            self._propose_batch(slot, [])

    def _later(self, body: dict[str, Any], kind: str, key: Any, code: str | None = None) -> None:
        """Send ``body`` again after a pause: after ``busy`` or ``no_leader`` the pause
        doubles with each refusal in a row of that slot, from 50 ms to 1 s, as
        swarm.client's does (retrying a refusal at once only asks the leader to refuse
        it again); otherwise RETRY_AFTER_S."""
        slot = key[0] if kind == "refill" else key
        delay = RETRY_AFTER_S
        with self.lock:
            if code in ("busy", "no_leader"):
                n = self._refusals.get(slot, 0)
                self._refusals[slot] = n + 1
                delay = min(RETRY_BACKOFF_S * 2 ** n, RETRY_BACKOFF_MAX_S)
            heapq.heappush(self._retry, (time.monotonic() + delay, next(self._retry_seq),
                                         {k: v for k, v in body.items() if k not in ("v", "id")},
                                         kind, key, self._run))

    def _retry_loop(self) -> None:
        next_scan = time.monotonic() + 1.0
        while not self._stop.wait(0.005):
            now = time.monotonic()
            due = []
            with self.lock:
                while self._retry and self._retry[0][0] <= now:
                    due.append(heapq.heappop(self._retry))
                if now >= next_scan:
                    next_scan = now + 1.0
                    late = [rid for rid, (_, _, _, sent, _) in self._pending.items()
                            if now - sent > RESEND_AFTER_S]
                    for rid in late:
                        kind, key, body, _, run = self._pending.pop(rid)
                        self.errors["unanswered"] = self.errors.get("unanswered", 0) + 1
                        due.append((now, 0, {k: v for k, v in body.items()
                                             if k not in ("v", "id")}, kind, key, run))
            for _, _, body, kind, key, run in due:
                if run != self._run:
                    continue   # a straggler of an earlier level
                if kind == "refill":
                    self._propose_batch(*key)
                else:
                    self._publish(body, kind, key)  # also while draining: it must finish

    # -- load ---------------------------------------------------------------------------

    def _propose(self, slot: int) -> None:
        session = self._slots[slot]
        with self.lock:
            seq = self._next_seq[session]
            self._next_seq[session] = seq + 1
            opened = self._open[session]
            opened.add(seq)
            ack = min(opened)
        self._publish({"op": "propose", "session": session, "seq": seq, "ack": ack,
                       "command": _command(self.machine, slot)}, "propose", slot)

    def _propose_batch(self, slot: int, retry: list[tuple[int, dict[str, Any]]]) -> None:
        """Slot ``slot``'s next batch: ``retry`` (same seqs) and, while running, new
        commands up to the slot's size."""
        session = self._slots[slot]
        commands = [{"seq": seq, "command": command} for seq, command in retry]
        with self.lock:
            opened = self._open[session]
            while self.running and len(commands) < self._sizes[slot]:
                seq = self._next_seq[session]
                self._next_seq[session] = seq + 1
                opened.add(seq)
                commands.append({"seq": seq, "command": _command(self.machine, slot + seq)})
            if not commands:
                return
            ack = min(opened)
        self._publish({"op": "propose", "session": session, "ack": ack, "commands": commands},
                      "batch", slot)

    def run(self, target: int, outstanding: int, seconds: float,
            latencies: bool = False, batch: int = 1) -> tuple[float, list[float]]:
        """Committed proposals per second with ``outstanding`` in flight for
        ``seconds`` (after a short warm-up), and their latencies if asked; ``batch`` >
        1: in batches of at most that many commands (the module docstring)."""
        self.target = target
        self.batch = batch
        with self.lock:
            self._run += 1
        if batch > 1:
            self._sizes = [batch] * (outstanding // batch) + (
                [outstanding % batch] if outstanding % batch else [])
            n_sessions = len(self._sizes)
        else:
            n_sessions = math.ceil(outstanding / PER_SESSION)
        self._sessions.clear()
        self._registered.clear()
        self._want_sessions = n_sessions
        for k in range(n_sessions):
            self._publish({"op": "register", "nonce": f"{self.cid}-{outstanding}-{k}"},
                          "register", f"{outstanding}-{k}")
        if not self._registered.wait(60):
            raise RuntimeError(f"registered {len(self._sessions)} of {n_sessions} sessions")
        ids = sorted(self._sessions.values())
        if batch > 1:
            self._slots = ids
        else:
            self._slots = [ids[s // PER_SESSION] for s in range(outstanding)]
        for s in ids:
            self._next_seq[s] = 1
            self._open[s] = set()
        self.committed = 0
        self.errors = {}
        self.running = True
        if batch > 1:
            for slot in range(len(self._slots)):
                self._propose_batch(slot, [])
        else:
            for slot in range(outstanding):
                self._propose(slot)
        time.sleep(min(1.0, seconds / 4))  # warm-up: the pipeline fills
        with self.lock:
            self.committed = 0
            self.latencies = [] if latencies else None
        t0 = time.monotonic()
        time.sleep(seconds)
        with self.lock:
            done, lat = self.committed, self.latencies or []
            self.latencies = None
        rate = done / (time.monotonic() - t0)
        self.running = False
        # Drain: let what is in flight finish (bounded) so the next level starts clean.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with self.lock:
                if not any(self._open.values()):
                    break
            time.sleep(0.05)
        with self.lock:
            self._pending.clear()
            self._retry.clear()
        return rate, lat


# ------------------------------------------------------------------ agents


def _agents(args: argparse.Namespace, n: int, machine: str, broker: Any, tmp: Path,
            results: dict[tuple[str, int], dict[str, float]]) -> None:
    from agent_cluster import AgentCluster

    tmp.mkdir(parents=True, exist_ok=True)
    # The agents' own bounds ([client] max_pending 1024): beyond them the overload path
    # answers busy (retried after 20 ms). Admitting all 10 000 would make every request
    # wait longer than its 5 s timeout (10 000 / a few hundred per second), and the
    # timeouts' retries would be all the cluster does.
    cluster = AgentCluster(tmp, broker, n, profile="lan", election_ticks=None,
                           state_machine=machine)
    what = COMMAND_NAMES[machine]
    row = results.setdefault((machine, n), {})
    try:
        cluster.start_all()
        watcher = cluster.client()
        leader = cluster.wait_leader(watcher)
        print(f"{n} agents, state machine {machine}, profile lan, mosquitto on loopback, "
              f"fsync on ({time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
        time.sleep(2)
        pids = {i: cluster.procs[i].pid for i in cluster.ids}
        before = {i: _cpu_s(pid) for i, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.idle_seconds)
        dt = time.monotonic() - t0
        idle = {i: 100 * (_cpu_s(pid) - before[i]) / dt for i, pid in pids.items()}
        rss = {i: _rss_mb(pid) for i, pid in pids.items()}
        print(f"  idle CPU per agent ({args.idle_seconds:g} s): "
              + ", ".join(f"{idle[i]:.1f}" for i in cluster.ids)
              + f" % of a core (leader {leader}: {idle[leader]:.1f} %)", flush=True)
        print("  RSS per agent: " + ", ".join(f"{rss[i]:.1f}" for i in cluster.ids) + " MB",
              flush=True)
        gen = LoadGen(broker.host, broker.port, cluster.swarm, machine)
        try:
            _, lat = gen.run(leader, 1, args.latency_seconds, latencies=True)
            row["p50"], row["p99"] = _pct(lat, 0.5), _pct(lat, 0.99)
            print(f"  commit latency, 1 outstanding, {len(lat)} commits: "
                  f"p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms", flush=True)
            for w in args.outstanding:
                for b in args.batch:
                    if b > 1 and w == 1:
                        continue   # one command outstanding: nothing to batch
                    rate, _ = gen.run(leader, w, args.seconds, batch=b)
                    row[_level(w, b)] = rate
                    errors = ", ".join(f"{k} {v}" for k, v in sorted(gen.errors.items()))
                    per = f", batches of {b}" if b > 1 else ""
                    print(f"  {w:>5} outstanding{per}: {rate:8.0f} committed {what}/s"
                          f"{f'  (retried: {errors})' if errors else ''}", flush=True)
        finally:
            gen.close()
        st = watcher.statuses(wait_s=1.0)
        print(f"  RSS per agent after load: "
              + ", ".join(f"{_rss_mb(p):.1f}" for p in pids.values()) + " MB; leader "
              f"{leader} commit {st.get(leader, {}).get('commit')}", flush=True)
        # Once quiet, an agent hands a burst's freed heap back (swarm/agent/memory.py):
        # what it keeps, as a drone would hover with it until the next burst.
        time.sleep(SETTLE_S)
        print(f"  RSS per agent {SETTLE_S:g} s later: "
              + ", ".join(f"{_rss_mb(p):.1f}" for p in pids.values()) + " MB", flush=True)
    finally:
        cluster.close()


def _failover(args: argparse.Namespace, profile: str, broker: Any, tmp: Path) -> None:
    from agent_cluster import AgentCluster

    tmp.mkdir(parents=True, exist_ok=True)
    cluster = AgentCluster(tmp, broker, 3, profile=profile, election_ticks=None)
    times: list[float] = []
    lost = 0
    try:
        cluster.start_all()
        watcher = cluster.client()
        client = cluster.client()
        cluster.wait_leader(watcher)
        client.register()
        client.propose(_zone("f-warm"))
        for k in range(args.kills):
            leader = cluster.wait_leader(watcher)
            time.sleep(0.5)  # the heartbeat rhythm settles
            t = time.monotonic()
            cluster.kill(leader)
            reply = client.propose(_zone(f"f{k % ZONE_IDS}"), timeout_s=60)
            if reply.committed:
                times.append((time.monotonic() - t) * 1000)
                if args.verbose:
                    st = watcher.statuses(wait_s=0.5)
                    print(f"    kill {k}: node {leader}: {times[-1]:.0f} ms, {reply.attempts} "
                          f"attempts, answered by {reply.node}, terms "
                          f"{sorted({s.get('term') for s in st.values() if s.get('online')})}",
                          flush=True)
            else:
                lost += 1
            cluster.start(leader)
            cluster.wait_converged(watcher)
    finally:
        cluster.close()
    if times:
        print(f"failover, profile {profile}, 3 agents (SIGKILL of the leader -> next committed "
              f"write), {len(times)} kills: p50 {_pct(times, 0.5):.0f} ms, p99 "
              f"{_pct(times, 0.99):.0f} ms, min {min(times):.0f}, max {max(times):.0f} ms"
              f"{f', {lost} not committed' if lost else ''}", flush=True)


# ------------------------------------------------------------------ PySyncObj peer


def _pysyncobj_node(me: int, ports: list[int]) -> int:
    """One PySyncObj node (a child process); commands on stdin, answers on stdout."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Register(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            addrs = [f"127.0.0.1:{p}" for p in ports]
            super().__init__(addrs[me], [a for i, a in enumerate(addrs) if i != me],
                             conf=SyncObjConf(dynamicMembershipChange=False))
            self.values: dict[str, int] = {}

        @replicated  # type: ignore[misc]
        def set(self, key: str, value: int) -> None:
            self.values[key] = value

    node = Register()
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "leader":
            leader = node._getLeader()
            print(json.dumps({"leader": None if leader is None else str(leader.address)
                              if hasattr(leader, "address") else str(leader),
                              "me": f"127.0.0.1:{ports[me]}"}), flush=True)
        elif cmd[0] == "load":
            w, seconds, want_lat = int(cmd[1]), float(cmd[2]), cmd[3] == "1"
            lock = threading.Lock()
            state = {"done": 0, "errors": 0, "counting": False}
            lat: list[float] = []
            running = [True]

            def issue(slot: int) -> None:
                sent = time.monotonic()

                def cb(result: Any, error: Any) -> None:
                    with lock:
                        if state["counting"]:
                            if error == 0:  # FAIL_REASON.SUCCESS
                                state["done"] += 1
                                if want_lat:
                                    lat.append((time.monotonic() - sent) * 1000)
                            else:
                                state["errors"] += 1
                    if running[0]:
                        issue(slot)

                node.set(f"k{slot % ZONE_IDS}", slot, callback=cb)

            for slot in range(w):
                issue(slot)
            time.sleep(min(1.0, seconds / 4))
            with lock:
                state["counting"] = True
            t0 = time.monotonic()
            time.sleep(seconds)
            with lock:
                state["counting"] = False
                done, errors = state["done"], state["errors"]
            rate = done / (time.monotonic() - t0)
            running[0] = False
            time.sleep(0.5)
            print(json.dumps({"rate": rate, "errors": errors, "p50": _pct(lat, 0.5),
                              "p99": _pct(lat, 0.99), "n": len(lat)}), flush=True)
        elif cmd[0] == "quit":
            break
    node.destroy()
    return 0


def _pysyncobj(args: argparse.Namespace, results: dict[tuple[str, int], dict[str, float]]) -> None:
    from swarm.bus.broker import free_port

    ports = [free_port() for _ in range(3)]
    procs = [subprocess.Popen([sys.executable, __file__, "--pysyncobj-node", str(i),
                               ",".join(map(str, ports))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for i in range(3)]

    def ask(p: subprocess.Popen[str], line: str) -> dict[str, Any]:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(line + "\n")
        p.stdin.flush()
        return dict(json.loads(p.stdout.readline()))

    try:
        leader_proc = None
        deadline = time.monotonic() + 60
        while leader_proc is None and time.monotonic() < deadline:
            for p in procs:
                answer = ask(p, "leader")
                if answer["leader"] is not None and answer["leader"] == answer["me"]:
                    leader_proc = p
                    break
            time.sleep(0.2)
        if leader_proc is None:
            print("PySyncObj: no leader within 60 s", flush=True)
            return
        print("3 PySyncObj 0.3.17 nodes (separate processes, loopback, default config: "
              "batching on; no fsync), load issued in the leader's process", flush=True)
        lat = ask(leader_proc, f"load 1 {args.latency_seconds} 1")
        row = results.setdefault(("PySyncObj", 3), {})
        row["p50"], row["p99"] = lat["p50"], lat["p99"]
        print(f"  commit latency, 1 outstanding, {lat['n']} commits: p50 {lat['p50']:.2f} ms, "
              f"p99 {lat['p99']:.2f} ms", flush=True)
        for w in args.outstanding:
            r = ask(leader_proc, f"load {w} {args.seconds} 0")
            row[str(w)] = r["rate"]
            failed = f"  ({r['errors']} failed)" if r["errors"] else ""
            print(f"  {w:>5} outstanding: {r['rate']:8.0f} committed commands/s{failed}",
                  flush=True)
    finally:
        for p in procs:
            try:
                assert p.stdin is not None
                p.stdin.write("quit\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait(10)


# ------------------------------------------------------------------ main


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _level(outstanding: int, batch: int) -> str:
    """A results key: the outstanding level, and the batch size when batched."""
    return str(outstanding) if batch == 1 else f"{outstanding}/{batch}"


def _machines(text: str) -> list[str]:
    """``--state-machine``: ``both`` (register, then map), or a comma list in run order."""
    names = ["register", "map"] if text == "both" else [x for x in text.split(",") if x]
    for name in names:
        if name not in COMMAND_NAMES:
            raise argparse.ArgumentTypeError(f"{name!r}: one of register, map, both")
    return names


def _summary(args: argparse.Namespace,
             results: dict[tuple[str, int], dict[str, float]]) -> None:
    """One table of every figure of the run: ops/s per outstanding level, latency at 1."""
    columns = [k for k in results if results[k]]
    if not columns:
        return
    print("\nsummary: committed commands/s (register: the consensus path; map: the map's own)")
    print("| | " + " | ".join(f"{m} x{n}" for m, n in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for w in args.outstanding:
        for b in args.batch:
            if b > 1 and w == 1:
                continue
            key = _level(w, b)
            # The peer has no batches: its figure at the same outstanding level.
            cells = [results[c].get(key, results[c].get(str(w)) if c[0] == "PySyncObj"
                                    else None) for c in columns]
            print(f"| {w} outstanding{f', batches of {b}' if b > 1 else ''} | " + " | ".join(
                f"{v:.0f}" if v is not None else "" for v in cells) + " |")
    print("| p50 / p99 ms at 1 | " + " | ".join(
        f"{results[c]['p50']:.2f} / {results[c]['p99']:.2f}" if "p50" in results[c] else ""
        for c in columns) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--pysyncobj-node"]:
        return _pysyncobj_node(int(argv[1]), _ints(argv[2]))
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=_ints, default=[3, 5], help="agent cluster sizes")
    p.add_argument("--state-machine", type=_machines, default=None,
                   help="register, map or both (default: the register, then the map, for "
                        "each cluster size; --quick: the register); a comma list runs them "
                        "in its order")
    p.add_argument("--outstanding", type=_ints, default=[1, 100, 1000, 10000],
                   help="comma list of outstanding requests")
    p.add_argument("--batch", type=_ints, default=[1, 64],
                   help="comma list of commands per request message at each outstanding "
                        "level (1: one command per request; up to 64: batched proposals)")
    p.add_argument("--seconds", type=float, default=5.0, help="per throughput point")
    p.add_argument("--latency-seconds", type=float, default=5.0,
                   help="commits at 1 outstanding for this long (latency percentiles)")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--kills", type=int, default=50, help="leader SIGKILLs per profile")
    p.add_argument("--profiles", default="lan,radio")
    p.add_argument("--no-peer", action="store_true", help="skip PySyncObj")
    p.add_argument("--verbose", action="store_true", help="print every kill")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 agents, 1 and 100 "
                   "outstanding, 1 s each, 1 kill per profile")
    args = p.parse_args(argv)
    if not args.batch or any(not 1 <= b <= 64 for b in args.batch):
        p.error("--batch: sizes from 1 to 64 (docs/protocol.md, Batches)")
    if args.quick:
        args.nodes, args.outstanding, args.seconds = [3], [1, 100], 1.0
        args.latency_seconds, args.idle_seconds, args.kills = 1.0, 1.0, 1
        args.state_machine = args.state_machine or ["register"]
    args.state_machine = args.state_machine or ["register", "map"]
    profiles = [x for x in args.profiles.split(",") if x]
    from swarm.bus.broker import LocalBroker

    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        broker = LocalBroker("mosquitto")
        broker.start()
        try:
            results: dict[tuple[str, int], dict[str, float]] = {}
            for n in args.nodes:
                for machine in args.state_machine:
                    _agents(args, n, machine, broker, Path(tmp) / f"n{n}-{machine}", results)
            if not args.no_peer:
                _pysyncobj(args, results)
            _summary(args, results)
            for profile in profiles:
                _failover(args, profile, broker, Path(tmp) / f"f-{profile}")
        finally:
            broker.close()
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
