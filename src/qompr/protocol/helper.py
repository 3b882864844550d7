# SPDX-License-Identifier: MIT
"""The qemu-pr-helper socket protocol, both sides, without I/O.

Bring your own socket: feed received bytes and file descriptors to
:meth:`HelperConnection.receive_data`, take events from :meth:`~HelperConnection.next_event`,
and turn events into bytes with :meth:`~HelperConnection.send`.  Nothing here reads, writes
or sleeps; the only system call is closing file descriptors the protocol says to drop.

Wire format (docs/reference/qemu-pr-helper.md §2-§5; every integer big-endian):

* handshake: the server sends a 4-byte feature mask, the client answers with the 4-byte mask
  it wants; QEMU defines no feature, so both are 0 and a non-zero request closes (a server
  built with ``extensions=True`` also takes a request for qompr's own bits and answers it
  with one more word: :mod:`qompr.protocol.extension`);
* request: a 16-byte CDB with exactly one fd (SCM_RIGHTS) on its bytes, then for PERSISTENT
  RESERVE OUT the parameter list, whose length is CDB bytes 7-8 (QEMU's ``scsi_cdb_xfer``
  group-2 rule, even though SPC puts a 4-byte length at bytes 5-8);
* response: int32 status, int32 size, 96 sense bytes, then *size* bytes of PR IN data.

File descriptors are tied to the byte that the chunk carrying them started at, as the
kernel ties them to the message they were sent with.  A server reading the CDB takes the fds
attached to its 16 bytes; fds attached to a handshake or to a parameter list are closed
unread, as they are when qemu-pr-helper reads those parts without a control buffer.  To
reproduce qemu-pr-helper's fate for every byte sequence, read what :meth:`next_read` asks
for, with a control buffer only when it says so (:mod:`qompr.transport` does).

Errors: :class:`~qompr.errors.LocalProtocolError` when *this* side asks for something the
protocol forbids; :class:`~qompr.errors.RemoteProtocolError` from :meth:`next_event` when the
peer broke it.  After either, the connection is in :attr:`State.ERROR` and must be closed.
"""

from __future__ import annotations

import enum
import os
import struct
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence
from typing import Final
from typing import TypeAlias

import attrs

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.protocol._state import INITIAL_STATE
from qompr.protocol._state import TRANSITIONS
from qompr.protocol._state import Role
from qompr.protocol._state import State
from qompr.protocol.extension import IDENTIFY_OPCODE
from qompr.protocol.extension import QOMPR_FEATURES
from qompr.protocol.extension import Feature
from qompr.protocol.extension import Granted
from qompr.protocol.extension import Identify
from qompr.protocol.extension import identify_name_length
from qompr.scsi import HELPER_CDB_SIZE
from qompr.scsi import Opcode
from qompr.scsi import transfer_length

__all__ = [
    "DATA_SIZE",
    "EOF_MESSAGE",
    "MAX_FDS",
    "NEED_DATA",
    "RESPONSE_HEADER_SIZE",
    "SENSE_SIZE",
    "ConnectionClosed",
    "Event",
    "Feature",
    "Granted",
    "Handshake",
    "HelperConnection",
    "HelperRequest",
    "HelperResponse",
    "Identify",
    "NeedData",
    "Negotiated",
    "ReadSpec",
]

#: ``PR_HELPER_SENSE_SIZE``: every response carries 96 sense bytes.
SENSE_SIZE: Final = 96
#: ``PR_HELPER_DATA_SIZE``: the largest parameter list or PR IN payload.
DATA_SIZE: Final = 8192
#: The response header: status, size and sense (no padding).
RESPONSE_HEADER_SIZE: Final = 4 + 4 + SENSE_SIZE
#: Control-buffer room qemu-pr-helper gives ``recvmsg`` (QEMU's ``SOCKET_MAX_FDS``).
MAX_FDS: Final = 16
#: QEMU's ``qio_channel_read_all`` text for a peer that closed mid-message.
EOF_MESSAGE: Final = "Unexpected end-of-file before all data were read"

_HEADER = struct.Struct(">ii")
_FEATURES = struct.Struct(">I")


_TUR = 0x00  # TEST UNIT READY (qompr's extension only)
_QOMPR = int(QOMPR_FEATURES)
_PR_OPCODES: Final = (int(Opcode.PERSISTENT_RESERVE_IN), int(Opcode.PERSISTENT_RESERVE_OUT))


# -- events -------------------------------------------------------------------------------------
# Don't subclass these: the connection dispatches on the exact type.


@attrs.frozen
class Handshake:
    """The 4-byte feature mask this side sends (server: supported; client: requested).

    :param features: the mask.
    """

    features: Feature = Feature.NONE


@attrs.frozen
class Negotiated:
    """The peer's 4-byte feature mask arrived (and, on the server, was acceptable).

    :param features: the server's supported mask (client side) or the client's requested
        mask (server side).
    """

    features: int = 0


def _cdb16(value: bytes) -> bytes:
    if type(value) is bytes and len(value) == HELPER_CDB_SIZE:
        return value  # as received: nothing to check or pad
    cdb = bytes(value)
    if not 1 <= len(cdb) <= HELPER_CDB_SIZE:
        raise LocalProtocolError(f"CDB must be 1 to {HELPER_CDB_SIZE} bytes, not {len(cdb)}")
    return cdb.ljust(HELPER_CDB_SIZE, b"\0")


@attrs.frozen
class HelperRequest:
    """One command: the CDB, the fd of the logical unit, and the PR OUT parameter list.

    Received by a server, the fd belongs to the receiver, who must close it (qemu-pr-helper
    closes its copy after every command).  Sent by a client, the fd must ride on the first
    byte of what :meth:`HelperConnection.send` returns.

    :param cdb: the CDB, zero-padded to 16 bytes (1-16 bytes may be given).
    :param fd: the file descriptor that travels with it.
    :param data: the parameter list for PR OUT (exactly :attr:`transfer_length` bytes);
        empty for PR IN.
    """

    cdb: bytes = attrs.field(converter=_cdb16)
    fd: int
    data: bytes = attrs.field(default=b"", converter=bytes)

    @property
    def opcode(self) -> int:
        """CDB byte 0."""
        return self.cdb[0]

    @property
    def transfer_length(self) -> int:
        """QEMU's ``scsi_cdb_xfer``: bytes 7-8 for PR IN and PR OUT alike
        (docs/reference/qemu-pr-helper.md §5)."""
        return transfer_length(self.cdb)


@attrs.frozen
class HelperResponse:
    """The answer to one request.

    :param status: the SAM status byte (any int32 on the wire; 0-255 in practice).
    :param sense: sense bytes; padded with zeros to 96 on the wire.  Meaningful only with
        CHECK CONDITION.
    :param data: PR IN data-in; only with GOOD status.
    """

    status: int
    sense: bytes = attrs.field(default=b"", converter=bytes)
    data: bytes = attrs.field(default=b"", converter=bytes)


@attrs.frozen
class ConnectionClosed:
    """The peer closed the connection between two commands."""


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"


#: Returned by :meth:`HelperConnection.next_event` when more bytes are needed.
NEED_DATA: Final = NeedData.NEED_DATA

Event: TypeAlias = (
    Handshake | Negotiated | Granted | Identify | HelperRequest | HelperResponse | ConnectionClosed
)
_EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        Handshake,
        Negotiated,
        Granted,
        Identify,
        HelperRequest,
        HelperResponse,
        ConnectionClosed,
    )
}


@attrs.frozen
class ReadSpec:
    """What to read next to see the stream exactly as qemu-pr-helper does.

    :param size: the most bytes to read (0: nothing is expected now).
    :param fds: whether to receive with a control buffer for :data:`MAX_FDS` descriptors.
    """

    size: int
    fds: bool


_NOTHING: Final = ReadSpec(0, False)
# A server's read between two requests: the rest of the 16-byte CDB, with a control buffer.
_CDB_SPECS: Final = tuple(ReadSpec(HELPER_CDB_SIZE - have, True) for have in range(17))
# States in which the peer must send next.
_OWED: Final = frozenset(
    {State.RECV_FEATURES, State.RECV_GRANT, State.RECV_DATA, State.AWAIT_RESPONSE}
)
_SPECS: dict[tuple[int, bool], ReadSpec] = {}


def _spec(size: int, fds: bool) -> ReadSpec:
    """A shared :class:`ReadSpec` (they are values; the hot path asks for few distinct ones)."""
    spec = _SPECS.get((size, fds))
    if spec is None:
        spec = ReadSpec(size, fds)
        if len(_SPECS) < 1024:
            _SPECS[(size, fds)] = spec
    return spec


# -- the connection -------------------------------------------------------------------------------


class HelperConnection:
    """One side of one qemu-pr-helper connection.

    :param role: :attr:`Role.CLIENT` (``pr-manager-helper``) or :attr:`Role.SERVER`
        (``qemu-pr-helper``).
    :param close_fd: how to close a received descriptor the protocol drops
        (:func:`os.close` unless a test substitutes it).
    :param extensions: server only: whether a client may request qompr's extension
        (:mod:`qompr.protocol.extension`); without it, any requested bit closes, as in
        QEMU 7.2.
    """

    def __init__(
        self,
        role: Role,
        *,
        close_fd: Callable[[int], None] = os.close,
        extensions: bool = False,
    ) -> None:
        self.role = role
        self._close_fd = close_fd
        self._state = INITIAL_STATE[role]
        self._table = TRANSITIONS[role]
        self._send_table = {
            (state, _EVENT_TYPES[trigger]): target
            for (state, direction, trigger), target in self._table.items()
            if direction == "send" and trigger in _EVENT_TYPES
        }
        self._extensions = extensions
        #: The extension bits negotiated (0 unless both ends are qompr's and agreed).
        self.granted = Feature.NONE
        self._requested = 0
        self._first = True  # no message yet after the handshake (an identify may come)
        self._length = 0
        self._buf = bytearray()
        self._pos = 0  # stream offset of self._buf[0]
        self._fds: deque[tuple[int, list[int]]] = deque()  # (stream offset, fds)
        self._eof = False
        # Server: the CDB being read and its stashed fd; client: the request in flight.
        self._cdb = b""
        self._stashed = -1
        self._want = 0
        self._request: HelperRequest | Identify | None = None
        self._header: tuple[int, int, bytes] | None = None
        #: Text of the last protocol error (qemu-pr-helper's wording where it has one).
        self.error: str | None = None

    # -- introspection ------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def pending(self) -> HelperRequest | Identify | None:
        """The request being processed (server) or awaiting its response (client)."""
        return self._request

    @property
    def waiting_for_peer(self) -> bool:
        """Whether the peer owes bytes before anything can happen: its handshake, the rest
        of a message it began, or (client) the response to a request.

        A server's connection that is idle between commands is not waiting: a client may
        stay silent for as long as it likes (QEMU keeps its connection for the VM's life).
        The daemon bounds how long a connection may stay waiting (a client that stops
        mid-request holds a file descriptor).
        """
        state = self._state
        if state is State.IDLE:
            return bool(self._buf)
        return state in _OWED

    def next_read(self) -> ReadSpec:
        """How much to read next, and whether fds may come with it.

        The sizes are qemu-pr-helper's: 4 handshake bytes without a control buffer, the
        rest of the 16-byte CDB with room for :data:`MAX_FDS` fds, then the parameter list
        without one.  A client is told the rest of the message it waits for (and 1 byte
        while idle, to see the peer hang up).
        """
        have = len(self._buf)
        state = self._state
        if self.role is Role.SERVER:
            if state is State.IDLE:
                return _CDB_SPECS[have] if have < HELPER_CDB_SIZE else _CDB_SPECS[-1]
            if state is State.RECV_FEATURES:
                return _spec(max(0, 4 - have), False)
            if state is State.RECV_DATA:
                return _spec(max(0, self._want - have), False)
            return _NOTHING
        if state is State.RECV_FEATURES or state is State.RECV_GRANT:
            return _spec(max(0, 4 - have), False)
        if state is State.AWAIT_RESPONSE:
            if self._header is None:
                return _spec(max(1, RESPONSE_HEADER_SIZE - have), False)
            return _spec(max(1, self._header[1] - have), False)
        if state in (State.IDLE, State.REPLY_FEATURES):
            return _spec(1, False)
        return _NOTHING

    # -- input --------------------------------------------------------------------------------
    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Feed bytes (and the fds that came with them); ``b""`` without fds means end of file.

        The connection owns *fds* from now on: it hands them out in a :class:`HelperRequest` or
        closes them.

        :raises LocalProtocolError: data after end of file.
        """
        if self._eof and (data or fds):
            for fd in fds:
                self._close_fd(fd)
            raise LocalProtocolError("data received after end of file")
        if fds:
            if self._state in (State.ERROR, State.CLOSED):
                for fd in fds:
                    self._close_fd(fd)
            else:
                self._fds.append((self._pos + len(self._buf), list(fds)))
        if data:
            self._buf += data
        elif not fds:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        """The next event the received bytes make, or :data:`NEED_DATA`.

        :raises RemoteProtocolError: the peer violated the protocol; the connection is now
            in :attr:`State.ERROR` and every fd it held has been closed.
        :raises LocalProtocolError: called in :attr:`State.ERROR`, or when this side must
            send something first.
        """
        state = self._state
        if state is State.IDLE and not self._buf and not self._fds and not self._eof:
            return NEED_DATA  # between two commands, either role: the common case
        if state is State.ERROR:
            raise LocalProtocolError(f"connection is broken: {self.error}")
        if state is State.CLOSED:
            return ConnectionClosed()
        try:
            if self.role is Role.SERVER:
                if state is State.IDLE:  # a request's CDB: the common case
                    return self._server_cdb()
                return self._server_event(state)
            return self._client_event(state)
        except RemoteProtocolError as exc:
            self._fail(exc.message)
            raise

    def send(self, event: Event) -> bytes:
        """The bytes for *event*.  A client :class:`HelperRequest`'s fd must go with byte 0.

        :raises LocalProtocolError: *event* is not allowed in this state, or is malformed.
        """
        kind = type(event)
        target = self._send_table.get((self._state, kind))
        if target is None:
            raise LocalProtocolError(f"can't send {kind.__name__} in state {self._state.value}")
        if kind is HelperResponse:
            assert isinstance(event, HelperResponse)
            out = self._send_response(event)
        elif kind is HelperRequest:
            assert isinstance(event, HelperRequest)
            out = self._send_request(event)
        elif kind is Handshake:
            assert isinstance(event, Handshake)
            out = self._send_handshake(event)
            if self.role is Role.CLIENT and event.features:
                target = self._table[(self._state, "send", "Handshake (qompr)")]
        elif kind is Granted:
            assert isinstance(event, Granted)
            out = self._send_granted(event)
        else:
            assert isinstance(event, Identify)
            out = self._send_identify(event)
        self._state = target
        return out

    def close(self) -> None:
        """Close every fd the connection still holds; it is unusable afterwards."""
        self._fail(self.error or "closed locally")

    # -- shared helpers -----------------------------------------------------------------------
    def _go(self, direction: str, trigger: str) -> None:
        self._state = self._table[(self._state, direction, trigger)]

    def _take(self, size: int) -> tuple[bytes, list[int]]:
        """Consume *size* bytes and the fds attached to them."""
        start = self._pos
        chunk = bytes(self._buf[:size])
        del self._buf[:size]
        self._pos += size
        fds: list[int] = []
        while self._fds and self._fds[0][0] < start + size:
            fds.extend(self._fds.popleft()[1])
        return chunk, fds

    def _drop(self, fds: list[int]) -> None:
        for fd in fds:
            self._close_fd(fd)

    def _fail(self, message: str) -> None:
        self._state = State.ERROR
        self.error = message
        if self._stashed >= 0:
            self._close_fd(self._stashed)
            self._stashed = -1
        while self._fds:
            self._drop(self._fds.popleft()[1])
        self._buf.clear()

    def _features(self) -> int | None:
        if len(self._buf) < 4:
            if self._eof:
                raise RemoteProtocolError(EOF_MESSAGE)
            return None
        chunk, fds = self._take(4)
        self._drop(fds)  # read without a control buffer: the kernel discards them
        return int(_FEATURES.unpack(chunk)[0])

    def _send_handshake(self, event: Handshake) -> bytes:
        features = int(event.features)
        # A server announces nothing (qompr's bits are asked for, not announced); a client
        # may ask for qompr's bits only.
        allowed = _QOMPR if self.role is Role.CLIENT else 0
        if features & ~allowed:
            raise LocalProtocolError(f"feature mask {features:#x} is not supported")
        self._requested = features
        return _FEATURES.pack(features)

    def _send_granted(self, event: Granted) -> bytes:
        granted = int(event.features)
        if granted & ~self._requested:
            raise LocalProtocolError(
                f"granting {granted:#x}, the client asked for {self._requested:#x}"
            )
        self.granted = event.features
        return event.to_bytes()

    def _send_identify(self, event: Identify) -> bytes:
        if not self.granted & Feature.QOMPR_NAMING:
            raise LocalProtocolError("the helper did not grant naming the initiator")
        if not self._first:
            raise LocalProtocolError("identify must be the first message of a connection")
        self._first = False
        self._request = event
        self._header = None
        return event.to_bytes()

    # -- server side (qemu-pr-helper: prh_co_entry / prh_read_request) -------------------------
    def _server_event(self, state: State) -> Event | NeedData:
        """Every state but IDLE, which next_event() reads with :meth:`_server_cdb`."""
        if state is State.RECV_FEATURES:
            requested = self._features()
            if requested is None:
                return NEED_DATA
            if requested != 0:
                # 7.2 closes on any requested bit; qompr's server takes its own bits.
                if not self._extensions or requested & ~_QOMPR:
                    raise RemoteProtocolError(f"Unsupported features requested: {requested:#x}")
                self._requested = requested
                self._go("recv", "Negotiated (qompr)")
                return Negotiated(requested)
            self._go("recv", "Negotiated")
            return Negotiated(requested)
        if state is State.RECV_DATA:
            if len(self._buf) < self._want:
                if self._eof:
                    raise RemoteProtocolError(EOF_MESSAGE)
                return NEED_DATA
            data, fds = self._take(self._want)
            self._drop(fds)  # the parameter list is read without a control buffer
            return self._deliver(data)
        if state in (State.PROCESSING, State.SEND_FEATURES, State.SEND_GRANT):
            return NEED_DATA
        raise LocalProtocolError(f"no events in state {state.value}")  # pragma: no cover

    def _server_cdb(self) -> Event | NeedData:
        buf = self._buf
        have = len(buf)
        fds = self._fds
        if have == HELPER_CDB_SIZE and self._stashed < 0 and len(fds) == 1:
            # The common case, read as next_read() asks: the whole CDB in one chunk, its
            # one fd on the first byte.
            offset, chunk = fds[0]
            if offset == self._pos and len(chunk) == 1:
                fds.clear()
                self._stashed = chunk[0]
                cdb = bytes(buf)
                buf.clear()
                self._pos += HELPER_CDB_SIZE
                return self._server_cdb_read(cdb)
        if have == 0 and not self._fds:
            # End of file between two requests: next_event() answers NEED_DATA before
            # calling here when nothing came and the peer is still there.
            assert self._eof
            self._go("recv", "ConnectionClosed")
            return ConnectionClosed()
        # prh_read stashes the fds of every chunk of the CDB; a second one closes.
        too_many = False
        while self._fds and self._fds[0][0] < self._pos + min(have, HELPER_CDB_SIZE):
            for fd in self._fds.popleft()[1]:
                if self._stashed < 0:
                    self._stashed = fd
                else:
                    self._close_fd(fd)
                    too_many = True
        if too_many:
            raise RemoteProtocolError("Too many file descriptors in request")
        if have < HELPER_CDB_SIZE:
            if self._eof:
                raise RemoteProtocolError(EOF_MESSAGE)
            return NEED_DATA
        cdb, _ = self._take(HELPER_CDB_SIZE)
        return self._server_cdb_read(cdb)

    def _server_cdb_read(self, cdb: bytes) -> Event | NeedData:
        """The CDB is in: check it as prh_read_request does, then read the parameter list."""
        first, self._first = self._first, False
        opcode = cdb[0]
        if self.granted and opcode not in _PR_OPCODES:
            return self._server_extension(cdb, opcode, first)
        if self._stashed < 0:
            raise RemoteProtocolError("No file descriptor in request.")
        if opcode not in _PR_OPCODES:
            raise RemoteProtocolError("Invalid CDB, closing socket.")
        length = (cdb[7] << 8) | cdb[8]  # scsi_cdb_xfer, group 2 (both opcodes)
        if length > DATA_SIZE:  # qemu-pr-helper closes without a message
            raise RemoteProtocolError(f"Transfer length {length} exceeds {DATA_SIZE}")
        self._cdb = cdb
        self._length = length
        if cdb[0] == Opcode.PERSISTENT_RESERVE_OUT and length > 0:
            self._want = length
            self._go("bytes", "PR OUT CDB")
            return self._server_event(State.RECV_DATA)
        return self._deliver(b"")

    def _server_extension(self, cdb: bytes, opcode: int, first: bool) -> Event | NeedData:
        """A message only qompr's extension allows (:mod:`qompr.protocol.extension`)."""
        if opcode == IDENTIFY_OPCODE and self.granted & Feature.QOMPR_NAMING:
            if not first:
                raise RemoteProtocolError("identify after the first message")
            if self._stashed >= 0:
                raise RemoteProtocolError("a file descriptor came with identify")
            self._cdb = cdb
            self._want = identify_name_length(cdb)
            self._go("bytes", "Identify header")
            return self._server_event(State.RECV_DATA)
        if opcode == _TUR and self.granted & Feature.QOMPR_TEST_UNIT_READY:
            if self._stashed < 0:
                raise RemoteProtocolError("No file descriptor in request.")
            self._cdb = cdb
            self._length = 0
            return self._deliver(b"")
        raise RemoteProtocolError("Invalid CDB, closing socket.")

    def _deliver(self, data: bytes) -> HelperRequest | Identify:
        if self._cdb[0] == IDENTIFY_OPCODE:
            identify = Identify.from_bytes(self._cdb + data)
            self._request = identify
            self._go("recv", "Identify")
            return identify
        request = HelperRequest(self._cdb, self._stashed, data)  # CDB: 16 bytes, kept as is
        self._stashed = -1
        self._request = request
        self._go("recv", "HelperRequest")
        return request

    def _send_response(self, event: HelperResponse) -> bytes:
        request = self._request
        if request is None:  # pragma: no cover - guarded by the state table
            raise LocalProtocolError("no request to answer")
        if not -(2**31) <= event.status < 2**31:
            raise LocalProtocolError(f"status {event.status} does not fit an int32")
        if len(event.sense) > SENSE_SIZE:
            raise LocalProtocolError(f"sense is {len(event.sense)} bytes, at most {SENSE_SIZE}")
        size = len(event.data)
        # prh_write_response's invariant: data only for a GOOD PR IN, never more than asked.
        if (
            type(request) is HelperRequest
            and request.cdb[0] == Opcode.PERSISTENT_RESERVE_IN
            and event.status == 0
        ):
            limit = min(self._length, DATA_SIZE)
            if size > limit:
                raise LocalProtocolError(f"{size} bytes of data, the request allows {limit}")
        elif size:
            raise LocalProtocolError("data is only allowed with a GOOD PERSISTENT RESERVE IN")
        self._request = None
        return _HEADER.pack(event.status, size) + event.sense.ljust(SENSE_SIZE, b"\0") + event.data

    # -- client side (pr-manager-helper.c) -----------------------------------------------------
    def _client_event(self, state: State) -> Event | NeedData:
        if self._fds:  # a helper never sends descriptors
            raise RemoteProtocolError("the helper sent file descriptors")
        if state is State.RECV_FEATURES:
            supported = self._features()
            if supported is None:
                return NEED_DATA
            self._go("recv", "Negotiated")
            return Negotiated(supported)
        if state is State.RECV_GRANT:
            word = self._features()
            if word is None:
                return NEED_DATA
            granted = Granted.from_bytes(_FEATURES.pack(word))
            if granted.features & ~self._requested:
                raise RemoteProtocolError(f"the helper granted {word:#x}, not asked for")
            self.granted = granted.features
            self._go("recv", "Granted")
            return granted
        if state is State.AWAIT_RESPONSE:
            return self._client_response()
        if state in (State.IDLE, State.REPLY_FEATURES):
            if self._buf:
                raise RemoteProtocolError(f"{len(self._buf)} unsolicited byte(s) from the helper")
            if self._eof:
                if state is State.REPLY_FEATURES:
                    raise RemoteProtocolError(EOF_MESSAGE)
                self._go("recv", "ConnectionClosed")
                return ConnectionClosed()
            return NEED_DATA
        raise LocalProtocolError(f"no events in state {state.value}")  # pragma: no cover

    def _send_request(self, event: HelperRequest) -> bytes:
        if event.opcode not in _PR_OPCODES and not (
            event.opcode == _TUR and self.granted & Feature.QOMPR_TEST_UNIT_READY
        ):
            raise LocalProtocolError(f"opcode {event.opcode:#04x} is not PR IN or PR OUT")
        if event.fd < 0:
            raise LocalProtocolError("a request needs a file descriptor")
        length = event.transfer_length
        if length > DATA_SIZE:
            raise LocalProtocolError(f"transfer length {length} exceeds {DATA_SIZE}")
        if event.opcode == _TUR:
            length = 0
            if event.data:
                raise LocalProtocolError("TEST UNIT READY carries no parameter list")
        elif event.opcode == Opcode.PERSISTENT_RESERVE_IN:
            if event.data:
                raise LocalProtocolError("PERSISTENT RESERVE IN carries no parameter list")
        elif len(event.data) != length:
            raise LocalProtocolError(
                f"parameter list is {len(event.data)} bytes, CDB bytes 7-8 say {length}"
            )
        self._request = event
        self._header = None
        self._first = False
        return event.cdb + event.data

    def _client_response(self) -> Event | NeedData:
        request = self._request
        assert request is not None
        if self._header is None:
            if len(self._buf) < RESPONSE_HEADER_SIZE:
                if self._eof:
                    raise RemoteProtocolError(EOF_MESSAGE)
                return NEED_DATA
            head, _ = self._take(RESPONSE_HEADER_SIZE)
            status, size = _HEADER.unpack_from(head)
            # QEMU asserts here, so a lying helper aborts it; we call it a broken peer.
            if not 0 <= status <= 0xFF:
                raise RemoteProtocolError(f"status {status} is not a SCSI status byte")
            if type(request) is HelperRequest and request.opcode == Opcode.PERSISTENT_RESERVE_IN:
                limit = min(request.transfer_length, DATA_SIZE) if status == 0 else 0
                if not 0 <= size <= limit:
                    raise RemoteProtocolError(
                        f"the helper announced {size} bytes of data, at most {limit} allowed"
                    )
            elif size != 0:
                what = "PERSISTENT RESERVE OUT"
                if not isinstance(request, HelperRequest):
                    what = "identify"
                elif request.opcode == _TUR:
                    what = "TEST UNIT READY"
                raise RemoteProtocolError(f"the helper announced {size} bytes of data for {what}")
            self._header = (status, size, head[8:])
        status, size, sense = self._header
        if len(self._buf) < size:
            if self._eof:
                raise RemoteProtocolError(EOF_MESSAGE)
            return NEED_DATA
        data, _ = self._take(size)
        if self._buf:
            raise RemoteProtocolError(f"{len(self._buf)} unsolicited byte(s) from the helper")
        self._header = None
        self._request = None
        self._go("recv", "HelperResponse")
        return HelperResponse(status, sense, data)
