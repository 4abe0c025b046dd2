"""Transcript tests in the manner of etcd-io/raft's ``testdata/*.txt``: each file in
``testdata/`` is a script of commands, each followed by ``----`` and the exact output
it must produce (every delivered message, every state change). They read like a
walk-through of the protocol and pin its message-level behaviour.

Regenerate the expected outputs after an intended change with
``RAFT_TRANSCRIPTS_REWRITE=1 python -m pytest tests/consensus/test_raft_transcripts.py``
and review the diff: it is the behaviour change.

Commands: ``cluster N [key=value ...]`` (Config options, seed), ``campaign ID``,
``tick [N]``, ``stabilize`` (deliver until quiet, printing each message),
``propose ID DATA``, ``partition A,B C,D``, ``heal``, ``crash ID``, ``restart ID``,
``compact ID``, ``add-learner|add-voter|remove LEADER NODE``, ``transfer ID TARGET``,
``read ID CTX``, ``status``, ``log ID``, ``applied``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus import ConfChange, ConfChangeType, Message, MessageType, ProposalDropped

from _harness import Cluster

TESTDATA = Path(__file__).with_name("testdata")


def _fmt_msg(m: Message) -> str:
    parts = [f"{m.frm}->{m.to} {m.type.name}", f"term={m.term}"]
    t = m.type
    if t in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE):
        parts.append(f"last={m.index}/{m.log_term}" if t is not MessageType.APPEND
                     else f"prev={m.index}/{m.log_term}")
    if t is MessageType.APPEND:
        ents = " ".join(f"{e.index}/{e.term}" + (f":{e.data.decode(errors='replace')}"
                                                  if e.data and e.kind.name == "NORMAL" else
                                                  ":conf" if e.kind.name != "NORMAL" else "")
                        for e in m.entries)
        parts.append(f"commit={m.commit} [{ents}]")
    if t in (MessageType.APPEND_RESP,):
        parts.append(f"index={m.index}")
        if m.reject:
            parts.append(f"REJECT hint={m.reject_hint}/{m.log_term}")
    if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        parts.append("REJECT" if m.reject else "granted")
    if t is MessageType.HEARTBEAT:
        parts.append(f"commit={m.commit}")
    if t in (MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP, MessageType.READ_INDEX,
             MessageType.READ_INDEX_RESP) and m.context:
        parts.append(f"ctx={m.context.decode(errors='replace')}")
    if t is MessageType.READ_INDEX_RESP:
        parts.append(f"index={m.index}")
    if t is MessageType.SNAPSHOT:
        assert m.snapshot is not None
        parts.append(f"snap={m.snapshot.meta.index}/{m.snapshot.meta.term} "
                     f"offset={m.snapshot_offset} len={len(m.snapshot.data)}"
                     + (" done" if m.snapshot_done else ""))
    if t is MessageType.SNAPSHOT_RESP:
        parts.append(f"snap={m.index} offset={m.snapshot_offset}" + (" REJECT" if m.reject else ""))
    return " ".join(parts)


class _Runner:
    def __init__(self) -> None:
        self.c: Cluster | None = None
        self.out: list[str] = []

    def _stabilize(self) -> None:
        c = self.c
        assert c is not None
        c.process_all()
        for _ in range(100_000):
            if not c.queue:
                return
            m = c.queue[0]
            blocked = (m.frm, m.to) in c.blocked or c.views[m.to].node is None
            self.out.append(("  dropped " if blocked else "  ") + _fmt_msg(m))
            c.deliver_one()
        raise AssertionError("did not quiesce")

    def _status(self) -> None:
        c = self.c
        assert c is not None
        for i in sorted(c.views):
            if c.views[i].node is None:
                self.out.append(f"{i}: down")
                continue
            st = c.node(i).status()
            cs = st.conf_state
            conf = ",".join(map(str, cs.voters)) + (
                " learners=" + ",".join(map(str, cs.learners)) if cs.learners else "")
            self.out.append(f"{i}: {st.role.value} term={st.term} vote={st.vote} lead={st.lead} "
                            f"commit={st.commit} last={st.last_index} voters={conf}")

    def run(self, line: str) -> None:
        words = line.split()
        cmd, args = words[0], words[1:]
        c = self.c
        if cmd == "cluster":
            kw: dict[str, object] = {}
            for a in args[1:]:
                k, v = a.split("=")
                kw[k] = {"true": True, "false": False}.get(v, int(v) if v.isdigit() else v)
            self.c = Cluster(int(args[0]), **kw)  # type: ignore[arg-type]
            self.c.process_all()
            return
        assert c is not None, "cluster first"
        if cmd == "campaign":
            c.node(int(args[0])).campaign()
            c.process(int(args[0]))
        elif cmd == "tick":
            n = int(args[0]) if args else 1
            for _ in range(n):
                for i in sorted(c.views):
                    if c.views[i].node is not None:
                        c.node(i).tick()
                self._stabilize()
        elif cmd == "stabilize":
            self._stabilize()
        elif cmd == "propose":
            try:
                c.propose(int(args[0]), args[1].encode())
            except ProposalDropped as exc:
                self.out.append(f"dropped: {exc}")
        elif cmd == "partition":
            c.partition(*[[int(x) for x in g.split(",")] for g in args])
        elif cmd == "heal":
            c.heal()
        elif cmd == "crash":
            c.crash(int(args[0]))
        elif cmd == "restart":
            c.restart(int(args[0]))
            c.process(int(args[0]))
        elif cmd == "compact":
            c.compact(int(args[0]))
            snap = c.views[int(args[0])].storage.snapshot().meta
            self.out.append(f"snapshot at {snap.index}/{snap.term}")
        elif cmd in ("add-learner", "add-voter", "remove"):
            typ = {"add-learner": ConfChangeType.ADD_LEARNER, "add-voter": ConfChangeType.ADD_VOTER,
                   "remove": ConfChangeType.REMOVE_NODE}[cmd]
            try:
                c.node(int(args[0])).propose_conf_change(ConfChange(typ, int(args[1])))
                c.process(int(args[0]))
            except ProposalDropped as exc:
                self.out.append(f"dropped: {exc}")
        elif cmd == "transfer":
            c.node(int(args[0])).transfer_leader(int(args[1]))
            c.process(int(args[0]))
        elif cmd == "read":
            try:
                c.node(int(args[0])).read_index(args[1].encode())
                c.process(int(args[0]))
            except ProposalDropped as exc:
                self.out.append(f"dropped: {exc}")
        elif cmd == "status":
            self._status()
            for i in sorted(c.views):
                for rs in c.views[i].read_states:
                    self.out.append(f"{i}: read {rs.request_ctx.decode()} at {rs.index}")
                c.views[i].read_states.clear()
        elif cmd == "log":
            ents = c.log(int(args[0]))
            self.out.append(" ".join(f"{e.index}/{e.term}" for e in ents) or "(empty)")
        elif cmd == "applied":
            for i in sorted(c.views):
                self.out.append(f"{i}: " + (" ".join(d.decode() for d in c.applied(i)) or "-"))
        else:
            raise ValueError(f"unknown command {cmd!r}")


def _parse(text: str) -> list[tuple[list[str], str, list[str]]]:
    """(comments before, command, expected output lines) for each block."""
    blocks: list[tuple[list[str], str, list[str]]] = []
    lines = text.splitlines()
    comments: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            comments.append(line)
            i += 1
            continue
        if not line.strip():
            i += 1
            continue
        assert i + 1 < len(lines) and lines[i + 1] == "----", \
            f"line {i + 2}: expected ---- after {line!r}"
        i += 2
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        blocks.append((comments, line, expected))
        comments = []
    return blocks


def _render(blocks: list[tuple[list[str], str, list[str]]]) -> str:
    out: list[str] = []
    for comments, cmd, lines in blocks:
        out.extend(comments)
        out.append(cmd)
        out.append("----")
        out.extend(lines or ["ok"])
        out.append("")
    return "\n".join(out)


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path):
    blocks = _parse(path.read_text())
    runner = _Runner()
    actual = []
    for comments, cmd, _ in blocks:
        runner.out = []
        runner.run(cmd)
        actual.append((comments, cmd, runner.out or ["ok"]))
    if os.environ.get("RAFT_TRANSCRIPTS_REWRITE"):
        path.write_text(_render(actual))
        return
    for (_, cmd, expected), (_, _, got) in zip(blocks, actual):
        assert got == expected, f"{path.name}: {cmd}\n" + "\n".join(got)
