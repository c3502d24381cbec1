"""The Queues tab: mail and SMS deliveries waiting or failed."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.store import MasterKeyError, SqlStore
from smimegate.web import views
from smimegate.web.pages.base import Page, listing, page


def queue_depths(store: SqlStore, kind: str | None = None) -> str:
    try:
        items = [i for i in views.queue(store) if kind is None or i["kind"] == kind]
    except MasterKeyError:
        return "unknown here (the master key is not readable)"
    counts = {status: sum(i["status"] == status for i in items)
              for status in views.QUEUE_STATUSES}
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def queue_list(current: Page) -> Response:
    try:
        items = views.queue(current.store)
    except MasterKeyError as exc:
        return current.message("Queues", f"The queue cannot be read here: {exc}.")
    rows = [{**row, "href": "", "recipient": row["recipient"] or "?",
             "next_attempt": row["next_attempt"] or "-", "last_error": row["last_error"] or "-"}
            for row in items]
    columns = [("id", "ID", False), ("kind", "Kind", True), ("recipient", "Recipient", True),
               ("status", "Status", True), ("attempts", "Attempts", False),
               ("next_attempt", "Next attempt", True), ("last_error", "Last error", False)]
    return listing(current, "Queues", rows, columns, "The queue is empty.")

ROUTES: list[BaseRoute] = [
    Route("/queues", page(queue_list)),
]
