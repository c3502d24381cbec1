"""The PKCS#12 mail: building it and handing it to the ``[smtp] relay``.

The mail is our own outgoing message, so the standard library's email package builds it: a
short text on importing the file in Outlook/Windows, Thunderbird and Apple Mail, and the
PKCS#12 attached as ``key.pfx`` (application/x-pkcs12, base64). It never carries the password:
that comes by SMS or from the person who issued the certificate.

``[smtp] relay`` may be the MTA's normal port, where our own milter runs: the mail carries the
HMAC marker of smimegate.marker (``mark_pfx_mail``), so the milter passes it unchanged and
removes the marker. Without it the milter would encrypt the mail to the very certificate whose
key is inside, and the recipient could never open it.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import re
import smtplib
import socket
from email.message import EmailMessage

from smimegate.delivery.errors import DeliveryError
from smimegate.marker import MarkerKeyError, load_or_create_secret, mark_message

ATTACHMENT_NAME = "key.pfx"
# The queue id field of the marker (smimegate.marker): our own mail has no MTA queue id yet.
MARKER_QUEUE_ID = "PFXMAIL"
# The media type Windows, macOS and Thunderbird open with their certificate import (it is not
# IANA-registered; application/pkcs12 is, but fewer clients map it to the import dialog).
ATTACHMENT_TYPE = ("application", "x-pkcs12")

_BY_SMS = "The password of the file comes separately, by text message (SMS) to your phone."
_BY_CONTACT = (
    "The password of the file does not come with this mail: ask the person who arranged your "
    "certificate for it."
)

_TEXT = """\
Hello,

attached is your personal certificate and key for signed and encrypted mail (S/MIME) as
{address}, in the file key.pfx. {password}
Keep the file and the password apart, and delete this mail once the certificate is imported.

Outlook on Windows:
  Double-click key.pfx, choose "Current User", enter the password and let Windows choose the
  certificate store. In Outlook open File > Options > Trust Center > Trust Center Settings >
  Email Security and choose the certificate under "Settings".

Thunderbird:
  Settings > Privacy & Security > Certificates > Manage Certificates > Your Certificates >
  Import, choose key.pfx and enter the password. Then Account Settings > End-To-End
  Encryption > S/MIME: select the certificate for signing and for encryption.

Apple Mail on a Mac:
  Double-click key.pfx, add it to the "login" keychain and enter the password; then restart
  Mail. On an iPhone or iPad: open the attachment, install the profile in Settings, and turn
  on S/MIME under Settings > Mail > Accounts > (your account) > Advanced.

This message was sent automatically.
"""


def build_pfx_mail(
    sender: str,
    recipient: str,
    pfx: bytes,
    *,
    password_by_sms: bool,
    message_id: str | None = None,
    date: dt.datetime | None = None,
) -> bytes:
    """The mail (CRLF line ends) that hands pfx to recipient.

    password_by_sms chooses which way the text says the password comes. message_id defaults to
    a new one in the sender's domain; date to now. Raises ValueError for an empty PKCS#12 or an
    address with a line break.
    """
    if not pfx:
        raise ValueError("PKCS#12: must not be empty")
    for name, value in (("sender", sender), ("recipient", recipient)):
        if not value or re.search(r"[\r\n]", value):
            raise ValueError(f"{name}: not a mail address: {value!r}")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = "Your certificate for signed and encrypted mail"
    msg["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id or new_message_id(sender)
    # RFC 3834 section 5: a machine-made message; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        _TEXT.format(address=recipient, password=_BY_SMS if password_by_sms else _BY_CONTACT)
    )
    maintype, subtype = ATTACHMENT_TYPE
    msg.add_attachment(pfx, maintype=maintype, subtype=subtype, filename=ATTACHMENT_NAME)
    return msg.as_bytes()


def mark_pfx_mail(message: bytes, recipient: str, secret_file: str,
                  secret: bytes | None = None) -> bytes:
    """``message`` with the marker (smimegate.marker) that makes our own milter pass it to
    ``recipient`` unchanged, keyed with ``secret`` when given (the milter process read it
    before dropping privileges), else with ``[milter] reinject_secret_file`` (made when absent).

    Made right before each attempt: the milter accepts a marker for MAX_AGE only, and a queued
    mail may wait longer. Raises DeliveryError (transient: the key file can be fixed) when the
    key cannot be read or created; the mail is then not sent, since unmarked it would be
    encrypted to the key it carries.
    """
    if secret is None:
        try:
            secret = load_or_create_secret(secret_file)
        except MarkerKeyError as exc:
            raise DeliveryError(f"cannot mark the PKCS#12 mail: {exc}") from None
    return mark_message(secret, MARKER_QUEUE_ID, [recipient], message)


def new_message_id(sender: str) -> str:
    """A fresh Message-ID whose right-hand side is the sender's domain (RFC 5322 3.6.4)."""
    domain = sender.rpartition("@")[2] or socket.getfqdn()
    return email.utils.make_msgid(idstring="smimegate-pfx", domain=domain)


def parse_relay(relay: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port). Raises ValueError when malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\s\[\]]+):([0-9]{1,5})", relay)
    if not m:
        raise ValueError(f'[smtp] relay: expected HOST:PORT, got "{relay}"')
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f'[smtp] relay: bad port in "{relay}"')
    return host, port


def send_mail(
    relay: str, sender: str, recipient: str, message: bytes, *, timeout: float = 30.0
) -> None:
    """Hand message to the SMTP server at relay for one recipient.

    Raises DeliveryError: permanent for a 5xx reply (RFC 5321 4.2.1: do not repeat it
    unchanged), transient for 4xx replies, refused connections, timeouts and broken sessions.
    The error names the relay and the server's reply, never the message.
    """
    host, port = parse_relay(relay)
    where = f"relay {relay}"
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo_or_helo_if_needed()
            refused = smtp.sendmail(sender, [recipient], message)
            if refused:  # only possible with several recipients; kept for completeness
                code, text = refused[recipient]
                raise _reply_error(where, f"RCPT TO:<{recipient}>", code, text)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = exc.recipients.get(recipient, (450, b"refused"))
        raise _reply_error(where, f"RCPT TO:<{recipient}>", code, text) from None
    except smtplib.SMTPSenderRefused as exc:
        raise _reply_error(where, f"MAIL FROM:<{sender}>", exc.smtp_code, exc.smtp_error) \
            from None
    except smtplib.SMTPDataError as exc:
        raise _reply_error(where, "DATA", exc.smtp_code, exc.smtp_error) from None
    except smtplib.SMTPResponseException as exc:
        raise _reply_error(where, "session", exc.smtp_code, exc.smtp_error) from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"{where}: {_one_line(str(exc))}") from None
    except TimeoutError:
        raise DeliveryError(f"{where}: timed out after {timeout:g}s") from None
    except OSError as exc:
        raise DeliveryError(f"{where}: {_one_line(exc.strerror or str(exc))}") from None


def _reply_error(where: str, command: str, code: int, text: bytes | str) -> DeliveryError:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return DeliveryError(
        f"{where}: {command} answered {code} {_one_line(reply)}", permanent=500 <= code < 600
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
