"""Socket.IO packets for livelog's events, which carry JSON only.

python-socketio looks through every payload it sends for binary parts, item by item and key by key: for a batch of
a thousand lines that costs more than encoding it. livelog never sends binary inside a payload, so only the
payload itself is looked at. Payloads are encoded with orjson (several times faster than the standard library on
batches of lines); what clients send is decoded by the standard library as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from socketio.packet import Packet


class FastJson:
    """The `json` python-socketio and python-engineio call: orjson's encoder, the standard library's decoder."""

    @staticmethod
    def dumps(obj: Any, **_options: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **options: Any) -> Any:
        return json.loads(text, **options)


class TextPacket(Packet):  # type: ignore[misc]  # python-socketio ships no types
    @classmethod
    def data_is_binary(cls, data: object) -> bool:
        return isinstance(data, (bytes, bytearray))
