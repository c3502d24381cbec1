"""The values that pass between the pymilter session (session.py) and the gateway.

The session collects an Envelope, the headers and the body; Gateway.process turns them into an
Outcome, which the session applies (header edits in order, body, recipients, reinjections) and
answers with. Nothing here knows pymilter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smimegate.milter import replies

HeaderOp = Literal["delete", "add", "insert", "change"]


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope of one message and what the MTA told about the client.

    queue_id: macro i ("NOQUEUE" until known). sender: MAIL FROM without <>, "" for the null
    sender. client_addr: connect()'s hostaddr (Postfix does not send {client_addr}).
    auth_authen: macro {auth_authen}; daemon_name: macro {daemon_name}.
    """

    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    client_addr: str | None = None
    client_name: str | None = None
    helo: str | None = None
    auth_authen: str | None = None
    daemon_name: str | None = None


@dataclass(frozen=True)
class HeaderEdit:
    """One header modification, applied in the order of Outcome.header_edits.

    delete / change: ``index`` is the 1-based occurrence among the headers of that name as the
    message stands when the edit is applied (deletes of one name come highest index first, so
    libmilter's and Postfix's index counting agree). add appends at the end, insert puts the
    field at the top (smfi_insheader index 0). value: the field value for add/insert/change,
    folded with a bare "\\n" before white space when long (milter.headers.fold: the form
    libmilter and Postfix want); None for delete.
    """

    op: HeaderOp
    name: str
    index: int = 1
    value: str | None = None

    def __post_init__(self) -> None:
        if self.op == "delete":
            if self.value is not None:
                raise ValueError("a delete edit carries no value")
        elif self.value is None:
            raise ValueError(f"a {self.op} edit needs a value")
        if self.op in ("delete", "change") and self.index < 1:
            raise ValueError(f"header index is 1-based, got {self.index}")


@dataclass(frozen=True)
class Reinjection:
    """A copy of the message for other recipients, in its final form, to submit again."""

    recipients: tuple[str, ...]
    message: bytes


@dataclass(frozen=True)
class Outcome:
    """What to do with the message at end of data.

    new_body: the replacement body (CRLF), None to keep it. remove_recipients: delrcpt these
    (they are in reinjections). log_line: the one line for this message (already formatted).
    """

    reply: replies.Reply
    header_edits: tuple[HeaderEdit, ...] = ()
    new_body: bytes | None = None
    remove_recipients: tuple[str, ...] = ()
    reinjections: tuple[Reinjection, ...] = ()
    log_line: str = ""
