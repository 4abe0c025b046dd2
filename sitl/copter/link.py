"""serial0 as the copter sees it: received bytes parsed into messages, and what the copter
sends encoded into one output buffer, STATUSTEXTs deferred as ArduPilot defers them.

Sans-I/O: the server hands in what arrived and drains :meth:`Link.take_output`.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MAVLINK20", "1")  # before pymavlink's mavutil picks its MAVLink version
from pymavlink.dialects.v20 import ardupilotmega as M  # noqa: E402

from sitl.radio import RADIO_COMPID, RADIO_SYSID  # noqa: E402

__all__ = ["Link"]


class _Outbox:
    """File-like sink for pymavlink's MAVLink.send(): frames go into a byte buffer."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data


def _new_parser() -> Any:
    parser = M.MAVLink(None)
    parser.robust_parsing = True  # garbage yields BAD_DATA records, never an exception
    return parser


class Link:
    """The autopilot's MAVLink endpoint (sysid, compid 1) and, on the same wire, the SiK
    radio's (RADIO_STATUS comes from the radio's own ids)."""

    def __init__(self, sysid: int) -> None:
        self.mav = M.MAVLink(_Outbox(), srcSystem=sysid, srcComponent=M.MAV_COMP_ID_AUTOPILOT1)
        self._out: _Outbox = self.mav.file
        self.radio_mav = M.MAVLink(self._out, srcSystem=RADIO_SYSID, srcComponent=RADIO_COMPID)
        self._parser = _new_parser()
        self.connected = False
        self.radio_up = True  # False while the simulated radio has no link: nothing gets through
        self._texts: list[Any] = []
        self._text_id = 0  # STATUSTEXT.id of the last chunked text

    def connect(self) -> None:
        self.connected = True
        self._parser = _new_parser()
        self._out.buffer.clear()

    def disconnect(self) -> None:
        self.connected = False
        self._out.buffer.clear()

    def write_raw(self, data: bytes) -> None:
        """Bytes that are not MAVLink (SITL's plain-text boot banner)."""
        self._out.buffer += data

    def parse(self, data: bytes) -> list[Any]:
        """The well-framed messages in ``data``; garbage is dropped, never raised."""
        try:
            messages = self._parser.parse_buffer(data) or []
        except Exception:  # noqa: BLE001 - pymavlink raises assorted errors on hostile input
            self._parser = _new_parser()
            return []
        return [m for m in messages if m.get_type() != "BAD_DATA"]

    def take_output(self) -> bytes:
        data = bytes(self._out.buffer)
        self._out.buffer.clear()
        return data

    def send(self, msg: Any) -> None:
        if self.connected and self.radio_up:
            self.mav.send(msg)

    def statustext(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT; like ArduPilot's deferred send_text it goes out after the
        direct replies (COMMAND_ACK, MISSION_ACK) of the message being handled."""
        data = text.encode()
        if len(data) <= 50:
            self.defer(self.mav.statustext_encode(severity, data))
            return
        # GCS::send_textv: a longer text goes out in 50-byte chunks sharing a non-zero
        # id, chunk_seq from 0; the last chunk is shorter (NUL-terminated).
        self._text_id = self._text_id % 0xFFFF + 1
        chunks = [data[i:i + 50] for i in range(0, len(data), 50)]
        if len(chunks[-1]) == 50:
            chunks.append(b"")
        for seq, chunk in enumerate(chunks):
            self.defer(self.mav.statustext_encode(severity, chunk, self._text_id, seq))

    def defer(self, msg: Any) -> None:
        """Queue ``msg`` to go out after the direct replies of the message being handled
        (GCS_MAVLINK::send_message(ap_message), send_text)."""
        self._texts.append(msg)

    def flush(self) -> None:
        """Send what :meth:`defer` queued."""
        texts, self._texts = self._texts, []
        for msg in texts:
            self.send(msg)
