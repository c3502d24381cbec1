"""Delivering a freshly issued PKCS#12: what ``smimegate cert issue --send-pfx
--sms-password`` calls.

``deliver`` queues the PFX mail and/or the password SMS and tries each once right away; what
fails stays queued with its error for the worker (``queue.run_due``) and ``smimegate queue
retry``. ``phone_for`` is also the pre-flight check: call it before issuing, so that a missing
phone number stops the command before a key is made whose password nobody would get.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from smimegate.config import Config
from smimegate.delivery.errors import DeliveryError
from smimegate.delivery.pfxmail import new_message_id
from smimegate.delivery.queue import Job, Outcome, PfxMailJob, SmsJob, attempt, lease_for
from smimegate.delivery.sms import sms_text
from smimegate.policy.properties import PolicyError, validate
from smimegate.store.base import NotFound, Store

# Items are queued this far in the future and claimed by deliver itself (Store.claim_item,
# for lease_for(config) seconds, however long the attempt takes), so that a worker running at
# the same moment never sends them a second time; if this process dies first, the worker
# takes them over once both the delay and the claim have run out.
_OWN_ATTEMPT_GRACE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class DeliveryReport:
    """What deliver did: one Outcome per queued item (the mail first)."""

    outcomes: tuple[Outcome, ...]

    def lines(self) -> list[str]:
        """One line per item for the command's output; never the password."""
        out = []
        for o in self.outcomes:
            what = "PKCS#12 mail" if o.kind == "pfx-mail" else "password SMS"
            if o.sent:
                out.append(f"{what} for {o.recipient} sent (queue item {o.item_id})")
            elif o.retry_at is not None:
                out.append(f"{what} for {o.recipient} queued as item {o.item_id}, not sent yet: "
                           f"{o.error}; next attempt {o.retry_at.isoformat(timespec='seconds')}")
            else:
                out.append(f"{what} for {o.recipient} failed (queue item {o.item_id}): {o.error}")
        return out


def phone_for(store: Store, email: str) -> str:
    """The user's phone number (the ``phone`` property, international form).

    Raises DeliveryError when the user does not exist or has no valid phone number, naming the
    command that sets one; StoreError from the store.
    """
    hint = f"set one with `smimegate user set {email} phone +NUMBER`"
    try:
        raw = store.get_user(email).properties.get("phone", "")
    except NotFound:
        raise DeliveryError(f"no phone number for {email}: no such user; add it with "
                            f"`smimegate user add {email} --phone +NUMBER`") from None
    if not raw:
        raise DeliveryError(f"no phone number for {email}: {hint}")
    try:
        return validate("phone", raw)
    except PolicyError as exc:
        raise DeliveryError(f"bad phone number for {email}: {exc}") from None


def deliver(
    *,
    store: Store,
    config: Config,
    email: str,
    pfx: bytes | None,
    password: str | None,
    send_pfx: bool,
    sms_password: bool,
) -> DeliveryReport:
    """Queue the PFX mail (send_pfx) and the password SMS (sms_password), then try each once.

    A failed attempt leaves the item queued with its error (see DeliveryReport). Raises
    DeliveryError before queueing anything when a needed part is missing (no pfx or password,
    no phone number); StoreError from the store.
    """
    jobs: list[Job] = []
    if send_pfx:
        if not pfx:
            raise DeliveryError("--send-pfx: no PKCS#12 to send")
        jobs.append(PfxMailJob(email, pfx, sms_password, new_message_id(config.smtp.sender)))
    if sms_password:
        if not password:
            raise DeliveryError("--sms-password: no password to send")
        jobs.append(SmsJob(email, phone_for(store, email), sms_text(email, password)))
    at = dt.datetime.now(dt.UTC) + _OWN_ATTEMPT_GRACE
    ids = [store.enqueue(job.kind, job.payload(), at=at) for job in jobs]
    outcomes = []
    for item_id, job in zip(ids, jobs, strict=True):
        item = store.claim_item(item_id, lease=lease_for(config))
        if item is None:  # a worker holds it (this process was slower than the delay)
            outcomes.append(Outcome(item_id, job.kind, job.recipient, False,
                                    "being sent by the queue worker", at))
        else:
            outcomes.append(attempt(store, config, item))
    return DeliveryReport(tuple(outcomes))
