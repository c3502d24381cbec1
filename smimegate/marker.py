"""The HMAC marker on mail the gateway itself sends or re-submits, so that our own milter
passes it unchanged and outsiders cannot forge "already processed".

Two senders use it, so it lives outside smimegate.milter and smimegate.delivery:

- smimegate.milter.reinject: the copies of a split message re-submitted to ``[milter]
  reinject`` (when ``reinject_marker`` is on);
- smimegate.delivery.queue: the PKCS#12 mail, which must never be encrypted by our own milter
  (its recipient could not decrypt a mail encrypted to the certificate whose key is inside).

The header is ``X-Smimegate-Reinjected: v=1; q=QUEUEID; t=UNIXTIME; m=MAC`` where MAC is
HMAC-SHA256 (key: ``[milter] reinject_secret_file``, 32 random bytes made 0600 when absent,
shared by every node and by the processes that send our own mail) over the version, queue id,
time, the sorted envelope recipients and SHA-256 of the body (line ends made CRLF, trailing
empty lines dropped, so that transport does not break it). The gateway checks the marker on
every message and always removes it: valid (MAC right, same recipients, same body, at most
MAX_AGE old) -> the message is accepted as it is; invalid or stale -> processed normally, with
a warning. Forging one needs the key; replaying a seen one only works for the same body to the
same recipients within MAX_AGE, which then get what they were sent already.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER_HEADER = "X-Smimegate-Reinjected"
VERSION = "1"
# Re-submission happens before we answer the original transaction, so a copy is checked
# seconds later; a day leaves room for clock skew between nodes and queued retries.
MAX_AGE = 24 * 3600
SECRET_BYTES = 32

_FIELD = re.compile(r"\s*([a-z])=([^;\s]*)\s*")


class MarkerKeyError(OSError):
    """The reinjection key file cannot be read or created."""


def load_or_create_secret(path: str | os.PathLike[str]) -> bytes:
    """The HMAC key in ``path``; a new random one is written (mode 0600) when the file is
    absent. Raises MarkerKeyError when it cannot be read or created, or is too short."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        data = secrets.token_bytes(SECRET_BYTES)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_secret(p)  # another process made it first: use theirs
        except OSError as exc:
            raise MarkerKeyError(f"{p}: cannot create the reinjection key: {exc}") from exc
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return data
    except OSError as exc:
        raise MarkerKeyError(f"{p}: cannot read the reinjection key: {exc}") from exc
    if len(data) < 16:
        raise MarkerKeyError(f"{p}: the reinjection key is shorter than 16 bytes")
    return data


def body_digest(body: bytes) -> bytes:
    """SHA-256 of the body with CRLF line ends and without trailing empty lines."""
    canonical = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").rstrip(b"\r\n")
    return hashlib.sha256(canonical).digest()


def _mac(secret: bytes, queue_id: str, stamp: int, recipients: Sequence[str],
         body: bytes) -> str:
    rcpts = "\x00".join(sorted(r.lower() for r in recipients))
    data = b"\x00".join([VERSION.encode(), queue_id.encode("utf-8", "replace"),
                         str(stamp).encode(), rcpts.encode("utf-8", "replace"),
                         body_digest(body)])
    digest = hmac.new(secret, data, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def make_marker(secret: bytes, queue_id: str, recipients: Sequence[str], body: bytes,
                now: float | None = None) -> str:
    """The marker header value for a copy to ``recipients`` with ``body``."""
    stamp = int(time.time() if now is None else now)
    qid = re.sub(r"[^A-Za-z0-9]", "", queue_id) or "NOQUEUE"
    return f"v={VERSION}; q={qid}; t={stamp}; m={_mac(secret, qid, stamp, recipients, body)}"


@dataclass(frozen=True)
class MarkerCheck:
    """valid: the copy is ours and unchanged; reason: why not (for the warning)."""

    valid: bool
    reason: str | None = None
    queue_id: str | None = None


def check_marker(secret: bytes, value: str, recipients: Sequence[str], body: bytes,
                 now: float | None = None) -> MarkerCheck:
    """Check a marker header value against this transaction. Never raises."""
    fields = {}
    for part in value.replace("\r\n", "").replace("\n", "").split(";"):
        match = _FIELD.fullmatch(part)
        if match is None:
            return MarkerCheck(False, "unreadable marker")
        fields[match.group(1)] = match.group(2)
    if fields.get("v") != VERSION or not {"q", "t", "m"} <= fields.keys():
        return MarkerCheck(False, "unknown marker version")
    try:
        stamp = int(fields["t"])
    except ValueError:
        return MarkerCheck(False, "unreadable marker time")
    expected = _mac(secret, fields["q"], stamp, recipients, body)
    if not hmac.compare_digest(expected, fields["m"]):
        return MarkerCheck(False, "marker does not match", fields["q"])
    age = (time.time() if now is None else now) - stamp
    if age > MAX_AGE or age < -300:
        return MarkerCheck(False, "stale marker", fields["q"])
    return MarkerCheck(True, None, fields["q"])


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header block with its line ends, body) of a whole message: the body starts after the
    first empty line (RFC 5322 2.1), as an MTA hands it to a milter. No empty line: no body."""
    found = [(at, sep) for sep in (b"\r\n\r\n", b"\n\n")
             if (at := message.find(sep)) >= 0]
    if not found:
        return message, b""
    at, sep = min(found)
    half = len(sep) // 2
    return message[: at + half], message[at + len(sep):]


def mark_message(secret: bytes, queue_id: str, recipients: Sequence[str],
                 message: bytes, now: float | None = None) -> bytes:
    """``message`` (a whole message, CRLF or LF line ends) with the marker header for
    ``recipients`` put first, in the message's own line ends."""
    head, body = split_message(message)
    eol = b"\r\n" if b"\r\n" in head else b"\n"
    value = make_marker(secret, queue_id, recipients, body, now)
    line = f"{MARKER_HEADER}: {value}".encode("ascii") + eol
    return line + message
