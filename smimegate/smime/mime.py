"""Raw-byte MIME for S/MIME: split, classify, unwrap and build entities without re-serialising.

Why not the ``email`` package: a multipart/signed signature covers the exact bytes of the first
body part (RFC 8551 3.5.3, RFC 1847 2.1), and ``email`` re-folds headers, changes line ends and
re-encodes bodies. Everything here works on the received bytes, with ``bytes.find`` and
``bytes.split`` so that 25 MB bodies cost linear time.

An *entity* is a MIME entity as bytes: its Content-* header lines, a blank line and the body.
CRLF and bare LF line ends are accepted on input (files from openssl and s-nail are LF); what we
build is CRLF, as RFC 8551 3.1.1 asks of canonical MIME.

Header field values (``Entity.headers``) are the bytes after the colon with the leading blanks
removed and the final line end removed; folding inside a value is kept as received.
"""

from __future__ import annotations

import binascii
import functools
import io
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from typing import Literal, NamedTuple

from smimegate.smime.cms import guard, load_content_info
from smimegate.smime.errors import Malformed, Unsupported

# Limits against resource abuse; a message beyond them is refused as Malformed, not parsed.
MAX_HEADER_LINES = 1000
MAX_HEADER_BYTES = 64 * 1024

# Base64 lines of 76 characters (RFC 2045 6.8).
BASE64_LINE = 76
# Folded header lines stay below 78 characters (RFC 5322 2.1.1).
_FOLD_AT = 76

Kind = Literal["plain", "signed", "opaque-signed", "enveloped", "auth-enveloped", "certs-only"]

# ContentInfo contentType OIDs (RFC 5652 5.1, 6.1; RFC 5083 2.1).
_OID_SIGNED = "1.2.840.113549.1.7.2"
_OID_ENVELOPED = "1.2.840.113549.1.7.3"
_OID_AUTH_ENVELOPED = "1.2.840.113549.1.9.16.1.23"

_PKCS7_MIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_PKCS7_SIGNATURE = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})

# smime-type values of RFC 8551 3.2.2 (compared lower-case) -> our kind.
_SMIME_TYPES: dict[str, Kind] = {
    "signed-data": "opaque-signed",
    "enveloped-data": "enveloped",
    "authenveloped-data": "auth-enveloped",
    "certs-only": "certs-only",
}

# Canonical spelling of the smime-type parameter we emit (RFC 8551 3.2.2) and the file name
# that goes with it (RFC 8551 3.2.1: .p7m for pkcs7-mime, .p7c for certs-only).
_BUILD_SMIME_TYPES = {
    "signed-data": ("signed-data", "smime.p7m"),
    "enveloped-data": ("enveloped-data", "smime.p7m"),
    "authenveloped-data": ("authEnveloped-data", "smime.p7m"),
    "certs-only": ("certs-only", "smime.p7c"),
}

# micalg names of RFC 8551 3.5.3.2 <-> digest names as hashlib / our allow-lists spell them.
_MICALG_BY_DIGEST = {
    "sha1": "sha-1",
    "sha224": "sha-224",
    "sha256": "sha-256",
    "sha384": "sha-384",
    "sha512": "sha-512",
}

# RFC 2045 5.1 tspecials; a token ends at any of these, at blanks, or at a comment.
_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_BLANKS = " \t\r\n"
# A header field name: printable US-ASCII except colon (RFC 5322 2.2), checked at C speed.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# A line end inside a value must be followed by a blank, or the value would inject a field.
_BAD_FOLD = re.compile(rb"(?:\r\n|\r|\n)(?![ \t])")


@dataclass(frozen=True)
class Entity:
    """A parsed MIME entity.

    ``headers`` holds (name as received, value bytes) in order; a value excludes the blanks
    after the colon and the final line end but keeps folding as received. ``body`` is the exact
    bytes after the blank line that ends the header section (empty when there is none).
    """

    raw: bytes
    headers: tuple[tuple[str, bytes], ...]
    body: bytes


class _Field(NamedTuple):
    """One header field as _scan_headers found it. A NamedTuple: a frozen dataclass costs three
    times as much to build, and a message's entities make a few dozen (bench/cost_bench.py)."""

    name: str
    value: bytes
    start: int  # offset of the field's first byte in the input
    end: int  # offset just after the field's last line end


def _scan_headers(raw: bytes) -> tuple[list[_Field], int]:
    """Split the header section; return the fields and the offset where the body starts.

    Raises Malformed for a line that is neither a field nor a continuation, and for the limits.
    """
    fields: list[_Field] = []
    pos = 0
    size = len(raw)
    lines = 0
    name = ""
    start = -1  # start of the field being collected, -1 when none
    value_start = 0
    value_end = 0
    while pos < size:
        nl = raw.find(b"\n", pos)
        next_pos = size if nl < 0 else nl + 1
        line_end = size if nl < 0 else nl
        if line_end > pos and raw[line_end - 1] == 0x0D:
            line_end -= 1
        if line_end == pos:
            # RFC 5322 2.1: the header section ends at the first empty line.
            if start >= 0:
                fields.append(_field(raw, name, start, value_start, value_end, pos))
            return fields, next_pos
        lines += 1
        if lines > MAX_HEADER_LINES:
            raise Malformed(f"header: more than {MAX_HEADER_LINES} header lines")
        if line_end - pos > MAX_HEADER_BYTES:
            raise Malformed(f"header: line {lines} is longer than {MAX_HEADER_BYTES} bytes")
        first = raw[pos]
        if first in (0x20, 0x09):
            # RFC 5322 2.2.3: a line starting with a blank continues the previous field.
            if start < 0:
                raise Malformed(f"header: line {lines} is a continuation without a field")
            value_end = line_end
        else:
            if start >= 0:
                fields.append(_field(raw, name, start, value_start, value_end, pos))
            colon = raw.find(b":", pos, line_end)
            if colon < 0:
                raise Malformed(
                    f"header: line {lines} is not a header field: {_show(raw[pos:line_end])}"
                )
            # RFC 5322 4.5.3 obsolete syntax allows blanks between the name and the colon.
            name_bytes = raw[pos:colon].rstrip(b" \t")
            if not _FIELD_NAME.fullmatch(name_bytes):
                raise Malformed(
                    f"header: line {lines} is not a header field: {_show(raw[pos:line_end])}"
                )
            name = name_bytes.decode("ascii")
            start = pos
            value_start = colon + 1
            value_end = line_end
        if next_pos - start > MAX_HEADER_BYTES:
            raise Malformed(f"header: field {name} is longer than {MAX_HEADER_BYTES} bytes")
        pos = next_pos
    # No empty line: the whole input is header section and the body is empty.
    if start >= 0:
        fields.append(_field(raw, name, start, value_start, value_end, size))
    return fields, size


def _field(raw: bytes, name: str, start: int, value_start: int, value_end: int, end: int) -> _Field:
    value = raw[value_start:value_end].lstrip(b" \t")
    return _Field(name=name, value=value, start=start, end=end)


def _show(line: bytes) -> str:
    return repr(line[:60]) + ("..." if len(line) > 60 else "")


def parse_entity(raw: bytes) -> Entity:
    """Parse a MIME entity (header fields, blank line, body) from raw bytes.

    Raises Malformed for a line in the header section that is not a field or a continuation,
    more than MAX_HEADER_LINES header lines, or a field longer than MAX_HEADER_BYTES.
    """
    fields, body_start = _scan_headers(raw)
    return Entity(
        raw=raw,
        headers=tuple((f.name, f.value) for f in fields),
        body=raw[body_start:],
    )


def get_header(entity: Entity, name: str) -> bytes | None:
    """The raw value of the first field called ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for field_name, value in entity.headers:
        if field_name.lower() == wanted:
            return value
    return None


def unfold(value: bytes) -> str:
    """A header value as text: folding removed (RFC 5322 2.2.3), UTF-8 with replacement."""
    text = value.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"")
    return text.decode("utf-8", "replace").strip(_BLANKS)


def _skip_blanks_and_comments(text: str, i: int) -> int:
    """Skip blanks and RFC 5322 3.2.2 comments (nested, with quoted-pairs)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in _BLANKS:
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted-string starting at text[i] == '"'; an unterminated one runs to the end."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def _read_until(text: str, i: int, stops: str) -> tuple[str, int]:
    n = len(text)
    j = i
    while j < n and text[j] not in stops:
        j += 1
    return text[i:j], j


def parse_params(value: bytes) -> tuple[str, dict[str, str]]:
    """Split a Content-Type / Content-Disposition value into (lower-case main value, params).

    Parameter names are lower-case, values unquoted (RFC 2045 5.1 quoted-strings with
    backslash escapes), comments dropped; RFC 2231 extended values and continuations are
    decoded. A parameter without '=' is ignored (lenient, as mail clients are). Never raises.
    """
    main, params = _parse_params(bytes(value))
    return main, dict(params)


@functools.lru_cache(maxsize=512)
def _parse_params(value: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    # Cached by value: unwrapping one message reads the same few Content-Type fields several
    # times (classify, then the recipe), a character at a time (bench/cost_bench.py).
    text = unfold(value)
    i = _skip_blanks_and_comments(text, 0)
    main, i = _read_until(text, i, ";(")
    main = "".join(main.split()).lower()
    raw_params: list[tuple[str, str, bool]] = []
    n = len(text)
    while i < n:
        i = _skip_blanks_and_comments(text, i)
        if i >= n:
            break
        if text[i] != ";":
            # Junk between parameters: skip to the next separator.
            _, i = _read_until(text, i, ";")
            continue
        i = _skip_blanks_and_comments(text, i + 1)
        pname, i = _read_until(text, i, "=;" + _BLANKS + "(")
        i = _skip_blanks_and_comments(text, i)
        if not pname or i >= n or text[i] != "=":
            continue
        i = _skip_blanks_and_comments(text, i + 1)
        if i < n and text[i] == '"':
            pvalue, i = _read_quoted(text, i)
            quoted = True
        else:
            # Unquoted values with tspecials ('=' in boundaries) occur in the wild: take the run
            # up to ';', a blank or a comment.
            pvalue, i = _read_until(text, i, ";" + _BLANKS + "(")
            quoted = False
        raw_params.append((pname.lower(), pvalue, quoted))
    return main, tuple(_decode_rfc2231(raw_params).items())


def _decode_rfc2231(raw_params: list[tuple[str, str, bool]]) -> dict[str, str]:
    """Combine name*N / name*N* / name* sections (RFC 2231 3, 4); plain values as they are."""
    params: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value, quoted in raw_params:
        if "*" not in name:
            params.setdefault(name, value)
            continue
        base, _, rest = name.partition("*")
        extended = rest.endswith("*") or rest == ""
        number_text = rest[:-1] if rest.endswith("*") else rest
        if number_text == "":
            number = 0
        elif number_text.isdigit() and len(number_text) <= 3:
            number = int(number_text)
        else:
            continue
        # A quoted section is never percent-encoded (RFC 2231 4: extended values are tokens).
        sections.setdefault(base, {}).setdefault(number, (value, extended and not quoted))
    for base, parts in sections.items():
        charset = ""
        chunks: list[bytes] = []
        number = 0
        while number in parts:
            value, extended = parts[number]
            if extended:
                if number == 0:
                    pieces = value.split("'", 2)
                    if len(pieces) == 3:
                        charset, value = pieces[0], pieces[2]
                chunks.append(_percent_decode(value))
            else:
                chunks.append(value.encode("utf-8"))
            number += 1
        if not chunks:
            continue
        data = b"".join(chunks)
        try:
            decoded = data.decode(charset or "utf-8", "replace")
        except LookupError:
            decoded = data.decode("latin-1")
        # RFC 2231 values win over a plain parameter of the same name.
        params[base] = decoded
    return params


def _percent_decode(value: str) -> bytes:
    out = bytearray()
    data = value.encode("utf-8")
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x25 and i + 2 < len(data) and _is_hex(data[i + 1 : i + 3]):
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return bytes(out)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def content_type(entity: Entity) -> tuple[str, dict[str, str]]:
    """Lower-case "type/subtype" and parameters of an entity.

    Without a Content-Type field, or with a syntactically invalid one, the RFC 2045 5.2 default
    ("text/plain", {"charset": "us-ascii"}) applies. Raises Malformed when there are two
    Content-Type fields: parsers that pick different ones would see different messages.
    """
    values = [v for n, v in entity.headers if n.lower() == "content-type"]
    if len(values) > 1:
        raise Malformed("header: more than one Content-Type field")
    if values:
        main, params = parse_params(values[0])
        kind, slash, sub = main.partition("/")
        if slash and _is_token(kind) and _is_token(sub):
            return main, params
    return "text/plain", {"charset": "us-ascii"}


@functools.lru_cache(maxsize=256)
def _is_token(text: str) -> bool:
    # Cached: the same few type and subtype names, checked a character at a time.
    return bool(text) and all(33 <= ord(c) < 127 and c not in _TSPECIALS for c in text)


def content_disposition(entity: Entity) -> tuple[str, dict[str, str]] | None:
    """Lower-case disposition type and parameters (RFC 2183), or None without the field."""
    value = get_header(entity, "content-disposition")
    if value is None:
        return None
    return parse_params(value)


def transfer_encoding(entity: Entity) -> str:
    """Lower-case Content-Transfer-Encoding; "7bit" when absent (RFC 2045 6.1)."""
    value = get_header(entity, "content-transfer-encoding")
    if value is None:
        return "7bit"
    main, _ = parse_params(value)
    return main or "7bit"


def canonicalize(data: bytes) -> bytes:
    """Every line end (CRLF, bare LF, bare CR) becomes CRLF (RFC 8551 3.1.1). Never raises."""
    # Mail from the MTA is CRLF already: counting is cheaper than three copies of a large
    # message (and every signature and encryption canonicalises what it is given).
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data
    # Three C-speed passes; "\r\r\n" correctly becomes two line ends.
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _is_entity_header(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("content-") or lower == "mime-version"


def split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Split an RFC 5322 message into (outer header fields, entity bytes).

    Outer fields are all fields except Content-* and MIME-Version, as (name, value) like
    ``Entity.headers``. The entity is the Content-* fields (original order, raw bytes kept),
    the blank line and the body. Without Content-Type the entity has no such line and reads as
    text/plain (RFC 2045 5.2). Raises Malformed like ``parse_entity``.
    """
    fields, body_start = _scan_headers(raw)
    outer: list[tuple[str, bytes]] = []
    entity_lines: list[bytes] = []
    for field in fields:
        if _is_entity_header(field.name):
            if field.name.lower() != "mime-version":
                line = raw[field.start : field.end]
                if not line.endswith(b"\n"):
                    line += b"\r\n"
                entity_lines.append(line)
        else:
            outer.append((field.name, field.value))
    separator = raw[fields[-1].end : body_start] if fields else raw[:body_start]
    if separator not in (b"\r\n", b"\n"):
        separator = b"\r\n"
    return outer, b"".join(entity_lines) + separator + raw[body_start:]


def join_message(outer: Sequence[tuple[str, bytes]], entity: bytes) -> bytes:
    """Outer header fields (CRLF), ``MIME-Version: 1.0`` when needed, then the entity.

    MIME-Version is added when the entity has a Content-Type and the outer fields lack it
    (RFC 2045 4). Raises Malformed if ``entity`` is not a parseable entity, ValueError for an
    outer field name that is not a valid field name or a value with a line end not followed by
    a blank (it would smuggle in another field).
    """
    lines: list[bytes] = []
    has_version = False
    for name, value in outer:
        name_bytes = name.encode("ascii", "replace")
        if not _FIELD_NAME.fullmatch(name_bytes):
            raise ValueError(f"outer header: {name!r} is not a header field name")
        if _BAD_FOLD.search(value):
            raise ValueError(f"outer header: value of {name} has a line end that is not folding")
        has_version = has_version or name.lower() == "mime-version"
        lines.append(name_bytes + b": " + canonicalize(value) + b"\r\n")
    parsed = parse_entity(entity)
    if not has_version and get_header(parsed, "content-type") is not None:
        lines.append(b"MIME-Version: 1.0\r\n")
    return b"".join(lines) + entity


def _find_delimiters(body: bytes, boundary: str) -> tuple[list[tuple[int, int]], int | None]:
    """Delimiter lines of a multipart body (RFC 2046 5.1.1).

    Returns [(start of the line end before the delimiter, offset after the delimiter line)]
    for every dash-boundary line, and the index in that list of the close delimiter or None.
    """
    marker = b"--" + boundary.encode("ascii", "replace")
    found: list[tuple[int, int]] = []
    pos = 0
    size = len(body)
    while True:
        i = body.find(marker, pos)
        if i < 0:
            return found, None
        pos = i + len(marker)
        if i > 0 and body[i - 1] != 0x0A:
            continue  # a delimiter starts a line
        j = i + len(marker)
        close = body.startswith(b"--", j)
        if close:
            j += 2
        # Transport padding (RFC 2046 5.1.1: LWSP) then the line end or the end of the body.
        while j < size and body[j] in (0x20, 0x09):
            j += 1
        if j < size and body[j] == 0x0D and j + 1 < size and body[j + 1] == 0x0A:
            after = j + 2
        elif j < size and body[j] == 0x0A:
            after = j + 1
        elif j >= size:
            after = size
        else:
            continue  # "--boundaryX": longer line, not our delimiter
        # The line end before the delimiter belongs to the delimiter (RFC 2046 5.1.1).
        before = i
        if i >= 2 and body[i - 2 : i] == b"\r\n":
            before = i - 2
        elif i >= 1:
            before = i - 1
        found.append((before, after))
        if close:
            return found, len(found) - 1
        pos = after


def split_multipart(entity: Entity) -> list[bytes]:
    """The body parts of a multipart entity, each the exact bytes as received.

    A part runs from after its delimiter line's line end up to, not including, the line end
    before the next delimiter (RFC 2046 5.1.1). Preamble and epilogue are dropped. Raises
    Malformed when the entity is not multipart, has no boundary parameter, no delimiter or no
    closing delimiter.
    """
    return [entity.body[start:end] for start, end in multipart_spans(entity)]


def multipart_spans(entity: Entity) -> list[tuple[int, int]]:
    """Where each body part of a multipart entity lies in ``entity.body``: (start, end) offsets
    of the bytes split_multipart returns, so that a caller can replace one part and keep every
    other byte (preamble, delimiters, epilogue). Raises Malformed as split_multipart does."""
    ctype, params = content_type(entity)
    if not ctype.startswith("multipart/"):
        raise Malformed(f"multipart: entity is {ctype}, not multipart")
    boundary = params.get("boundary")
    if not boundary:
        raise Malformed(f"{ctype}: missing boundary parameter")
    if len(boundary) > 200:
        raise Malformed(f"{ctype}: boundary parameter is longer than 200 characters")
    delimiters, close = _find_delimiters(entity.body, boundary)
    if not delimiters:
        raise Malformed(f"{ctype}: no boundary delimiter line in the body")
    if close is None:
        raise Malformed(f"{ctype}: missing closing delimiter --{boundary}--")
    if close == 0:
        raise Malformed(f"{ctype}: closing delimiter without a body part")
    return [(after, max(after, before))
            for (_, after), (before, _) in zip(delimiters, delimiters[1:], strict=False)]


def split_multipart_signed(entity: Entity) -> tuple[bytes, bytes, str | None]:
    """(exact bytes of the signed first part, signature DER, micalg lower-case or None).

    Raises Malformed when the entity is not multipart/signed, lacks a boundary, does not have
    exactly 2 parts, misses the closing delimiter, when the second part is not a
    pkcs7-signature, or when its base64 is broken; Unsupported for an unknown transfer
    encoding of the signature.
    """
    ctype, params = content_type(entity)
    if ctype != "multipart/signed":
        raise Malformed(f"multipart/signed: entity is {ctype}")
    parts = split_multipart(entity)
    if len(parts) != 2:
        raise Malformed(f"multipart/signed: expected 2 body parts, found {len(parts)}")
    signature = parse_entity(parts[1])
    sig_type, sig_params = content_type(signature)
    if sig_type not in _PKCS7_SIGNATURE and not (
        sig_type == "application/octet-stream" and _named(signature, sig_params, ".p7s")
    ):
        raise Malformed(
            f"multipart/signed: second part is {sig_type}, expected application/pkcs7-signature"
        )
    der = decode_smime_body(signature)
    micalg = params.get("micalg")
    return parts[0], der, micalg.strip().lower() if micalg else None


def _named(entity: Entity, params: dict[str, str], suffix: str) -> bool:
    """Whether the Content-Type name or the Content-Disposition filename ends with suffix."""
    names = [params.get("name", "")]
    disposition = content_disposition(entity)
    if disposition is not None:
        names.append(disposition[1].get("filename", ""))
    return any(n.strip().lower().endswith(suffix) for n in names)


def _der_length(der: bytes) -> int | None:
    """Total length of the definite-length DER element at the start, or None."""
    if len(der) < 2:
        return None
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 8 or len(der) < 2 + count:
        return None  # indefinite length (BER) or absurd
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


_BASE64_BLANKS = b" \t\r\n"
# Strict base64 is decoded a slice at a time: a whitespace-free copy of a 30 MB body would
# otherwise live beside the body and the DER (bench/smime_bench.py measures the peak).
_BASE64_SLICE = 1 << 20


def _decode_base64(body: bytes) -> bytes:
    """Strict base64 (RFC 2045 6.8) with blanks and line ends ignored. Raises Malformed."""
    if len(body) <= _BASE64_SLICE:
        # One slice: the blank-free copy is small, and counting the blanks first would scan
        # the body four more times (a fifth of the decoding time, bench/cost_bench.py).
        data = body.translate(None, _BASE64_BLANKS)
        if not data:
            raise Malformed("base64: empty body")
        if len(data) % 4:
            raise Malformed(f"base64: length {len(data)} is not a multiple of 4 (truncated or "
                            "garbage)")
        try:
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise Malformed(f"base64: {exc}") from exc
    total = len(body) - sum(body.count(blank) for blank in (b" ", b"\t", b"\r", b"\n"))
    if not total:
        raise Malformed("base64: empty body")
    if total % 4:
        raise Malformed(f"base64: length {total} is not a multiple of 4 (truncated or garbage)")
    out = io.BytesIO()
    carry = b""
    padded = False
    for start in range(0, len(body), _BASE64_SLICE):
        data = carry + body[start : start + _BASE64_SLICE].translate(None, _BASE64_BLANKS)
        # Decode whole 4-character groups; the rest waits for the next slice.
        keep = len(data) - len(data) % 4
        chunk, carry = data[:keep], data[keep:]
        if not chunk:
            continue
        if padded:
            raise Malformed("base64: Excess data after padding")
        try:
            out.write(binascii.a2b_base64(chunk, strict_mode=True))
        except binascii.Error as exc:
            raise Malformed(f"base64: {exc}") from exc
        padded = chunk.endswith(b"=")
    return out.getvalue()


def decode_smime_body(entity: Entity) -> bytes:
    """The DER of an application/pkcs7-* entity, undoing its Content-Transfer-Encoding.

    base64 is decoded strictly after removing blanks and line ends (RFC 2045 6.8): a length not
    a multiple of 4, an illegal character or data after the padding raise Malformed
    "base64: ...". 7bit / 8bit / binary bodies are returned as they are, except that line ends
    after a definite-length DER element are dropped (an MTA may append one). quoted-printable
    is decoded. Raises Unsupported for any other encoding and Malformed for an empty body.
    """
    encoding = transfer_encoding(entity)
    body = entity.body
    if encoding == "base64":
        return _decode_base64(body)
    if encoding in ("7bit", "8bit", "binary"):
        der = body
    elif encoding == "quoted-printable":
        der = binascii.a2b_qp(body)
    else:
        raise Unsupported(f"Content-Transfer-Encoding {encoding} for an S/MIME body")
    if not der:
        raise Malformed("S/MIME body is empty")
    length = _der_length(der)
    if length is not None and len(der) > length and not der[length:].strip(b"\r\n"):
        der = der[:length]
    return der


def classify(entity: Entity) -> Kind:
    """What an entity is, as the gateway treats it.

    multipart/signed with protocol application/(x-)pkcs7-signature is "signed" (RFC 8551
    3.5.3); application/(x-)pkcs7-mime is told apart by smime-type (RFC 8551 3.2.2), or, when
    that is missing or unknown (s-nail, some Outlook), by the ContentInfo contentType of its
    DER. A top-level application/octet-stream named *.p7m (Outlook) is peeked at the same way
    and is "plain" when it does not hold CMS. Everything else is "plain".
    Raises Malformed when a pkcs7-mime body cannot be decoded or parsed, Unsupported for a
    CMS content type or smime-type we do not handle (compressed-data, digested-data ...).
    """
    ctype, params = content_type(entity)
    if ctype == "multipart/signed":
        protocol = "".join(params.get("protocol", "").split()).lower()
        return "signed" if protocol in _PKCS7_SIGNATURE else "plain"
    if ctype in _PKCS7_MIME:
        smime_type = params.get("smime-type", "").strip().lower()
        if smime_type in _SMIME_TYPES:
            return _SMIME_TYPES[smime_type]
        if smime_type == "compressed-data":
            raise Unsupported("smime-type compressed-data (RFC 3274) is not supported")
        return _peek(entity)
    if ctype == "application/octet-stream" and _named(entity, params, ".p7m"):
        try:
            return _peek(entity)
        except (Malformed, Unsupported):
            return "plain"
    return "plain"


def _peek(entity: Entity) -> Kind:
    """Kind from the DER's ContentInfo contentType (RFC 5652 3)."""
    info = load_content_info(decode_smime_body(entity))
    oid = info["content_type"].dotted
    if oid == _OID_ENVELOPED:
        return "enveloped"
    if oid == _OID_AUTH_ENVELOPED:
        return "auth-enveloped"
    if oid == _OID_SIGNED:
        # A SignedData without signers is a certificate bag (RFC 8551 3.6: certs-only).
        with guard("CMS SignedData"):
            signers = len(info["content"]["signer_infos"])
        return "opaque-signed" if signers else "certs-only"
    raise Unsupported(f"CMS content type {oid} is not an S/MIME type we handle")


def micalg_for_digest(digest: str) -> str:
    """micalg parameter value (RFC 8551 3.5.3.2) for a digest name such as "sha256".

    Accepts "sha256", "SHA256", "sha-256", "SHA_256". Raises Unsupported for other digests.
    """
    key = digest.strip().lower().replace("-", "").replace("_", "")
    try:
        return _MICALG_BY_DIGEST[key]
    except KeyError:
        raise Unsupported(f"digest {digest!r} has no RFC 8551 micalg name we accept") from None


def digest_for_micalg(micalg: str) -> str:
    """Digest name ("sha256") for a micalg value; accepts "sha-256", "SHA256", "sha256".

    Raises Unsupported for an unknown micalg (md5, gostr3411-94, ...).
    """
    key = micalg.strip().strip('"').lower().replace("-", "").replace("_", "")
    if key not in _MICALG_BY_DIGEST:
        raise Unsupported(f"micalg {micalg!r} is not one of RFC 8551 3.5.3.2 we accept")
    return key


def _fold(name: str, items: Sequence[str]) -> bytes:
    """``Name: item1; item2 ...`` folded before an item when a line would reach 78 chars."""
    line = f"{name}: {items[0]}"
    lines: list[str] = []
    for item in items[1:]:
        if len(line) + 2 + len(item) > _FOLD_AT:
            lines.append(line + ";")
            line = " " + item
        else:
            line += "; " + item
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _base64_lines(der: bytes, prefix: bytes = b"") -> bytes:
    # prefix + base64 of der in CRLF lines of 76. Memory (helper "enveloped", 25 MB messages):
    # encoded a block of lines at a time into one growing buffer whose getvalue() does not copy,
    # so the peak is about the output size rather than several times it. The lines are read
    # off the encoded block by C calls (iter over read): cutting them with slices in a Python
    # loop took longer: 54 us for 15 KB of DER with map(), 39 with a list, 30 now
    # (bench/cost_bench.py).
    out = io.BytesIO()
    out.write(prefix)
    view = memoryview(der)
    step = BASE64_LINE // 4 * 3 * 1024
    for start in range(0, len(view), step):
        encoded = binascii.b2a_base64(view[start : start + step], newline=False)
        lines = iter(functools.partial(io.BytesIO(encoded).read, BASE64_LINE), b"")
        out.write(b"\r\n".join(lines))
        out.write(b"\r\n")
    return out.getvalue()


def _new_boundary(content: bytes) -> str:
    # "=_" cannot occur in quoted-printable or base64 text, and the random part makes a
    # collision unlikely; we still check (RFC 2046 5.1.1: the boundary must not occur inside).
    for _ in range(8):
        boundary = f"----=_smimegate_{secrets.token_hex(16)}"
        if b"--" + boundary.encode("ascii") not in content:
            return boundary
    raise RuntimeError("could not find a boundary that is absent from the content")


def build_multipart_signed(content: bytes, signature_der: bytes, micalg: str, *,
                           canonical: bool = False) -> bytes:
    """A multipart/signed entity (RFC 8551 3.5.3): canonical content, then the signature.

    The first part is ``canonicalize(content)``, which is what the signature must cover.
    ``canonical``: the caller passes the very bytes it canonicalised and signed (sign.sign),
    so they are not scanned a second time (15 us for 10 KB, bench/cost_bench.py).
    ``micalg`` may be "sha-256" or a digest name like "sha256"; several, comma-separated, for
    several signers. Raises Unsupported for an unknown micalg, ValueError for an empty
    signature.
    """
    if not signature_der:
        raise ValueError("signature_der: empty")
    names = [micalg_for_digest(digest_for_micalg(m)) for m in micalg.split(",") if m.strip()]
    if not names:
        raise Unsupported("micalg: empty")
    first = content if canonical else canonicalize(content)
    boundary = _new_boundary(first)
    micalg_value = ",".join(names)
    if len(names) > 1:
        micalg_value = f'"{micalg_value}"'
    head = _fold(
        "Content-Type",
        [
            "multipart/signed",
            'protocol="application/pkcs7-signature"',
            f"micalg={micalg_value}",
            f'boundary="{boundary}"',
        ],
    )
    delimiter = b"--" + boundary.encode("ascii")
    return b"".join(
        [
            head,
            b"\r\n",
            b"This is an S/MIME signed message.\r\n",
            b"\r\n",
            delimiter + b"\r\n",
            first,
            b"\r\n" + delimiter + b"\r\n",
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n',
            b"Content-Transfer-Encoding: base64\r\n",
            b'Content-Disposition: attachment; filename="smime.p7s"\r\n',
            b"\r\n",
            _base64_lines(signature_der),
            b"\r\n" + delimiter + b"--\r\n",
        ]
    )


def build_pkcs7_mime(der: bytes, smime_type: str) -> bytes:
    """An application/pkcs7-mime entity (RFC 8551 3.2), base64 in lines of 76.

    smime_type: signed-data | enveloped-data | authEnveloped-data | certs-only (matched
    case-insensitively, emitted as RFC 8551 spells it; certs-only is named smime.p7c).
    Raises ValueError for another smime_type or empty DER.
    """
    key = smime_type.strip().lower()
    if key not in _BUILD_SMIME_TYPES:
        raise ValueError(
            f"smime_type: {smime_type!r} is not signed-data, enveloped-data, "
            "authEnveloped-data or certs-only"
        )
    if not der:
        raise ValueError("der: empty")
    spelled, filename = _BUILD_SMIME_TYPES[key]
    head = _fold(
        "Content-Type",
        ["application/pkcs7-mime", f"smime-type={spelled}", f'name="{filename}"'],
    )
    prefix = b"".join(
        [
            head,
            b"Content-Transfer-Encoding: base64\r\n",
            f'Content-Disposition: attachment; filename="{filename}"\r\n'.encode("ascii"),
            b"\r\n",
        ]
    )
    return _base64_lines(der, prefix)


def decode_words(text: str) -> str:
    """A header value's RFC 2047 encoded-words decoded; the value as it is when it has none
    or they do not decode (a broken one, a charset no codec has: email's CharsetError is a
    MessageError, not a ValueError). Never raises."""
    if "=?" not in text:
        # No encoded-word (RFC 2047 2 starts each with "=?"): email.header would give it back
        # as it is, after 2 us of work per message (bench/cost_bench.py).
        return text
    try:
        return str(make_header(decode_header(text)))
    except (MessageError, LookupError, UnicodeError, ValueError):
        return text
