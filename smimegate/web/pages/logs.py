"""The Logs tab: the milter's message log lines (CONTRACT.md "Log line"), filtered by queue id,
address, direction and result, newest first, with a live tail.

Where the lines come from: every milter worker writes its message log lines to the store's
message_log table in batches (smimegate.milter.stats; kept ``[milter] message_log_days`` days,
at most ``message_log_rows`` lines), so the page shows every worker of every node sharing the
store, and needs no access to syslog files. Warnings and start/stop lines stay in syslog only.

Live tail: /static/logs.js (ours; the CSP allows script from 'self' only, none inline) asks
``/logs/tail?after=ID`` with the same filters every TAIL_SECONDS and adds the new lines at the
top, building the rows with textContent (nothing from a line is ever parsed as HTML). Without
script the page still works: "Show newer" reloads it. The tail's requests do not count as use
of the session (ASVS 3.3.2): a browser left on this page is signed out at the idle timeout like
any other, and the tail then stops and says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from smimegate.store.operations import LogLine, operations_of
from smimegate.web.pages.base import Page, page

PER_PAGE = 100
TAIL_SECONDS = 3
FILTERS = ("queue_id", "address", "direction", "result")


def _when(at: int) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row(line: LogLine) -> dict[str, Any]:
    return {"id": line.id, "when": _when(line.at), "node": line.node,
            "queue_id": line.queue_id, "direction": line.direction, "result": line.result,
            "line": line.line}


def _filters(current: Page) -> dict[str, str]:
    return {name: current.query(name).strip() for name in FILTERS}


def _lines(current: Page, chosen: dict[str, str], *, after: int = 0, before: int = 0,
           limit: int = PER_PAGE) -> list[LogLine]:
    return operations_of(current.store).log_lines(
        queue_id=chosen["queue_id"], address=chosen["address"], direction=chosen["direction"],
        result=chosen["result"], after=after, before=before, limit=limit)


def _id(current: Page, name: str) -> int:
    text = current.query(name)
    return int(text) if text.isdigit() and len(text) < 19 else 0


def logs(current: Page) -> Response:
    ops = operations_of(current.store)
    chosen = _filters(current)
    before = _id(current, "before")
    lines = _lines(current, chosen, before=before, limit=PER_PAGE + 1)
    shown = lines[:PER_PAGE]
    directions, results = ops.log_values()
    kept = {k: v for k, v in chosen.items() if v}
    older = (f"/logs?{urlencode({**kept, 'before': shown[-1].id})}"
             if len(lines) > PER_PAGE else "")
    return current.render(
        "logs.html", title="Logs", rows=[_row(ln) for ln in shown], chosen=chosen,
        directions=directions, results=results, older=older, paged=bool(before),
        newest=shown[0].id if shown and not before else 0,
        tail_url=f"/logs/tail?{urlencode(kept)}", newer=f"/logs?{urlencode(kept)}",
        tail_seconds=TAIL_SECONDS,
        intro="The milter's message log lines as its workers stored them, newest first "
              f"(kept {current.web.config.milter.message_log_days} days; syslog has every "
              "line and the warnings).")


def tail(current: Page) -> Response:
    """The lines after ``after`` that match the filters, oldest first, as JSON."""
    after = _id(current, "after")
    lines = _lines(current, _filters(current), after=after)
    rows = [_row(ln) for ln in reversed(lines)]
    return JSONResponse({"lines": rows, "last": rows[-1]["id"] if rows else after})


ROUTES: list[BaseRoute] = [
    Route("/logs", page(logs)),
    Route("/logs/tail", page(tail, background=True)),  # polled: no use
]
