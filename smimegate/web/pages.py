"""The pages: sign-in, sign-out and the tabs.

Every page is a plain function of a ``Page`` (the request, its form, its session) run in a
worker thread, since the store is blocking; ``page()`` wraps it with what every page needs:
a live session (else to /login), the session's CSRF token on every POST (no change is ever
made by a GET), and one mapping of the service's errors to status pages. A form's bad input
is shown beside its field with the service's message, status 400, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from smimegate.cli.cert import issuer_chain
from smimegate.cli.certview import normal_fingerprint
from smimegate.config import Config
from smimegate.policy import PROPERTIES, EffectivePolicy, Level
from smimegate.service import accounts as admin_accounts
from smimegate.service import audit, domains, sessions, settings, users
from smimegate.service.actor import ROLES, Actor
from smimegate.service.errors import Forbidden, InvalidInput, OperationFailed
from smimegate.service.properties import domain_arg, email_arg
from smimegate.service.sessions import Limits, Throttled
from smimegate.store import (
    MasterKeyError,
    NotFound,
    SqlStore,
    StoreError,
    StoreUnavailable,
    User,
)
from smimegate.store.accounts import Session
from smimegate.store.certinfo import name_string
from smimegate.store.policyrows import user_values
from smimegate.web import views
from smimegate.web.security import clear_cookie, client_address, get_cookie, set_cookie

SESSION_COOKIE = "smimegate-session"
LOGIN_COOKIE = "smimegate-login"
PER_PAGE = 50

TABS: tuple[tuple[str, str], ...] = (
    ("Dashboard", "/dashboard"), ("Certificates", "/certificates"), ("Roots", "/roots"),
    ("CRLs", "/crls"), ("CA", "/ca"), ("SMS", "/sms"), ("Settings", "/settings"),
    ("Domains", "/domains"), ("Users", "/users"), ("Queues", "/queues"), ("Logs", "/logs"),
    ("Audit", "/audit"), ("Admins", "/admins"),
)

# Tabs whose pages later sessions build; until then they say so and name the CLI command.
NOT_BUILT: Mapping[str, tuple[str, str]] = {
    "/logs": ("Logs", "the milter's log lines in syslog (journalctl -t smimegate)"),
}


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


async def _form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return {}
    data = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
    return {k: v for k, v in data.items() if isinstance(v, str)}


def page(handler: Handler, *, auditor_may_post: bool = False) -> Endpoint:
    """An endpoint that runs handler for a signed-in admin (see the module doc). A POST is a
    change, refused to an auditor before its input is looked at, unless auditor_may_post
    (signing out)."""

    async def endpoint(request: Request) -> Response:
        form = await _form(request)
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


# -- sign-in and sign-out ---------------------------------------------------------------------

async def login(request: Request) -> Response:
    """GET: the form; POST: check it and open a session. The form carries a token that must
    match a cookie set with the form (double submit), against login CSRF."""
    form = await _form(request)
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
    name = form.get("user", "")[:64]
    try:
        session_id, _ = sessions.sign_in(web.store, name, form.get("password", "")[:128],
                                         client_address(request), web.limits)
    except Throttled as exc:
        return _login_form(bare, token, status=429, error=str(exc), user=name)
    except InvalidInput as exc:
        return _login_form(bare, token, status=401, error=str(exc), user=name)
    except StoreError as exc:
        return _login_form(bare, token, status=503, error=str(exc), user=name)
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


# -- tabs -------------------------------------------------------------------------------------

def dashboard(current: Page) -> Response:
    store = current.store
    now = dt.datetime.now(dt.UTC)
    certs = store.list_certificates()
    live = [c for c in certs if c.not_after > now]
    crls = store.list_crls()
    stale = [c for c in crls if c.next_update is not None and c.next_update < now]
    facts = [
        ("Store", f"{store.dialect}, schema version {store.schema_version()}, reachable"),
        ("Domain rules", len(store.list_domains())),
        ("Users", len(store.list_users())),
        ("Certificates", f"{len(certs)} ({len(certs) - len(live)} expired)"),
        ("Expiring within 7 days", sum(c.not_after < now + dt.timedelta(days=7) for c in live)),
        ("Expiring within 30 days",
         sum(c.not_after < now + dt.timedelta(days=30) for c in live)),
        ("Trusted roots", len(store.list_roots())),
        ("Built-in CAs", len(store.list_cas())),
        ("CRLs", f"{len(crls)} ({len(stale)} past their next update)"),
        ("Queued deliveries", _queue_depths(store)),
    ]
    return current.render("dashboard.html", title="Dashboard", facts=facts)


def _queue_depths(store: SqlStore, kind: str | None = None) -> str:
    try:
        items = [i for i in views.queue(store) if kind is None or i["kind"] == kind]
    except MasterKeyError:
        return "unknown here (the master key is not readable)"
    counts = {status: sum(i["status"] == status for i in items)
              for status in views.QUEUE_STATUSES}
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def sms(current: Page) -> Response:
    """The SMS transport as configured (read-only here: it lives in the configuration file).
    The auth header file is named, never read: it holds a secret."""
    conf = current.web.config.sms
    facts: list[tuple[str, object]] = [("Transport", conf.transport)]
    if conf.transport == "http":
        facts += [("URL", conf.url), ("Method", conf.method), ("Content-Type", conf.content_type),
                  ("Body template", conf.body_template),
                  ("Auth header file", conf.auth_header_file or "none")]
    elif conf.transport == "command":
        facts.append(("Command", " ".join(conf.command)))
    else:
        facts.append(("File", conf.file))
    facts += [("Timeout", f"{conf.timeout:g} s"),
              ("Queued SMS", _queue_depths(current.store, "sms"))]
    return current.render("dashboard.html", title="SMS", facts=facts,
                          intro="Set in the [sms] section of the configuration file; "
                                "sending a test message from here comes later.")


def not_built(current: Page) -> Response:
    title, command = NOT_BUILT[current.request.url.path]
    return current.message(title, f"This tab is not built yet. Until it is, use {command}.")


def audit_log(current: Page) -> Response:
    page_no = _page_number(current)
    q = current.query("q")
    rows = audit.entries(current.store, limit=PER_PAGE + 1, offset=(page_no - 1) * PER_PAGE,
                         search=q)
    entries = [{**vars(e), "when": _utc(e.at)} for e in rows[:PER_PAGE]]
    return current.render("audit.html", title="Audit log", entries=entries, q=q,
                          page=page_no, more=len(rows) > PER_PAGE)


def certificates(current: Page) -> Response:
    rows = [{**item, "href": f"/certificates/{item['fingerprint']}",
             "emails": ", ".join(item["emails"]) or "-", "not_after": item["not_after"][:10],
             "trust": "trusted" if item["trusted"] else f"not trusted: {item['trust_info']}"}
            for item in views.certificates(current.store)]
    columns = [("emails", "Email", True), ("subject", "Subject", True),
               ("issuer", "Issuer", True), ("not_after", "Valid until", True),
               ("trust", "Trust", True), ("fingerprint", "SHA-256", False)]
    return _listing(current, "Certificates", rows, columns, "No certificates.")


_CERT_FACTS = (
    ("fingerprint", "SHA-256"), ("subject", "Subject"), ("issuer", "Issuer"),
    ("serial", "Serial"), ("emails", "Addresses"), ("not_before", "Valid from"),
    ("not_after", "Valid until"), ("ski", "Key identifier"), ("is_ca", "CA"),
    ("has_key", "Private key in escrow"), ("trusted_root", "Trusted root"),
    ("trusted", "Trusted"), ("trust_info", "Why not trusted"), ("source", "Source"),
    ("blocked", "Blocked"),
)


def certificate(current: Page) -> Response:
    """One certificate as ``cert show --json`` describes it, with its stored issuer chain."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    record = current.store.get_certificate(fingerprint)
    item = views.describe(current.store, record)
    facts = []
    for key, label in _CERT_FACTS:
        value = item[key]
        if key == "trust_info" and value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        facts.append((label, "-" if value is None else value))
    chain = [name_string(c.subject) for c in issuer_chain(current.store,
                                                              record.certificate())]
    return current.render("certificate.html", title="Certificate", facts=facts, chain=chain,
                          fingerprint=record.fingerprint, active="/certificates")


def certificate_pem(current: Page) -> Response:
    """The public certificate (never its key) as a PEM download."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    record = current.store.get_certificate(fingerprint)
    pem = record.certificate().public_bytes(Encoding.PEM)
    return Response(pem, media_type="application/pem-certificate-chain", headers={
        "content-disposition": f'attachment; filename="{record.fingerprint[:16]}.pem"'})


def roots(current: Page) -> Response:
    rows = [{**item, "href": "", "not_after": item["not_after"][:10]}
            for item in views.roots(current.store)]
    columns = [("subject", "Subject", True), ("not_after", "Valid until", True),
               ("fingerprint", "SHA-256", False)]
    return _listing(current, "Roots", rows, columns,
                    "No trusted roots (add one with `smimegate root add FILE`).")


_VERIFIED = {True: "yes", False: "NO: signature not verified", None: "issuer unknown"}


def crl_list(current: Page) -> Response:
    now = dt.datetime.now(dt.UTC).isoformat()
    rows = [{**row, "href": "", "number": "-" if row["number"] is None else row["number"],
             "next_update": row["next_update"] or "-",
             "fresh": "stale" if row["next_update"] and row["next_update"] < now else "current",
             "verified": _VERIFIED[row["verified"]], "ca": row["ca"] or "-",
             "source": row["source"] or "-"}
            for row in views.crls(current.store)]
    columns = [("issuer", "Issuer", True), ("number", "Number", False),
               ("this_update", "This update", True), ("next_update", "Next update", True),
               ("fresh", "Freshness", True), ("entries", "Revoked", False),
               ("verified", "Verified", True), ("ca", "Our CA", True),
               ("source", "Source", True)]
    return _listing(current, "CRLs", rows, columns, "No CRLs.")


def ca_list(current: Page) -> Response:
    rows = [{"name": ca["name"], "href": "", "default": "yes" if ca["default"] else "",
             "key_type": ca["key_type"], "intermediate": ca["intermediate"]["subject"],
             "until": ca["intermediate"]["not_after"][:10], "root": ca["root"]["subject"],
             "next_crl": ca["next_crl_number"]}
            for ca in views.cas(current.store)]
    columns = [("name", "Name", True), ("default", "Default", True),
               ("key_type", "Key", True), ("intermediate", "Issuing CA", True),
               ("until", "Valid until", True), ("root", "Root", True),
               ("next_crl", "Next CRL number", False)]
    return _listing(current, "CA", rows, columns,
                    "No built-in CA (create one with `smimegate ca create`).")


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
    return _listing(current, "Queues", rows, columns, "The queue is empty.")


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def account(current: Page, errors: Mapping[str, str] | None = None, status: int = 200,
            notice: str = "") -> Response:
    assert current.session is not None
    mine = current.session.digest
    rows = [{"digest": s.digest, "created": _utc(s.created), "last_seen": _utc(s.last_seen),
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
                                     current.form.get("current", ""), new)
    except InvalidInput as exc:
        return account(current, {exc.field or "password": str(exc)}, 400)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, current.request, SESSION_COOKIE)
    return response


def admins(current: Page) -> Response:
    """Accounts: what `smimegate admin` does, for admins; auditors see the list. A new
    password or token is shown once, on the answer to the POST that made it."""
    errors: dict[str, str] = {}
    secret: dict[str, str] | None = None
    notice, status, typed = "", 200, ""
    if current.request.method == "POST":
        action, name = current.form.get("action", ""), current.form.get("name", "")
        role = current.form.get("role", "")
        try:
            if action == "add":
                password = admin_accounts.generate_password()
                admin_accounts.add(current.store, current.actor, name, role, password)
                secret = {"label": f"Password of {name.strip().lower()}", "value": password}
            elif action == "password":
                password = admin_accounts.generate_password()
                admin_accounts.set_password(current.store, current.actor, name, password)
                secret = {"label": f"New password of {name}", "value": password}
            elif action == "token":
                token = admin_accounts.new_token(current.store, current.actor, name, role)
                secret = {"label": f"API token of {name} ({role})", "value": token}
            elif action == "remove":
                notice = f"Account {admin_accounts.remove(current.store, current.actor, name)} "\
                         "removed."
            else:
                raise InvalidInput(f"unknown action {action!r}", "action")
        except InvalidInput as exc:
            status, typed = 400, name if action == "add" else ""
            if action == "add" and exc.field in ("name", "role"):
                errors[exc.field] = str(exc)
            else:
                return current.render("message.html", 400, title="Admins", text=str(exc))
    rows = [{**a, "created": _utc(a["created"])} for a in admin_accounts.listing(current.store)]
    return current.render("admins.html", status, title="Admins", admins=rows, roles=ROLES,
                          errors={"name": "", "role": "", **errors}, secret=secret,
                          notice=notice, typed=typed)


# -- lists: search, sort, pages -----------------------------------------------------------------

def _page_number(current: Page) -> int:
    text = current.query("page", "1")
    return max(1, int(text)) if text.isdigit() and len(text) < 7 else 1


def _listing(current: Page, title: str, rows: list[dict[str, Any]],
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
    page_no = min(_page_number(current), pages)
    shown = rows[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
    return current.render(
        "listing.html", status, title=title, items=shown, total=len(rows), page=page_no,
        pages=pages, q=current.query("q"), sort=sort, empty=empty, add_form=add_form,
        columns=[{"key": k, "label": label, "sortable": can} for k, label, can in columns],
        notice=notice, problem=problem)


def _add_fields(first: tuple[str, str], names: Sequence[str],
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


def _summary(values: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"


DOMAIN_ADD = ("locality", "encrypt_mode", "smime")
USER_ADD = ("phone", "encrypt_mode", "smime")


def _adding(current: Page, add: Callable[[], str]) -> tuple[InvalidInput | None, str]:
    """Run add() for a POST: (None, its notice) or (the bad input, "")."""
    if current.request.method != "POST":
        return None, ""
    try:
        notice = add()
    except InvalidInput as exc:
        return exc, ""
    current.form = {}
    return None, notice


def _list_with_form(current: Page, title: str, rows: list[dict[str, Any]],
                    columns: Sequence[tuple[str, str, bool]], empty: str,
                    add: tuple[str, str, tuple[str, str], Sequence[str]],
                    level: Level, error: InvalidInput | None, notice: str) -> Response:
    add_title, button, first, names = add
    fields = _add_fields(first, names, current.form, error)
    beside = {f["name"] for f in fields}
    return _listing(current, title, rows, columns, empty, status=400 if error else 200,
                    add_form={"title": add_title, "button": button, "fields": fields},
                    notice=notice,
                    problem=str(error) if error and error.field not in beside else "")


def domain_list(current: Page) -> Response:
    def add() -> str:
        given = {k: current.form.get(k) or None for k in DOMAIN_ADD}
        added = domains.add(current.store, current.actor, current.form.get("domain", ""), given)
        return f"Domain rule {added.name} added."

    error, notice = _adding(current, add)
    rows = [{"name": d["name"], "href": f"/domains/{d['name']}",
             "properties": _summary(d["properties"])} for d in domains.listing(current.store)]
    return _list_with_form(
        current, "Domains", rows,
        [("name", "Domain rule", True), ("properties", "Own values", False)],
        "No domain rules.", ("Add a domain rule", "Add domain", ("domain", "Domain"), DOMAIN_ADD),
        "domain", error, notice)


def user_list(current: Page) -> Response:
    def add() -> str:
        given = {k: current.form.get(k) or None for k in USER_ADD}
        added = users.add(current.store, current.actor, current.form.get("email", ""), given)
        return f"User {added.email} added."

    error, notice = _adding(current, add)
    rows = [{"email": u["email"], "href": f"/users/{u['email']}",
             "enabled": "yes" if u["enabled"] else "no",
             "properties": _summary(user_values(User(u["email"], u["enabled"],
                                                     u["properties"])))}
            for u in users.listing(current.store)]
    return _list_with_form(
        current, "Users", rows,
        [("email", "User", True), ("enabled", "Enabled", True),
         ("properties", "Own values", False)],
        "No users.", ("Add a user", "Add user", ("email", "Email"), USER_ADD),
        "user", error, notice)


# -- property pages: every property, its effective value and level, set or inherit -------------

@dataclass(frozen=True)
class LevelPage:
    """One level's page: how to read and change its values."""

    level: Level
    title: str
    what: str
    action: str
    remove_action: str
    effective: Callable[[], EffectivePolicy]
    own: Callable[[], Mapping[str, str]]
    set_: Callable[[str, str], str]
    unset: Callable[[str], object]


def _properties_page(current: Page, lv: LevelPage) -> Response:
    error: InvalidInput | None = None
    problem, notice, typed = "", "", None
    name = current.form.get("property", "")
    if current.request.method == "POST":
        action = current.form.get("action", "")
        try:
            if action == "set":
                value = lv.set_(name, current.form.get("value", ""))
                notice = f"{name} = {value} at the {lv.level} level."
            elif action == "inherit":
                lv.unset(name)
                notice = f"{name} now inherited."
            else:
                raise InvalidInput(f"unknown action {action!r}: set or inherit", "action")
        except InvalidInput as exc:
            error, typed = exc, current.form.get("value", "")
            if exc.field != "value" or name not in PROPERTIES:
                problem = str(exc)
        except NotFound as exc:
            if action != "inherit":
                raise
            problem = f"{exc}: nothing to inherit"
    policy, own = lv.effective(), lv.own()
    rows = []
    for prop_name, resolved in policy.items:
        prop = PROPERTIES[prop_name]
        row_error = str(error) if error is not None and prop_name == name and not problem else ""
        rows.append({
            "name": prop_name, "doc": prop.doc, "value": resolved.value,
            "source": resolved.source, "choices": prop.choices,
            "settable": lv.level in prop.levels, "here": prop_name in own,
            "error": row_error, "typed": typed if row_error else None,
        })
    status = 400 if error is not None else 200
    return current.render("properties.html", status, title=lv.title, rows=rows,
                          level=lv.level, action=lv.action, remove_action=lv.remove_action,
                          what=lv.what, notice=notice, problem=problem,
                          intro="Values are inherited global → domain → user; "
                                "“Inherit” drops this level's value.")


def settings_page(current: Page) -> Response:
    store = current.store

    def unset(name: str) -> None:
        if not settings.unset_property(store, current.actor, name):
            raise NotFound(f"no global value for {name}")

    return _properties_page(current, LevelPage(
        "global", "Settings", "settings", "/settings", "",
        lambda: settings.show(store), store.settings,
        lambda n, v: settings.set_property(store, current.actor, n, v), unset))


def domain_page(current: Page) -> Response:
    store = current.store
    rule = domain_arg(current.request.path_params["domain"])
    if current.request.url.path.endswith("/remove"):
        domains.remove(store, current.actor, rule)
        return RedirectResponse("/domains", status_code=303)
    return _properties_page(current, LevelPage(
        "domain", f"Domain {rule}", f"domain rule {rule}", f"/domains/{rule}",
        f"/domains/{rule}/remove",
        lambda: domains.show(store, rule), lambda: store.get_domain(rule).properties,
        lambda n, v: domains.set_property(store, current.actor, rule, n, v),
        lambda n: domains.unset_property(store, current.actor, rule, n)))


def user_page(current: Page) -> Response:
    store = current.store
    email = email_arg(current.request.path_params["email"])
    if current.request.url.path.endswith("/remove"):
        users.remove(store, current.actor, email)
        return RedirectResponse("/users", status_code=303)
    return _properties_page(current, LevelPage(
        "user", f"User {email}", f"user {email}", f"/users/{email}", f"/users/{email}/remove",
        lambda: users.show(store, email), lambda: user_values(store.get_user(email)),
        lambda n, v: users.set_property(store, current.actor, email, n, v),
        lambda n: users.unset_property(store, current.actor, email, n)))
