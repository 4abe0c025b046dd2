"""This node's link-quality score: the one number best-signal leadership compares
(consensus/leadership.py; docs/agent.md, "Best-signal leadership").

The agent measures two links and :func:`link_score` turns them into one score in
[0, 1] (1 best), which the node thread hands to ``RawNode.set_link_score``; Raft carries
it to the leader on every APPEND_RESP / HEARTBEAT_RESP, and the leader hands leadership
to a voter that beats its own score by a margin for a dwell time::

    score = radio * rtt_factor(broker_rtt_ms) * loss_factor(broker_loss)

* ``radio`` in [0, 1]: the drone's telemetry-radio link, from RADIO_STATUS
  (mavlink_bridge.signal: the weaker end's fade margin over the noise floor, smoothed;
  0 dB -> 0, 30 dB and more -> 1). On hardware a SiK radio sends it; in simulation
  sitl/radio.py's radio model does (one model). Once a radio has reported, a
  measurement older than ``radio_max_age_s`` is 0: a radio that stopped reporting is no
  evidence of a good link. A node without a flight controller (no ``[mavlink]``:
  ``radio=None``) has no radio hop: its way to the swarm is the broker link alone, so its
  radio factor is 1 and the broker factors decide; so has a drone with no telemetry
  radio in its path. :class:`RadioFactor` decides which a drone with ``[mavlink]`` is
  (``[leadership] radio``: ``auto``, the default, ``radio_status`` or ``none``).
* ``rtt_factor``: 1 at or below ``rtt_good_ms``, 0 at or above ``rtt_bad_ms``, linear
  between. ``broker_rtt_ms`` is the median round trip of this node's recent probes.
* ``loss_factor``: 1 - broker_loss / ``loss_bad``, clamped to [0, 1]; ``broker_loss`` is
  the fraction of recent probes that did not come back within their timeout.

A product, because a link is only as good as each part of it, and any part at 0 (radio
silent, broker unreachable) makes the whole 0. Until the first probe has come back the
score is ``None`` (unknown): the core then sends no score and adds no election delay;
a broker link that loses every probe scores 0.

Why a self-ping through the broker (:class:`BrokerProbe`) rather than Raft round trips:
every node needs its *own* link figure, in every role; Raft round trips are measured
only by the leader and mix two nodes' links (leader-broker-follower). A probe is a
small QoS 0 message each node publishes to its own ``ping/<node>`` topic and receives
back through the broker, over the same QoS 0 path Raft messages take (so a broker that
drops QoS 0 shows as loss); two small messages per period per node, no extra state on
anyone else.
"""

from __future__ import annotations

import math
import os
import statistics
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bridge (pymavlink) is loaded only by agents with [mavlink]
    from mavlink_bridge.signal import LinkQuality

__all__ = ["RADIO_MODES", "BrokerProbe", "LinkFigures", "LinkScorePolicy", "RadioFactor", "link_score"]


@dataclass(frozen=True, slots=True)
class LinkScorePolicy:
    """The score function's parameters (``[leadership]`` in the agent's config)."""

    #: Broker round trip at or below which the broker link counts as perfect.
    rtt_good_ms: float = 50.0
    #: Broker round trip at or above which it counts as useless.
    rtt_bad_ms: float = 500.0
    #: Probe loss at which the broker link counts as useless (half lost: 0).
    loss_bad: float = 0.5
    #: A RADIO_STATUS older than this counts as no radio (score 0).
    radio_max_age_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("rtt_good_ms", "rtt_bad_ms", "loss_bad", "radio_max_age_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.rtt_bad_ms <= self.rtt_good_ms:
            raise ValueError(f"rtt_bad_ms ({self.rtt_bad_ms:g}) must be above rtt_good_ms "
                             f"({self.rtt_good_ms:g})")
        if not 0 < self.loss_bad <= 1:
            raise ValueError(f"loss_bad must be in (0, 1], got {self.loss_bad!r}")


def _unit(value: float | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be None or a number in [0, 1], got {value!r}")


def link_score(radio: float | None, broker_rtt_ms: float | None, broker_loss: float,
               policy: LinkScorePolicy = LinkScorePolicy()) -> float | None:
    """This node's score in [0, 1], rounded to 0.01, or None while the broker round trip
    is unknown. ``radio``: the radio factor in [0, 1], None for a node without a flight
    controller (counts as 1); ``broker_rtt_ms`` >= 0; ``broker_loss`` in [0, 1]. See the
    module docstring for the formula and why."""
    _unit(radio, "radio")
    _unit(broker_loss, "broker_loss")
    loss_factor = min(1.0, max(0.0, 1.0 - broker_loss / policy.loss_bad))
    if broker_rtt_ms is None:
        # No probe came back: unknown at start, but a link that loses them all is 0.
        return 0.0 if loss_factor == 0.0 else None
    if isinstance(broker_rtt_ms, bool) or not isinstance(broker_rtt_ms, (int, float)) \
            or not broker_rtt_ms >= 0 or math.isinf(broker_rtt_ms):
        raise ValueError(f"broker_rtt_ms must be a finite number >= 0, got {broker_rtt_ms!r}")
    span = policy.rtt_bad_ms - policy.rtt_good_ms
    rtt_factor = min(1.0, max(0.0, (policy.rtt_bad_ms - broker_rtt_ms) / span))
    radio_factor = 1.0 if radio is None else float(radio)
    return round(radio_factor * rtt_factor * loss_factor, 2)


@dataclass(frozen=True, slots=True)
class LinkFigures:
    """What the score was computed from (published in ``status/<node>`` as ``link``)."""

    score: float | None
    radio: float | None
    broker_rtt_ms: float | None
    broker_loss: float
    #: Where ``radio`` came from (:attr:`RadioFactor.source`); None without [mavlink].
    radio_source: str | None = None

    def as_status(self) -> dict[str, float | str | None]:
        return {"radio": self.radio, "radio_source": self.radio_source,
                "broker_rtt_ms": None if self.broker_rtt_ms is None else round(self.broker_rtt_ms, 1),
                "broker_loss": round(self.broker_loss, 3)}


#: The radio modes of ``[leadership] radio``.
RADIO_MODES = ("auto", "radio_status", "none")


class RadioFactor:
    """The radio factor of a drone with ``[mavlink]``, and where it comes from.

    A telemetry radio is not always in the path: a flight controller on USB or a
    companion computer's serial port, with the swarm reached over Wi-Fi or cellular, has
    none, and then no RADIO_STATUS ever comes. Scoring such a drone 0 for ever would make
    it wait the longest before every election and never lead, for no reason about its
    link. But silence from a radio that *has* reported is the strongest sign of a bad
    link (out of range), and must score 0. So, by ``mode``:

    * ``radio_status``: a SiK radio is known to be there: its smoothed RADIO_STATUS
      score, 0 before its first report and once the latest is older than ``max_age_s``.
    * ``none``: no radio: factor None (counts as 1; the broker link decides).
    * ``auto`` (default): ``radio_status`` from the first RADIO_STATUS heard, for the
      rest of the agent's life (a radio that then goes silent scores 0). Until then
      the factor is 0 (``source`` ``"detecting"``: no evidence of a good link yet),
      and once the flight controller has been heard continuously for ``detect_s``
      with no RADIO_STATUS, the drone has no radio (``source`` ``"absent"``: factor
      None). SiK radios report about once a second, so ``detect_s`` of 10 s is ten
      reports missed; the clock runs only while the flight controller link is up,
      because over a radio that is out of range nothing at all arrives.

    :attr:`source` is one of ``radio_status``, ``none`` (configured), ``absent``
    (auto: none heard) and ``detecting`` (auto: not decided yet). Sans-I/O: the agent's
    node thread calls :meth:`update` with the bridge's latest measurement.
    """

    def __init__(self, mode: str = "auto", detect_s: float = 10.0, max_age_s: float = 5.0) -> None:
        if mode not in RADIO_MODES:
            raise ValueError(f"radio mode must be one of {RADIO_MODES}, got {mode!r}")
        if not (math.isfinite(detect_s) and detect_s > 0 and math.isfinite(max_age_s) and max_age_s > 0):
            raise ValueError("detect_s and max_age_s must be finite and > 0")
        self.mode = mode
        self.detect_s = detect_s
        self.max_age_s = max_age_s
        self.source = {"auto": "detecting", "radio_status": "radio_status", "none": "none"}[mode]
        self._fc_up_since: float | None = None

    def update(self, now: float, quality: LinkQuality | None, fc_connected: bool) -> float | None:
        """The radio factor now (None: no radio hop, counts as 1)."""
        if self.source == "none":
            return None
        if quality is not None and self.source != "radio_status":
            self.source = "radio_status"  # a radio is there (also after "absent")
        if self.source == "radio_status":
            return 0.0 if quality is None else quality.score_at(now, self.max_age_s)
        if self.source == "absent":
            return None
        if not fc_connected:
            self._fc_up_since = None
        elif self._fc_up_since is None:
            self._fc_up_since = now
        elif now - self._fc_up_since >= self.detect_s:
            self.source = "absent"
            return None
        return 0.0


_PROBE = struct.Struct(">8sQ")  # this process's random nonce, sequence number


class BrokerProbe:
    """Round-trip time and loss of this node's broker link, by self-ping.

    The node thread calls :meth:`due` (a payload to publish on ``ping/<node>`` when a probe
    is due, else None) and :meth:`send_failed` when the bus refused it; paho's network
    thread calls :meth:`received` with what came back (timestamped there, so the node
    thread's own work is not counted as network delay). A probe not back within
    ``timeout_s`` is lost. Figures are over the last ``window`` settled probes: the
    median round trip (robust to one slow sample on a busy machine) and the fraction
    lost. Payloads that are not one of our outstanding probes (a stranger's, a duplicate,
    an old process's) are ignored and counted in ``rejected``.
    """

    def __init__(self, period_s: float, timeout_s: float, window: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(period_s) and period_s > 0 and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError("period_s and timeout_s must be finite and > 0")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.period_s = period_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._nonce = os.urandom(8)
        self._seq = 0
        self._next = 0.0
        self._lock = threading.Lock()
        self._outstanding: dict[int, float] = {}  # seq -> sent at
        #: Settled probes, newest last: round trip in ms, or None when lost.
        self._settled: deque[float | None] = deque(maxlen=window)
        self.rejected = 0

    def due(self, now: float) -> bytes | None:
        if now < self._next:
            return None
        self._next = now + self.period_s
        with self._lock:
            self._expire(now)
            self._seq += 1
            self._outstanding[self._seq] = now
            return _PROBE.pack(self._nonce, self._seq)

    def send_failed(self) -> None:
        """The bus did not take the last probe (no broker connected): lost."""
        with self._lock:
            if self._outstanding.pop(self._seq, None) is not None:
                self._settled.append(None)

    def received(self, payload: bytes) -> bool:
        now = self._clock()
        if len(payload) != _PROBE.size:
            self.rejected += 1
            return False
        nonce, seq = _PROBE.unpack(payload)
        with self._lock:
            sent = self._outstanding.pop(seq, None) if nonce == self._nonce else None
            if sent is None:
                self.rejected += 1
                return False
            if now - sent > self.timeout_s:
                self._settled.append(None)  # back, but too late to count: lost
                return False
            self._settled.append((now - sent) * 1000.0)
            return True

    def _expire(self, now: float) -> None:
        for seq, sent in list(self._outstanding.items()):
            if now - sent > self.timeout_s:
                del self._outstanding[seq]
                self._settled.append(None)

    def figures(self, now: float) -> tuple[float | None, float]:
        """(median round trip in ms or None before any came back, loss fraction)."""
        with self._lock:
            self._expire(now)
            rtts = [r for r in self._settled if r is not None]
            loss = (len(self._settled) - len(rtts)) / len(self._settled) if self._settled else 0.0
        return (statistics.median(rtts) if rtts else None), loss
