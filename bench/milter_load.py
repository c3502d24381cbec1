"""The load generator of bench/milter_bench.py: MilterClient's bytes, recorded once, replayed.

The generator shares the machine with the milter it measures, so every cycle it spends is one a
milter worker cannot have (issue 11 item 3: 2 workers on 2 cores). tests/milter/client.py's
MilterClient builds every packet from Python objects and decodes every reply into dataclasses,
about 0.3 ms of CPU per message. Here MilterClient itself drives one connection per kind of
message (negotiation, CONNECT, HELO, one transaction, QUIT) and notes what it wrote at each
flush and what came back; every later connection replays those writes byte for byte, with the
queue id (the ``i`` macro, the only thing that changes between messages, fixed-width so that
no length prefix moves) spliced in. The milter thus sees exactly what MilterClient, and
Postfix, send: the same packets, the packets whose reply was waived (SMFIP_NR_*) batched with
the next one that needs a reply, body chunks of at most 65535 bytes (MILTER_CHUNK_SIZE), and a
wait for the reply after every write that needs one.

Replies are checked on their raw bytes, walking the length prefixes without an object per
packet: the OPTNEG answer must be the recorded one byte for byte, every other reply
SMFIR_CONTINUE (SMFIR_PROGRESS skipped), and at end of message one of the header modifications
(SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER, the only packets decoded) must pass the
kind's check; nothing may follow a final reply.

All connections run in one thread over epoll(7) (a write per step, an epoll_wait for all the
connections ready, a recv_into per reply). One thread per connection on blocking sockets, the
same replay otherwise, cost more CPU per message: every reply wakes a thread of its own and
hands the GIL over (bench/README.md has the figures).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.milter.client import (
    MODIFICATIONS,
    SMFIC_OPTNEG,
    SMFIR_ADDHEADER,
    SMFIR_CHGHEADER,
    SMFIR_CONTINUE,
    SMFIR_INSHEADER,
    SMFIR_PROGRESS,
    MilterClient,
    Packet,
    ProtocolError,
    parse_spec,
)

Headers = list[tuple[str, str]]

MARK = b"Q@@@@@@"  # the recorded queue id, as wide as queue_id()'s
TIMEOUT = 60  # seconds without a reply (epoll) or a stuck socket call (SO_RCVTIMEO) -> failure

# What ends a step (libmilter mfdef.h replies): nothing, SMFIR_CONTINUE, the OPTNEG answer, or
# the modifications then SMFIR_CONTINUE at end of message.
NOTHING, CONTINUE, OPTNEG, EOM = range(4)

_LENGTH = struct.Struct("!I")
_PROGRESS = SMFIR_PROGRESS[0]
_CONTINUE = SMFIR_CONTINUE[0]
_ADDHEADER = SMFIR_ADDHEADER[0]
_HEADER_EDITS = frozenset({_ADDHEADER, SMFIR_INSHEADER[0], SMFIR_CHGHEADER[0]})
_MODIFICATIONS = frozenset(m[0] for m in MODIFICATIONS)


def queue_id(number: int) -> bytes:
    """Message ``number``'s queue id, always 7 bytes (they repeat after a million)."""
    return b"Q%06d" % (number % 1_000_000)


@dataclass(frozen=True)
class Kind:
    """One direction of mail: envelope, message, connection facts, and the check of a reply:
    ``check(name, value)`` on the raw bytes of each header modification at end of message,
    one of which must pass."""

    sender: str
    rcpt: str
    headers: Headers
    body: bytes
    addr: str
    macros: dict[str, str]
    check: Callable[[bytes, bytes], bool]


@dataclass(frozen=True)
class Step:
    """One write and the reply that ends it."""

    parts: tuple[bytes, ...]  # the bytes written, cut where the queue id goes
    wait: int  # NOTHING, CONTINUE, OPTNEG or EOM
    answer: bytes = b""  # OPTNEG: the recorded answer, whole packet


@dataclass(frozen=True)
class Plan:
    opening: tuple[Step, ...]  # OPTNEG, CONNECT, HELO (those whose reply is awaited)
    carry: bytes  # what the opening leaves for the first transaction's first write
    message: tuple[Step, ...]  # one transaction, MAIL to end of message
    closing: tuple[Step, ...]  # QUIT
    check: Callable[[bytes, bytes], bool]


class Failure(Exception):
    """A reply that is not what the plan expects, or a connection that went away."""


@dataclass
class _Recorder(MilterClient):
    """MilterClient noting each write and the packets read after it."""

    writes: list[tuple[bytes, list[Packet]]] = field(default_factory=list, repr=False)

    def flush(self) -> None:
        if self._pending:
            self.writes.append((b"".join(self._pending), []))
        super().flush()

    def read_packet(self) -> Packet:
        packet = super().read_packet()
        self.writes[-1][1].append(packet)
        return packet


def connect_macros(kind: Kind) -> dict[str, str]:
    return {"j": "mx.a.test", "{daemon_name}": kind.macros.get("{daemon_name}", "smtpd")}


def _raw(packet: Packet) -> bytes:
    return _LENGTH.pack(len(packet.data) + 1) + packet.cmd + packet.data


def record(spec: str, kind: Kind) -> Plan:
    """Drive one connection with MilterClient and turn what it wrote into a Plan. What the
    milter answered must pass what the replay checks (every reply SMFIR_CONTINUE, a header
    edit passing the kind's check), else Failure."""
    if MARK in kind.body or any(MARK.decode() in n + v for n, v in kind.headers):
        raise Failure(f"the message contains the queue id mark {MARK!r}")
    rec = _Recorder(spec)
    with rec:
        rec.negotiate()
        rec.connect("client.example", kind.addr, 4321, macros=connect_macros(kind))
        rec.helo("client.example")
        # Packets whose reply the milter waived (SMFIP_NR_CONN; HELO negotiated away, its
        # macros still sent) ride with the first write of the first transaction.
        carry = b"".join(rec._pending)
        opened = len(rec.writes)
        result = rec.message(kind.sender, [kind.rcpt], kind.headers, kind.body,
                             queue_id=MARK.decode(), extra_macros=kind.macros)
        sent = len(rec.writes)
        rec.quit()
    if opened >= sent or not rec.writes[opened][0].startswith(carry):
        raise Failure(f"recording: unexpected conversation {rec.writes!r:.300}")
    rec.writes[opened] = rec.writes[opened][0][len(carry):], rec.writes[opened][1]
    steps = []
    for number, (blob, packets) in enumerate(rec.writes):
        parts = tuple(blob.split(MARK))
        if not packets:
            steps.append(Step(parts, NOTHING))
        elif packets[-1].cmd == SMFIC_OPTNEG:
            steps.append(Step(parts, OPTNEG, b"".join(_raw(p) for p in packets)))
        elif packets[-1].cmd != SMFIR_CONTINUE:
            raise Failure(f"recording: reply {packets[-1]!r:.300}")
        else:
            steps.append(Step(parts, EOM if number == sent - 1 else CONTINUE))
    edits = [] if result.eom is None else [
        a for a in result.eom.actions if a.kind in ("addheader", "insheader", "chgheader")]
    if (steps[sent - 1].wait != EOM or steps[-1].wait != NOTHING
            or not any(kind.check(a.name.encode(), a.value.encode()) for a in edits)):
        raise Failure(f"recording: unexpected conversation {rec.writes!r:.300}")
    return Plan(tuple(steps[:opened]), carry, tuple(steps[opened:sent]), tuple(steps[sent:]),
                kind.check)


class _Conn:
    """One replayed milter connection: where it is in its plan and what it has received."""

    __slots__ = ("plan", "sock", "number", "left", "qid", "segment", "index", "step", "carry",
                 "buf", "view", "pos", "end", "passed")

    def __init__(self, plan: Plan, sock: socket.socket, number: int, left: int,
                 buf: bytearray) -> None:
        self.plan = plan
        self.sock = sock
        self.number = number  # of the message the connection sends now
        self.left = left  # messages it may still send after this one
        self.qid = queue_id(number)
        self.segment = plan.opening
        self.index = 0
        self.step = plan.opening[0]
        self.carry = plan.carry
        self.buf = buf  # the step's reply so far, from 0 to end
        self.view = memoryview(buf)
        self.pos = 0  # where the first packet not walked yet starts
        self.end = 0
        self.passed = False  # a header modification passed the kind's check

    def send(self) -> None:
        parts = self.step.parts
        data = parts[0] if len(parts) == 1 else self.qid.join(parts)
        if self.carry and self.segment is self.plan.message:
            data, self.carry = self.carry + data, b""
        self.sock.sendall(data)

    def receive(self) -> bool:
        """Read what the socket has; True when the awaited reply is complete."""
        if self.end == len(self.buf):  # a reply larger than the buffer: make room
            self.view.release()
            self.buf.extend(bytes(len(self.buf)))
            self.view = memoryview(self.buf)
        got = self.sock.recv_into(self.view[self.end:])
        if not got:
            raise Failure("connection closed by the milter")
        self.end += got
        return self.feed()

    def feed(self) -> bool:
        """Walk the complete packets received; True (and the buffer emptied) once the step's
        reply is complete and right; Failure when it is not."""
        buf, pos, end, wait = self.buf, self.pos, self.end, self.step.wait
        while end - pos >= 5:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length < 1 or length > 1 << 24:
                raise Failure(f"bad packet length {length}")
            stop = pos + 4 + length
            if stop > end:
                break
            cmd = buf[pos + 4]
            if cmd == _PROGRESS:
                pos = stop
                continue
            if wait == EOM and cmd in _MODIFICATIONS:
                if cmd in _HEADER_EDITS and not self.passed:
                    start = pos + 5 if cmd == _ADDHEADER else pos + 9  # index: 4 bytes
                    nul = buf.find(0, start, stop)
                    if nul < 0 or buf[stop - 1] != 0:
                        raise Failure(f"malformed header packet {bytes(buf[pos:stop])!r:.300}")
                    self.passed = self.plan.check(bytes(buf[start:nul]),
                                                  bytes(buf[nul + 1 : stop - 1]))
                pos = stop
                continue
            if stop != end:  # libmilter writes nothing after a final reply
                raise Failure(f"bytes after the reply: {bytes(buf[:end])!r:.300}")
            if wait == OPTNEG:
                if buf[:end] != self.step.answer:
                    raise Failure(f"OPTNEG answer {bytes(buf[:end])!r:.300} differs from "
                                  f"{self.step.answer!r:.300}")
            elif cmd != _CONTINUE or wait == NOTHING or (wait == EOM and not self.passed):
                raise Failure(f"message {self.number}: reply {bytes(buf[:end])!r:.300}")
            self.pos = self.end = 0
            self.passed = False
            return True
        self.pos = pos
        return False


class Load:
    """``connections`` milter connections at once sending ``count`` messages in all,
    ``per_connection`` on each before the next is opened, so that the kernel spreads them over
    the workers; the connections take the kinds of ``mix`` in turn."""

    def __init__(self, spec: str, connections: int, per_connection: int) -> None:
        self.spec = spec
        self.family, self.address = parse_spec(spec)
        self.connections = connections
        self.per_connection = per_connection
        self.plans: dict[int, Plan] = {}  # id(kind) -> its recorded plan
        self._buffers: list[bytearray] = []  # reply buffers of closed connections, for reuse
        self._next = 0
        self._count = 0
        self.failures: list[str] = []

    def plan(self, kind: Kind) -> Plan:
        plan = self.plans.get(id(kind))
        if plan is None:
            plan = self.plans[id(kind)] = record(self.spec, kind)
        return plan

    def _socket(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        # Blocking calls (no Python timeout, whose poll(2) before each call costs a syscall),
        # bounded by the kernel instead (socket(7) SO_RCVTIMEO, SO_SNDTIMEO).
        limit = struct.pack("ll", TIMEOUT, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        sock.connect(self.address)  # type: ignore[arg-type]
        return sock

    def _open(self, mix: Sequence[Kind], plans: Mapping[int, Plan]) -> _Conn | None:
        """A new connection for the next message, its opening sent; None when all are taken."""
        if self._next >= self._count:
            return None
        number = self._next
        self._next += 1
        conn = _Conn(plans[id(mix[number % len(mix)])], self._socket(), number,
                     self.per_connection - 1,
                     self._buffers.pop() if self._buffers else bytearray(1 << 16))
        conn.send()
        return conn

    def _advance(self, conn: _Conn) -> bool:
        """The step's reply came: send the next write; False once the connection is closed."""
        while True:
            conn.index += 1
            if conn.index == len(conn.segment):
                if conn.segment is conn.plan.closing:
                    return False
                if conn.segment is conn.plan.message:
                    if conn.left and self._next < self._count:
                        conn.left -= 1
                        conn.number = self._next
                        conn.qid = queue_id(conn.number)
                        self._next += 1
                    else:
                        conn.segment = conn.plan.closing
                else:  # opening done: the message taken when the connection opened
                    conn.segment = conn.plan.message
                conn.index = 0
            conn.step = conn.segment[conn.index]
            conn.send()
            if conn.step.wait != NOTHING:
                return True

    def run(self, count: int, mix: Sequence[Kind]) -> float:
        """Send ``count`` messages; returns the wall time in seconds (failures: see
        ``failures``)."""
        try:
            plans = {id(kind): self.plan(kind) for kind in mix}
        except (Failure, ProtocolError, OSError) as exc:
            self.failures.append(f"recording: {exc}")
            return 0.0
        self._next, self._count = 0, count
        poll = select.epoll()
        conns: dict[int, _Conn] = {}
        wall = time.perf_counter()
        try:
            for _ in range(self.connections):
                conn = self._open(mix, plans)
                if conn is None:
                    break
                conns[conn.sock.fileno()] = conn
                poll.register(conn.sock.fileno(), select.EPOLLIN)
            while conns:
                ready = poll.poll(TIMEOUT)
                if not ready:
                    raise Failure(f"no reply in {TIMEOUT} s")
                for fd, _ in ready:
                    conn = conns[fd]
                    if conn.receive() and not self._advance(conn):
                        poll.unregister(fd)
                        del conns[fd]
                        conn.sock.close()
                        conn.view.release()
                        self._buffers.append(conn.buf)
                        conn = self._open(mix, plans)
                        if conn is not None:
                            conns[conn.sock.fileno()] = conn
                            poll.register(conn.sock.fileno(), select.EPOLLIN)
        except (Failure, OSError) as exc:
            self.failures.append(str(exc))
        finally:
            poll.close()
            for conn in conns.values():
                conn.sock.close()
        return time.perf_counter() - wall
