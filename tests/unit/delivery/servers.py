"""Real servers on loopback for the delivery tests: a small SMTP server and an HTTP endpoint.

Both run in a thread on 127.0.0.1, record what they receive, and can be told to refuse. A
``free_port()`` that nothing listens on stands for a relay that is down; a server can later be
started on that very port (the relay comes back).
"""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


@dataclass
class SmtpBehaviour:
    """Replies to give instead of 250 (e.g. "550 5.1.1 no such user")."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    messages: list[Received] = field(default_factory=list)


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:  # RFC 5321 4.1, just enough for smtplib
        b = self.server.behaviour
        self.reply("220 sink.test ESMTP")
        mail_from, rcpts = "", list[str]()
        while line := self.rfile.readline():
            cmd = line.decode("ascii", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb == "EHLO":
                self.reply("250-sink.test")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 sink.test")
            elif verb == "MAIL":
                mail_from, rcpts = cmd.split(":", 1)[1].strip().strip("<>"), list[str]()
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                if b.rcpt_reply:
                    self.reply(b.rcpt_reply)
                    continue
                rcpts.append(cmd.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 2.1.5 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                lines = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                if b.data_reply:
                    self.reply(b.data_reply)
                else:
                    b.messages.append(Received(mail_from, rcpts, b"".join(lines)))
                    self.reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class _SmtpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    behaviour: SmtpBehaviour


@contextmanager
def smtp_server(port: int = 0, behaviour: SmtpBehaviour | None = None) -> Iterator[
        tuple[int, SmtpBehaviour]]:
    """An SMTP server on 127.0.0.1:port (0: any) for the with block: (port, behaviour)."""
    server = _SmtpServer(("127.0.0.1", port), _SmtpHandler)
    server.behaviour = behaviour or SmtpBehaviour()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), server.behaviour
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpBehaviour:
    status: int = 200
    requests: list[HttpRequest] = field(default_factory=list)


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        b = self.server.behaviour
        b.requests.append(HttpRequest(self.command, self.path, dict(self.headers.items()), body))
        self.send_response(b.status)
        # Echo the request, as some gateways do: the client must not quote it in errors.
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = _record
    do_PUT = _record

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    behaviour: HttpBehaviour


@contextmanager
def http_server(behaviour: HttpBehaviour | None = None) -> Iterator[tuple[str, HttpBehaviour]]:
    """An HTTP endpoint on 127.0.0.1 for the with block: (base URL, behaviour)."""
    server = _HttpServer(("127.0.0.1", 0), _HttpHandler)
    server.behaviour = behaviour or HttpBehaviour()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.behaviour
    finally:
        server.shutdown()
        server.server_close()
