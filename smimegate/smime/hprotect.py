"""Header protection (RFC 9788): header fields inside what we sign or encrypt, and back out.

Outbound (``protect``): the message's header fields are copied into the header section of the
Cryptographic Payload, the entity we then sign or encrypt ("Injected Headers" of RFC 9788),
and its Content-Type gets ``hp="clear"`` (signed only) or ``hp="cipher"`` (encrypted; the
``hp`` parameter of RFC 9788). An encrypted copy goes out under the baseline Header
Confidentiality Policy (RFC 9788 section 3, ``hcp_baseline``): Subject ``[...]``, Keywords and
Comments removed, every other field as it was; what stays outside is recorded inside as
``HP-Outer`` fields (RFC 9788 2.2.1) so a receiver can tell obscuring from tampering. Clients
without RFC 9788 would show ``[...]``, so the main body parts start with a Legacy Display
Element (RFC 9788 ``hp-legacy-display``; receivers remove it, 4.5.3.3): ``Subject: ...`` and a
blank line in text/plain, a ``div.header-protection-legacy-display`` in text/html, their
Content-Type marked ``hp-legacy-display="1"``. Only the user-facing fields the policy changed are shown there.

Inbound (``restore`` / ``restore_layers``): the innermost content of a verified or decrypted message is
a Cryptographic Payload with header protection when its Content-Type has ``hp`` (RFC 9788) or
the draft's ``protected-headers="v1"`` (draft-autocrypt-lamps-protected-headers, what the shared
corpus and Thunderbird's OpenPGP write). Its non-Content header fields are the protected ones.
An outer field is replaced by the protected one when it is missing, equal, or what the sender
said it put outside (``[...]``, the draft's ``...``, or the ``HP-Outer`` record); otherwise it
contradicts the protected one and is kept and reported (the outer From is what the MTA and
DMARC judged; preferring a different inner one silently would let a signed part re-address a
message). Address fields must name the same addresses even when HP-Outer says otherwise.
The Legacy Display Element is removed only from a decrypted payload we deliver as it is: under a
kept signature, removing it would break the signature the recipient's client checks.

Nothing here raises on bad input except ``protect`` (Malformed for an entity it cannot parse,
which the caller already parsed); ``restore`` reports what it could not use in ``errors``.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.quoprimime import body_encode
from email.utils import getaddresses
from typing import Literal

from smimegate.marker import MARKER_HEADER
from smimegate.smime import mime
from smimegate.smime.errors import Malformed
from smimegate.smime.results import Layer

Mode = Literal["clear", "cipher"]

# RFC 9788 section 3, hcp_baseline: the Subject is replaced by this, Keywords and Comments
# dropped.
OBSCURED_SUBJECT = "[...]"
_REMOVED_BY_BASELINE = frozenset({"keywords", "comments"})
# The precursor draft (draft-autocrypt-lamps-protected-headers) and its samples put "..." there.
_PLACEHOLDERS = frozenset({OBSCURED_SUBJECT, "...", "\u2026"})
# User-facing header fields (RFC 9788 terminology): shown in a Legacy Display Element when
# obscured.
_USER_FACING = ("subject", "from", "to", "cc", "date", "reply-to", "followup-to")
# Fields whose addresses must agree inside and outside (RFC 5322 3.6.2, 3.6.3).
_ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc"})
# Fields about the transport rather than the author's message (RFC 5321 4.4 trace fields, and
# what MTAs add on the way): never injected, never restored.
_TRANSPORT = frozenset({
    "received", "return-path", "delivered-to", "x-original-to", "dkim-signature",
    "authentication-results", "arc-seal", "arc-message-signature",
    "arc-authentication-results", MARKER_HEADER.lower(),
})
HP_OUTER = "HP-Outer"
LEGACY_CLASS = "header-protection-legacy-display"
_BODY_TAG = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)
_LEGACY_DIV = re.compile(
    rb"<div\b[^>]*class\s*=\s*[\"']?header-protection-legacy-display[\"']?[^>]*>.*?</div>"
    rb"[ \t]*(?:\r\n|\n)?", re.IGNORECASE | re.DOTALL)
_HEADER_LINE = re.compile(r"^[\x21-\x39\x3b-\x7e]+:")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
# Limits against resource abuse: the legacy display of a huge text part is not worth decoding.
_MAX_TEXT_PART = 8 * 1024 * 1024
_MAX_DEPTH = 8


def _injected(name: str) -> bool:
    key = name.lower()
    return not (key.startswith("content-") or key == "mime-version" or key in _TRANSPORT
                or key == HP_OUTER.lower())


def _crlf_value(value: str) -> bytes:
    """A header value as the milter gave it (folded with LF or CRLF) in CRLF form."""
    data = value.encode("utf-8", "surrogateescape")
    if "\n" not in value and "\r" not in value:
        return data  # one line, most values: 0.1 us instead of 0.65 (bench/cost_bench.py)
    return mime.canonicalize(data).strip(b"\r\n")


def _display(value: str) -> str:
    """A header value for people: folding undone, RFC 2047 encoded-words decoded."""
    return " ".join(mime.decode_words(_FOLDING.sub("", value).strip()).split())


# -- outbound -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protected:
    """What ``protect`` made: the payload to sign or encrypt, CRLF throughout (RFC 8551 3.1.1:
    smime.sign and smime.encrypt may take it with canonical=True), and the outer header changes
    (field name, 1-based occurrence, new value; None removes it) in message order."""

    entity: bytes
    outer: tuple[tuple[str, int, str | None], ...]
    legacy_display: bool
    mode: Mode


def baseline(name: str, value: str) -> str | None:
    """RFC 9788 hcp_baseline (section 3): the outer value of a protected field, None to leave
    it out."""
    key = name.lower()
    if key == "subject":
        return OBSCURED_SUBJECT
    if key in _REMOVED_BY_BASELINE:
        return None
    return value


def protect(entity: bytes, headers: Sequence[tuple[str, str]], *, encrypted: bool,
            legacy_display: bool = True) -> Protected:
    """The Cryptographic Payload for ``entity`` (the message's Content-* fields and body) with
    the message's ``headers`` (as the MTA passed them) injected, and the outer changes.

    Raises Malformed when ``entity`` cannot be parsed.
    """
    fields = [(n, v) for n, v in headers if _injected(n)]
    outer: list[tuple[str, int, str | None]] = []
    legacy: list[tuple[str, str]] = []
    records: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    if encrypted:
        for name, value in fields:
            key = name.lower()
            counts[key] = counts.get(key, 0) + 1
            new = baseline(name, value)
            if new is not None:
                records.append((name, new))
            if new != value:
                outer.append((name, counts[key], new))
                if key in _USER_FACING:
                    legacy.append((name, _display(value)))
    parsed = mime.parse_entity(mime.canonicalize(entity))
    shown = False
    if encrypted and legacy_display and legacy:
        try:
            changed = _add_legacy(parsed, legacy, 0)
            if changed is not None:
                parsed, shown = mime.parse_entity(changed), True
        except Malformed:
            pass  # a body part we cannot parse: no legacy display, the rest is protected
    mode: Mode = "cipher" if encrypted else "clear"
    lines = [n.encode("ascii", "replace") + b": " + _crlf_value(v) + b"\r\n" for n, v in fields]
    lines += _set_params(parsed, {"hp": mode}, drop=("hp",))
    lines += [f"{HP_OUTER}: ".encode() + name.encode("ascii", "replace") + b": "
              + _crlf_value(value) + b"\r\n" for name, value in records]
    payload = b"".join(lines) + b"\r\n" + parsed.body
    # Deletes of one name highest occurrence first (milter index semantics), changes first.
    ordered = sorted(outer, key=lambda e: (e[2] is None, e[0].lower(), -e[1]))
    return Protected(payload, tuple(ordered), shown, mode)


def _set_params(entity: mime.Entity, params: dict[str, str],
                drop: Sequence[str] = ()) -> list[bytes]:
    """The entity's Content-* header lines with ``params`` set on its Content-Type (one is
    added when it has none: text/plain; charset=us-ascii, RFC 2045 5.2) and ``drop`` removed."""
    out: list[bytes] = []
    seen = False
    for name, value in entity.headers:
        if name.lower() == "mime-version":
            continue
        if name.lower() == "content-type" and not seen:
            seen = True
            out.append(_content_type_line(value, params, drop))
        elif name.lower().startswith("content-"):
            out.append(name.encode("ascii") + b": " + value + b"\r\n")
    if not seen:
        out.insert(0, _content_type_line(b"text/plain; charset=us-ascii", params, drop))
    return out


def _content_type_line(value: bytes, params: dict[str, str], drop: Sequence[str]) -> bytes:
    main, current = mime.parse_params(value)
    names = {k.lower() for k in (*params, *drop)}
    if names & set(current):
        # Rebuilt from the parsed parameters (comments dropped) so nothing is set twice.
        kept = [(k, v) for k, v in current.items() if k not in names]
        head = main.encode("ascii", "replace") + b"".join(
            b";\r\n\t" + k.encode("ascii", "replace") + b'="' + _quoted(v) + b'"'
            for k, v in kept)
    else:
        head = value.rstrip(b"; \t\r\n")
    extra = b"".join(b";\r\n\t" + k.encode("ascii") + b'="' + _quoted(v) + b'"'
                     for k, v in params.items())
    return b"Content-Type: " + head + extra + b"\r\n"


def _quoted(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8", "replace")


def _add_legacy(entity: mime.Entity, legacy: Sequence[tuple[str, str]],
                depth: int) -> bytes | None:
    """The entity with the Legacy Display Element in its main body parts (RFC 9788: the
    text/plain and text/html parts a legacy client shows first), or None when it has none."""
    if depth > _MAX_DEPTH:
        return None
    ctype, _params = mime.content_type(entity)
    disposition = mime.content_disposition(entity)
    if disposition is not None and disposition[0] == "attachment":
        return None
    if ctype in ("text/plain", "text/html"):
        lines = [f"{n}: {v}" for n, v in legacy]
        # protect parsed the canonical form, so the part is CRLF throughout, and the element
        # adds only CRLF line ends (values from _display hold no line end).
        canonical = not any("\r" in line or "\n" in line for line in lines)
        if ctype == "text/plain":
            return _rewrite_text(entity, lambda t: "\r\n".join(lines) + "\r\n\r\n" + t,
                                 {"hp-legacy-display": "1"}, canonical=canonical)
        div = ('<div class="' + LEGACY_CLASS + '"><pre>'
               + html.escape("\r\n".join(lines)) + "</pre></div>\r\n")
        return _rewrite_text(entity, lambda t: _after_body_tag(t, div),
                             {"hp-legacy-display": "1"}, canonical=canonical)
    if not ctype.startswith("multipart/") or ctype == "multipart/signed":
        return None
    try:
        spans = mime.multipart_spans(entity)
    except Malformed:
        return None
    # multipart/alternative: every alternative is shown by some client; mixed or related:
    # the first part is the message text (RFC 2046 5.1.3, RFC 2387).
    chosen = range(len(spans)) if ctype == "multipart/alternative" else range(min(1, len(spans)))
    body = entity.body
    changed = False
    for index in reversed(chosen):
        start, end = spans[index]
        try:
            child = mime.parse_entity(body[start:end])
        except Malformed:
            continue
        new = _add_legacy(child, legacy, depth + 1)
        if new is not None:
            body = body[:start] + new + body[end:]
            changed = True
    if not changed:
        return None
    head = b"".join(n.encode("ascii") + b": " + v + b"\r\n" for n, v in entity.headers)
    return head + b"\r\n" + body


def _after_body_tag(text: str, element: str) -> str:
    found = _BODY_TAG.search(text.encode("utf-8", "surrogateescape"))
    if found is None:
        return element + text
    at = len(text.encode("utf-8", "surrogateescape")[:found.end()].decode(
        "utf-8", "surrogateescape"))
    return text[:at] + element + text[at:]


@functools.lru_cache(maxsize=64)
def _plain_crlf(charset: str) -> bool:
    """Whether in ``charset`` CR and LF are the bytes 0x0D and 0x0A and no other character
    decodes from or encodes to those bytes: US-ASCII, UTF-8, ISO 8859 and Windows-125x. Not
    UTF-16 or UTF-32 (two or four bytes), EBCDIC (other codes) or UTF-7 ("+AAo-" is a LF)."""
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return False
    return name in ("ascii", "utf-8") or name.startswith(("iso8859-", "cp125"))


def _decoded_text(entity: mime.Entity) -> tuple[str, str, str] | None:
    """(text, charset, transfer encoding) of a text part, None when it cannot be decoded."""
    encoding = mime.transfer_encoding(entity)
    if len(entity.body) > _MAX_TEXT_PART:
        return None
    if encoding == "base64":
        try:
            data = binascii.a2b_base64(entity.body.translate(None, b" \t\r\n"))
        except binascii.Error:
            return None
    elif encoding == "quoted-printable":
        data = binascii.a2b_qp(entity.body)
    elif encoding in ("7bit", "8bit", "binary"):
        data = entity.body
    else:
        return None
    _ctype, params = mime.content_type(entity)
    charset = params.get("charset", "us-ascii").strip().lower() or "us-ascii"
    try:
        codecs.lookup(charset)  # bytes.decode skips the lookup for empty input
        return data.decode(charset), charset, encoding
    except (LookupError, ValueError):  # unknown charset, undecodable text
        return None


def _rewrite_text(entity: mime.Entity, change: Callable[[str], str], params: dict[str, str],
                  drop: Sequence[str] = (), *, canonical: bool = False) -> bytes | None:
    """A text part with its decoded text changed by ``change`` and ``params`` set on its
    Content-Type; re-encoded in its charset (UTF-8 when that cannot hold the new text) and its
    transfer encoding (quoted-printable when 7bit cannot). None when it cannot be decoded.
    The new text is put in canonical form (CRLF), unless ``canonical`` says that the part is
    CRLF throughout and ``change`` adds no other line end, and its bytes are the text's as they
    are: a second scan of a large part cost 15 us per 10 KB (bench/cost_bench.py)."""
    decoded = _decoded_text(entity)
    if decoded is None:
        return None
    text, charset, encoding = decoded
    new_text = change(text)
    if not (canonical and encoding in ("7bit", "8bit", "binary") and _plain_crlf(charset)):
        new_text = mime.canonicalize(new_text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")
    settings = dict(params)
    try:
        data = new_text.encode(charset)
    except (LookupError, ValueError):
        data = new_text.encode("utf-8", "surrogateescape")
        settings["charset"] = charset = "utf-8"
    new_encoding = encoding
    if encoding == "7bit" and not data.isascii():
        new_encoding = "quoted-printable"
    if new_encoding == "base64":
        body = b"\r\n".join(binascii.b2a_base64(data[i:i + 57], newline=False)
                            for i in range(0, len(data), 57))
        if entity.body.endswith(b"\n"):
            body += b"\r\n"
    elif new_encoding == "quoted-printable":
        body = body_encode(data.decode("latin-1"), maxlinelen=76, eol="\r\n").encode("ascii")
    elif _plain_crlf(charset):
        body = data  # canonical text in an ASCII-compatible charset: canonical bytes
    else:
        # UTF-16 and the like: canonicalised as bytes, as signing the payload would, so that
        # protect's payload is CRLF throughout whatever the charset (see Protected).
        body = mime.canonicalize(data)
    head = b""
    has_cte = False
    for name, value in entity.headers:
        key = name.lower()
        if key == "content-type":
            continue
        if key == "content-transfer-encoding":
            has_cte = True
            value = new_encoding.encode("ascii")
        head += name.encode("ascii") + b": " + value + b"\r\n"
    if not has_cte and new_encoding != encoding:
        head += b"Content-Transfer-Encoding: " + new_encoding.encode("ascii") + b"\r\n"
    ctype_value = mime.get_header(entity, "content-type") or b"text/plain; charset=us-ascii"
    line = _content_type_line(ctype_value, settings, (*drop, *settings))
    return line + head + b"\r\n" + body


# -- inbound ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restoration:
    """What ``restore`` decided for one message.

    level: the CMS layer whose content is the payload. protected: lower-case names of the
    fields that now come from (or agree with) the inside; conflicts: those whose protected value
    contradicts the outer one (the outer one kept); edits: (op, name, 1-based occurrence, value)
    for the outer header section, op "change" | "add" | "delete"; entity: the deliverable with
    the Legacy Display Element removed, or None when unchanged; legacy: "removed", "kept" (under
    a kept signature) or "" (none); errors: what could not be used, for a result header.
    """

    level: int
    mode: str
    protected: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    edits: tuple[tuple[str, str, int, str | None], ...] = ()
    entity: bytes | None = None
    legacy: str = ""
    errors: tuple[str, ...] = field(default=())


def payload_mode(content: bytes) -> tuple[str | None, str | None]:
    """("clear" | "cipher" | "v1", None) for a payload with header protection, (None, None)
    for one without, (None, why) for an ``hp`` parameter we cannot use. Never raises."""
    return _payload_mode(content)[:2]


def _payload_mode(content: bytes) -> tuple[str | None, str | None, mime.Entity | None]:
    """payload_mode, and the payload parsed (None when it does not parse): restore reads its
    header fields next, and parsing it twice cost 8 us per message (bench/cost_bench.py)."""
    try:
        entity = mime.parse_entity(content)
    except Malformed as exc:
        return None, f"payload header: {exc}", None
    try:
        _ctype, params = mime.content_type(entity)
    except Malformed as exc:
        return None, f"payload header: {exc}", entity
    if "hp" in params:
        value = params["hp"].strip().lower()
        if value in ("clear", "cipher"):
            return value, None, entity
        shown = params["hp"][:40]
        return None, f'hp="{shown}" is neither "clear" nor "cipher" (RFC 9788)', entity
    if params.get("protected-headers", "").strip().lower() == "v1":
        return "v1", None, entity
    return None, None, entity


def restore(outer: Sequence[tuple[str, str]], content: bytes, *, level: int, encrypted: bool,
            deliverable: bytes | None) -> Restoration | None:
    """Restore the protected header fields of ``content`` (the innermost entity, a verified or
    decrypted Cryptographic Payload) into ``outer`` (the message's header fields as the MTA
    passed them). ``encrypted``: a layer around the payload was decrypted; ``deliverable``: the
    entity the gateway delivers (the payload itself when nothing signed is kept inside).
    None when the payload carries no header protection. Never raises."""
    mode, error, entity = _payload_mode(content)
    if mode is None or entity is None:
        if error is None:
            return None
        return Restoration(level, "error", errors=(f"{error}; protected headers not restored",))
    errors: list[str] = []
    if mode == "cipher" and not encrypted:
        # RFC 9788: hp="cipher" on a payload that was not encrypted claims a confidentiality
        # it never had; read it as "clear" (nothing outside was obscured by its sender).
        errors.append('hp="cipher" on a payload that was not encrypted, read as "clear"')
        mode = "clear"
    inner: dict[str, list[str]] = {}
    order: list[str] = []
    names: dict[str, str] = {}
    hp_outer: dict[str, list[str]] = {}
    for name, raw in entity.headers:
        key = name.lower()
        value = raw.decode("utf-8", "surrogateescape")
        if key == HP_OUTER.lower():
            if mode == "cipher" or (mode == "v1" and encrypted):
                outer_name, _colon, outer_value = _FOLDING.sub("", value).partition(":")
                hp_outer.setdefault(outer_name.strip().lower(), []).append(outer_value.strip())
            continue
        if not _injected(name):
            continue
        if "\x00" in value or "\r" in _FOLDING.sub("", value) or "\n" in _FOLDING.sub("", value):
            errors.append(f"protected {name} has a bad character, not restored")
            continue
        if key not in inner:
            order.append(key)
            names[key] = name
        inner.setdefault(key, []).append(value)
    outside: dict[str, list[str]] = {}
    for name, value in outer:
        outside.setdefault(name.lower(), []).append(value)
    protected: list[str] = []
    conflicts: list[str] = []
    edits: list[tuple[str, str, int, str | None]] = []
    for key in order:
        want, have = inner[key], outside.get(key, [])
        if _same(key, want, have):
            protected.append(key)
            continue
        if have and not _obscured(key, want, have, hp_outer.get(key), encrypted):
            conflicts.append(key)
            continue
        protected.append(key)
        name = names[key]
        for index, value in enumerate(want[:len(have)], start=1):
            edits.append(("change", name, index, _FOLDING.sub("", value).strip()))
        for value in want[len(have):]:
            edits.append(("add", name, 0, _FOLDING.sub("", value).strip()))
        for index in range(len(have), len(want), -1):
            edits.append(("delete", name, index, None))
    new_entity, legacy = None, ""
    if encrypted and mode in ("cipher", "v1"):
        try:
            if deliverable is not None and mime.canonicalize(deliverable) == \
                    mime.canonicalize(content):
                new_entity = _remove_legacy(mime.parse_entity(mime.canonicalize(content)),
                                            mode, 0)
                legacy = "removed" if new_entity is not None else ""
            elif _has_legacy(entity, mode, 0):
                legacy = "kept"
        except Malformed as exc:
            # A payload part we cannot parse: delivered as it came, said in the result header.
            new_entity, legacy = None, ""
            errors.append(f"legacy display not removed: {exc}")
    return Restoration(level, mode, tuple(protected), tuple(conflicts), tuple(edits),
                       new_entity, legacy, tuple(errors))


def restore_layers(outer: Sequence[tuple[str, str]], content: bytes | None,
                   layers: Sequence[Layer], deliverable: bytes | None) -> Restoration | None:
    """``restore`` for a message unwrapped into ``layers`` (outermost first) down to
    ``content``: only when a layer around it was decrypted or every signature verifies, since
    unverified protected fields are no better than the outer ones. Never raises."""
    if content is None or not layers:
        return None
    decrypted = any(layer.kind != "signed" and layer.decrypted for layer in layers)
    level = len(layers) - 1
    restored = restore(outer, content, level=level, encrypted=decrypted,
                       deliverable=deliverable)
    if restored is None:
        return None
    signers = [s for layer in layers if layer.kind == "signed" for s in layer.signers]
    if any(not s.valid for s in signers) or not (decrypted or signers):
        return Restoration(level, "error", errors=(
            "a signature around the protected headers does not verify; not restored",))
    return restored


def result_headers(restored: Restoration, prefix: str) -> list[tuple[str, str]]:
    """CONTRACT.md ``P-Protected-Headers-LEVEL``: the fields restored from (or confirmed by) the
    inside; ``-Conflict-LEVEL``: those whose protected value contradicts the outer one, which
    was kept; ``-Error-LEVEL``: protected headers that could not be used."""
    level = restored.level
    out: list[tuple[str, str]] = []
    if restored.protected:
        out.append((f"{prefix}Protected-Headers-{level}", ", ".join(restored.protected)))
    if restored.conflicts:
        out.append((f"{prefix}Protected-Headers-Conflict-{level}",
                    ", ".join(restored.conflicts)))
    if restored.errors:
        out.append((f"{prefix}Protected-Headers-Error-{level}", "; ".join(restored.errors)))
    return out


def _norm(key: str, value: str) -> str:
    text = " ".join(_FOLDING.sub("", value).split())
    if key in ("subject", "comments", "keywords"):
        return " ".join(_display(text).split())
    return text


def _addresses(values: Sequence[str]) -> set[str]:
    return {addr.lower() for _name, addr in getaddresses([_FOLDING.sub("", v) for v in values])
            if addr}


def _same(key: str, want: Sequence[str], have: Sequence[str]) -> bool:
    return [_norm(key, v) for v in want] == [_norm(key, v) for v in have]


def _obscured(key: str, want: Sequence[str], have: Sequence[str],
              recorded: Sequence[str] | None, encrypted: bool) -> bool:
    """Whether the outer values are what the sender put outside on purpose, so the protected
    ones may replace them. Only a decrypted payload can have obscured anything."""
    if not encrypted:
        return False
    if key in _ADDRESS_FIELDS and _addresses(want) != _addresses(have):
        return False
    if recorded is not None:
        return [_norm(key, v) for v in recorded] == [_norm(key, v) for v in have]
    return key == "subject" and len(have) == 1 and _norm(key, have[0]) in _PLACEHOLDERS


def _legacy_child(entity: mime.Entity, mode: str) -> bool:
    """A body part that holds a Legacy Display Element (RFC 9788 hp-legacy-display) or,
    in the draft, a Legacy Display Part (protected-headers="v1" on a text part)."""
    ctype, params = mime.content_type(entity)
    if not ctype.startswith("text/"):
        return False
    if params.get("hp-legacy-display", "").strip() == "1":
        return True
    return mode == "v1" and params.get("protected-headers", "").strip().lower() == "v1"


def _has_legacy(entity: mime.Entity, mode: str, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if depth > 0 and _legacy_child(entity, mode):
        return True
    ctype, _params = mime.content_type(entity)
    if depth == 0 and ctype.startswith("text/"):
        return _legacy_child(entity, "")
    if not ctype.startswith("multipart/"):
        return False
    try:
        parts = mime.split_multipart(entity)
        return any(_has_legacy(mime.parse_entity(p), mode, depth + 1) for p in parts)
    except Malformed:
        return False


def _remove_legacy(entity: mime.Entity, mode: str, depth: int) -> bytes | None:
    """The entity without its Legacy Display Element(s), or None when there was none."""
    if depth > _MAX_DEPTH:
        return None
    ctype, params = mime.content_type(entity)
    if ctype.startswith("text/") and params.get("hp-legacy-display", "").strip() == "1":
        if ctype == "text/html":
            return _rewrite_text(entity, _without_div, {}, ("hp-legacy-display",))
        return _rewrite_text(entity, _without_header_block, {}, ("hp-legacy-display",))
    if not ctype.startswith("multipart/") or ctype == "multipart/signed":
        return None
    try:
        spans = mime.multipart_spans(entity)
    except Malformed:
        return None
    body = entity.body
    changed = False
    for start, end in reversed(spans):
        try:
            child = mime.parse_entity(body[start:end])
        except Malformed:
            continue
        if mode == "v1" and _legacy_child(child, "v1") and len(spans) > 1 \
                and "hp-legacy-display" not in mime.content_type(child)[1]:
            # The draft's Legacy Display Part: a whole body part, dropped with one delimiter
            # line (the spans run from after a delimiter line to the line end before the next).
            index = spans.index((start, end))
            if index + 1 < len(spans):
                body = body[:start] + body[spans[index + 1][0]:]
            else:
                body = body[:spans[index - 1][1]] + body[end:]
            changed = True
            continue
        new = _remove_legacy(child, mode, depth + 1)
        if new is not None:
            body = body[:start] + new + body[end:]
            changed = True
    if not changed:
        return None
    head = b"".join(n.encode("ascii") + b": " + v + b"\r\n" for n, v in entity.headers)
    return head + b"\r\n" + body


def _without_header_block(text: str) -> str:
    """text/plain: the element is header-like lines up to the first blank line (RFC 9788)."""
    lines = text.split("\r\n")
    for index, line in enumerate(lines):
        if line == "":
            if index and all(_HEADER_LINE.match(x) or x[:1] in (" ", "\t")
                             for x in lines[:index]):
                return "\r\n".join(lines[index + 1:])
            return text
    return text


def _without_div(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    return _LEGACY_DIV.sub(b"", data, count=1).decode("utf-8", "surrogateescape")
