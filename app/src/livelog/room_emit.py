"""python-socketio's client manager, with an event to a room queued for each client in one pass.

python-socketio encodes an event to a room once, then starts an asyncio task per client to queue it, and waits for
them all: with thousands of viewers in a run's room, making, running and awaiting those tasks was most of the
Socket.IO server's time per line (py-spy, 5,000 clients). Queueing a packet for a client never waits (python-engineio's
queues are unbounded; a client that stops reading is dropped by websocket_protocol.py), so here each client's queue
gets the packet in turn, in the order of the room, with no task; an event to rooms with no client here is not
encoded at all. Emits with a callback, or that skip a client, go python-socketio's own way.
"""

from __future__ import annotations

from typing import Any

from engineio import packet as eio_packet
from socketio import packet

from livelog.room_index import RoomIndexManager


class RoomEmitManager(RoomIndexManager):
    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | list[str] | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        to: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None or skip_sid is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)
            return
        participants = list(self.get_participants(namespace, to or room))
        if not participants:  # most lines: nobody here watches them one by one (batch viewers, or none at all)
            return
        arguments = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace, data=[event, *arguments]).encode()
        eio_packets = [eio_packet.Packet(eio_packet.MESSAGE, part) for part in _parts(encoded)]
        for _sid, eio_sid in participants:
            for eio_pkt in eio_packets:
                await self.server.eio.send_packet(eio_sid, eio_pkt)


def _parts(encoded: str | bytes | list[str | bytes]) -> list[str | bytes]:
    """A packet with binary attachments encodes to several parts (livelog sends none)."""
    return encoded if isinstance(encoded, list) else [encoded]
