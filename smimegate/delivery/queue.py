"""The delivery queue: what a queued item holds, one attempt, the worker and its backoff.

Items live in the store's queue table (Store.enqueue/claim/complete/fail), which seals each
payload with the master key: a PFX mail and the SMS with its password must not both be
readable from the database. Kinds:

- ``pfx-mail``: the PKCS#12 for one address, mailed through ``[smtp] relay`` with the marker
  that makes our own milter pass it unchanged (pfxmail.mark_pfx_mail);
- ``sms``: a text (holding the password) for one phone number, sent through ``[sms]``.

A failed attempt is retried after ``[queue] retry_initial`` seconds, doubling up to
``retry_max``; ``give_up_days`` after the item was queued it is given up (status failed), and
at once when the far end refused it for good (SMTP 5xx, HTTP 4xx). ``smimegate queue retry``
tries any item again: it claims the item first (retry_item), so a worker never sends it too.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from smimegate.config import Config, QueueConfig
from smimegate.delivery.errors import DeliveryError
from smimegate.delivery.pfxmail import build_pfx_mail, mark_pfx_mail, send_mail
from smimegate.delivery.sms import send_sms
from smimegate.log import TAG, format_fields, get_logger, warning_line
from smimegate.store.base import QueueItem, Store

PFX_MAIL = "pfx-mail"
SMS = "sms"
KINDS = (PFX_MAIL, SMS)
_VERSION = 1


@dataclass(frozen=True)
class PfxMailJob:
    """A PKCS#12 to mail: to whom, the file, and which way its password goes."""

    recipient: str
    pfx: bytes
    password_by_sms: bool
    message_id: str

    kind = PFX_MAIL

    def payload(self) -> bytes:
        return _dump({"to": self.recipient, "pfx": base64.b64encode(self.pfx).decode("ascii"),
                      "password_by_sms": self.password_by_sms, "message_id": self.message_id})

    @classmethod
    def from_payload(cls, data: bytes) -> PfxMailJob:
        """Raises DeliveryError (permanent) for a payload that is not a PfxMailJob."""
        obj = _load(data, PFX_MAIL)
        try:
            pfx = obj["pfx"]
            if not isinstance(pfx, str):
                raise TypeError("pfx")
            return cls(str(obj["to"]), base64.b64decode(pfx, validate=True),
                       bool(obj["password_by_sms"]), str(obj["message_id"]))
        except (KeyError, TypeError, binascii.Error):
            raise DeliveryError(f"malformed {PFX_MAIL} payload", permanent=True) from None


@dataclass(frozen=True)
class SmsJob:
    """A text for a phone; recipient is the address it is about (for ``queue list``)."""

    recipient: str
    phone: str
    text: str

    kind = SMS

    def __repr__(self) -> str:  # the text holds a password: keep it out of tracebacks
        return f"SmsJob(recipient={self.recipient!r}, phone={self.phone!r}, text=...)"

    def payload(self) -> bytes:
        return _dump({"to": self.recipient, "phone": self.phone, "text": self.text})

    @classmethod
    def from_payload(cls, data: bytes) -> SmsJob:
        """Raises DeliveryError (permanent) for a payload that is not an SmsJob."""
        obj = _load(data, SMS)
        try:
            return cls(str(obj["to"]), str(obj["phone"]), str(obj["text"]))
        except KeyError:
            raise DeliveryError(f"malformed {SMS} payload", permanent=True) from None


Job = PfxMailJob | SmsJob


def _dump(obj: dict[str, object]) -> bytes:
    return json.dumps({"v": _VERSION, **obj}, sort_keys=True).encode("utf-8")


def _load(data: bytes, kind: str) -> dict[str, object]:
    try:
        obj = json.loads(data)
    except ValueError:
        raise DeliveryError(f"malformed {kind} payload", permanent=True) from None
    if not isinstance(obj, dict) or obj.get("v") != _VERSION:
        raise DeliveryError(f"malformed {kind} payload", permanent=True)
    return obj


def job_of(item: QueueItem) -> Job:
    """The job an item holds. Raises DeliveryError (permanent) for an unknown kind or payload."""
    if item.kind == PFX_MAIL:
        return PfxMailJob.from_payload(item.payload)
    if item.kind == SMS:
        return SmsJob.from_payload(item.payload)
    raise DeliveryError(f"unknown queue item kind {item.kind!r}", permanent=True)


def recipient_of(item: QueueItem) -> str:
    """The address an item is for, or "" when its payload cannot be read."""
    try:
        return job_of(item).recipient
    except DeliveryError:
        return ""


def send(job: Job, config: Config, marker_secret: bytes | None = None) -> None:
    """One attempt at job; marker_secret: see pfxmail.mark_pfx_mail. Raises DeliveryError."""
    if isinstance(job, PfxMailJob):
        try:
            message = build_pfx_mail(config.smtp.sender, job.recipient, job.pfx,
                                     password_by_sms=job.password_by_sms,
                                     message_id=job.message_id)
            message = mark_pfx_mail(message, job.recipient,
                                    config.milter.reinject_secret_file, marker_secret)
            send_mail(config.smtp.relay, config.smtp.sender, job.recipient, message,
                      timeout=config.smtp.timeout)
        except ValueError as exc:  # [smtp] sender or relay unusable: fixable, so not permanent
            raise DeliveryError(str(exc)) from None
    else:
        send_sms(config.sms, job.phone, job.text)


def next_attempt(
    policy: QueueConfig, item: QueueItem, now: dt.datetime, permanent: bool = False
) -> dt.datetime | None:
    """When to try item again after a failure at now, or None to give up.

    The wait doubles from retry_initial with each failed attempt (item.attempts counts those
    before this one), capped at retry_max; the last try falls on the give-up time.
    """
    deadline = item.created + dt.timedelta(days=policy.give_up_days)
    if permanent or now >= deadline:
        return None
    # Cap the exponent: 2**64 seconds is past any retry_max and keeps the float finite.
    wait = min(policy.retry_initial * 2 ** min(item.attempts, 64), policy.retry_max)
    return min(now + dt.timedelta(seconds=wait), deadline)


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt at a queue item."""

    item_id: int
    kind: str
    recipient: str
    sent: bool
    error: str | None = None
    retry_at: dt.datetime | None = None  # None after a failure: given up


def attempt(
    store: Store,
    config: Config,
    item: QueueItem,
    now: Callable[[], dt.datetime] | None = None,
    *,
    marker_secret: bytes | None = None,
    log: bool = True,
) -> Outcome:
    """Try item once and record the result in the store: removed when sent, else its error,
    attempt count and next attempt (or status failed). marker_secret: the key of the PKCS#12
    mail's marker when the caller holds it (pfxmail.mark_pfx_mail), else read from the file.
    log: write the delivery log line (a command that reports the Outcome itself passes False,
    so its user reads one line, not two that say the same).

    Delivery failures become the Outcome; raises StoreError when the store cannot record it.
    """
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    recipient = recipient_of(item)
    try:
        send(job_of(item), config, marker_secret)
    except DeliveryError as exc:
        error = str(exc)
        retry_at = next_attempt(config.queue, item, clock(), exc.permanent)
        store.fail(item.id, error, retry_at)
        outcome = Outcome(item.id, item.kind, recipient, False, error, retry_at)
    else:
        store.complete(item.id)
        outcome = Outcome(item.id, item.kind, recipient, True)
    if log:
        _log(outcome)
    return outcome


def lease_for(config: Config) -> float:
    """Seconds a claimed item stays ours: longer than one attempt can take."""
    return max(config.smtp.timeout, config.sms.timeout) + 60.0


class ItemBusy(Exception):
    """A worker is sending the queue item right now."""


def retry_item(
    store: Store,
    config: Config,
    item_id: int,
    *,
    marker_secret: bytes | None = None,
    log: bool = True,
) -> Outcome:
    """Claim one item now, due or not (also a failed one), and try it once (`queue retry`).
    log: as for attempt.

    The claim comes first (Store.claim_item): from then on no worker takes the item, and an
    item a worker holds is left to it. Raises ItemBusy when a worker holds it, NotFound when
    there is no such item, StoreError when the store cannot record the result.
    """
    item = store.claim_item(item_id, lease=lease_for(config))
    if item is None:
        raise ItemBusy(f"queue item {item_id} is being sent by a worker right now; "
                       "see `smimegate queue list` in a few minutes")
    return attempt(store, config, item, marker_secret=marker_secret, log=log)


def run_due(
    store: Store,
    config: Config,
    *,
    max_items: int = 100,
    now: Callable[[], dt.datetime] | None = None,
    marker_secret: bytes | None = None,
) -> list[Outcome]:
    """Send the items that are due, one claimed at a time, at most max_items in this run.
    marker_secret: see attempt (the milter process passes Gateway.marker_secret(), read before
    it dropped privileges).

    Safe to run on several nodes at once: each item is claimed (Store.claim) for longer than
    an attempt can take, so two workers never send the same item. Raises StoreError.
    """
    lease = lease_for(config)
    outcomes: list[Outcome] = []
    while len(outcomes) < max_items:
        items = store.claim(limit=1, lease=lease, kinds=KINDS)
        if not items:
            break
        outcomes.append(attempt(store, config, items[0], now, marker_secret=marker_secret))
    return outcomes


def _log(outcome: Outcome) -> None:
    # The recipient and the kind only: the payload (PKCS#12, SMS text) is never logged.
    fields: list[tuple[str, object]] = [
        ("delivery", outcome.kind), ("queue_item", outcome.item_id),
        ("to", f"<{outcome.recipient}>"),
    ]
    if outcome.sent:
        get_logger().info(f"{TAG}: " + format_fields([*fields, ("result", "sent")]))
        return
    when = outcome.retry_at.isoformat(timespec="seconds") if outcome.retry_at else None
    result = "deferred" if outcome.retry_at else "failed"
    get_logger().warning(warning_line(
        None, f"delivery {result}: {outcome.error}", [*fields, ("retry_at", when)]
    ))
