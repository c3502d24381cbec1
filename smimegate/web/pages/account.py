"""One's own account: sessions and password (auditors too: these change no gateway setting)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from smimegate.service import sessions
from smimegate.service.errors import InvalidInput
from smimegate.service.sessions import Throttled
from smimegate.web.pages.base import SESSION_COOKIE, Page, page, utc
from smimegate.web.security import clear_cookie


def account(current: Page, errors: Mapping[str, str] | None = None, status: int = 200,
            notice: str = "") -> Response:
    assert current.session is not None
    mine = current.session.digest
    rows = [{"digest": s.digest, "created": utc(s.created), "last_seen": utc(s.last_seen),
             "address": s.address, "current": s.digest == mine}
            for s in sessions.list_own(current.store, current.session.admin)]
    return current.render("account.html", status, title="Account", sessions=rows,
                          errors={"current": "", "password": "", "repeat": "", **(errors or {})},
                          notice=notice, active="/account")


def end_session(current: Page) -> Response:
    sessions.end(current.store, current.actor, current.form.get("session", ""))
    return account(current, notice="Session ended.")


def change_password(current: Page) -> Response:
    new = current.form.get("password", "")
    if new != current.form.get("repeat", ""):
        return account(current, {"repeat": "the two new passwords differ"}, 400)
    try:
        sessions.change_own_password(current.store, current.actor,
                                     current.form.get("current", ""), new, current.web.limits)
    except Throttled as exc:
        return account(current, {"current": f"{exc}: nothing was changed"}, 429)
    except InvalidInput as exc:
        return account(current, {exc.field or "password": str(exc)}, 400)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, current.request, SESSION_COOKIE)
    return response

ROUTES: list[BaseRoute] = [
    Route("/account", page(account)),
    Route("/account/sessions", page(end_session, auditor_may_post=True), methods=["POST"]),
    Route("/account/password", page(change_password, auditor_may_post=True),
          methods=["POST"]),
]
