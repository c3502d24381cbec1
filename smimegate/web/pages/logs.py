"""The Logs tab."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web.pages.base import Page, page

# Tabs whose pages later sessions build; until then they say so and name the CLI command.
NOT_BUILT: Mapping[str, tuple[str, str]] = {
    "/logs": ("Logs", "the milter's log lines in syslog (journalctl -t smimegate)"),
}


def not_built(current: Page) -> Response:
    title, command = NOT_BUILT[current.request.url.path]
    return current.message(title, f"This tab is not built yet. Until it is, use {command}.")

ROUTES: list[BaseRoute] = [
    *(Route(path, page(not_built)) for path in NOT_BUILT),
]
