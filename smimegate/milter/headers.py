"""Header fields: what we strip on input, Subject decoding, folding, Authentication-Results.

Stripping (issue 5 item 5): result headers (``header_prefix``) and Authentication-Results
fields that name our authserv-id are ours alone; any that arrive were written by someone else
and would mislead the reader, so they are removed from every message before we add our own
(RFC 8601 5: an MTA SHOULD remove fields claiming its authserv-id that arrive from outside).

Authentication-Results for S/MIME (RFC 7281, under RFC 8601): method ``smime``; results none |
pass | fail | policy | neutral | temperror | permerror; properties of ptype ``body``:
``smime-identifier`` (an address of the signer), ``smime-serial`` and ``smime-issuer`` (which
certificate), ``smime-part`` (not written: our layers are CMS levels, not MIME part numbers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header

from smimegate.milter.transaction import HeaderEdit
from smimegate.pki.addresses import certificate_addresses
from smimegate.smime.results import Layer, serial_hex

# RFC 5322 2.1.1: lines SHOULD stay below 78 characters.
FOLD_WIDTH = 76
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    """Undo folding (RFC 5322 2.2.3)."""
    return _FOLD.sub("", value)


def fold(name: str, value: str) -> str:
    """Fold a value after "; " or ", " or a blank so that lines stay short; "\\r\\n\\t" joins
    the lines (the form HeaderEdit values use). A value without break points stays long."""
    value = unfold(value)
    width = FOLD_WIDTH - len(name) - 2
    if len(value) <= width:
        return value
    pieces = re.split(r"(?<=[;,]) |(?<=\S) (?=\S)", value)
    lines: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and len(candidate) > width:
            lines.append(current)
            current = piece
            width = FOLD_WIDTH - 1
        else:
            current = candidate
    lines.append(current)
    return "\r\n\t".join(lines)


def _authserv_of(value: str) -> str:
    """The authserv-id of an Authentication-Results value (RFC 8601 2.2): the first token,
    comments (CFWS) skipped."""
    text = re.sub(r"\([^()]*\)", " ", unfold(value)).strip()
    return re.split(r"[\s;]", text, maxsplit=1)[0].lower() if text else ""


def strip_edits(
    headers: Sequence[tuple[str, str]], prefix: str, authserv_id: str,
    also: Sequence[str] = (),
) -> tuple[tuple[HeaderEdit, ...], list[tuple[str, str]]]:
    """Deletes for fields starting with ``prefix``, Authentication-Results naming
    ``authserv_id``, and fields named in ``also``; returns (edits, the remaining headers).

    Deletes of one name come highest index first (see transaction.HeaderEdit).
    """
    lower_prefix = prefix.lower()
    extra = {n.lower() for n in also}
    ours = authserv_id.lower()
    counts: dict[str, int] = {}
    doomed: list[tuple[str, int]] = []
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        counts[key] = counts.get(key, 0) + 1
        drop = (key.startswith(lower_prefix) or key in extra
                or (key == "authentication-results" and _authserv_of(value) == ours))
        if drop:
            doomed.append((name, counts[key]))
        else:
            kept.append((name, value))
    doomed.sort(key=lambda item: (item[0].lower(), -item[1]))
    return tuple(HeaderEdit("delete", n, i) for n, i in doomed), kept


def find(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of field ``name`` (case-insensitive), or None."""
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    return None


def decode_subject(value: str) -> str:
    """A Subject as text: RFC 2047 encoded-words decoded, folding undone. Never raises."""
    raw = unfold(value)
    try:
        return str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return raw


def encode_subject(text: str) -> str:
    """A Subject value: ASCII text as it is, anything else as RFC 2047 UTF-8 encoded-words,
    folded with "\\r\\n\\t"."""
    if text.isascii():
        return fold("Subject", text)
    encoded = Header(text, "utf-8", header_name="Subject").encode(linesep="\r\n")
    return encoded.replace("\r\n ", "\r\n\t")


def quote(value: str) -> str:
    """A value as RFC 8601 2.2 wants it: a token, or a quoted-string (RFC 5322 3.2.4)."""
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def smime_results(layers: Sequence[Layer], error: str | None = None) -> list[str]:
    """The ``smime=...`` resinfo clauses for the signers of every signed layer.

    pass: signature valid and the signer trusted; neutral: valid but not trusted; fail: the
    signature does not verify. No signed layer: one ``smime=none`` (with the reason when a
    layer could not be opened, since a signature may hide inside it).
    """
    out: list[str] = []
    for layer in layers:
        if layer.kind != "signed":
            continue
        for signer in layer.signers:
            if not signer.valid:
                result, why = "fail", signer.reason or "signature not valid"
            elif signer.trusted:
                result, why = "pass", None
            else:
                result, why = "neutral", signer.trust_info or "not trusted"
            parts = [f"smime={result}"]
            if why:
                parts.append(f"reason={quote(why)}")
            cert = signer.certificate
            addresses = certificate_addresses(cert) if cert is not None else ()
            if addresses:
                parts.append(f"body.smime-identifier={quote(addresses[0])}")
            sid = signer.signer_id
            if sid.serial is not None and sid.issuer:
                parts.append(f"body.smime-serial={serial_hex(sid.serial)}")
                parts.append(f"body.smime-issuer={quote(sid.issuer)}")
            out.append(" ".join(parts))
    if not out:
        out.append(f"smime=none reason={quote(error)}" if error else "smime=none")
    return out


def authentication_results(authserv_id: str, clauses: Sequence[str]) -> str:
    """``authserv-id; clause; clause`` folded (RFC 8601 2.2)."""
    return fold("Authentication-Results", "; ".join([authserv_id, *clauses]))
