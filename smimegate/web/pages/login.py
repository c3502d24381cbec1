"""Sign-in and sign-out."""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from smimegate.service import sessions
from smimegate.service.errors import InvalidInput
from smimegate.service.sessions import Throttled
from smimegate.store import StoreError
from smimegate.web.pages.base import LOGIN_COOKIE, SESSION_COOKIE, Page, Web, page, read_form
from smimegate.web.security import (
    clear_cookie,
    client_address,
    get_cookie,
    has_nul,
    set_cookie,
    store_failure,
)


async def login(request: Request) -> Response:
    """GET: the form; POST: check it and open a session. The form carries a token that must
    match a cookie set with the form (double submit), against login CSRF."""
    form = await read_form(request)
    return await run_in_threadpool(_login, request.app.state.web, request, form)


def _login(web: Web, request: Request, form: dict[str, str]) -> Response:
    bare = Page(web, request, None, form)
    token = get_cookie(request, LOGIN_COOKIE)
    if request.method == "GET":
        if sessions.current(web.store, get_cookie(request, SESSION_COOKIE), web.limits):
            return RedirectResponse("/dashboard", status_code=303)
        return _login_form(bare, token or secrets.token_urlsafe(32))
    if not token or not secrets.compare_digest(token.encode(), form.get("csrf", "").encode()):
        return _login_form(bare, secrets.token_urlsafe(32), status=403,
                           error="The sign-in form expired: please sign in again.")
    if any(has_nul(value) for value in form.values()):
        return _login_form(bare, token, status=400, error="A field holds a NUL character.")
    name = form.get("user", "")[:64]
    try:
        session_id, _ = sessions.sign_in(web.store, name, form.get("password", "")[:128],
                                         client_address(request), web.limits,
                                         code=form.get("code", "")[:16])
    except Throttled as exc:
        return _login_form(bare, token, status=429, error=str(exc), user=name)
    except InvalidInput as exc:
        return _login_form(bare, token, status=401, error=str(exc), user=name)
    except StoreError as exc:
        return _login_form(bare, token, status=503, error=store_failure(exc), user=name)
    response = RedirectResponse("/dashboard", status_code=303)
    clear_cookie(response, request, LOGIN_COOKIE)
    set_cookie(response, request, SESSION_COOKIE, session_id)
    return response


def _login_form(bare: Page, token: str, *, status: int = 200, error: str = "",
                user: str = "") -> Response:
    response = bare.render("login.html", status, title="Sign in", login_csrf=token,
                           error=error, user=user)
    set_cookie(response, bare.request, LOGIN_COOKIE, token)
    return response


def logout(current: Page) -> Response:
    sessions.sign_out(current.store, get_cookie(current.request, SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, current.request, SESSION_COOKIE)
    return response

ROUTES: list[BaseRoute] = [
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", page(logout, auditor_may_post=True), methods=["POST"]),
]
