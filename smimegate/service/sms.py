"""The SMS transport: its settings as configured (the [sms] section of the configuration
file; the auth header file is named, never read) and a test message to a number."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import Store

if TYPE_CHECKING:
    from smimegate.config import Config

TEST_TEXT = "smimegate test message: the SMS transport works."


def transport(config: Config) -> list[tuple[str, str]]:
    """(label, value) of every [sms] setting of the configured transport; never a secret."""
    conf = config.sms
    facts: list[tuple[str, str]] = [("Transport", conf.transport)]
    if conf.transport == "http":
        facts += [("URL", _shown_url(conf.url)), ("Method", conf.method),
                  ("Content-Type", conf.content_type),
                  ("Body template", _shown_template(conf.body_template)),
                  ("Auth header file", conf.auth_header_file or "none")]
    elif conf.transport == "command":
        facts.append(("Command", _shown_command(conf.command)))
    else:
        facts.append(("File", str(conf.file)))
    facts.append(("Timeout", f"{conf.timeout:g} s"))
    return facts


def _shown_url(url: str) -> str:
    """The URL without its query and user info: gateways take API keys there, and everyone
    who may read this page, auditors too, would read the key."""
    from smimegate.delivery.sms import safe_url

    shown = safe_url(url)
    return shown if shown == url else f"{shown} (user info and query not shown)"


def _shown_template(template: str) -> str:
    """Which placeholders the body template uses, not its text: many gateways take their API
    key in the body ({"apikey": "...", "to": "{phone}"}), as others do in the URL's query."""
    used = [p for p in ("{phone}", "{text}") if p in template]
    return (f"{len(template)} characters with {' and '.join(used) or 'no placeholder'} "
            "(text not shown: it may hold an API key)")


def _shown_command(command: Sequence[str]) -> str:
    """The program, not its arguments: a token passed on the command line would be shown."""
    if not command:
        return "none"
    rest = len(command) - 1
    return command[0] + (f" ({rest} argument{'s' if rest != 1 else ''} not shown: they may "
                         "hold credentials)" if rest else "")


def send_test(store: Store, config: Config, actor: Actor, phone: str) -> str:
    """Send TEST_TEXT to phone (international form, the ``phone`` property's rule) now, not
    through the queue; returns the number. Raises InvalidInput (field "phone"), Forbidden,
    OperationFailed with the transport's error."""
    from smimegate.delivery import DeliveryError
    from smimegate.delivery.sms import send_sms
    from smimegate.policy import PolicyError, validate

    actor.require_change()
    try:
        number = validate("phone", phone.strip())
    except PolicyError as exc:
        raise InvalidInput(str(exc), "phone") from None
    try:
        send_sms(config.sms, number, TEST_TEXT)
    except DeliveryError as exc:
        audit.record(store, actor, "sms.test", number, f"failed: {exc}")
        raise OperationFailed(f"the test SMS to {number} failed: {exc}") from None
    audit.record(store, actor, "sms.test", number, "sent")
    return number
