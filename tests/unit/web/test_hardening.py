"""What a security review of the web admin and the REST API found, each held by a test:
headers on every answer (errors too), throttled password checks, input read only after the
caller may change, safe download names, a new session id at re-authentication."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from smimegate import config as cfg
from smimegate.service import accounts, audit, cas, users
from smimegate.web.app import allowed_hosts, build_app
from smimegate.web.security import host_name
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import PASSWORD, SETUP, Site, csrf_of, sign_in


def _secured(response_headers: object) -> None:
    headers = dict(response_headers)  # type: ignore[call-overload]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"


def test_a_body_too_large_is_refused_with_the_security_headers(site: Site) -> None:
    big = b"x" * (2 * 1024 * 1024)
    api = site.api(site.admin_token)
    answer = api.put("/api/v1/settings/sign", content=big)
    assert answer.status_code == 413
    _secured(answer.headers)
    page = site.client().post("/certificates", content=big,
                              headers={"content-type": "multipart/form-data; boundary=b"})
    assert page.status_code == 413
    _secured(page.headers)


def _boom(request: Request) -> Response:
    raise RuntimeError("internal detail: /var/lib/smimegate/secret")


def test_a_bug_is_a_bare_500_with_the_security_headers(site: Site) -> None:
    app = build_app(site.store, site.app_config)
    app.router.routes[:0] = [Route("/boom", _boom), Route("/api/v1/boom", _boom)]
    client = TestClient(app, raise_server_exceptions=False, base_url="https://testserver")
    page = client.get("/boom")
    assert page.status_code == 500 and "internal detail" not in page.text
    _secured(page.headers)
    assert page.headers["strict-transport-security"].startswith("max-age=")
    api = client.get("/api/v1/boom")
    assert api.status_code == 500 and api.json() == {"error": "internal error"}
    _secured(api.headers)


def test_the_current_password_of_a_change_is_throttled_like_a_sign_in(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    new = "another long password"
    for guess in ("guess one is wrong", "guess two is wrong", "guess three is wrong"):
        wrong = client.post("/account/password", data={
            "csrf": csrf, "current": guess, "password": new, "repeat": new})
        assert wrong.status_code == 400 and "the current password is wrong" in wrong.text
    # The fixture allows 3 failures per user: the right password is not even checked now.
    throttled = client.post("/account/password", data={
        "csrf": csrf, "current": PASSWORD, "password": new, "repeat": new})
    assert throttled.status_code == 429 and "too many failed sign-ins" in throttled.text
    assert accounts.check_credentials(site.store, "alice", PASSWORD) is not None
    assert accounts.check_credentials(site.store, "alice", new) is None


def _call(site: Site, method: str, path: str, headers: dict[str, str]) -> tuple[int, bool]:
    """Send a request straight to the ASGI app; returns (status, whether its body was read)."""
    app = build_app(site.store, site.app_config)
    read: list[bool] = []
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        read.append(True)
        return {"type": "http.request", "body": b'{"value": "no"}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(k.encode(), v.encode()) for k, v in
                         {"host": "testserver", "content-length": "15", **headers}.items()]}
    anyio.run(app, scope, receive, send)
    return status[0], bool(read)


def test_a_change_is_refused_before_its_body_is_read(site: Site) -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}", "content-type": "application/json"}

    assert _call(site, "PUT", "/api/v1/settings/sign", bearer(site.auditor_token)) \
        == (403, False)
    assert _call(site, "PUT", "/api/v1/settings/sign", bearer("sgw_unknown")) == (401, False)
    assert _call(site, "PUT", "/api/v1/settings/sign", bearer(site.admin_token)) == (200, True)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert _call(site, "POST", "/certificates", form) == (303, False)  # no session
    for name, expected in (("otto", (403, False)), ("alice", (403, True))):
        client = site.client()
        sign_in(client, name)
        cookie = f"smimegate-session={client.cookies['smimegate-session']}"
        # alice's form is read, and refused for its missing CSRF token.
        assert _call(site, "POST", "/certificates", {**form, "cookie": cookie}) == expected


def test_download_names_from_stored_text_cannot_break_the_header(site: Site) -> None:
    # A CA is named after its CN unless told otherwise: any text, quotes and all.
    name = 'Müller "CA"; x\r\nX-Evil: 1'
    cas.create(site.store, SETUP, cas.CaOptions("Root", name, key_type="ec-p256"))
    client = site.client()
    sign_in(client, "alice")
    quoted = urllib.parse.quote(name, safe="")
    for answer in (client.get(f"/ca/{quoted}.pem"),
                   site.api(site.admin_token).get(f"/api/v1/cas/{quoted}/chain")):
        assert answer.status_code == 200, answer.text
        assert "x-evil" not in answer.headers
        assert answer.headers["content-disposition"] == (
            'attachment; filename="M_ller__CA___x__X-Evil__1-chain.pem"; '
            "filename*=UTF-8''" + quoted + "-chain.pem")
        assert answer.text.startswith("-----BEGIN CERTIFICATE-----")


def test_re_authentication_gives_the_session_a_new_id(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    before = client.cookies["smimegate-session"]
    form = {"csrf": csrf, "root_cn": "Reauth Root", "intermediate_cn": "Reauth CA",
            "key_type": "ec-p256"}
    asked = client.post("/ca", data=form)
    assert asked.status_code == 401 and "Confirm it is you" in asked.text
    assert client.cookies["smimegate-session"] == before  # nothing renewed for a question
    done = client.post("/ca", data={**form, "reauth_password": PASSWORD})
    assert done.status_code == 200 and "CA Reauth CA created" in done.text
    after = client.cookies["smimegate-session"]
    assert after != before
    # The id from before the password was given again is worth nothing now.
    old = site.client()
    old.cookies.set("smimegate-session", before)
    assert old.get("/dashboard").status_code == 303
    # The new one keeps the session: same CSRF token, still fresh, no second password.
    again = client.post("/ca", data={**form, "root_cn": "Second Root",
                                     "intermediate_cn": "Second CA"})
    assert again.status_code == 200 and "CA Second CA created" in again.text
    assert client.cookies["smimegate-session"] == after


def test_the_sms_tab_shows_no_key_from_the_gateway_url(site: Site) -> None:
    text = site.config_path.read_text(encoding="utf-8") + (
        '[sms]\ntransport = "http"\n'
        'url = "https://user:s3cret-pass@sms.example/api/send?apikey=TOPSECRET"\n')
    app = build_app(site.store, cfg.loads(text))
    page = TestClient(app, follow_redirects=False)
    sign_in(page, "otto")
    api = TestClient(app, headers={"authorization": f"Bearer {site.auditor_token}"})
    for answer in (page.get("/sms"), api.get("/api/v1/sms")):
        assert answer.status_code == 200
        assert "https://sms.example/api/send (user info and query not shown)" in answer.text
        assert "TOPSECRET" not in answer.text and "s3cret" not in answer.text


@pytest.mark.parametrize(("section", "shown"), [
    ('transport = "http"\nurl = "https://sms.example/send"\n'
     'body_template = \'{"apikey": "TOPSECRET", "to": "{phone}", "text": "{text}"}\'\n',
     "with {phone} and {text} (text not shown: it may hold an API key)"),
    ('transport = "command"\n'
     'command = ["/usr/local/bin/sms", "--token=TOPSECRET", "{phone}", "{text}"]\n',
     "/usr/local/bin/sms (3 arguments not shown: they may hold credentials)"),
])
def test_the_sms_tab_shows_no_key_from_the_body_or_the_command(site: Site, section: str,
                                                               shown: str) -> None:
    """Gateways take API keys in the POST body too, and a command may carry a token: the
    SMS tab and /api/v1/sms say what is configured without them, to auditors as to admins."""
    text = site.config_path.read_text(encoding="utf-8") + "[sms]\n" + section
    app = build_app(site.store, cfg.loads(text))
    page = TestClient(app, follow_redirects=False)
    sign_in(page, "alice")
    api = TestClient(app, headers={"authorization": f"Bearer {site.auditor_token}"})
    for answer in (page.get("/sms"), api.get("/api/v1/sms")):
        assert answer.status_code == 200
        assert shown in answer.text.replace("&#34;", '"')
        assert "TOPSECRET" not in answer.text


def test_wrong_passwords_are_in_the_audit_log_without_what_was_typed(site: Site) -> None:
    client = site.client()
    token = csrf_of(client.get("/login").text)
    for user in ("alice", "a password typed as a user name"):
        refused = client.post("/login", data={"csrf": token, "user": user,
                                              "password": "guess-xylophone-1"})
        assert refused.status_code == 401
    csrf = sign_in(client, "alice")
    asked = client.post("/ca", data={"csrf": csrf, "root_cn": "R", "intermediate_cn": "C",
                                     "key_type": "ec-p256", "reauth_password": "guess-xylophone-2"})
    assert asked.status_code == 401 and not site.store.list_cas()
    api = site.api(site.admin_token).post("/api/v1/cas", json={
        "root_cn": "R", "intermediate_cn": "C", "key_type": "ec-p256",
        "reauth_password": "guess-xylophone-3"})
    assert api.status_code == 400 and not site.store.list_cas()
    rows = [(e.actor, e.via, e.action, e.target, e.detail)
            for e in reversed(audit.entries(site.store, search="-failed"))]
    assert rows == [
        ("alice", "web", "session.sign-in-failed", "alice", "wrong password or code"),
        ("-", "web", "session.sign-in-failed", "(no such account)", "wrong password or code"),
        ("alice", "web", "session.reauth-failed", "alice", "wrong password or code"),
        ("alice", "api", "session.reauth-failed", "alice", "wrong password or code"),
    ]
    everything = str([dataclasses.asdict(e) for e in audit.entries(site.store, limit=1000)])
    assert "typed as a user name" not in everything and "xylophone" not in everything


def test_nul_characters_and_lone_surrogates_are_bad_input_not_500s(site: Site) -> None:
    # PostgreSQL refuses a NUL in text even in a WHERE clause; JSON can spell a lone
    # surrogate that no UTF-8 answer can carry. Both were 500s before they were refused.
    pages = TestClient(build_app(site.store, site.app_config), raise_server_exceptions=False,
                       follow_redirects=False)
    token = csrf_of(pages.get("/login").text)
    login = pages.post("/login", data={"csrf": token, "user": "al\x00ice", "password": "x"})
    assert login.status_code == 400 and "NUL character" in login.text
    csrf = sign_in(pages, "alice")
    for path in ("/logs?queue_id=%00", "/audit?q=%00", "/users/%00@x", "/domains/%00",
                 "/explain?sender=a%00@example.com&recipients=b@example.org"):
        answer = pages.get(path)
        assert answer.status_code == 400 and "NUL character in the URL" in answer.text, path
    form = pages.post("/users/bob@example.com", data={
        "csrf": csrf, "property": "subject_trigger", "value": "[x]\x00", "action": "set"})
    assert form.status_code == 400 and "NUL character" in form.text
    api = TestClient(build_app(site.store, site.app_config), raise_server_exceptions=False,
                     headers={"authorization": f"Bearer {site.admin_token}"})
    assert api.get("/api/v1/audit?q=%00").status_code == 400
    url = "/api/v1/users/bob@example.com/subject_trigger"
    for body, why in ((b'{"value": "[x]\\u0000"}', "NUL character"),
                      (b'{"value": "[x]\\ud800"}', "lone UTF-16 surrogate"),
                      (b'{"sender": "a@example.com", "subject": "\\udfff"}', "surrogate"),
                      (b"[" * 100000, "nested more than"),
                      (b"[" * 20 + b"]" * 20, "nested more than")):
        answer = api.put(url, content=body) if b"sender" not in body else api.post(
            "/api/v1/explain", content=body)
        assert answer.status_code == 400 and why in answer.json()["error"], body[:40]
    assert users.show(site.store, "bob@example.com").as_dict()["subject_trigger"]["from"] \
        == "default"


def test_a_leaked_api_token_can_be_revoked_on_the_admins_tab(site: Site) -> None:
    assert site.api(site.auditor_token).get("/api/v1/domains").status_code == 200
    client = site.client()
    csrf = sign_in(client, "alice")
    assert 'value="revoke-tokens">Revoke API tokens</button>' in client.get("/admins").text
    asked = client.post("/admins", data={"csrf": csrf, "action": "revoke-tokens",
                                         "name": "otto", "reauth_password": PASSWORD})
    assert asked.status_code == 200 and "Revoke every API token of otto?" in asked.text
    assert site.api(site.auditor_token).get("/api/v1/domains").status_code == 200
    done = client.post("/admins", data={"csrf": csrf, "action": "revoke-tokens",
                                        "name": "otto", "confirm": "yes"})
    assert done.status_code == 200 and "1 API token(s) of otto revoked." in done.text
    assert site.api(site.auditor_token).get("/api/v1/domains").status_code == 401
    assert site.api(site.admin_token).get("/api/v1/domains").status_code == 200
    (row,) = audit.entries(site.store, search="token-revoke")
    assert (row.actor, row.target, row.detail) == ("alice", "otto", "1 revoked")


def _every_row(site: Site) -> dict[str, list[str]]:
    """Every row of every table, but the bookkeeping of who is signed in and which token was
    used when (api_tokens.last_used, web_sessions.last_seen change with any request)."""
    backend = site.store.backend
    listed = ("SELECT name FROM sqlite_master WHERE type = 'table'" if backend.name == "sqlite"
              else "SELECT table_name FROM information_schema.tables"
                   " WHERE table_schema = current_schema()")
    with backend.connection() as cur:
        tables = sorted(str(r[0]) for r in cur.all(listed))
        return {t: sorted(repr(tuple(r)) for r in cur.all(f"SELECT * FROM {t}"))  # noqa: S608
                for t in tables if t not in ("api_tokens", "web_sessions")}


def test_explain_through_the_api_writes_nothing(site: Site) -> None:
    users.add(site.store, SETUP, "carol@example.com")
    before = _every_row(site)
    assert before["users"] and before["audit_log"]  # the dump sees the store's rows
    for token in (site.auditor_token, site.admin_token):
        answer = site.api(token).post("/api/v1/explain", json={
            "sender": "carol@example.com", "subject": "[encrypt] hello",
            "recipients": ["bob@example.com", "dave@partner.test", "new@example.com"]})
        assert answer.status_code == 200, answer.text
    assert _every_row(site) == before


def test_removing_an_account_ends_its_sessions_and_tokens_at_once(site: Site) -> None:
    # On SQLite this rests on PRAGMA foreign_keys (ON DELETE CASCADE), set per connection.
    client = site.client()
    sign_in(client, "otto")
    assert client.get("/dashboard").status_code == 200
    accounts.remove(site.store, SETUP, "otto")
    assert client.get("/dashboard").headers["location"] == "/login"
    assert site.api(site.auditor_token).get("/api/v1/domains").status_code == 401


def _with_web(site: Site, **web: Any) -> cfg.Config:
    return dataclasses.replace(site.app_config,
                               web=dataclasses.replace(site.app_config.web, **web))


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_host_not_served_here_is_refused_before_anything_runs(site: Site) -> None:
    # DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1, asks the admin
    # interface on loopback; its requests carry Host: evil.example.
    for url in ("http://evil.example", "http://evil.example:8080", "https://evil.example"):
        page = site.client(url).get("/login")
        assert page.status_code == 400 and "[web] allowed_hosts" in page.text
        _secured(page.headers)
        api = site.api(site.admin_token, url).get("/api/v1/domains")
        assert api.status_code == 400
        # A change is refused the same way, and changes nothing.
        put = site.api(site.admin_token, url).put("/api/v1/settings/sign",
                                                  json={"value": "no"})
        assert put.status_code == 400
    assert site.api(site.admin_token).get("/api/v1/settings").json()["sign"] == {
        "value": "yes", "from": "default"}
    # The names the configuration allows, and the loopback ones always.
    for url in ("http://testserver", "http://TestServer.:8080", "http://localhost:8080",
                "http://127.0.0.1", "http://[::1]:8080"):
        assert site.client(url).get("/login").status_code == 200, url


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_allowed_hosts_from_listen_tls_names_and_star(site: Site, tmp_path: Any) -> None:
    config = _with_web(site, allowed_hosts=(), listen="192.0.2.8:8443")
    assert allowed_hosts(config) == {"localhost", "127.0.0.1", "::1", "192.0.2.8"}
    assert "0.0.0.0" not in (allowed_hosts(_with_web(site, listen="0.0.0.0:8080")) or {"*"})
    # The names a browser checks the server's certificate against are its names.
    ident = TestCA().issue("admin@a.test")
    cert = (x509.CertificateBuilder().subject_name(ident.cert.subject)
            .issuer_name(ident.cert.issuer).public_key(ident.key.public_key())
            .serial_number(7).not_valid_before(ident.cert.not_valid_before_utc)
            .not_valid_after(ident.cert.not_valid_after_utc)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("Gate.Example.COM"),
                x509.IPAddress(ipaddress.ip_address("2001:db8::7"))]), critical=False)
            .sign(ident.key, hashes.SHA256()))
    pem = tmp_path / "tls.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with_tls = _with_web(site, tls_cert=str(pem), allowed_hosts=("proxy.example",))
    assert (allowed_hosts(with_tls) or set()) >= {"gate.example.com", "2001:db8::7",
                                                  "proxy.example", "localhost"}
    client = TestClient(build_app(site.store, with_tls), base_url="http://[2001:db8::7]")
    assert client.get("/login").status_code == 200
    assert TestClient(build_app(site.store, with_tls),
                      base_url="http://evil.example").get("/login").status_code == 400
    # "*" answers to any name (a proxy that rewrites Host, tests).
    anything = TestClient(build_app(site.store, _with_web(site, allowed_hosts=("*",))),
                          base_url="http://evil.example")
    assert anything.get("/login").status_code == 200


def test_allowed_hosts_configuration_is_checked() -> None:
    assert cfg.loads('[web]\nallowed_hosts = ["gate.example.com", "2001:db8::1", "*"]\n'
                     ).web.allowed_hosts == ("gate.example.com", "2001:db8::1", "*")
    with pytest.raises(cfg.ConfigError, match="allowed_hosts"):
        cfg.loads('[web]\nallowed_hosts = ["https://gate.example.com/"]\n')


def test_host_name_of_a_host_header() -> None:
    assert host_name("Gate.Example.com.:8443") == "gate.example.com"
    assert host_name("[2001:DB8::1]:8080") == "2001:db8::1"
    assert host_name("[::1]") == "::1"
    assert host_name("localhost") == "localhost"
