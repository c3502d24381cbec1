"""Log lines: ``QUEUEID: smimegate: key=value ...``, and the syslog or stdout handler.

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
from collections.abc import Iterable, Mapping
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
        if isinstance(value, str | bytes) and _has_private_key(str(value)):
            raise SecretFieldError(f"log field {name!r} holds a private key; it is never logged")
        out.append(f"{name}={format_value(value)}")
    return " ".join(out)


def _queue_id(queue_id: str | None) -> str:
    qid = queue_id or NOQUEUE
    if not re.fullmatch(r"[A-Za-z0-9]+", qid):
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


def _probe_unix_socket(path: str) -> None:
    """Connect to a local syslog socket once. Raises OSError when nobody listens there."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
                return
            except OSError as exc:
                if exc.errno != errno.EPROTOTYPE:  # a stream socket: try that type next
                    raise OSError(exc.errno, f"syslog socket {path}: {exc.strerror}") from None
    raise OSError(errno.EPROTOTYPE, f"syslog socket {path}: neither datagram nor stream")


def setup_logging(config: Config, *, stream: TextIO | None = None) -> logging.Logger:
    """Send the ``smimegate`` logger to syslog or stdout as ``config.milter`` says.

    syslog: a SysLogHandler on the local socket ``syslog_socket`` with ``syslog_facility``, tag
    ``smimegate[PID]: ``. stdout: the bare lines (systemd's journal and ``make run`` add their own
    time stamps); ``stream`` replaces sys.stdout (tests). Calling it again (SIGUSR1 reload)
    replaces the handler installed before. Raises OSError when the syslog socket cannot be opened.
    """
    milter = config.milter
    logger = get_logger()
    handler: logging.Handler
    if milter.log == "syslog":
        facility = logging.handlers.SysLogHandler.facility_names[milter.syslog_facility]
        # SysLogHandler tolerates a missing syslogd (it reconnects on every record, which
        # covers a syslogd restart later); at start-up a missing socket is a set-up error.
        _probe_unix_socket(milter.syslog_socket)
        handler = logging.handlers.SysLogHandler(address=milter.syslog_socket, facility=facility)
        # The tag (RFC 3164 section 4.1.3) is part of the message for SysLogHandler.
        handler.setFormatter(_OneLine(f"{TAG}[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(stream or sys.stdout)
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
