"""The REST API's operations side (smimegate.web.api has the mechanics): the delivery queue
(list, retry, delete: ``smimegate queue``, the Queues tab), the audit log (the Audit tab) and
the SMS transport (its settings, a test message: the SMS tab), through the same service
functions (smimegate.service.queues, audit, sms)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from smimegate.service import audit, paging
from smimegate.service import queues as queue_service
from smimegate.service import sms as sms_service
from smimegate.web.api import Call, endpoint, page

QUEUE_SEARCH = ("kind", "recipient", "status", "last_error")
QUEUE_SORT = ("id", "kind", "recipient", "status", "attempts", "next_attempt", "created")
AUDIT_PAGE = 100


def list_queue(call: Call) -> Any:
    """As ``queue list [--status S] --json``, optionally one kind; q, sort ... (api.page)."""
    rows = queue_service.listing(call.web.store, call.query("status", 16) or None,
                                 call.query("kind", 16) or None)
    return page(call, rows, QUEUE_SEARCH, QUEUE_SORT)


def retry_item(call: Call) -> Any:
    """Claim the item and try it once now; the answer says how it went."""
    outcome = queue_service.retry(call.web.store, call.web.config, call.actor,
                                  queue_service.item_id(call.param("id")))
    return {"id": outcome.item_id, "kind": outcome.kind, "recipient": outcome.recipient,
            "sent": outcome.sent, "error": outcome.error,
            "retry_at": outcome.retry_at.isoformat(timespec="seconds")
            if outcome.retry_at else None}


def delete_item(call: Call) -> Any:
    queue_service.delete(call.web.store, call.web.config, call.actor,
                         queue_service.item_id(call.param("id")))
    return None


def audit_log(call: Call) -> Any:
    """Newest first, ``limit`` (default 100) from ``offset``, ``q`` a substring of who, what,
    to what, the detail or the address; the number matching in ``X-Total-Count``."""
    q = call.query("q")
    limit = call.query_number("limit", AUDIT_PAGE, 1, paging.MAX_LIMIT)
    offset = call.query_number("offset", 0, 0, 10**9)
    rows = audit.entries(call.web.store, limit=limit, offset=offset, search=q)
    return JSONResponse([dataclasses.asdict(e) for e in rows],
                        headers={"x-total-count": str(audit.count(call.web.store, q))})


def sms_transport(call: Call) -> Any:
    """The configured transport's settings, as the SMS tab shows them; never a secret."""
    return {label: value for label, value in sms_service.transport(call.web.config)}


def sms_test(call: Call) -> Any:
    """Send the test message to ``phone`` now (not queued); recorded in the audit log."""
    fields = call.fields(("phone",))
    number = sms_service.send_test(call.web.store, call.web.config, call.actor,
                                   str(call.text(fields, "phone", required=True, limit=32)))
    return {"phone": number, "sent": True}


ROUTES: list[BaseRoute] = [
    Route("/api/v1/queue", endpoint(list_queue)),
    Route("/api/v1/queue/{id}", endpoint(delete_item), methods=["DELETE"]),
    Route("/api/v1/queue/{id}/retry", endpoint(retry_item), methods=["POST"]),
    Route("/api/v1/audit", endpoint(audit_log)),
    Route("/api/v1/sms", endpoint(sms_transport)),
    Route("/api/v1/sms/test", endpoint(sms_test), methods=["POST"]),
]
