"""Opening inbound S/MIME: every layer verified, encrypted layers opened with the keys given,
and the entity to deliver.

smimegate.smime.unwrap does the work; the entity delivered is the one right after the innermost
layer it decrypted (``Unwrapped.opened``), not the bare content: the signature stays in the
delivered message (issue 5 item 4), so a signed and then encrypted message is delivered as its
signed entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from smimegate.smime import mime
from smimegate.smime.cms import matches
from smimegate.smime.results import Layer, RecipientResult
from smimegate.smime.unwrap import DEFAULT_MAX_DEPTH, unwrap

_ENCRYPTED = ("enveloped", "auth-enveloped")


@dataclass(frozen=True)
class Opened:
    """layers: outermost first (LEVEL 0 first). deliverable: the entity after the innermost
    decrypted layer, None when nothing was decrypted. error: why a layer stayed closed.
    content: the innermost entity (where RFC 9788 protected header fields live)."""

    layers: tuple[Layer, ...]
    deliverable: bytes | None
    error: str | None
    content: bytes | None = None


def is_smime(entity: bytes) -> bool:
    """Whether the top-level entity is S/MIME (signed or encrypted). Raises Malformed,
    Unsupported as mime.classify does."""
    return mime.classify(mime.parse_entity(entity)) not in ("plain", "certs-only")


def is_encrypted(entity: bytes | mime.Entity) -> bool:
    """Whether the top-level entity (as bytes, or parsed) is enveloped or auth-enveloped.
    Raises like is_smime."""
    parsed = mime.parse_entity(entity) if isinstance(entity, bytes) else entity
    return mime.classify(parsed) in _ENCRYPTED


def open_entity(entity: bytes, keys: Sequence[tuple[x509.Certificate, Any]],
                max_depth: int = DEFAULT_MAX_DEPTH, parsed: mime.Entity | None = None) -> Opened:
    """Verify and decrypt every layer of ``entity`` (smime.unwrap; ``parsed``: the entity
    already parsed). Raises Malformed / Unsupported for broken or unsupported S/MIME at any
    layer."""
    result = unwrap(entity, keys, max_depth=max_depth, parsed=parsed)
    return Opened(result.layers, result.opened, result.error, result.content)


def first_recipients(entity: bytes) -> tuple[RecipientResult, ...] | None:
    """The RecipientInfos of the first encrypted layer (signed layers around it are verified
    to reach it), or None when the message is not encrypted. No private key is used.
    Raises Malformed / Unsupported."""
    return recipients_of(open_entity(entity, ()).layers)


def recipients_of(layers: Sequence[Layer]) -> tuple[RecipientResult, ...] | None:
    """The RecipientInfos of the first encrypted layer of ``layers``, None when none is."""
    for layer in layers:
        if layer.kind in _ENCRYPTED:
            return layer.recipients
    return None


def addressed_to(cert: x509.Certificate, recipients: Sequence[RecipientResult]) -> bool:
    """Whether one of the RecipientInfos names ``cert`` (issuer and serial, or SKI; RFC 5652
    6.2.1)."""
    return any(matches(recipient.recipient_id, cert) for recipient in recipients)
