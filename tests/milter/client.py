"""A milter client that speaks libmilter's wire protocol over a socket, as an MTA does.

Used by the tests of the daemon (and by bench scripts) to drive ``smimegate milter`` without an
MTA: negotiation (SMFIC_OPTNEG), macros (SMFIC_MACRO), every event, bodies sent in chunks of at
most 65535 bytes (MILTER_CHUNK_SIZE, so a body over 64 KiB takes several packets), and the
modification actions read back at end of message, header indexes and REPLBODY chunks included.

Wire format (libmilter ``mfdef.h``, Postfix ``milter8.c``): every packet is a 4-byte big-endian
length (counting the command byte), one command byte, then the data. Strings are NUL-terminated.
Replies the MTA waits for depend on what the filter negotiated: an event the filter asked not
to get (SMFIP_NO*) is not sent (its macros still are, as Postfix does), and an event whose reply
it waived (SMFIP_NR_*) is sent without waiting. A stage for which the filter asked for a list
of macros (SMFIF_SETSYMLIST) gets only those.

``MilterClient(spec)`` connects to ``inet:PORT@HOST``, ``inet6:PORT@HOST`` or ``unix:/PATH``.
Like Postfix, the client buffers packets that need no reply and sends them together with the
next packet that does (one write per round trip), unless ``batch=False``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Commands (MTA -> filter), libmilter mfdef.h.
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# Replies (filter -> MTA).
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_SHUTDOWN = b"4"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_CONN_FAIL = b"f"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_SETSYMLIST = b"l"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

FINAL_REPLIES = frozenset(
    {
        SMFIR_ACCEPT, SMFIR_CONTINUE, SMFIR_DISCARD, SMFIR_REJECT, SMFIR_TEMPFAIL,
        SMFIR_REPLYCODE, SMFIR_SKIP, SMFIR_SHUTDOWN, SMFIR_CONN_FAIL,
    }
)  # fmt: skip
MODIFICATIONS = frozenset(
    {
        SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_ADDRCPT_PAR, SMFIR_REPLBODY, SMFIR_CHGFROM,
        SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER, SMFIR_QUARANTINE,
    }
)  # fmt: skip

# Action flags (SMFIF_*).
SMFIF_ADDHDRS = 0x01
SMFIF_CHGBODY = 0x02
SMFIF_ADDRCPT = 0x04
SMFIF_DELRCPT = 0x08
SMFIF_CHGHDRS = 0x10
SMFIF_QUARANTINE = 0x20
SMFIF_CHGFROM = 0x40
SMFIF_ADDRCPT_PAR = 0x80
SMFIF_SETSYMLIST = 0x100
ALL_ACTIONS = 0x1FF

# Protocol flags (SMFIP_*).
SMFIP_NOCONNECT = 0x1
SMFIP_NOHELO = 0x2
SMFIP_NOMAIL = 0x4
SMFIP_NORCPT = 0x8
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_RCPT_REJ = 0x800
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_DATA = 0x10000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIP_HDR_LEADSPC = 0x100000
ALL_PROTOCOL = 0x1FFFFF  # what Postfix 3.7 offers (milter8_protocol 6)

SMFI_VERSION = 6
MILTER_CHUNK_SIZE = 65535

# Event -> (flag that says "do not send it", flag that says "do not wait for a reply").
_EVENT_FLAGS: dict[bytes, tuple[int, int]] = {
    SMFIC_CONNECT: (SMFIP_NOCONNECT, SMFIP_NR_CONN),
    SMFIC_HELO: (SMFIP_NOHELO, SMFIP_NR_HELO),
    SMFIC_MAIL: (SMFIP_NOMAIL, SMFIP_NR_MAIL),
    SMFIC_RCPT: (SMFIP_NORCPT, SMFIP_NR_RCPT),
    SMFIC_DATA: (SMFIP_NODATA, SMFIP_NR_DATA),
    SMFIC_HEADER: (SMFIP_NOHDRS, SMFIP_NR_HDR),
    SMFIC_EOH: (SMFIP_NOEOH, SMFIP_NR_EOH),
    SMFIC_BODY: (SMFIP_NOBODY, SMFIP_NR_BODY),
    SMFIC_UNKNOWN: (SMFIP_NOUNKNOWN, SMFIP_NR_UNKN),
}


# Event -> the macro stage a filter names in its OPTNEG macro lists (libmilter SMFIM_*).
_EVENT_STAGES: dict[bytes, int] = {
    SMFIC_CONNECT: 0, SMFIC_HELO: 1, SMFIC_MAIL: 2, SMFIC_RCPT: 3, SMFIC_DATA: 4,
    SMFIC_BODYEOB: 5, SMFIC_EOH: 6,
}


class ProtocolError(Exception):
    """The filter sent something the protocol does not allow, or closed the connection."""


@dataclass(frozen=True)
class Packet:
    """One packet as received: the command byte and its data."""

    cmd: bytes
    data: bytes


@dataclass(frozen=True)
class Negotiated:
    """The filter's answer to SMFIC_OPTNEG."""

    version: int
    actions: int
    protocol: int
    symlists: Mapping[int, tuple[str, ...]]  # stage (SMFIM_*) -> macro names


@dataclass(frozen=True)
class Reply:
    """A final reply: ``cmd`` is the reply byte; ``text`` the SMTP reply of SMFIR_REPLYCODE."""

    cmd: bytes
    text: str | None = None

    @property
    def code(self) -> str | None:
        return self.text.split(" ", 1)[0] if self.text else None

    @property
    def xcode(self) -> str | None:
        if not self.text:
            return None
        parts = self.text.split(" ", 2)
        return parts[1] if len(parts) > 1 else None


@dataclass(frozen=True)
class Action:
    """A modification request at end of message, decoded.

    kind: ``addheader`` (name, value), ``insheader`` (index, name, value), ``chgheader`` (index,
    name, value; value "" deletes), ``addrcpt``/``delrcpt`` (name = address), ``replbody``
    (body = one chunk), ``chgfrom`` (name = sender), ``quarantine`` (value = reason).
    """

    kind: str
    name: str = ""
    value: str = ""
    index: int = 0
    body: bytes = b""


@dataclass(frozen=True)
class EomResult:
    """Everything the filter sent after SMFIC_BODYEOB."""

    actions: tuple[Action, ...]
    reply: Reply
    progress: int = 0  # number of SMFIR_PROGRESS packets

    @property
    def new_body(self) -> bytes | None:
        """The REPLBODY chunks joined, or None when the body was not replaced."""
        chunks = [a.body for a in self.actions if a.kind == "replbody"]
        return b"".join(chunks) if chunks else None

    @property
    def replbody_chunks(self) -> int:
        return sum(1 for a in self.actions if a.kind == "replbody")

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


@dataclass(frozen=True)
class MessageResult:
    """What one whole transaction produced: replies per stage and the end-of-message result."""

    mail: Reply | None
    rcpts: tuple[Reply | None, ...]
    eom: EomResult | None  # None when the transaction ended before DATA


def _cstr(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if b"\0" in raw:
        raise ValueError(f"NUL in a protocol string: {raw!r}")
    return raw + b"\0"


def _split_cstrs(data: bytes) -> list[str]:
    if not data.endswith(b"\0"):
        raise ProtocolError(f"string data not NUL-terminated: {data!r}")
    return [p.decode("utf-8", "surrogateescape") for p in data[:-1].split(b"\0")]


def parse_spec(spec: str) -> tuple[int, object]:
    """libmilter socket spec -> (address family, address for socket.connect)."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
        default = "::1" if kind == "inet6" else "127.0.0.1"
        return family, (host or default, int(port))
    raise ValueError(f"unsupported socket spec for a client: {spec!r}")


def decode_action(packet: Packet) -> Action:
    """Decode one modification packet. Raises ProtocolError for a malformed one."""
    cmd, data = packet.cmd, packet.data
    if cmd == SMFIR_REPLBODY:
        return Action("replbody", body=data)
    if cmd in (SMFIR_INSHEADER, SMFIR_CHGHEADER):
        if len(data) < 4:
            raise ProtocolError(f"short header packet {cmd!r}")
        (index,) = struct.unpack("!I", data[:4])
        parts = _split_cstrs(data[4:])
        if len(parts) != 2:
            raise ProtocolError(f"header packet {cmd!r} with {len(parts)} strings")
        kind = "insheader" if cmd == SMFIR_INSHEADER else "chgheader"
        return Action(kind, name=parts[0], value=parts[1], index=index)
    if cmd == SMFIR_ADDHEADER:
        name, value = _split_cstrs(data)
        return Action("addheader", name=name, value=value)
    if cmd in (SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_CHGFROM, SMFIR_ADDRCPT_PAR):
        parts = _split_cstrs(data)
        kinds = {
            SMFIR_ADDRCPT: "addrcpt",
            SMFIR_DELRCPT: "delrcpt",
            SMFIR_CHGFROM: "chgfrom",
            SMFIR_ADDRCPT_PAR: "addrcpt_par",
        }
        return Action(kinds[cmd], name=parts[0], value=" ".join(parts[1:]))
    if cmd == SMFIR_QUARANTINE:
        return Action("quarantine", value=_split_cstrs(data)[0])
    raise ProtocolError(f"not a modification: {cmd!r}")


@dataclass
class MilterClient:
    """One MTA-side milter connection.

    ``batch``: queue packets that need no reply and send them with the next one that does,
    as Postfix's VSTREAM does; False writes every packet at once (a chattier MTA).
    ``nodelay``: set TCP_NODELAY on our end (inet sockets only).
    """

    spec: str
    timeout: float = 30.0
    batch: bool = True
    nodelay: bool = False
    actions: int = ALL_ACTIONS
    protocol: int = ALL_PROTOCOL
    negotiated: Negotiated | None = None
    _sock: socket.socket | None = field(default=None, repr=False)
    _pending: list[bytes] = field(default_factory=list, repr=False)
    _rbuf: bytearray = field(default_factory=bytearray, repr=False)

    # -- connection ---------------------------------------------------------------------------
    def open(self) -> MilterClient:
        family, address = parse_spec(self.spec)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        if self.nodelay and family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(address)  # type: ignore[arg-type]
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MilterClient:
        if self._sock is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- packets ------------------------------------------------------------------------------
    def send_packet(self, cmd: bytes, data: bytes = b"", *, flush: bool = True) -> None:
        packet = struct.pack("!I", len(data) + 1) + cmd + data
        self._pending.append(packet)
        if flush or not self.batch:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        if self._sock is None:
            raise ProtocolError("not connected")
        self._sock.sendall(b"".join(self._pending))
        self._pending.clear()

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        while len(self._rbuf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._rbuf)))
            if not chunk:
                raise ProtocolError("connection closed by the filter")
            self._rbuf.extend(chunk)
        out = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return out

    def read_packet(self) -> Packet:
        """Read one packet (flushing what is queued first)."""
        self.flush()
        (length,) = struct.unpack("!I", self._recv_exact(4))
        if length < 1 or length > 2**24:
            raise ProtocolError(f"bad packet length {length}")
        body = self._recv_exact(length)
        return Packet(body[:1], body[1:])

    def read_reply(self) -> Reply:
        """Read one final reply (skipping SMFIR_PROGRESS). Raises ProtocolError otherwise."""
        while True:
            packet = self.read_packet()
            if packet.cmd == SMFIR_PROGRESS:
                continue
            return self._final(packet)

    @staticmethod
    def _final(packet: Packet) -> Reply:
        if packet.cmd == SMFIR_REPLYCODE:
            return Reply(packet.cmd, _split_cstrs(packet.data)[0])
        if packet.cmd not in FINAL_REPLIES:
            raise ProtocolError(f"expected a final reply, got {packet.cmd!r}")
        return Reply(packet.cmd)

    # -- negotiation and events ---------------------------------------------------------------
    def negotiate(self) -> Negotiated:
        """SMFIC_OPTNEG with our actions and protocol; returns (and keeps) the answer."""
        self.send_packet(SMFIC_OPTNEG, struct.pack("!III", SMFI_VERSION, self.actions,
                                                   self.protocol))
        packet = self.read_packet()
        if packet.cmd != SMFIC_OPTNEG or len(packet.data) < 12:
            raise ProtocolError(f"bad OPTNEG answer {packet!r}")
        version, actions, protocol = struct.unpack("!III", packet.data[:12])
        symlists: dict[int, tuple[str, ...]] = {}
        rest = packet.data[12:]
        while len(rest) >= 4:
            (stage,) = struct.unpack("!I", rest[:4])
            end = rest.index(b"\0", 4)
            symlists[stage] = tuple(rest[4:end].decode().split())
            rest = rest[end + 1 :]
        self.negotiated = Negotiated(version, actions, protocol, symlists)
        return self.negotiated

    def _proto(self) -> int:
        return self.negotiated.protocol if self.negotiated else 0

    def macros(self, event: bytes, macros: Mapping[str, str] | None) -> None:
        """Send the macros of an event; only those the filter asked for at that stage when it
        sent a list for it (SMFIF_SETSYMLIST), as Postfix does."""
        wanted = self.negotiated.symlists.get(_EVENT_STAGES.get(event, -1)) \
            if self.negotiated else None
        if macros and wanted is not None:
            macros = {k: v for k, v in macros.items() if k in wanted}
        if not macros:
            return
        data = event + b"".join(_cstr(k) + _cstr(v) for k, v in macros.items())
        self.send_packet(SMFIC_MACRO, data, flush=False)

    def event(
        self, event: bytes, data: bytes = b"", macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        """Send macros and one event; wait for its reply unless negotiated away (then None)."""
        self.macros(event, macros)
        skip, noreply = _EVENT_FLAGS.get(event, (0, 0))
        if self._proto() & skip:
            return None
        if self._proto() & noreply:
            self.send_packet(event, data, flush=False)
            return None
        self.send_packet(event, data)
        return self.read_reply()

    def connect(
        self,
        hostname: str = "client.example",
        address: str = "192.0.2.1",
        port: int = 4321,
        family: str = "4",
        macros: Mapping[str, str] | None = None,
    ) -> Reply | None:
        data = _cstr(hostname) + family.encode() + struct.pack("!H", port) + _cstr(address)
        return self.event(SMFIC_CONNECT, data, macros)

    def helo(self, name: str, macros: Mapping[str, str] | None = None) -> Reply | None:
        return self.event(SMFIC_HELO, _cstr(name), macros)

    def mail(
        self, sender: str, *params: str, macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        return self.event(SMFIC_MAIL, b"".join(_cstr(a) for a in (f"<{sender}>", *params)),
                          macros)

    def rcpt(
        self, recipient: str, *params: str, macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        return self.event(SMFIC_RCPT, b"".join(_cstr(a) for a in (f"<{recipient}>", *params)),
                          macros)

    def data(self, macros: Mapping[str, str] | None = None) -> Reply | None:
        return self.event(SMFIC_DATA, b"", macros)

    def header(self, name: str, value: str) -> Reply | None:
        return self.event(SMFIC_HEADER, _cstr(name) + _cstr(value))

    def eoh(self, macros: Mapping[str, str] | None = None) -> Reply | None:
        return self.event(SMFIC_EOH, b"", macros)

    def body(self, body: bytes, chunk: int = MILTER_CHUNK_SIZE) -> list[Reply | None]:
        """Send the body in packets of at most ``chunk`` bytes (65535: MILTER_CHUNK_SIZE)."""
        replies = []
        for start in range(0, len(body), chunk):
            replies.append(self.event(SMFIC_BODY, body[start : start + chunk]))
        return replies

    def eom(self, macros: Mapping[str, str] | None = None) -> EomResult:
        """SMFIC_BODYEOB; collect modification actions until the final reply."""
        self.macros(SMFIC_BODYEOB, macros)
        self.send_packet(SMFIC_BODYEOB)
        actions: list[Action] = []
        progress = 0
        while True:
            packet = self.read_packet()
            if packet.cmd == SMFIR_PROGRESS:
                progress += 1
            elif packet.cmd in MODIFICATIONS:
                actions.append(decode_action(packet))
            else:
                return EomResult(tuple(actions), self._final(packet), progress)

    def abort(self) -> None:
        self.send_packet(SMFIC_ABORT, flush=False)

    def quit(self) -> None:
        self.send_packet(SMFIC_QUIT)
        self.close()

    # -- a whole transaction ------------------------------------------------------------------
    def message(
        self,
        sender: str,
        recipients: Sequence[str],
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        queue_id: str = "4ABCDEF",
        auth_authen: str | None = None,
        extra_macros: Mapping[str, str] | None = None,
    ) -> MessageResult:
        """One transaction as Postfix sends it: MAIL (with {auth_authen}), RCPT..., DATA,
        headers, EOH, body, EOB (with ``i``). Stops early when MAIL or every RCPT is refused."""
        mail_macros = {"i": queue_id, **({"{auth_authen}": auth_authen} if auth_authen else {})}
        mail_macros.update(extra_macros or {})
        mail = self.mail(sender, macros=mail_macros)
        if mail is not None and mail.cmd not in (SMFIR_CONTINUE, SMFIR_SKIP):
            return MessageResult(mail, (), None)
        rcpts = tuple(self.rcpt(r, macros={"i": queue_id}) for r in recipients)
        accepted = [r for r in rcpts if r is None or r.cmd in (SMFIR_CONTINUE, SMFIR_SKIP)]
        if not accepted:
            self.abort()
            return MessageResult(mail, rcpts, None)
        self.data(macros={"i": queue_id})
        for name, value in headers:
            self.header(name, value)
        self.eoh(macros={"i": queue_id})
        self.body(body)
        result = self.eom(macros={"i": queue_id})
        return MessageResult(mail, rcpts, result)


def apply_actions(
    headers: Sequence[tuple[str, str]], body: bytes, result: EomResult
) -> tuple[list[tuple[str, str]], bytes]:
    """Apply header edits and the body replacement as Postfix's cleanup does (header indexes
    count occurrences of that name, case-insensitively, from 1; SMFIR_INSHEADER index 0 is the
    top). Returns the new headers and body."""
    out = list(headers)
    for action in result.actions:
        if action.kind == "addheader":
            out.append((action.name, action.value))
        elif action.kind == "insheader":
            out.insert(min(action.index, len(out)), (action.name, action.value))
        elif action.kind == "chgheader":
            index = action.index or 1
            seen = 0
            for pos, (name, _) in enumerate(out):
                if name.lower() == action.name.lower():
                    seen += 1
                    if seen == index:
                        if action.value:
                            out[pos] = (name, action.value)
                        else:
                            del out[pos]
                        break
            else:
                if action.value:  # Sendmail and Postfix add a header changed past the end
                    out.append((action.name, action.value))
    new_body = result.new_body
    return out, body if new_body is None else new_body
