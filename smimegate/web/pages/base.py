"""What every page shares: the session check, CSRF, the error mapping, lists with
search, sort and pages.

Every page is a plain function of a ``Page`` (the request, its form, its session) run in a
worker thread, since the store is blocking; ``page()`` wraps it with what every page needs:
a live session (else to /login), the session's CSRF token on every POST (no change is ever
made by a GET), and one mapping of the service's errors to status pages. A form's bad input
is shown beside its field with the service's message, status 400, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from smimegate.config import Config
from smimegate.policy import PROPERTIES
from smimegate.service import paging, sessions
from smimegate.service.actor import Actor
from smimegate.service.errors import Forbidden, InvalidInput, Missing, OperationFailed
from smimegate.service.sessions import Limits
from smimegate.store import NotFound, SqlStore, StoreError, StoreUnavailable
from smimegate.store.accounts import Session
from smimegate.web.security import (
    attachment,
    client_address,
    get_cookie,
    has_nul,
    nul_in_url,
    set_cookie,
    store_failure,
)

SESSION_COOKIE = "smimegate-session"
LOGIN_COOKIE = "smimegate-login"
PER_PAGE = 50

TABS: tuple[tuple[str, str], ...] = (
    ("Dashboard", "/dashboard"), ("Certificates", "/certificates"), ("Roots", "/roots"),
    ("CRLs", "/crls"), ("CA", "/ca"), ("SMS", "/sms"), ("Settings", "/settings"),
    ("Domains", "/domains"), ("Users", "/users"), ("Explain", "/explain"), ("Queues", "/queues"),
    ("Logs", "/logs"), ("Audit", "/audit"), ("Admins", "/admins"),
)


@dataclass(frozen=True)
class Web:
    """What every request works with: the store, the configuration and the templates."""

    store: SqlStore
    config: Config
    limits: Limits
    templates: jinja2.Environment


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("smimegate.web", "templates"),
        autoescape=True,  # every value is escaped: no markup from the store reaches a page
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


@dataclass
class Page:
    web: Web
    request: Request
    session: Session | None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name: (file name, data)
    new_session_id: str | None = None  # re-authenticated: the cookie's new value

    @property
    def store(self) -> SqlStore:
        return self.web.store

    @property
    def actor(self) -> Actor:
        assert self.session is not None
        return sessions.actor_of(self.session, client_address(self.request))

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)[:200]

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("title", "")
        context.setdefault("notice", "")
        context.setdefault("problem", "")
        context.setdefault("intro", "")
        context.setdefault("active", self.request.url.path)
        html = self.web.templates.get_template(template).render(
            session=self.session, tabs=TABS,
            may_change=self.session is not None and self.session.role == "admin", **context)
        return HTMLResponse(html, status_code=status)

    def message(self, title: str, text: str, status: int = 200) -> HTMLResponse:
        return self.render("message.html", status, title=title, text=text)


Handler = Callable[[Page], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


async def read_form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return {}
    data = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
    return {k: v for k, v in data.items() if isinstance(v, str)}


MAX_UPLOAD = 512 * 1024  # certificate files, bundles, CRLs; the app caps the body at 1 MiB


async def read_upload_form(request: Request) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The fields and the uploaded files (at most two, MAX_UPLOAD bytes each) of a POST."""
    if request.method != "POST":
        return {}, {}
    data = await request.form(max_files=2, max_fields=50, max_part_size=64 * 1024)
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    files: dict[str, tuple[str, bytes]] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            content = await value.read(MAX_UPLOAD + 1)
            if content:
                files[name] = ((value.filename or "upload")[:100], content)
    return fields, files


def page(handler: Handler, *, auditor_may_post: bool = False, uploads: bool = False,
         background: bool = False) -> Endpoint:
    """An endpoint that runs handler for a signed-in admin (see the module doc). A POST is a
    change, refused to an auditor before its input is read, unless auditor_may_post
    (signing out). uploads: the form may carry files (Page.files). background: a request the
    page's script makes on its own, which does not count as use of the session (its idle
    timeout runs on)."""

    async def endpoint(request: Request) -> Response:
        web = request.app.state.web
        # The session and the role from the cookie first, the body after: without a session,
        # or as an auditor's change, the form (and its upload) is never read.
        session = await run_in_threadpool(_session_of, web, request, auditor_may_post,
                                          not background)
        if not isinstance(session, Session):
            return session
        if nul_in_url(request):
            return Page(web, request, session).message(
                "Bad input", "A NUL character in the URL: nothing was done.", 400)
        files: dict[str, tuple[str, bytes]] = {}
        if uploads:
            form, files = await read_upload_form(request)
        else:
            form = await read_form(request)
        return await run_in_threadpool(_signed_in, web, request, session, form, handler, files)

    return endpoint


def _session_of(web: Web, request: Request, auditor_may_post: bool,
                touch: bool) -> Session | Response:
    """The live session, or the answer instead: to /login without one, 403 for an auditor's
    POST, 503 / 409 when the store fails."""
    bare = Page(web, request, None)
    try:
        session = sessions.current(web.store, get_cookie(request, SESSION_COOKIE), web.limits,
                                   touch=touch)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if request.method == "POST" and not auditor_may_post:
            Page(web, request, session).actor.require_change()
        return session
    except Forbidden as exc:
        return bare.message("Refused", f"{exc}: nothing was changed.", 403)
    except StoreUnavailable as exc:
        return bare.message("Store unavailable", store_failure(exc), 503)
    except StoreError as exc:
        return bare.message("Failed", store_failure(exc), 409)


def _signed_in(web: Web, request: Request, session: Session, form: dict[str, str],
               handler: Handler, files: dict[str, tuple[str, bytes]]) -> Response:
    current = Page(web, request, session, form, files)
    if request.method == "POST" and not sessions.csrf_ok(session, form.get("csrf", "")):
        return current.message(
            "Refused", "The form's CSRF token is missing or wrong: nothing was changed. "
            "Reload the page and try again.", 403)
    if any(has_nul(text) for text in (*form.values(), *(name for name, _ in files.values()))):
        return current.message("Bad input", "A field holds a NUL character: nothing was "
                               "changed.", 400)
    response = _mapped(current, handler)
    if current.new_session_id is not None:
        set_cookie(response, request, SESSION_COOKIE, current.new_session_id)
    return response


def _mapped(current: Page, handler: Handler) -> Response:
    try:
        return handler(current)
    except Forbidden as exc:
        return current.message("Refused", f"{exc}: nothing was changed.", 403)
    except InvalidInput as exc:
        return current.message("Bad input", str(exc), 400)
    except (NotFound, Missing) as exc:
        return current.message("Not found", str(exc), 404)
    except StoreUnavailable as exc:
        return current.message("Store unavailable", str(exc), 503)
    except (OperationFailed, StoreError) as exc:
        return current.message("Failed", str(exc), 409)


def utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- lists: search, sort, pages -----------------------------------------------------------------

def page_number(current: Page) -> int:
    text = current.query("page", "1")
    return max(1, int(text)) if text.isdigit() and len(text) < 7 else 1


def listing(current: Page, title: str, rows: list[dict[str, Any]],
             columns: Sequence[tuple[str, str, bool]], empty: str, *, status: int = 200,
             add_form: dict[str, Any] | None = None, notice: str = "",
             problem: str = "", forms: Sequence[dict[str, Any]] = (),
             links: Sequence[dict[str, str]] = (), row_actions: bool = False) -> Response:
    keys = [key for key, _, _ in columns]
    rows = paging.matching(rows, current.query("q"), keys)
    sort = current.query("sort", keys[0])
    sortable = {key for key, _, can in columns if can}
    if sort.lstrip("-") in sortable:
        rows = paging.ordered(rows, sort.lstrip("-"), descending=sort.startswith("-"))
    else:
        sort = keys[0]
    pages = max(1, math.ceil(len(rows) / PER_PAGE))
    page_no = min(page_number(current), pages)
    shown = rows[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
    return current.render(
        "listing.html", status, title=title, items=shown, total=len(rows), page=page_no,
        pages=pages, q=current.query("q"), sort=sort, empty=empty, add_form=add_form,
        columns=[{"key": k, "label": label, "sortable": can} for k, label, can in columns],
        notice=notice, problem=problem, forms=forms, links=links, row_actions=row_actions)


# -- forms of the PKI tabs: fields with the error beside them, confirmation --------------------

def form_field(current: Page, name: str, label: str, kind: str = "text",
               choices: Sequence[str] = (), error: InvalidInput | None = None,
               default: str = "", help: str = "") -> dict[str, Any]:
    """One field of form.html, with what was typed (never a password) and its error."""
    return {"name": name, "label": label, "type": kind, "choices": tuple(choices),
            "value": current.form.get(name, default), "help": help,
            "error": str(error) if error is not None and error.field == name else ""}


def make_form(ident: str, title: str, action: str, button: str, fields: list[dict[str, Any]],
              *, multipart: bool = False) -> dict[str, Any]:
    return {"id": ident, "title": title, "action": action, "button": button,
            "fields": fields, "multipart": multipart}


def unplaced(error: InvalidInput | None, forms: Sequence[dict[str, Any]]) -> str:
    """The error's text when no field of forms shows it beside itself, else ""."""
    if error is None:
        return ""
    placed = {f["name"] for form in forms for f in form["fields"]}
    return "" if error.field in placed else str(error)


def confirmed(current: Page, question: str, button: str, back: str) -> Response | None:
    """None when the POST carries confirm=yes; else the page that asks (remove and delete
    actions are confirmed, and the confirmation is a POST with the CSRF token too)."""
    if current.form.get("confirm") == "yes":
        return None
    carried = [(k, v) for k, v in current.form.items() if k not in ("csrf", "confirm")]
    return current.render("confirm.html", title="Confirm", question=question, button=button,
                          back=back, action=current.request.url.path, carried=carried)


def download(data: bytes, filename: str, media_type: str) -> Response:
    return Response(data, media_type=media_type,
                    headers={"content-disposition": attachment(filename)})


def add_fields(first: tuple[str, str], names: Sequence[str],
                form: Mapping[str, str], error: InvalidInput | None) -> list[dict[str, Any]]:
    fields = [{"name": first[0], "label": first[1], "choices": (),
               "value": form.get(first[0], "")}]
    for name in names:
        prop = PROPERTIES[name]
        fields.append({"name": name, "label": name, "choices": prop.choices,
                       "value": form.get(name, "")})
    for f in fields:
        f["error"] = str(error) if error is not None and error.field == f["name"] else ""
    return fields


def summary(values: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"
