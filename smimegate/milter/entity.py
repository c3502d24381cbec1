"""Swap the top-level MIME entity of a message for another one, as header edits + a body.

The message's own fields (From, To, Subject, Received ...) stay; its Content-* fields are
deleted and the new entity's Content-* fields added, MIME-Version: 1.0 added when missing
(RFC 2045 4), and the body replaced. Lines end in CRLF (RFC 8551 3.1.1 canonical form).
"""

from __future__ import annotations

from collections.abc import Sequence

from smimegate.milter.headers import fold
from smimegate.milter.transaction import HeaderEdit
from smimegate.smime import mime
from smimegate.smime.errors import Malformed


def message_entity(headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """The top-level entity (Content-* fields, blank line, body) of a message."""
    lines = [f"{n}: {v}".encode("utf-8", "surrogateescape") for n, v in headers
             if n.lower().startswith("content-")]
    head = b"".join(mime.canonicalize(line) + b"\r\n" for line in lines)
    return head + b"\r\n" + body


def replace_entity(
    headers: Sequence[tuple[str, str]], new_entity: bytes, content_only: bool = False,
    canonical: bool = False,
) -> tuple[tuple[HeaderEdit, ...], bytes]:
    """Edits and the new body that turn a message with ``headers`` into one carrying
    ``new_entity``. ``content_only``: only the entity's Content-* fields are added (its other
    fields are RFC 9788 protected header fields, which smimegate.smime.hprotect restores).
    ``canonical``: ``new_entity`` is CRLF throughout by construction (what smime.sign and
    smime.encrypt return), so its body is not scanned again (25 us for 20 KB of base64,
    bench/cost_bench.py). Never raises: an entity that is not MIME is delivered as a text
    body."""
    try:
        parsed = mime.parse_entity(new_entity)
        fields = [(n, v.decode("utf-8", "replace")) for n, v in parsed.headers
                  if not content_only or n.lower().startswith("content-")]
        body = parsed.body
    except Malformed:
        fields, body = [], new_entity
    counts: dict[str, int] = {}
    deletes: list[tuple[str, int]] = []
    has_version = False
    for name, _value in headers:
        key = name.lower()
        counts[key] = counts.get(key, 0) + 1
        if key.startswith("content-"):
            deletes.append((name, counts[key]))
        has_version = has_version or key == "mime-version"
    deletes.sort(key=lambda item: (item[0].lower(), -item[1]))
    edits = [HeaderEdit("delete", n, i) for n, i in deletes]
    if not has_version and fields:
        edits.append(HeaderEdit("add", "MIME-Version", 1, "1.0"))
    for name, value in fields:
        if name.lower() == "mime-version":
            continue
        edits.append(HeaderEdit("add", name, 1, fold(name, mime_unfold(value))))
    return tuple(edits), body if canonical else mime.canonicalize(body)


def mime_unfold(value: str) -> str:
    """One line: folding (CRLF or LF followed by a blank) undone."""
    return " ".join(part.strip() for part in value.replace("\r\n", "\n").split("\n"))
