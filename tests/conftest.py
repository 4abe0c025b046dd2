"""Project-wide fixtures: real brokers on free loopback ports (never a mock of one).

- ``mosquitto``: a mosquitto with the bus's generated config (swarm.bus.broker), fresh
  for each test; ``mosquitto_module``: one shared by a test module;
- ``bridged_mosquittos``: two mosquittos, the second bridging ``swarm/#`` both ways to
  the first, so clients of either see one swarm (failover tests).

Each yields a :class:`swarm.bus.broker.LocalBroker` (``.address``, ``.host``/``.port``,
``.kill()``, ``.start()`` again on the same port, ``.stop()``). mosquitto missing is a
failure, not a skip: ``make system-packages`` installs it.

And one option: ``--soak`` runs the tests marked ``soak`` (long, bounded soaks that add
minutes, not seconds); without it they are reported as skipped with the reason, so a
plain ``pytest`` or ``make test`` stays fast. ``slow`` tests run by default (deselect
them with ``-m "not slow"``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarm.bus.broker import BridgeSpec, LocalBroker, find_mosquitto


def _require_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run `make system-packages` "
                    "(apt-get install mosquitto)", pytrace=False)


def _broker(**options: Any) -> LocalBroker:
    _require_mosquitto()
    broker = LocalBroker("mosquitto", **options)
    broker.start()
    return broker


@pytest.fixture
def mosquitto() -> Iterator[LocalBroker]:
    broker = _broker()
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def mosquitto_module() -> Iterator[LocalBroker]:
    broker = _broker()
    yield broker
    broker.close()


def _bridge_up(local: LocalBroker, remote: LocalBroker, timeout: float = 15.0) -> bool:
    """True once a message published on ``local`` reaches ``remote`` through the bridge."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[bytes | bytearray] = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bridge-probe-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect(remote.host, remote.port)
    sub.subscribe("swarm/bridge-probe/#", 0)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bridge-probe-pub")
    pub.connect(local.host, local.port)
    pub.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not got:
            pub.publish("swarm/bridge-probe/x", b"probe", 0)
            time.sleep(0.1)
        return bool(got)
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


@pytest.fixture
def bridged_mosquittos() -> Iterator[tuple[LocalBroker, LocalBroker]]:
    first = _broker()
    second = _broker(bridge=BridgeSpec("to-first", first.address))
    try:
        if not _bridge_up(second, first) or not _bridge_up(first, second):
            pytest.fail("the mosquitto bridge did not come up within 15 s")
        yield first, second
    finally:
        second.close()
        first.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="also run the long soaks (tests marked 'soak'); they are skipped otherwise",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak: run with --soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
