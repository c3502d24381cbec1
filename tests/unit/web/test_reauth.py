"""Re-authentication before sensitive actions (smimegate.web.reauth.require_reauth) and the
sign-in form's TOTP code, in-process over both stores."""

from __future__ import annotations

import re
import time
import urllib.parse

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from smimegate.service import audit, totp
from smimegate.web.app import build_app
from smimegate.web.pages.base import Page, page
from smimegate.web.reauth import require_reauth
from tests.unit.web.conftest import PASSWORD, SETUP, Site, csrf_of, sign_in

DONE: list[dict[str, str]] = []


def _export(current: Page) -> Response:
    asked = require_reauth(current, "export the private key of this certificate")
    if asked is not None:
        return asked
    DONE.append(dict(current.form))
    return PlainTextResponse("exported\n")


def _client(site: Site) -> TestClient:
    app = build_app(site.store, site.app_config)
    app.router.routes.append(Route("/export", page(_export), methods=["POST"]))
    return TestClient(app, follow_redirects=False)


def test_password_asked_again_then_the_action_runs_with_its_fields(site: Site) -> None:
    DONE.clear()
    client = _client(site)
    csrf = sign_in(client, "alice")
    asked = client.post("/export", data={"csrf": csrf, "format": "pkcs12"})
    assert asked.status_code == 401 and not DONE
    assert "To export the private key of this certificate" in asked.text
    assert '<input type="hidden" name="format" value="pkcs12">' in asked.text
    assert 'name="reauth_code"' not in asked.text  # alice has no second factor
    wrong = client.post("/export", data={"csrf": csrf, "format": "pkcs12",
                                         "reauth_password": "not the password"})
    assert wrong.status_code == 401 and not DONE
    assert re.search(r'role="alert">wrong password or code<', wrong.text)
    # A forged CSRF token is refused before the password is looked at.
    forged = client.post("/export", data={"csrf": "x" * 43, "reauth_password": PASSWORD})
    assert forged.status_code == 403 and not DONE
    ok = client.post("/export", data={"csrf": csrf, "format": "pkcs12",
                                      "reauth_password": PASSWORD})
    assert ok.status_code == 200 and ok.text == "exported\n"
    assert DONE == [{"csrf": csrf, "format": "pkcs12"}]
    # Within the window no password is asked for.
    again = client.post("/export", data={"csrf": csrf, "format": "der"})
    assert again.status_code == 200 and DONE[-1]["format"] == "der"
    assert [(e.actor, e.action) for e in audit.entries(site.store, search="session.reauth")] \
        == [("alice", "session.reauth"), ("alice", "session.reauth-failed")]


def test_auditor_never_reaches_the_password_form(site: Site) -> None:
    DONE.clear()
    client = _client(site)
    csrf = sign_in(client, "otto")
    refused = client.post("/export", data={"csrf": csrf, "reauth_password": PASSWORD})
    assert refused.status_code == 403 and not DONE


def _secret_of(uri: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]


def test_sign_in_and_reauth_with_totp(site: Site) -> None:
    DONE.clear()
    secret = _secret_of(totp.enrol(site.store, SETUP, "alice"))
    client = _client(site)
    login = client.get("/login").text
    assert '<label for="code">Code</label>' in login
    token = csrf_of(login)
    without = client.post("/login", data={"csrf": token, "user": "alice",
                                          "password": PASSWORD})
    assert without.status_code == 401 and "smimegate-session" not in client.cookies
    now = time.time()
    signed = client.post("/login", data={"csrf": token, "user": "alice", "password": PASSWORD,
                                         "code": totp.code_at(secret, now)})
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
    csrf = csrf_of(client.get("/dashboard").text)
    asked = client.post("/export", data={"csrf": csrf})
    assert asked.status_code == 401 and 'name="reauth_code"' in asked.text
    # The password alone is not enough; the code of the sign-in cannot be used again.
    for code in ("", totp.code_at(secret, now)):
        refused = client.post("/export", data={"csrf": csrf, "reauth_password": PASSWORD,
                                               "reauth_code": code})
        assert refused.status_code == 401 and not DONE
    ok = client.post("/export", data={"csrf": csrf, "reauth_password": PASSWORD,
                                      "reauth_code": totp.code_at(secret, now + 30)})
    assert ok.status_code == 200 and len(DONE) == 1


def test_reauth_page_is_not_a_get_route(site: Site) -> None:
    # The helper serves POST routes only: a GET of one is 405, never an action.
    client = _client(site)
    sign_in(client, "alice")
    assert client.get("/export").status_code == 405
