"""The ``vehicle`` fixture: every bridge test that talks to a vehicle runs against both
the built-in simulator and real ArduCopter SITL (``$ARDUPILOT_SITL_BIN``).

One copter of each kind is booted per test module (real SITL at ``--speedup`` 10 in its
own temporary folder) and handed to each test ready to arm. A test that changes more
than the lists it uploads (arms, flies, sets parameters, kills the vehicle) calls
``vehicle.needs_reboot()`` and the next test gets a freshly booted copter. Unset
``ARDUPILOT_SITL_BIN`` skips the real-SITL half (a developer without a build); set to
a missing or broken binary, those tests fail.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from bridge_vehicle import TestVehicle, vehicle_for_module


@pytest.fixture(scope="module", params=["builtin", "ardupilot"])
def _module_vehicle(request: pytest.FixtureRequest) -> Iterator[TestVehicle]:
    with vehicle_for_module(request.param) as handle:
        yield handle


@pytest.fixture
def vehicle(_module_vehicle: TestVehicle) -> Iterator[TestVehicle]:
    _module_vehicle.prepare()
    yield _module_vehicle
    _module_vehicle.after_test()
