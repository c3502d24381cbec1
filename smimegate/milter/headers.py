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
from email.header import Header

from smimegate.milter.transaction import HeaderEdit
from smimegate.pki.addresses import certificate_addresses
from smimegate.smime.mime import decode_words
from smimegate.smime.results import Layer, serial_hex

# RFC 5322 2.1.1: lines SHOULD stay below 78 characters.
FOLD_WIDTH = 76
# What joins folded lines in the values we hand the MTA: a bare LF. libmilter's smfi_addheader
# documents "a line feed ... followed by at least one whitespace character; the line feed
# should NOT be preceded by a carriage return, the MTA will add this automatically", and
# Postfix's cleanup (cleanup_out_header) splits an added value at "\n" only, so a CR before it
# would stay in the queue file and reach the recipient as a stray CR. Postfix hands us folded
# fields joined the same way ("\n\t", INTEROP.md).
LINE_BREAK = "\n"
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    """Undo folding (RFC 5322 2.2.3): remove each CRLF (or LF) that precedes white space, and
    nothing else."""
    return _FOLD.sub("", value)


# A word: a run of WSP, before which a line may break, then text up to the next WSP. A break
# goes only before WSP that follows text, so that no line holds only WSP (RFC 5322 3.2.2).
_WORD = re.compile(r"[ \t]*[^ \t]+")


def fold(name: str, value: str) -> str:
    """A value for field ``name``, folded so that lines stay within FOLD_WIDTH where it can.

    RFC 5322 2.2.3: unfolding removes only the line break, so a break goes right before white
    space that is already in the value and that white space starts the continuation line; no
    character is added or dropped and unfold(fold(name, v)) == unfold(v). Where a line has no
    white space to break at, it stays long (a break elsewhere would change the value). Lines
    are joined with LINE_BREAK (a bare LF, see there); edit.serialize_header writes CRLF.
    Never raises.
    """
    value = unfold(value)
    used = len(name) + 2  # "Name: " before the value on the first line
    if used + len(value) <= FOLD_WIDTH:
        return value
    # Whole words, each line as many as fit (at least one), WSP at the end stays on the last
    # line. A regular expression finds the words: testing each character in Python took 4 us
    # of the 8 us that folding one Authentication-Results value cost (bench/cost_bench.py).
    words = _WORD.findall(value)
    if not words:
        return value
    words[-1] += value[sum(map(len, words)):]
    lines: list[str] = []
    line = words[0]
    for word in words[1:]:
        if used + len(line) + len(word) <= FOLD_WIDTH:
            line += word
        else:
            lines.append(line)
            line, used = word, 0
    lines.append(line)
    return LINE_BREAK.join(lines)


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
    return decode_words(unfold(value))


def encode_subject(text: str) -> str:
    """A Subject value: ASCII text as it is, anything else as RFC 2047 UTF-8 encoded-words;
    folded as fold() does (LINE_BREAK; white space between encoded-words is ignored when they
    are decoded, RFC 2047 6.2)."""
    if text.isascii():
        return fold("Subject", text)
    return Header(text, "utf-8", header_name="Subject").encode(linesep=LINE_BREAK)


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
