"""The MTA macros the milter reads, and when they arrive.

Postfix (``milter_*_macros``) and Sendmail (``confMILTER_MACROS_*``) send macros with the event
they belong to; libmilter keeps them per stage and ``getsymval`` answers from what has arrived
so far. Which stage carries which macro differs between the two MTAs and with the site's
configuration, so the session asks at every stage and keeps the first non-empty value:

- ``i`` (queue id): Postfix sends it with RCPT and end of data (its default milter_rcpt_macros
  and milter_end_of_data_macros), with MAIL FROM only when the queue file already exists;
  Sendmail when ``confMILTER_MACROS_EOM`` names ``{i}`` (INTEROP.md). End of headers is not
  asked for (session.py), so its macros are not read.
- ``{auth_authen}`` (SMTP AUTH login name): with MAIL FROM in Postfix's defaults
  (milter_mail_macros); Sendmail needs it in ``confMILTER_MACROS_ENVFROM``.
- ``{daemon_name}``: with CONNECT in Postfix's defaults (milter_connect_macros); it carries
  ``milter_macro_daemon_name``, which contrib/postfix sets to ORIGINATING on submission.

The queue id is kept per message (reset at MAIL FROM); the others per connection where the MTA
sends them per connection ({daemon_name}) and per message where it sends them per message.

At negotiation the session asks for exactly these per stage (``SYMLISTS``, smfi_setsymlist)
when the MTA offers it (Postfix 2.6+, Sendmail 8.14+); the lists in contrib/ still serve MTAs
that do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import Milter

QUEUE_ID = "i"
AUTH_AUTHEN = "{auth_authen}"
DAEMON_NAME = "{daemon_name}"

# What the session asks for at each stage (the MTA answers None for macros it did not send).
CONNECT_MACROS = (DAEMON_NAME,)
ENVFROM_MACROS = (QUEUE_ID, AUTH_AUTHEN, DAEMON_NAME)
ENVRCPT_MACROS = (QUEUE_ID,)
EOM_MACROS = (QUEUE_ID, AUTH_AUTHEN, DAEMON_NAME)

# What negotiation asks the MTA to send at each stage (smfi_setsymlist; libmilter's SMFIM_*
# stage numbers as pymilter names them): exactly what the session reads there, so the MTA
# sends no macro nobody reads (Postfix's defaults are about twenty per message). Stages not
# listed keep the MTA's own list: HELO and end of headers are not sent at all (session.py),
# and DATA reads no macro (an empty list cannot be asked for).
SYMLISTS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (Milter.M_CONNECT, CONNECT_MACROS),
    (Milter.M_ENVFROM, ENVFROM_MACROS),
    (Milter.M_ENVRCPT, ENVRCPT_MACROS),
    (Milter.M_EOM, EOM_MACROS),
)

GetSymVal = Callable[[str], "str | bytes | None"]


def _text(value: str | bytes | None) -> str | None:
    """A macro value as text; None or empty means "not sent"."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class Macros:
    """The macro values known so far: None for one that has not arrived."""

    queue_id: str | None = None
    auth_authen: str | None = None
    daemon_name: str | None = None

    def read(self, getsymval: GetSymVal, names: Iterable[str]) -> Macros:
        """A copy with the named macros filled in from ``getsymval`` where they are still None.

        Values once known are kept: Postfix sends ``i`` again at each later stage with the same
        value, and a stage that does not carry a macro must not erase it. ``getsymval`` errors
        propagate (the session's callback boundary catches them).
        """
        fields = {QUEUE_ID: "queue_id", AUTH_AUTHEN: "auth_authen", DAEMON_NAME: "daemon_name"}
        changes: dict[str, str] = {}
        for name in names:
            attr = fields[name]
            if getattr(self, attr) is None:
                value = _text(getsymval(name))
                if value is not None:
                    changes[attr] = value
        return dataclasses.replace(self, **changes) if changes else self

    def for_new_message(self) -> Macros:
        """What carries over to the next message of the connection: {daemon_name} (a
        per-connection macro). The queue id and the AUTH name are read again per message."""
        return Macros(daemon_name=self.daemon_name)
