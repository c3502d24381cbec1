"""The Admins tab: what `smimegate admin` does."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import accounts as admin_accounts
from smimegate.service.actor import ROLES
from smimegate.service.errors import InvalidInput
from smimegate.web.pages.base import Page, confirmed, page, utc
from smimegate.web.reauth import require_reauth


def admins(current: Page) -> Response:
    """Accounts: what `smimegate admin` does, for admins (after re-authentication); auditors
    see the list. A new password or token is shown once, on the answer to the POST that
    made it."""
    errors: dict[str, str] = {}
    secret: dict[str, str] | None = None
    notice, status, typed = "", 200, ""
    if current.request.method == "POST":
        # An account or token made here signs in and re-authenticates with a password its
        # maker knows: without this, a borrowed session would reach private keys and CA
        # creation past their re-authentication (ASVS 3.7.1) through a new account.
        asked = require_reauth(current, "change admin accounts or tokens")
        if asked is not None:
            return asked
        action, name = current.form.get("action", ""), current.form.get("name", "")
        question = {"remove": f"Remove the account {name}, its API tokens and sessions?",
                    "revoke-tokens": f"Revoke every API token of {name}?"}.get(action)
        if question is not None:
            asked = confirmed(current, question, "Remove" if action == "remove" else "Revoke",
                              "/admins")
            if asked is not None:
                return asked
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
            elif action == "revoke-tokens":
                revoked = admin_accounts.revoke_tokens(current.store, current.actor, name)
                notice = f"{revoked} API token(s) of {name} revoked."
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
    rows = [{**a, "created": utc(a["created"])} for a in admin_accounts.listing(current.store)]
    return current.render("admins.html", status, title="Admins", admins=rows, roles=ROLES,
                          errors={"name": "", "role": "", **errors}, secret=secret,
                          notice=notice, typed=typed)

ROUTES: list[BaseRoute] = [
    Route("/admins", page(admins), methods=["GET", "POST"]),
]
