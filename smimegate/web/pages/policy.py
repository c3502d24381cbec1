"""The Settings, Domains and Users tabs: policy properties at each level."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from smimegate.policy import PROPERTIES, EffectivePolicy, Level
from smimegate.service import domains, settings, users
from smimegate.service.errors import InvalidInput
from smimegate.service.properties import domain_arg, email_arg
from smimegate.store import NotFound, User
from smimegate.store.policyrows import user_values
from smimegate.web.pages.base import Page, add_fields, listing, page, summary

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
    fields = add_fields(first, names, current.form, error)
    beside = {f["name"] for f in fields}
    return listing(current, title, rows, columns, empty, status=400 if error else 200,
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
             "properties": summary(d["properties"])} for d in domains.listing(current.store)]
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
             "properties": summary(user_values(User(u["email"], u["enabled"],
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

ROUTES: list[BaseRoute] = [
    Route("/settings", page(settings_page), methods=["GET", "POST"]),
    Route("/domains", page(domain_list), methods=["GET", "POST"]),
    Route("/domains/{domain}", page(domain_page), methods=["GET", "POST"]),
    Route("/domains/{domain}/remove", page(domain_page), methods=["POST"]),
    Route("/users", page(user_list), methods=["GET", "POST"]),
    Route("/users/{email}", page(user_page), methods=["GET", "POST"]),
    Route("/users/{email}/remove", page(user_page), methods=["POST"]),
]
