"""Typed errors of the S/MIME engine.

Every failure on bad input is one of these four, with a message that says what was wrong, so
that the milter can map it through its action table and an admin can read it in the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smimegate.smime.results import Layer


class SmimeError(Exception):
    """Base of all engine errors."""


class Malformed(SmimeError):
    """The input is not well-formed MIME, base64, ASN.1 or CMS, or exceeds a limit."""


class BadSignature(SmimeError):
    """A signature could not be verified (used where a caller asks for a hard failure)."""


class NoDecryptionKey(SmimeError):
    """None of the given keys matches a recipient of the message, or decryption failed.

    Per RFC 3218 section 2.3, a failed key unwrap is not reported differently from a wrong
    content key: both surface as this error after the content decryption ran.

    layer: the Layer (decrypted=False) describing the message's recipients, when known, so
    that result headers can still list them.
    """

    def __init__(self, message: str = "", layer: Layer | None = None) -> None:
        super().__init__(message)
        self.layer = layer


class Unsupported(SmimeError):
    """Well-formed, but uses an algorithm or structure outside our allow-lists."""
