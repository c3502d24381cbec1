"""SMTP replies of the milter: one named constant (or constructor) per answer.

Each reply names its kind (what the milter tells the MTA: continue, accept, tempfail, reject,
discard) and, for tempfail and reject, the SMTP code, the enhanced status code (RFC 3463) and
the text. tests/milter/test_replies.py checks every constant: the code class matches the
enhanced status class (RFC 3463 2: 4.x.x with 4yz, 5.x.x with 5yz), a text is present, and
the whole reply line fits RFC 5321 4.5.3.1.5's 512 octets (after aiosmtpd's statuscodes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ReplyKind = Literal["continue", "accept", "tempfail", "reject", "discard"]

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF.
MAX_REPLY_LINE = 512


@dataclass(frozen=True)
class Reply:
    """What to answer the MTA.

    continue/accept/discard carry no code; tempfail and reject carry code ("451", "550"),
    xcode ("4.7.1") and text. Raises ValueError when a code does not fit the kind or the line
    would exceed 512 octets.
    """

    kind: ReplyKind
    code: str | None = None
    xcode: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.kind in ("tempfail", "reject"):
            if self.code is None or self.xcode is None or not self.text:
                raise ValueError(f"a {self.kind} reply needs code, xcode and text")
            wanted = "4" if self.kind == "tempfail" else "5"
            if not (self.code.startswith(wanted) and len(self.code) == 3 and self.code.isdigit()):
                raise ValueError(f"{self.kind} reply code {self.code!r} must be {wanted}yz")
            if self.xcode.split(".")[0] != wanted:
                raise ValueError(f"enhanced status {self.xcode!r} does not match {self.code}")
            if len(self.line().encode("utf-8")) + 2 > MAX_REPLY_LINE:
                raise ValueError("reply line longer than 512 octets (RFC 5321 4.5.3.1.5)")
            if "\r" in self.text or "\n" in self.text:
                raise ValueError("reply text must be one line")
        elif self.code is not None or self.xcode is not None:
            raise ValueError(f"a {self.kind} reply carries no code")

    @property
    def refuses(self) -> bool:
        """True for tempfail and reject: the message is not taken."""
        return self.kind in ("tempfail", "reject")

    def line(self) -> str:
        """``451 4.7.1 text`` for refusals, the kind otherwise (for logs and the CLI)."""
        if self.code is None:
            return self.kind
        return f"{self.code} {self.xcode} {self.text}"


def _fit(text: str) -> str:
    """Shorten text so that ``550 5.7.1 text`` CRLF stays within 512 octets."""
    room = MAX_REPLY_LINE - len("550 5.7.1 ") - 2
    data = text.encode("utf-8")
    if len(data) <= room:
        return text
    return data[: room - 3].decode("utf-8", "ignore") + "..."


CONTINUE = Reply("continue")
ACCEPT = Reply("accept")
DISCARD = Reply("discard")

# RFC 3463 4.7.1 "delivery not authorized": the policy source could not be asked, so we cannot
# say whether the message may go as it is; the client retries.
TEMPFAIL_STORE = Reply("tempfail", "451", "4.7.1",
                       "encryption gateway: key store unavailable, try again later")
TEMPFAIL_DIRECTORY = Reply("tempfail", "451", "4.7.1",
                           "encryption gateway: directory unavailable, try again later")
# RFC 3463 4.3.0 "other or undefined mail system status".
TEMPFAIL_INTERNAL = Reply("tempfail", "451", "4.3.0",
                          "encryption gateway: internal error, try again later")
REJECT_INTERNAL = Reply("reject", "554", "5.3.0", "encryption gateway: internal error")
# RFC 3463 4.3.2 "system not accepting network messages": the milter is stopping and takes no
# new transaction on a connection it still serves; the client retries.
TEMPFAIL_STOPPING = Reply("tempfail", "451", "4.3.2",
                          "encryption gateway: shutting down, try again later")
# on_malformed = tempfail | reject: RFC 3463 X.6.0 "other or undefined media error".
TEMPFAIL_MALFORMED = Reply("tempfail", "451", "4.6.0",
                           "encryption gateway: S/MIME content could not be processed")
REJECT_MALFORMED = Reply("reject", "554", "5.6.0",
                         "encryption gateway: malformed S/MIME content")
# RFC 3463 5.3.4 "message too big for system": over max_message_size while a recipient
# requires encryption; sending it in clear is not an option.
REJECT_TOO_BIG = Reply("reject", "552", "5.3.4",
                       "message too big to be encrypted, and encryption is required")


def reject_mandatory(address: str) -> Reply:
    """``550 5.7.1 encryption required for <addr> but no usable certificate`` (RFC 3463 5.7.1:
    delivery not authorized, message refused)."""
    addr = address if address.startswith("<") else f"<{address}>"
    return Reply("reject", "550", "5.7.1",
                 _fit(f"encryption required for {addr} but no usable certificate"))


def reject_policy(text: str) -> Reply:
    """A 550 5.7.1 refusal with policy's own text (smimegate.policy.Refusal.text)."""
    return Reply("reject", "550", "5.7.1", _fit(" ".join(text.split())))


# The name the brief of issue 5 uses for reject_mandatory.
REJECT_MANDATORY = reject_mandatory

# Every constant, for the test that checks them.
ALL: tuple[Reply, ...] = (
    CONTINUE, ACCEPT, DISCARD, TEMPFAIL_STORE, TEMPFAIL_DIRECTORY, TEMPFAIL_INTERNAL,
    REJECT_INTERNAL, TEMPFAIL_STOPPING, TEMPFAIL_MALFORMED, REJECT_MALFORMED, REJECT_TOO_BIG,
)
