"""The pages of the web admin, one module per tab; each module lists its own ROUTES.

Every page is a plain function of a ``Page`` (base.py) run in a worker thread, since the
store is blocking; base.page() wraps it with the session check, the CSRF token of every
POST and the one mapping of the service's errors to status pages.

base.py       Web, Page, page(), lists with search / sort / pages, the tab bar
login.py      sign-in and sign-out
dashboard.py certificates.py roots.py crls.py ca.py sms.py policy.py (Settings, Domains,
Users) explain.py queues.py logs.py audit.py admins.py account.py   one tab each
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from smimegate.web.pages import (
    account,
    admins,
    audit,
    ca,
    certificates,
    crls,
    dashboard,
    explain,
    login,
    logs,
    policy,
    queues,
    roots,
    sms,
)
from smimegate.web.pages.base import Web, templates

ROUTES: list[BaseRoute] = [
    *login.ROUTES, *dashboard.ROUTES, *certificates.ROUTES, *roots.ROUTES, *crls.ROUTES,
    *ca.ROUTES, *sms.ROUTES, *policy.ROUTES, *explain.ROUTES, *queues.ROUTES, *logs.ROUTES,
    *audit.ROUTES, *admins.ROUTES, *account.ROUTES,
]

__all__ = ["ROUTES", "Web", "templates"]
