"""The delivery queue (PKCS#12 mails, password SMS): list, retry, delete; what ``smimegate
queue``, the Queues tab and /api/v1/queue do. Listings show who an item is for and how it
fares, never its payload (the PKCS#12, the SMS text with its password).

Retry and delete claim the item first (Store.claim_item): an item a worker is sending right
now is left to it (ItemBusy, an OperationFailed), so no item is sent twice or deleted while
it is being sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smimegate.delivery.queue import ItemBusy, lease_for, recipient_of, retry_item
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import Store
from smimegate.store.base import QueueItem

if TYPE_CHECKING:
    from smimegate.config import Config
    from smimegate.delivery.queue import Outcome

STATUSES = ("pending", "running", "failed")
KINDS = ("pfx-mail", "sms")


def row(item: QueueItem) -> dict[str, object]:
    """One item as ``queue list --json`` prints it."""
    return {
        "id": item.id,
        "kind": item.kind,
        "recipient": recipient_of(item),
        "status": item.status,
        "attempts": item.attempts,
        # A failed item is not tried again unless retried by hand.
        "next_attempt": None if item.status == "failed"
        else item.next_attempt.isoformat(timespec="seconds"),
        "last_error": item.last_error,
        "created": item.created.isoformat(timespec="seconds"),
    }


def listing(store: Store, status: str | None = None,
            kind: str | None = None) -> list[dict[str, object]]:
    """As ``queue list [--status S] --json``, optionally one kind. Raises InvalidInput
    (field "status" or "kind"), MasterKeyError without the master key (payloads are sealed)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"bad status {status!r}: one of {', '.join(STATUSES)}", "status")
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"bad kind {kind!r}: one of {', '.join(KINDS)}", "kind")
    return [row(i) for i in store.list_queue(status) if kind is None or i.kind == kind]


def item_id(text: str | int) -> int:
    """A queue item id. Raises InvalidInput (field "id")."""
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"not a queue item id: {text!r}", "id") from None
    if value < 1:
        raise InvalidInput(f"not a queue item id: {text!r}", "id")
    return value


def retry(store: Store, config: Config, actor: Actor, ident: int) -> Outcome:
    """Claim the item and try it once now; the audit row names the outcome (no transaction is
    held open over the network). Raises Forbidden, OperationFailed (a worker holds it),
    NotFound, StoreError."""
    actor.require_change()
    try:
        # The outcome is the caller's to show: one line, not the delivery log line too.
        outcome = retry_item(store, config, ident, log=False)
    except ItemBusy as exc:
        raise OperationFailed(str(exc)) from None
    audit.record(store, actor, "queue.retry", str(ident),
                 "sent" if outcome.sent else f"not sent: {outcome.error}")
    return outcome


@audit.atomic
def delete(store: Store, config: Config, actor: Actor, ident: int) -> None:
    """Claim the item and remove it, with its audit row, in one transaction. Raises
    Forbidden, NotFound, OperationFailed (a worker is sending it)."""
    actor.require_change()
    if store.claim_item(ident, lease=lease_for(config)) is None:  # NotFound when absent
        raise OperationFailed(f"queue item {ident} is being sent by a worker right now; "
                              "see `smimegate queue list` in a few minutes")
    store.delete_queue_item(ident)
    audit.record(store, actor, "queue.delete", str(ident))
