"""The action table: every failure kind and what the milter answers (DESIGN.md Style 5,
after OpenDKIM's On-* settings). Fail-closed where encryption is required.

====================  ==========================================================  =========
kind                  reply                                                       config
====================  ==========================================================  =========
store-unavailable     451 4.7.1 tempfail (policy and keys cannot be asked)        fixed
directory-unavailable 451 4.7.1 tempfail                                          fixed
malformed             inbound S/MIME that cannot be parsed or decrypted although   on_malformed
                      a recipient holds the key: deliver unchanged with an
                      ``<prefix>Error`` header and smime=permerror, or 451 4.6.0 /
                      554 5.6.0
oversize              over max_message_size: passed unchanged and logged; but     fixed
                      552 5.3.4 when a recipient requires encryption (nothing
                      goes out in clear)
internal              anything else: on_internal_error (tempfail 451 4.3.0,        on_internal_error
                      accept, reject 554 5.3.0)
====================  ==========================================================  =========
"""

from __future__ import annotations

from typing import Literal

from smimegate.milter import replies

FailureKind = Literal[
    "store-unavailable", "directory-unavailable", "malformed", "oversize", "internal"
]

_FIXED: dict[str, replies.Reply] = {
    "store-unavailable": replies.TEMPFAIL_STORE,
    "directory-unavailable": replies.TEMPFAIL_DIRECTORY,
}
_ON_INTERNAL_ERROR: dict[str, replies.Reply] = {
    "tempfail": replies.TEMPFAIL_INTERNAL,
    "accept": replies.CONTINUE,
    "reject": replies.REJECT_INTERNAL,
}
_ON_MALFORMED: dict[str, replies.Reply] = {
    "deliver": replies.CONTINUE,
    "tempfail": replies.TEMPFAIL_MALFORMED,
    "reject": replies.REJECT_MALFORMED,
}


def reply_for(kind: FailureKind, *, on_internal_error: str = "tempfail",
              on_malformed: str = "deliver", encryption_required: bool = False) -> replies.Reply:
    """The reply for a failure kind under the configured choices.

    Raises ValueError for an unknown kind or configured value (the config table prevents both).
    """
    if kind in _FIXED:
        return _FIXED[kind]
    if kind == "internal":
        return _pick(_ON_INTERNAL_ERROR, on_internal_error, "on_internal_error")
    if kind == "malformed":
        return _pick(_ON_MALFORMED, on_malformed, "on_malformed")
    if kind == "oversize":
        return replies.REJECT_TOO_BIG if encryption_required else replies.CONTINUE
    raise ValueError(f"unknown failure kind {kind!r}")


def _pick(table: dict[str, replies.Reply], value: str, option: str) -> replies.Reply:
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"[milter] {option}: unknown value {value!r}") from None


def result_word(kind: FailureKind) -> str:
    """The ``result=`` of the log line for a failure kind."""
    return {
        "store-unavailable": "tempfail-store",
        "directory-unavailable": "tempfail-directory",
        "malformed": "malformed",
        "oversize": "oversize",
        "internal": "internal-error",
    }[kind]
