"""The built-in simulator's copter: a sans-I/O ArduCopter that speaks MAVLink the way
ArduCopter SITL does. One module per concern (as Skybrush's ``ext/mavlink/``):

``vehicle``   :class:`Copter`, its state, clock and step loop, the one thing to import
``link``      serial0: parsing received bytes, encoding, deferred STATUSTEXT
``messages``  incoming messages: routing and one handler per message type
``commands``  COMMAND_LONG / COMMAND_INT, one handler per MAV_CMD
``modes``     the mode table and mode changes
``arming``    arming checks, disarm, auto-disarm
``physics``   kinematics toward the current :class:`~sitl.copter.nav.Nav` target
``mission``   the mission executor (AP_Mission, ModeAuto)
``mission_protocol`` the mission/fence/rally upload and download protocol and storage
``fence``     the geofence and breach actions
``guided``    GUIDED position and velocity targets
``streams``   which messages stream when; ``telemetry`` what each one says
``params``    the parameter table; ``battery`` the battery model

Driven by :class:`sitl.builtin.SimulatorServer` over TCP, or directly (bench/, tests):

    copter = Copter(VehicleConfig(tcp_port=0))
    copter.on_connect(0.0); copter.advance(2.0); out = copter.take_output()
"""

from sitl.copter.streams import STEP_S
from sitl.copter.vehicle import Copter, VehicleState

__all__ = ["Copter", "VehicleState", "STEP_S"]
