"""The floor milter of bench/minimal_milter.py --floor, speaking the milter protocol itself.

    python bench/engine_floor.py SOCKET --threads
    python bench/engine_floor.py SOCKET --loop

The same work as ``minimal_milter.py SOCKET --floor`` (headers and body collected, at end of
message the MIME headers deleted, three added, the body replaced by what came in) and the same
protocol shortcuts (collecting steps without replies, CONNECT/HELO/RCPT/EOH/UNKNOWN negotiated
away, DATA on unix: too), but no libmilter and no pymilter: Python reads and writes the
packets. ``--threads``: one thread per connection with blocking reads, as libmilter's model;
``--loop``: every connection on one selector loop in one thread, nothing handed between
threads. bench/postfix_bench.py --engines runs the three side by side under Postfix, to
measure what the protocol engine itself costs per message (issue 11 item 2; a question for the
design, DESIGN.md "Choices": pymilter on libmilter). Not part of the product: no stop, no
drain, no privileges, a bench milter; the packet format is the one libmilter 8.17 speaks
(version 6, include/libmilter/mfdef.h).
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import sys
import threading

# mfdef.h: protocol steps the MTA may skip or not wait for, actions the milter may take.
P_NOCONNECT, P_NOHELO, P_NORCPT, P_NOEOH = 0x1, 0x2, 0x8, 0x40
P_NR_HDR, P_NOUNKNOWN, P_NODATA, P_NR_MAIL, P_NR_BODY = 0x80, 0x100, 0x200, 0x4000, 0x80000
WANTED = (P_NOCONNECT | P_NOHELO | P_NORCPT | P_NOEOH | P_NOUNKNOWN | P_NODATA | P_NR_HDR
          | P_NR_MAIL | P_NR_BODY)
SMFIF_ADDHDRS, SMFIF_CHGBODY, SMFIF_CHGHDRS = 0x01, 0x02, 0x10
MIME_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition",
                "mime-version")
NEW_HEADERS = (("MIME-Version", "1.0"),
               ("Content-Type", "application/pkcs7-mime; smime-type=enveloped-data; "
                                "name=smime.p7m"),
               ("Content-Transfer-Encoding", "base64"))
CHUNK = 65535  # MILTER_CHUNK_SIZE: the most one SMFIR_REPLBODY may carry


def packet(code: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + code + data


CONTINUE = packet(b"c")


class Handler:
    """One connection's protocol state: ``feed(command, data)`` returns the reply bytes."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.protocol = 0

    def feed(self, command: bytes, data: bytes) -> bytes | None:
        """The reply to one command (b"" for none); None to close the connection."""
        if command == b"D":
            return b""  # macros: this milter reads none
        if command == b"O":
            _, _, offered = struct.unpack(">III", data[:12])
            self.protocol = offered & WANTED
            return packet(b"O", struct.pack(">III", 6, SMFIF_ADDHDRS | SMFIF_CHGBODY
                                            | SMFIF_CHGHDRS, self.protocol))
        if command == b"L":
            name, value, _ = data.split(b"\0", 2)
            self.headers.append((name, value))
            return b"" if self.protocol & P_NR_HDR else CONTINUE
        if command == b"B":
            self.chunks.append(data)
            return b"" if self.protocol & P_NR_BODY else CONTINUE
        if command == b"M":
            self.headers, self.chunks = [], []
            return b"" if self.protocol & P_NR_MAIL else CONTINUE
        if command == b"E":
            if data:
                self.chunks.append(data)
            return self.end_of_message()
        if command in (b"A", b"K"):
            self.headers, self.chunks = [], []
            return b""
        if command == b"Q":
            return None
        return CONTINUE  # C, H, R, T, N, U when the MTA sends them anyway

    def end_of_message(self) -> bytes:
        mime = [(n, v) for n, v in self.headers if n.lower().decode() in MIME_HEADERS[:3]]
        head = b"".join(n + b": " + v + b"\r\n" for n, v in mime) or b"Content-Type: text/plain\r\n"
        entity = head + b"\r\n" + b"".join(self.chunks)
        out = []
        for name in MIME_HEADERS:
            if any(n.lower().decode() == name for n, _ in self.headers):
                out.append(packet(b"m", struct.pack(">I", 1) + name.encode() + b"\0\0"))
        for name, value in NEW_HEADERS:
            out.append(packet(b"h", f"{name}\0{value}\0".encode()))
        for start in range(0, len(entity), CHUNK):
            out.append(packet(b"b", entity[start:start + CHUNK]))
        out.append(CONTINUE)
        self.headers, self.chunks = [], []
        return b"".join(out)


def serve_thread(conn: socket.socket) -> None:
    """One connection, blocking reads through a buffered reader."""
    handler = Handler()
    with conn, conn.makefile("rb") as reader:
        while True:
            head = reader.read(4)
            if len(head) < 4:
                return
            (size,) = struct.unpack(">I", head)
            body = reader.read(size)
            if len(body) < size or size == 0:
                return
            reply = handler.feed(body[:1], body[1:])
            if reply is None:
                return
            if reply:
                conn.sendall(reply)


class LoopConnection:
    """One connection on the selector loop: whole packets out of what has arrived."""

    def __init__(self, conn: socket.socket, selector: selectors.BaseSelector) -> None:
        self.conn, self.selector = conn, selector
        self.buffer = bytearray()
        self.handler = Handler()

    def readable(self) -> None:
        try:
            data = self.conn.recv(262144)
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.buffer += data
        replies = []
        pos, end = 0, len(self.buffer)
        while end - pos >= 4:
            (size,) = struct.unpack_from(">I", self.buffer, pos)
            if end - pos - 4 < size:
                break
            body = bytes(self.buffer[pos + 4:pos + 4 + size])
            pos += 4 + size
            reply = self.handler.feed(body[:1], body[1:]) if size else None
            if reply is None:
                if replies:
                    self.conn.sendall(b"".join(replies))
                self.close()
                return
            if reply:
                replies.append(reply)
        del self.buffer[:pos]
        if replies:
            self.conn.sendall(b"".join(replies))  # blocking: replies are small, the MTA reads

    def close(self) -> None:
        self.selector.unregister(self.conn)
        self.conn.close()


def listen(spec: str) -> socket.socket:
    if spec.startswith("unix:"):
        path = spec[5:]
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
    else:
        port, _, host = spec[5:].partition("@")
        listener = socket.socket(socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as smimegate's
        listener.bind((host, int(port)))
    listener.listen(128)
    return listener


def main() -> None:
    spec, mode = sys.argv[1], sys.argv[2]
    if mode not in ("--threads", "--loop"):
        raise SystemExit("usage: engine_floor.py SOCKET --threads|--loop")
    os.umask(0)  # a unix: socket must be writable by user postfix; this is a bench milter
    listener = listen(spec)
    if mode == "--threads":
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve_thread, args=(conn,), daemon=True).start()
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                selector.register(conn, selectors.EVENT_READ, LoopConnection(conn, selector))
            else:
                key.data.readable()


if __name__ == "__main__":
    main()
