"""Peel every S/MIME layer off a message: verify signatures, decrypt, report each layer.

``unwrap`` takes a whole RFC 5322 message (or a bare MIME entity), keeps its outer header
fields aside and loops over the entity: a signed layer (multipart/signed or opaque
signed-data) is verified and the loop goes on with the signed content; an enveloped or
auth-enveloped layer is decrypted with the given keys and the loop goes on with the plaintext;
anything else (text, multipart/mixed, a certs-only bag, an OpenPGP message ...) ends the loop
and is the innermost content. S/MIME may be applied several times (RFC 8551 3.1), in any order:
sign-then-encrypt, encrypt-then-sign, triple wrapping (RFC 2634 1.1), a transport signature
around an author's signature.

The layers come back outermost first, so LEVEL 0 of the result headers (CONTRACT.md) is the
outermost layer met; ``results.result_headers(unwrapped.layers)`` maps them one-to-one.

Outcomes, and why:
- A bad signature does not stop anything: the layer says valid=False with the reason, the
  layers inside are still processed (a broken transport signature must not hide a good author
  signature inside it, and the reverse).
- No key for an encrypted layer (or a failed decryption, which RFC 3218 2.3 makes look the
  same): the layer is recorded from ``NoDecryptionKey.layer`` (decrypted=False, recipients
  listed), ``Unwrapped.error`` says why, and the still-encrypted entity is the content. The
  message can still be delivered as it came, with headers naming its recipients.
- Malformed or Unsupported MIME or CMS at any layer raises: the caller cannot safely say
  anything about a message it could only partly parse, and the milter maps these through its
  action table. (One exception, below: plaintext that is not MIME at all.)
- More than ``max_depth`` layers raises Malformed (errors.py: "exceeds a limit"). The loop is
  iterative and every turn either consumes a CMS layer or ends, so it always terminates.

Plaintext that is not a MIME entity (some OpenSSL-made messages) is returned as an entity
with an empty header section, i.e. text/plain (RFC 2045 5.2), so ``content`` always parses.

Header protection (RFC 8551 3.1): when the content right inside a CMS layer is
message/rfc822, the sender wrapped a whole message to protect its header fields. We step into
that message and keep unwrapping its entity; if nothing more is wrapped, the content is the
inner message itself (its header fields included), so a caller can show or merge the
protected fields. The protected-headers draft's "v1" style (From/Subject placed directly in the
entity's header block, protected-headers="v1") needs no special step: those fields simply stay
in the content. ``delivered_message`` drops them again when it rebuilds the message, because
merging protected and outer header fields is a policy decision for the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from smimegate.smime import mime
from smimegate.smime.decrypt import PrivateKey, decrypt_entity
from smimegate.smime.errors import Malformed, NoDecryptionKey
from smimegate.smime.results import Layer, Unwrapped
from smimegate.smime.verify import verify_entity

DEFAULT_MAX_DEPTH = 8

# The header-protection wrapper of RFC 8551 3.1 (media type of RFC 2046 5.2.1).
_RFC822 = "message/rfc822"


def unwrap(
    message: bytes,
    keys: Sequence[tuple[x509.Certificate, PrivateKey]] = (),
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    parsed: mime.Entity | None = None,
) -> Unwrapped:
    """Verify and decrypt every S/MIME layer of ``message``; layers come back outermost first.

    ``message`` is a whole RFC 5322 message or a bare MIME entity (CRLF or LF line ends).
    ``keys`` are (certificate, private key) pairs tried on every encrypted layer. ``parsed``:
    mime.parse_entity(message) when the caller has it already (it is not parsed again).

    Returns ``Unwrapped(content, layers, error, opened)``: content is the innermost entity (or,
    after a message/rfc822 header-protection wrapper, the inner message); error is None, or why
    an encrypted layer could not be opened (then content is that still-encrypted entity);
    opened is the entity right after the innermost decrypted layer, None when none was.

    Raises ValueError when max_depth < 1; Malformed for broken MIME/CMS at any layer or more than
    ``max_depth`` layers; Unsupported for a CMS type or algorithm outside our allow-lists.
    (Plaintext inside a layer that is not MIME at all is content, not an error.)
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, not {max_depth}")
    # The outermost layer is read from the message itself: its Content-* fields and body are
    # the entity's, and the other fields change nothing for parse/classify/verify/decrypt. The
    # entity is split off only when it is the result, so a 25 MB message is not copied once
    # more (bench/smime_bench.py). ``entity`` is the message while ``layers`` is empty.
    entity = message
    layers: list[Layer] = []
    # The whole inner message after a message/rfc822 step; it is the content if nothing more
    # is wrapped inside it.
    inner_message: bytes | None = None
    opened: bytes | None = None  # the entity right after the innermost decrypted layer
    given = parsed
    while True:
        try:
            parsed = given if given is not None else mime.parse_entity(entity)
            given = None
        except Malformed:
            if not layers:
                raise
            # Plaintext inside a layer that is not a MIME entity at all (``openssl cms
            # -encrypt`` of a bare file; RFC 4134's ExContent). RFC 8551 3.1 wants an entity
            # there, but the bytes were decrypted or verified fine: deliver them as a body
            # without header fields, which RFC 2045 5.2 reads as text/plain; us-ascii.
            newline = b"\r\n" if b"\r\n" in entity else b"\n"
            return Unwrapped(content=newline + entity, layers=tuple(layers), opened=opened)
        kind = mime.classify(parsed)
        if kind in ("plain", "certs-only"):
            ctype, _params = mime.content_type(parsed)
            if ctype == _RFC822 and layers and inner_message is None:
                # RFC 8551 3.1: the top-level protected entity is a whole message. Only right
                # inside a CMS layer (inner_message is None again after each layer), so every
                # such step is paid for by a layer and the loop stays bounded.
                inner_message = parsed.body
                _protected, entity = mime.split_message(parsed.body)
                continue
            content = inner_message if inner_message is not None else _entity(entity, layers)
            return Unwrapped(content=content, layers=tuple(layers), opened=opened)
        if len(layers) >= max_depth:
            raise Malformed(f"nesting deeper than {max_depth} layers")
        # verify/decrypt read the entity as parsed here: parsing it again cost a copy of the
        # body (a 25 MB message: every live copy counts, bench/smime_bench.py) and time.
        if kind in ("signed", "opaque-signed"):
            entity, layer = verify_entity(parsed)
        else:
            try:
                entity, layer = decrypt_entity(parsed, keys)
            except NoDecryptionKey as exc:
                layers.append(_undecrypted_layer(exc, kind))
                content = _entity(entity, layers[:-1])
                return Unwrapped(content=content, layers=tuple(layers), error=_reason(exc),
                                 opened=opened)
            opened = entity
        layers.append(layer)
        inner_message = None


def _entity(entity: bytes, layers: Sequence[Layer]) -> bytes:
    """The entity bytes: split off the message's outer fields while no layer was peeled."""
    if layers:
        return entity
    return mime.split_message(entity)[1]


def _undecrypted_layer(exc: NoDecryptionKey, kind: str) -> Layer:
    """The layer decrypt() attached to the error, or a bare one if it attached none."""
    layer = getattr(exc, "layer", None)
    if isinstance(layer, Layer):
        return layer
    return Layer(kind="auth-enveloped" if kind == "auth-enveloped" else "enveloped")


def _reason(exc: NoDecryptionKey) -> str:
    text = str(exc).strip()
    return f"not decrypted: {text}" if text else "not decrypted: no matching key"


def delivered_message(message: bytes, unwrapped: Unwrapped) -> bytes:
    """The message to deliver after unwrapping: the outer header fields of ``message`` (From,
    To, Subject, Received ... in their order) followed by the innermost entity.

    Header fields other than Content-* inside the content (protected headers, RFC 8551 3.1, or
    a message/rfc822 inner message) are left out: the outer fields are what the MTA routed on;
    a caller that wants to merge protected fields gets them with
    ``mime.split_message(unwrapped.content)[0]``. MIME-Version is added when needed.
    Lines end in CRLF in the rebuilt header; the entity is kept byte for byte.

    Raises Malformed when ``message`` or the content cannot be parsed.
    """
    outer, _entity = mime.split_message(message)
    _protected, entity = mime.split_message(unwrapped.content)
    return mime.join_message(outer, entity)
