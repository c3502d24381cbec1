"""The Queues tab: mail and SMS deliveries waiting or failed; retry (claimed first, tried
now) and delete (confirmed), through smimegate.service.queues as ``smimegate queue`` does."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import queues as queue_service
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import MasterKeyError, SqlStore
from smimegate.web import views
from smimegate.web.pages.base import Page, confirmed, listing, page


def queue_depths(store: SqlStore, kind: str | None = None) -> str:
    try:
        items = [i for i in views.queue(store) if kind is None or i["kind"] == kind]
    except MasterKeyError:
        return "unknown here (the master key is not readable)"
    counts = {status: sum(i["status"] == status for i in items)
              for status in views.QUEUE_STATUSES}
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def queue_list(current: Page) -> Response:
    notice = problem = ""
    if current.request.method == "POST":
        ident = queue_service.item_id(current.form.get("id", ""))
        action = current.form.get("action", "")
        if action == "delete":
            asked = confirmed(current, f"Delete queue item {ident}? It will not be sent.",
                              "Delete", "/queues")
            if asked is not None:
                return asked
            queue_service.delete(current.store, current.web.config, current.actor, ident)
            notice = f"Queue item {ident} deleted."
        elif action == "retry":
            try:
                outcome = queue_service.retry(current.store, current.web.config, current.actor,
                                              ident)
            except OperationFailed as exc:
                problem = str(exc)
            else:
                if outcome.sent:
                    notice = f"Queue item {ident} ({outcome.kind} for {outcome.recipient}) sent."
                else:
                    problem = f"Queue item {ident}: {outcome.error}"
        else:
            raise InvalidInput(f"unknown action {action!r}", "action")
    kind = current.query("kind") or None
    try:
        items = queue_service.listing(current.store, None, kind)
    except MasterKeyError as exc:
        return current.message("Queues", f"The queue cannot be read here: {exc}.")
    rows = [{**row, "href": "", "recipient": row["recipient"] or "?",
             "next_attempt": row["next_attempt"] or "-", "last_error": row["last_error"] or "-",
             "actions": [{"label": label, "action": "/queues",
                          "fields": [("action", label.lower()), ("id", str(row["id"]))]}
                         for label in ("Retry", "Delete")]}
            for row in items]
    columns = [("id", "ID", False), ("kind", "Kind", True), ("recipient", "Recipient", True),
               ("status", "Status", True), ("attempts", "Attempts", False),
               ("next_attempt", "Next attempt", True), ("last_error", "Last error", False)]
    links = [{"href": "/queues", "label": "All"}, {"href": "/queues?kind=pfx-mail",
              "label": "Mail (PKCS#12) only"}, {"href": "/queues?kind=sms", "label": "SMS only"}]
    return listing(current, "Queues", rows, columns, "The queue is empty.", notice=notice,
                   problem=problem, links=links, row_actions=True)

ROUTES: list[BaseRoute] = [
    Route("/queues", page(queue_list), methods=["GET", "POST"]),
]
