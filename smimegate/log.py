"""Log lines: ``QUEUEID: smimegate: key=value ...``, and the syslog, stdout or stderr handler.

One line per message and action, queue id first, ``key=value`` fields after, successes logged
too (DESIGN.md, Style 4, after Postfix ``cleanup_milter.c``; CONTRACT.md "Log line")::

    4Xk2q1GZ: smimegate: direction=outbound action=sign+encrypt from=<a@x> to=<b@y> result=ok

Warnings put ``warning:`` after the program tag, as Postfix daemons do after theirs
(``postfix/smtpd[1]: warning: ...``), so that every line of ours still matches
``^(QUEUEID: )?smimegate: `` and every warning matches ``: warning: ``::

    4Xk2q1GZ: smimegate: warning: cannot decrypt; reason="no key" to=<b@y>
    smimegate: warning: CRL download failed; url=http://ca.example/ca.crl

A line without a message has no queue id; a message that has none yet (before the MTA assigned
one) uses ``NOQUEUE``, as Postfix does.

Values that contain white space, quotes, backslashes or ``=`` are written as double-quoted
strings with backslash escapes; control characters are always escaped, so that one log line
stays one line whatever a message carries. Field names are checked: a name that looks like a
secret (password, secret, token, private key ...) or a value that holds a PEM private key is
refused with SecretFieldError, because logging one would be a bug; ``redact`` filters fields of
unknown origin instead. Handlers also scrub PEM private keys from any record, as a last guard.
"""

from __future__ import annotations

import errno
import functools
import logging
import logging.handlers
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from smimegate.config import Config

LOGGER_NAME = "smimegate"
TAG = "smimegate"
NOQUEUE = "NOQUEUE"
REDACTED = "[redacted]"

Fields = Mapping[str, object] | Iterable[tuple[str, object]]


class SecretFieldError(ValueError):
    """A log field whose name or value looks like secret material (a programming error)."""


_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Name parts that mark secrets wherever they appear in a field name.
_SECRET_PARTS = frozenset(
    {
        "password", "passwd", "passphrase", "pass", "pwd", "pw", "pin",
        "secret", "secrets", "token", "credential", "credentials",
        "private", "privkey", "pfx", "p12", "pkcs12", "hmac", "cek", "kek",
    }
)  # fmt: skip
_PEM_PRIVATE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.S
)


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """Whether a field name looks like it carries secret material.

    A name is split at ``_`` and ``-``; it is secret when any part is a secret word (password,
    secret, token, private, pfx ...) or when its last part is ``key`` (``key``, ``master_key``,
    ``session_key``). Names that only describe a key stay allowed: ``key_transport``,
    ``key_size``, ``key_id``.
    """
    parts = [p for p in re.split(r"[_\-]", name.lower()) if p]
    if not parts:
        return False
    return any(p in _SECRET_PARTS for p in parts) or parts[-1] in ("key", "keys")


@functools.lru_cache(maxsize=1024)
def _valid_name(name: str) -> bool:
    # Field names come from a small fixed set in the code: checked once each (issue 11 item 2).
    return _NAME.fullmatch(name) is not None


def _has_private_key(value: str) -> bool:
    return "PRIVATE KEY-----" in value


def redact(fields: Fields) -> list[tuple[str, object]]:
    """The fields with secret-looking names or private-key values replaced by ``[redacted]``."""
    out: list[tuple[str, object]] = []
    for name, value in _pairs(fields):
        secret = is_secret_name(name) or _has_private_key(str(value))
        out.append((name, REDACTED if secret else value))
    return out


def _pairs(fields: Fields) -> Iterable[tuple[str, object]]:
    if isinstance(fields, Mapping):
        return list(fields.items())
    return fields


# Printable ASCII but for space, quotes, backslash and "=": written as it is. Most values are
# like this, so the character-by-character escaping below is skipped for them.
_PLAIN = re.compile(r"[!#-&(-<>-\[\]-~]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def format_value(value: object) -> str:
    """One field value as it appears after ``=``.

    Booleans are ``yes``/``no``, floats have two decimals (``delay=0.14``), bytes are decoded
    as ASCII with escapes; a value that is empty or contains white space, a quote, ``\\`` or
    ``=`` is double-quoted; control characters are escaped as ``\\n``, ``\\xNN``.
    """
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.2f}"
    elif isinstance(value, bytes):
        text = value.decode("ascii", "backslashreplace")
    else:
        text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    # Quoting follows POSIX shell double quotes, so that shlex.split reads a line back.
    needs_quotes = text == "" or any(c.isspace() or c in "\"'\\=" for c in text)
    escaped = "".join(_escape(c) for c in text)
    if needs_quotes or escaped != text:
        return f'"{escaped}"'
    return text


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u2028\u2029":
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    return char


def format_fields(fields: Fields) -> str:
    """``key=value`` pairs in the given order, separated by single spaces; None values are left
    out. Raises SecretFieldError for a secret-looking name or a value holding a private key, and
    ValueError for a name that is not lower-case letters, digits and ``_``."""
    out: list[str] = []
    for name, value in _pairs(fields):
        if not _valid_name(name):
            raise ValueError(f"log field name {name!r}: lower-case letters, digits and _ only")
        if is_secret_name(name):
            raise SecretFieldError(f"log field {name!r} looks like a secret; it is never logged")
        if value is None:
            continue
        if type(value) is str and _PLAIN.fullmatch(value):
            # Most values: printable without blanks, written as they are (format_value), and
            # without the blank that every PEM private key's BEGIN line has.
            out.append(f"{name}={value}")
            continue
        if isinstance(value, str | bytes) and _has_private_key(str(value)):
            raise SecretFieldError(f"log field {name!r} holds a private key; it is never logged")
        out.append(f"{name}={format_value(value)}")
    return " ".join(out)


_QUEUE_ID = re.compile(r"[A-Za-z0-9]+")


def _queue_id(queue_id: str | None) -> str:
    qid = queue_id or NOQUEUE
    if not _QUEUE_ID.fullmatch(qid):
        # Queue ids come from the MTA ({i} macro); keep the line parseable whatever arrives.
        return format_value(qid) if qid else NOQUEUE
    return qid


def message_line(queue_id: str | None, fields: Fields) -> str:
    """The log line for one message: ``QUEUEID: smimegate: key=value ...``.

    ``queue_id`` None or "" gives ``NOQUEUE``. Raises SecretFieldError / ValueError as
    format_fields does.
    """
    return f"{_queue_id(queue_id)}: {TAG}: {format_fields(fields)}".rstrip()


def warning_line(queue_id: str | None, text: str, fields: Fields = ()) -> str:
    """A warning: ``[QUEUEID: ]smimegate: warning: TEXT[; key=value ...]``.

    ``queue_id`` None means the warning concerns no message (no queue id is written); "" means a
    message without a queue id yet (``NOQUEUE``). Control characters in TEXT are escaped.
    Raises SecretFieldError / ValueError as format_fields does.
    """
    prefix = f"{_queue_id(queue_id)}: " if queue_id is not None else ""
    body = "".join(_escape(c) if c not in '\\"' else c for c in text)
    rest = format_fields(fields)
    return f"{prefix}{TAG}: warning: {body}" + (f"; {rest}" if rest else "")


def get_logger() -> logging.Logger:
    """The ``smimegate`` logger that setup_logging configures."""
    return logging.getLogger(LOGGER_NAME)


def log_message(queue_id: str | None, fields: Fields) -> None:
    """Log one message line at INFO. Raises SecretFieldError / ValueError (see format_fields)."""
    get_logger().info(message_line(queue_id, fields))


def log_warning(queue_id: str | None, text: str, fields: Fields = ()) -> None:
    """Log a warning line at WARNING. Raises SecretFieldError / ValueError (see format_fields)."""
    get_logger().warning(warning_line(queue_id, text, fields))


class ScrubPrivateKeys(logging.Filter):
    """Last guard on every handler: PEM private keys in a record's text are replaced.

    The record is rewritten, never dropped, so that the event itself is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _has_private_key(text):
            record.msg = _PEM_PRIVATE.sub("[private key redacted]", text)
            record.args = None
        return True


class _OneLine(logging.Formatter):
    """Tracebacks (``--debug``) become part of the line with escaped newlines: one event, one
    line, as syslog expects."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


# Seconds between attempts to reach the syslog socket while it is away: a missing syslogd costs
# one connect per this interval at most, however much is logged meanwhile.
SYSLOG_RETRY = 2.0
# Syslog sockets this process has warned about and not reached since. A handler set up again
# (SIGUSR1) or in a forked milter worker does not repeat the supervisor's warning.
_UNREACHABLE: set[str] = set()


class SyslogWithFallback(logging.Handler):
    """syslog on a local socket (RFC 3164 over ``/dev/log``), stderr while it cannot be reached.

    The milter must start and keep logging wherever it runs: containers often have no syslogd,
    and a syslogd that restarts recreates its socket. So a missing or dead socket is not an
    error: the line goes to ``fallback`` (stderr) instead, with one ``warning:`` line when
    that starts (once per process and socket, see _UNREACHABLE), and the handler tries the socket again at most every ``retry`` seconds, when
    there is something to log. Once it answers, lines go there again, announced on the fallback
    stream. Both datagram and stream sockets are understood (rsyslog and syslog-ng make either).
    """

    def __init__(
        self,
        path: str,
        facility: int,
        *,
        fallback: TextIO,
        retry: float = SYSLOG_RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.path = path
        self.facility = facility
        self.fallback = fallback
        self.retry = retry
        self._clock = clock
        self._sock: socket.socket | None = None
        self._next_try = 0.0
        self._falling_back = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _connect(self) -> None:
        """Raises OSError when nobody listens at the path."""
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EPROTOTYPE:  # a stream socket: try that type next
                    continue
                raise
            self._sock = sock
            return
        raise OSError(errno.EPROTOTYPE, "neither a datagram nor a stream socket")

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def open(self) -> bool:
        """Try the socket now; on failure write the warning line and fall back. Returns
        whether it is connected."""
        try:
            self._connect()
        except OSError as exc:
            self._fall_back(exc)
            return False
        self._falling_back = False
        _UNREACHABLE.discard(self.path)
        return True

    def _fall_back(self, exc: OSError) -> None:
        self._next_try = self._clock() + self.retry
        if self._falling_back:
            return
        self._falling_back = True
        if self.path in _UNREACHABLE:
            return
        _UNREACHABLE.add(self.path)
        reason = exc.strerror or str(exc)
        self._write_fallback(warning_line(None, f"syslog socket {self.path}: {reason}; "
                                          "logging to stderr until it answers"))

    def _write_fallback(self, line: str) -> None:
        try:
            self.fallback.write(line + "\n")
            self.fallback.flush()
        except (OSError, ValueError):
            pass  # stderr itself is gone: there is nowhere left to say anything

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        if self._sock.type == socket.SOCK_STREAM:
            self._sock.sendall(data)
        else:
            self._sock.send(data)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except (ValueError, TypeError):
            self.handleError(record)
            return
        priority = logging.handlers.SysLogHandler.priority_names.get(
            _SYSLOG_PRIORITY.get(record.levelname, "warning"), 4)
        # RFC 3164 4.1.1: PRI = facility * 8 + severity; NUL ends the message for stream
        # sockets and is what SysLogHandler has always sent.
        data = f"<{self.facility << 3 | priority}>{line}\000".encode("utf-8", "replace")
        was_back = self._falling_back
        if self._sock is None and self._clock() >= self._next_try:
            self.open()
        if self._sock is not None:
            try:
                self._send(data)
            except OSError:
                # syslogd restarted (a new socket at the same path) or went away: one
                # reconnect now, else fall back.
                self._drop()
                if self.open():
                    try:
                        self._send(data)
                    except OSError as exc:
                        self._drop()
                        self._fall_back(exc)
            if self._sock is not None:
                if was_back:
                    self._write_fallback(f"{TAG}: syslog socket {self.path} answers again; "
                                         "logging there")
                return
        # The bare line, as log = "stderr" writes it: the tag is for syslog only.
        self._write_fallback(line.removeprefix(f"{TAG}[{record.process}]: "))

    def close(self) -> None:
        self._drop()
        super().close()


# logging level names to syslog severities (as SysLogHandler.mapPriority does).
_SYSLOG_PRIORITY = {
    "DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error",
    "CRITICAL": "critical",
}  # fmt: skip


def setup_logging(config: Config, *, stream: TextIO | None = None) -> logging.Logger:
    """Send the ``smimegate`` logger to syslog, stdout or stderr as ``config.milter`` says.

    syslog: the local socket ``syslog_socket`` with ``syslog_facility``, tag
    ``smimegate[PID]: ``; while the socket cannot be reached the lines go to stderr
    (SyslogWithFallback), so a missing syslogd never stops the milter. stdout, stderr: the bare
    lines (systemd's journal and ``make run`` add their own time stamps). ``stream`` replaces
    sys.stdout / sys.stderr (tests). Calling it again (SIGUSR1 reload) replaces the handler
    installed before. Never raises for the log target.
    """
    milter = config.milter
    logger = get_logger()
    handler: logging.Handler
    if milter.log == "syslog":
        facility = logging.handlers.SysLogHandler.facility_names[milter.syslog_facility]
        syslog = SyslogWithFallback(milter.syslog_socket, facility,
                                    fallback=stream or sys.stderr)
        syslog.open()  # says at once, on stderr, when syslog cannot be reached
        # The tag (RFC 3164 section 4.1.3) is part of the message.
        syslog.setFormatter(_OneLine(f"{TAG}[%(process)d]: %(message)s"))
        handler = syslog
    else:
        handler = logging.StreamHandler(
            stream or (sys.stderr if milter.log == "stderr" else sys.stdout))
        handler.setFormatter(_OneLine("%(message)s"))
    handler.addFilter(ScrubPrivateKeys())
    handler.set_name(f"{LOGGER_NAME}-main")
    for old in list(logger.handlers):
        if old.get_name() == handler.get_name():
            logger.removeHandler(old)
            old.close()
    logger.addHandler(handler)
    logger.setLevel(milter.log_level.upper())
    # Our lines are complete as they are: not again through the root logger's handlers.
    logger.propagate = False
    return logger
