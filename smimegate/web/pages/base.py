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
from smimegate.service import sessions
from smimegate.service.actor import Actor
from smimegate.service.errors import Forbidden, InvalidInput, OperationFailed
from smimegate.service.sessions import Limits
from smimegate.store import NotFound, SqlStore, StoreError, StoreUnavailable
from smimegate.store.accounts import Session
from smimegate.web.security import client_address, get_cookie

SESSION_COOKIE = "smimegate-session"
LOGIN_COOKIE = "smimegate-login"
PER_PAGE = 50

TABS: tuple[tuple[str, str], ...] = (
    ("Dashboard", "/dashboard"), ("Certificates", "/certificates"), ("Roots", "/roots"),
    ("CRLs", "/crls"), ("CA", "/ca"), ("SMS", "/sms"), ("Settings", "/settings"),
    ("Domains", "/domains"), ("Users", "/users"), ("Queues", "/queues"), ("Logs", "/logs"),
    ("Audit", "/audit"), ("Admins", "/admins"),
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


def page(handler: Handler, *, auditor_may_post: bool = False) -> Endpoint:
    """An endpoint that runs handler for a signed-in admin (see the module doc). A POST is a
    change, refused to an auditor before its input is looked at, unless auditor_may_post
    (signing out)."""

    async def endpoint(request: Request) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(_signed_in, request.app.state.web, request, form,
                                       handler, auditor_may_post)

    return endpoint


def _signed_in(web: Web, request: Request, form: dict[str, str], handler: Handler,
               auditor_may_post: bool) -> Response:
    bare = Page(web, request, None, form)
    try:
        session = sessions.current(web.store, get_cookie(request, SESSION_COOKIE), web.limits)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        current = Page(web, request, session, form)
        if request.method == "POST" and not sessions.csrf_ok(session, form.get("csrf", "")):
            return current.message(
                "Refused", "The form's CSRF token is missing or wrong: nothing was changed. "
                "Reload the page and try again.", 403)
        if request.method == "POST" and not auditor_may_post:
            current.actor.require_change()
        return _mapped(current, handler)
    except Forbidden as exc:
        return bare.message("Refused", f"{exc}: nothing was changed.", 403)
    except StoreUnavailable as exc:
        return bare.message("Store unavailable", str(exc), 503)
    except StoreError as exc:
        return bare.message("Failed", str(exc), 409)


def _mapped(current: Page, handler: Handler) -> Response:
    try:
        return handler(current)
    except Forbidden as exc:
        return current.message("Refused", f"{exc}: nothing was changed.", 403)
    except InvalidInput as exc:
        return current.message("Bad input", str(exc), 400)
    except NotFound as exc:
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
             problem: str = "") -> Response:
    q = current.query("q").strip().lower()
    keys = [key for key, _, _ in columns]
    if q:
        rows = [r for r in rows if any(q in str(r[k]).lower() for k in keys)]
    sort = current.query("sort", keys[0])
    sortable = {key for key, _, can in columns if can}
    if sort.lstrip("-") in sortable:
        rows = sorted(rows, key=lambda r: str(r[sort.lstrip("-")]).lower(),
                      reverse=sort.startswith("-"))
    else:
        sort = keys[0]
    pages = max(1, math.ceil(len(rows) / PER_PAGE))
    page_no = min(page_number(current), pages)
    shown = rows[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
    return current.render(
        "listing.html", status, title=title, items=shown, total=len(rows), page=page_no,
        pages=pages, q=current.query("q"), sort=sort, empty=empty, add_form=add_form,
        columns=[{"key": k, "label": label, "sortable": can} for k, label, can in columns],
        notice=notice, problem=problem)


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
