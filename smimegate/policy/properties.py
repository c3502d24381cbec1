"""The policy properties: one declarative table of name, allowed values, default, doc and levels.

Every property value is a string in one normal form, so the store keeps them as text and the CLI
prints them unchanged: choices are lower case, booleans are ``yes`` / ``no`` (input may also say
true/false, on/off or 1/0), a phone number is ``+`` and digits. ``validate`` is the one way in:
the store, the CLI and the directory reader all pass values through it before keeping them.

Levels: a property may be set globally, per domain rule and per user (the directory, ldap,
counts as the user level). ``phone`` only makes sense for one person, so only users have it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Level = Literal["global", "domain", "user"]
LEVELS: tuple[Level, ...] = ("global", "domain", "user")

YES = "yes"
NO = "no"

# A regex longer than this is almost certainly a paste error, and bounds the cost of compiling.
MAX_TRIGGER_LENGTH = 256

_TRUE_WORDS = frozenset({"yes", "true", "on", "1"})
_FALSE_WORDS = frozenset({"no", "false", "off", "0"})

# E.164 (ITU-T E.164 section 6): a country code that does not start with 0, at most 15 digits in
# all. SMS gateways want the international form, so national numbers ("0170 ...") are refused.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PHONE_SEPARATORS = re.compile(r"[\s\-./()]")


class PolicyError(ValueError):
    """An unknown property, a value outside the allowed ones, or a property set at a wrong level.

    The message names the property and lists what is allowed, so it can be shown to an admin as
    it is.
    """


@dataclass(frozen=True)
class Property:
    """One row of the table.

    choices: the allowed values (normal form) of an enumerated property, else empty.
    normalise: for a free-form property, returns the normal form or raises PolicyError.
    allowed: how to describe the allowed values in an error message and in documentation.
    levels: where the property may be set.
    """

    name: str
    default: str
    doc: str
    choices: tuple[str, ...] = ()
    normalise: Callable[[str], str] | None = None
    allowed: str = ""
    levels: tuple[Level, ...] = LEVELS

    def describe_allowed(self) -> str:
        """The allowed values as one human-readable phrase."""
        return self.allowed or ", ".join(self.choices)

    def validate(self, value: str | bool) -> str:
        """Return the normal form of value for this property.

        Raises PolicyError, naming the property and the allowed values, if value is not allowed.
        """
        if isinstance(value, bool) and self.choices == (YES, NO):
            return YES if value else NO
        if not isinstance(value, str):
            raise PolicyError(
                f"bad value {value!r} for {self.name}: expected text; "
                f"allowed values: {self.describe_allowed()}"
            )
        if self.normalise is not None:
            return self.normalise(value)
        word = value.strip().lower()
        if self.choices == (YES, NO):
            if word in _TRUE_WORDS:
                return YES
            if word in _FALSE_WORDS:
                return NO
        elif word in self.choices:
            return word
        raise PolicyError(
            f"bad value {value!r} for {self.name}: allowed values are {self.describe_allowed()}"
        )


def _normalise_trigger(value: str) -> str:
    """Check that a subject trigger is a usable regular expression; return it unchanged.

    Matching is case-insensitive (see decide.py), so it is compiled that way here too. A
    pattern that matches the empty string would match every Subject and turn every message into
    a "please encrypt" request, which is never what an admin means, so it is refused.
    """
    if not value.strip():
        raise PolicyError("bad value for subject_trigger: the regular expression is empty")
    if len(value) > MAX_TRIGGER_LENGTH:
        raise PolicyError(
            f"bad value for subject_trigger: longer than {MAX_TRIGGER_LENGTH} characters"
        )
    try:
        pattern = re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise PolicyError(
            f"bad value {value!r} for subject_trigger: not a valid regular expression ({exc})"
        ) from exc
    if pattern.search("") is not None:
        raise PolicyError(
            f"bad value {value!r} for subject_trigger: it matches an empty Subject, so it would "
            "match every message"
        )
    return value


def _normalise_phone(value: str) -> str:
    """Return ``+`` and digits, or "" (no number). Accepts spaces, dashes, dots, parentheses
    and a leading international prefix ``00`` in place of ``+``.
    """
    compact = _PHONE_SEPARATORS.sub("", value)
    if compact == "":
        return ""
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.fullmatch(compact):
        raise PolicyError(
            f"bad value {value!r} for phone: allowed values are an international number in "
            "E.164 form, + then country code and number, 7 to 15 digits (e.g. +31201234567), "
            "or empty for none"
        )
    return compact


_BOOL_ALLOWED = "yes, no (also true/false, on/off, 1/0)"

_TABLE: tuple[Property, ...] = (
    Property(
        "locality", "external",
        "internal: the domain or user is served by this gateway (its outbound mail is signed "
        "and encrypted, its inbound mail decrypted); external: everybody else.",
        choices=("internal", "external"),
    ),
    Property(
        "encrypt_mode", "allow",
        "As a recipient: none: never encrypt to it; allow: encrypt when a usable certificate "
        "exists or the sender asks with the subject trigger; mandatory: always encrypt, refuse "
        "the recipient (550 5.7.1) when no usable certificate exists.",
        choices=("none", "allow", "mandatory"),
    ),
    Property(
        "smime", "allow",
        "deny: no S/MIME processing for this domain or user at all (no signing, encryption or "
        "decryption); a mandatory recipient is then refused rather than sent in clear.",
        choices=("allow", "deny"),
    ),
    Property(
        "sign", YES,
        "Sign outbound mail of this sender with its key, when it has one.",
        choices=(YES, NO), allowed=_BOOL_ALLOWED,
    ),
    Property(
        "sign_mode", "clear",
        "clear: multipart/signed, readable without S/MIME (RFC 8551 3.5.3); "
        "opaque: application/pkcs7-mime signed-data (RFC 8551 3.5.2).",
        choices=("clear", "opaque"),
    ),
    Property(
        "subject_trigger", r"\[encrypt\]",
        "Regular expression (case-insensitive) that, found in the Subject of an outbound "
        "message, makes encryption required for its external recipients; the matched text is "
        "removed from the Subject.",
        normalise=_normalise_trigger,
        allowed="a regular expression that compiles and does not match an empty Subject",
    ),
    Property(
        "subject_trigger_enabled", YES,
        "Honour the subject trigger in this sender's outbound mail. On by default: the trigger "
        "can only make treatment stricter, never send in clear what would otherwise be "
        "encrypted.",
        choices=(YES, NO), allowed=_BOOL_ALLOWED,
    ),
    Property(
        "encryption_algorithm", "aes256-cbc",
        "Content encryption for this recipient. CBC is EnvelopedData (RFC 5652 6), GCM is "
        "AuthEnvelopedData (RFC 5083, RFC 5084). Left at the default, a recipient that "
        "advertised GCM in its SMIMECapabilities (RFC 8551 2.5.2) gets GCM.",
        choices=("aes256-cbc", "aes128-cbc", "aes128-gcm", "aes256-gcm"),
    ),
    Property(
        "key_transport", "rsa-pkcs1",
        "Key transport for recipients with RSA certificates: PKCS #1 v1.5 (RFC 8017 7.2, read "
        "by every client) or RSAES-OAEP (RFC 8017 7.1, RFC 3560). EC and X25519 recipients "
        "always use ECDH key agreement.",
        choices=("rsa-pkcs1", "rsa-oaep"),
    ),
    Property(
        "pqc", "never",
        "Post-quantum algorithms where certificates and keys allow. never: classic only "
        "(ML-KEM certificates are not encrypted to, ML-DSA keys do not sign). prefer: a "
        "recipient with a trusted ML-KEM certificate gets an ML-KEM recipient info (RFC 9629, "
        "RFC 9936) beside the classic one of its classic certificate, if it has one, in a "
        "copy of its own (NSS refuses a message with an ML-KEM recipient info); a sender "
        "with an ML-DSA key signs with it beside its classic key (see pqc_signature), or "
        "alone without one. only: ML-KEM and ML-DSA alone; a recipient without a trusted "
        "ML-KEM certificate counts as having no usable certificate (mandatory: refused, "
        "allow: sent in clear), a sender without an ML-DSA key does not sign. The "
        "recipient's value decides its encryption, the sender's its signature.",
        choices=("never", "prefer", "only"),
    ),
    Property(
        "pqc_signature", "countersignature",
        "How a sender with pqc = prefer carries its ML-DSA signature beside the classic one. "
        "countersignature: inside the classic SignerInfo, as a countersignature of it (RFC "
        "5652 11.4); every classic client verifies the classic signature (OpenSSL 3.0 too). "
        "parallel: a second SignerInfo in the same SignedData (RFC 5652 5.1, RFC 4853); "
        "readers that know ML-DSA verify both, but OpenSSL before 3.5 and gpgsm 2.2 refuse "
        "the whole message.",
        choices=("countersignature", "parallel"),
    ),
    Property(
        "phone", "",
        "Mobile number (E.164, +CC...) that receives PKCS #12 passwords by SMS.",
        normalise=_normalise_phone,
        allowed="an international number in E.164 form (+ then 7 to 15 digits), or empty",
        levels=("user",),
    ),
    Property(
        "enabled", YES,
        "no: the gateway treats the user as unknown to it: no signing with its key, no "
        "decryption for it, no encryption to it. Set by `ldap sync` for users gone from the "
        "directory.",
        choices=(YES, NO), allowed=_BOOL_ALLOWED,
    ),
)

PROPERTIES: Mapping[str, Property] = MappingProxyType({p.name: p for p in _TABLE})
"""Every property by name, in table order."""


def names() -> tuple[str, ...]:
    """All property names, in table order."""
    return tuple(PROPERTIES)


def get(name: str) -> Property:
    """The table row of a property.

    Raises PolicyError listing the known names if name is not one of them.
    """
    try:
        return PROPERTIES[name]
    except KeyError:
        raise PolicyError(
            f"unknown property {name!r}; known properties: {', '.join(PROPERTIES)}"
        ) from None


def check_level(name: str, level: Level) -> None:
    """Refuse setting a property where it may not be set.

    Raises PolicyError if name is unknown or may not be set at level.
    """
    prop = get(name)
    if level not in prop.levels:
        raise PolicyError(
            f"property {name} cannot be set at the {level} level; "
            f"allowed at: {', '.join(prop.levels)}"
        )


def validate(name: str, value: str | bool, level: Level | None = None) -> str:
    """Return the normal form of value for property name (and check the level, if given).

    Raises PolicyError naming the known properties for an unknown name, the allowed values for
    a bad value, and the allowed levels for a wrong level.
    """
    prop = get(name)
    if level is not None:
        check_level(name, level)
    return prop.validate(value)


def defaults() -> Mapping[str, str]:
    """The built-in default of every property (read-only)."""
    return MappingProxyType({p.name: p.default for p in _TABLE})


def is_yes(value: str) -> bool:
    """True for the normal form ``yes`` of a boolean property (values come from validate)."""
    return value == YES
