"""When a request reached the simulator's host: the kernel's receive time of its first bytes.

eSMS's rate clock sees a request arrive. The simulator's Python handler may run well after
that: on a shared or virtual machine its process waits for a CPU. On the 2-core benchmark VM
its event loop was seen not running for up to 33 ms, even at real-time priority, while the
hypervisor woke an idle vCPU; a request that arrived then was stamped that much late, and the
one after it looked too close. So the simulator's connections ask Linux to time each segment
as it is received (SO_TIMESTAMPNS), read them with recvmsg, and keep the time of the first
bytes of each request. Where that is unavailable (another OS) the handler's own time stands.

    asyncio.Runner(loop_factory=new_event_loop)   # serve with it
    arrived_s = take_arrival_s(request.transport)  # at a handler's start, then after its body
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from asyncio import selector_events
from typing import Any

# Python's socket module does not name it; 35 is Linux's generic value (asm-generic/socket.h,
# used by x86 and ARM), which is also the control message's type.
_SO_TIMESTAMPNS: int | None = 35 if sys.platform == "linux" else None
_STAMP = struct.Struct("qq")  # struct timespec: seconds, nanoseconds (CLOCK_REALTIME)
_ANCILLARY_BYTES = socket.CMSG_SPACE(_STAMP.size) if hasattr(socket, "CMSG_SPACE") else 0
# asyncio's TCP transport; private, so the subclass below is checked at run time instead.
_SocketTransport: Any = getattr(selector_events, "_SelectorSocketTransport", None)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose accepted TCP connections record when their bytes arrived."""
    if _SO_TIMESTAMPNS is None or _SocketTransport is None:
        return asyncio.new_event_loop()
    return _ArrivalLoop()


def take_arrival_s(transport: asyncio.BaseTransport | None) -> float | None:
    """The kernel time (epoch s) of the first bytes read on `transport` since the last take,
    or None if unknown; forgets it, so the next bytes read set it again."""
    arrived_s: float | None = getattr(transport, "arrival_s", None)
    if arrived_s is not None:
        transport.arrival_s = None  # type: ignore[union-attr]
    return arrived_s


def _time_receipts(sock: Any) -> bool:
    """Ask the kernel to time what `sock` receives; False where it cannot."""
    if _SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False  # no stamps: handlers fall back to their own time
    return True


def _stamp_s(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return None


if _SocketTransport is not None and _SO_TIMESTAMPNS is not None:

    class _ArrivalTransport(_SocketTransport):  # type: ignore[misc]
        """asyncio's TCP transport, reading with recvmsg to keep the receive time of the
        first bytes not yet taken (`arrival_s`). The rest is asyncio's own read path."""

        arrival_s: float | None = None

        def _read_ready__data_received(self) -> None:
            if self._conn_lost:
                return
            try:
                data, ancillary, _, _ = self._sock.recvmsg(self.max_size, _ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on socket transport")
                return
            if not data:
                self._read_ready__on_eof()
                return
            if self.arrival_s is None:
                self.arrival_s = _stamp_s(ancillary)
            try:
                self._protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    class _ArrivalLoop(asyncio.SelectorEventLoop):
        """Listening sockets time what they receive (accepted ones inherit it, so even a new
        connection's first bytes are timed); accepted connections get an _ArrivalTransport."""

        async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
            server = await super().create_server(*args, **kwargs)
            for listening in server.sockets:
                _time_receipts(listening)
            return server

        def _make_socket_transport(  # asyncio's private factory, same signature
            self,
            sock: socket.socket,
            protocol: asyncio.BaseProtocol,
            waiter: asyncio.Future[Any] | None = None,
            *,
            extra: dict[str, Any] | None = None,
            server: asyncio.AbstractServer | None = None,
        ) -> asyncio.Transport:
            if server is not None and _time_receipts(sock):
                transport: asyncio.Transport = _ArrivalTransport(
                    self, sock, protocol, waiter, extra, server
                )
                return transport
            parent: Any = super()
            made: asyncio.Transport = parent._make_socket_transport(
                sock, protocol, waiter, extra=extra, server=server
            )
            return made
