"""The admin pages in-process: sign-in, cookies, CSRF, roles, the Settings / Domains / Users
forms with the CLI's rules and the error beside the field, headers, throttling, the audit
page."""

from __future__ import annotations

import logging
import re

import pytest
from cryptography import x509

from smimegate.cli.main import main
from smimegate.service import accounts, audit, domains, sessions, settings
from smimegate.store.base import StoreError, StoreUnavailable
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import PASSWORD, Site, csrf_of, sign_in

TABS = ("Dashboard", "Certificates", "Roots", "CRLs", "CA", "SMS", "Settings", "Domains",
        "Users", "Queues", "Logs")


def test_login_page_and_redirects(site: Site) -> None:
    client = site.client()
    assert client.get("/dashboard").headers["location"] == "/login"
    assert client.get("/").headers["location"] == "/dashboard"
    page = client.get("/login").text
    assert '<label for="user">User</label>' in page
    assert '<label for="password">Password</label>' in page
    assert '<button type="submit">Sign in</button>' in page
    token = csrf_of(page)
    wrong = client.post("/login", data={"csrf": token, "user": "alice", "password": "nope" * 4})
    assert wrong.status_code == 401
    assert re.search(r'class="error" role="alert">wrong user name, password or code<', wrong.text)
    assert "nope" not in wrong.text


def test_session_cookie_over_http_and_a_new_id_at_each_sign_in(site: Site) -> None:
    client = site.client()
    client.cookies.set("smimegate-session", "planted-by-an-attacker" * 2, domain="testserver.local")
    csrf = sign_in(client, "alice")
    first = client.cookies["smimegate-session"]
    assert first != "planted-by-an-attacker" * 2
    cookie = next(c for c in client.cookies.jar if c.name == "smimegate-session")
    assert not cookie.secure and cookie.path == "/"
    # Signed in, /login goes to the dashboard; after signing out a new sign-in gets a new id.
    assert client.get("/login").headers["location"] == "/dashboard"
    client.post("/logout", data={"csrf": csrf})
    sign_in(client, "alice")
    assert client.cookies["smimegate-session"] != first
    answer = client.get("/dashboard")
    assert answer.status_code == 200
    assert all(f">{tab}</a>" in answer.text for tab in TABS)
    header = client.post("/login", data={}).headers.get("set-cookie", "")
    assert "smimegate-login" in header


def test_https_cookies_are_host_prefixed_and_secure(site: Site) -> None:
    client = site.client("https://testserver")
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "user": "alice", "password": PASSWORD})
    set_cookie = answer.headers["set-cookie"]
    assert "__Host-smimegate-session=" in set_cookie
    session_cookie = [c for c in answer.headers.get_list("set-cookie")
                      if c.startswith("__Host-smimegate-session=")][0].lower()
    for attribute in ("secure", "httponly", "samesite=strict", "path=/"):
        assert attribute in session_cookie
    assert "domain=" not in session_cookie
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert client.get("/dashboard").status_code == 200


def test_security_headers_everywhere(site: Site) -> None:
    client = site.client()
    for path in ("/login", "/static/style.css", "/api/v1/openapi.json", "/api/v1/domains"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert "script-src 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    assert client.get("/login").headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in client.get("/login").headers
    # No inline script or style anywhere in our pages.
    csrf = sign_in(client, "alice")
    for path in ("/dashboard", "/settings", "/domains", "/domains/example.com", "/users",
                 "/users/bob@example.com", "/audit", "/certificates", "/roots", "/crls", "/ca",
                 "/queues", "/account"):
        html = client.get(path).text
        assert "<script" not in html and "style=" not in html and "<style" not in html, path
    assert csrf


def test_change_a_domain_property_and_inherit_it(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    answer = client.post("/domains/example.com", data={
        "csrf": csrf, "property": "encrypt_mode", "value": "mandatory", "action": "set"})
    assert answer.status_code == 200
    assert "encrypt_mode = mandatory at the domain level" in answer.text
    row = re.search(r'<tr id="p-encrypt_mode">.*?</tr>', answer.text, re.S)
    assert row and "mandatory" in row.group(0) and '<td class="from">domain</td>' in row.group(0)
    assert domains.show(site.store, "example.com").as_dict()["encrypt_mode"] == {
        "value": "mandatory", "from": "domain"}
    inherit = client.post("/domains/example.com", data={
        "csrf": csrf, "property": "encrypt_mode", "action": "inherit"})
    assert inherit.status_code == 200
    assert domains.show(site.store, "example.com")["encrypt_mode"].source == "default"
    again = client.post("/domains/example.com", data={
        "csrf": csrf, "property": "encrypt_mode", "action": "inherit"})
    assert again.status_code == 200 and "nothing to inherit" in again.text
    entry = audit.entries(site.store, search="encrypt_mode")[1]
    assert (entry.actor, entry.via, entry.action, entry.detail) == (
        "alice", "web", "domain.set", "encrypt_mode=mandatory")


def test_bad_values_are_shown_beside_the_field_and_nothing_is_stored(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    answer = client.post("/users/bob@example.com", data={
        "csrf": csrf, "property": "phone", "value": "0170 12", "action": "set"})
    assert answer.status_code == 400
    row = re.search(r'<tr id="p-phone">.*?</tr>', answer.text, re.S)
    assert row is not None
    assert 'aria-invalid="true"' in row.group(0) and "E.164" in row.group(0)
    assert 'value="0170 12"' in row.group(0)  # what was typed stays in the field
    assert site.store.get_user("bob@example.com").properties == {}
    trigger = client.post("/settings", data={
        "csrf": csrf, "property": "subject_trigger", "value": "(", "action": "set"})
    assert trigger.status_code == 400 and "not a valid regular expression" in trigger.text
    assert site.store.settings() == {}
    added = client.post("/domains", data={"csrf": csrf, "domain": "a.*.b", "locality": ""})
    assert added.status_code == 400
    assert re.search(r'id="ae-domain" role="alert">[^<]*a\.\*\.b', added.text)
    assert [d.name for d in site.store.list_domains()] == ["example.com"]
    ok = client.post("/domains", data={"csrf": csrf, "domain": "Partner.test",
                                       "smime": "deny", "locality": "", "encrypt_mode": ""})
    assert ok.status_code == 200 and "Domain rule partner.test added." in ok.text
    assert site.store.get_domain("partner.test").properties == {"smime": "deny"}


def test_csrf_token_is_required_for_every_change(site: Site) -> None:
    client = site.client()
    sign_in(client, "alice")
    for data in ({"property": "sign", "value": "no", "action": "set"},
                 {"csrf": "forged" * 8, "property": "sign", "value": "no", "action": "set"}):
        answer = client.post("/settings", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
        assert client.post("/domains/example.com/remove", data=data).status_code == 403
    assert site.store.settings() == {}
    assert [d.name for d in site.store.list_domains()] == ["example.com"]
    # A change from another site is refused before the form is read.
    other = client.post("/settings", data={"property": "sign"},
                        headers={"origin": "https://evil.example"})
    assert other.status_code == 403
    # No change over GET.
    assert client.get("/domains/example.com/remove").status_code == 405


def test_an_auditor_sees_everything_and_changes_nothing(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "otto")
    page = client.get("/domains/example.com").text
    assert "internal" in page and 'name="action"' not in page and "Remove" not in page
    assert "Add domain" not in client.get("/domains").text
    for path, data in [
        ("/domains/example.com", {"property": "sign", "value": "no", "action": "set"}),
        ("/domains/example.com", {"property": "sign", "value": "bad", "action": "set"}),
        ("/settings", {"property": "sign", "value": "no", "action": "set"}),
        ("/users/bob@example.com", {"property": "sign", "value": "no", "action": "set"}),
        ("/domains", {"domain": "x.test"}),
        ("/domains/example.com/remove", {}),
    ]:
        answer = client.post(path, data={"csrf": csrf, **data})
        assert answer.status_code == 403 and "auditor" in answer.text, path
    assert site.store.settings() == {}
    assert site.store.get_domain("example.com").properties == {"locality": "internal"}
    # Signing out is not a change.
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303


def test_sign_out_ends_the_session(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    kept = client.cookies["smimegate-session"]
    assert client.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    client.cookies.set("smimegate-session", kept)
    assert client.get("/dashboard").headers["location"] == "/login"


def test_sign_in_throttled_by_user_name(site: Site) -> None:
    client = site.client()  # [web] login_failures_per_user = 3 in the test configuration
    token = csrf_of(client.get("/login").text)
    for _ in range(3):
        assert client.post("/login", data={"csrf": token, "user": "alice",
                                           "password": "wrong password!"}).status_code == 401
    throttled = client.post("/login", data={"csrf": token, "user": "alice",
                                            "password": PASSWORD})
    assert throttled.status_code == 429 and "too many failed sign-ins" in throttled.text
    assert "smimegate-session" not in client.cookies
    sign_in(client, "otto")


def test_login_without_its_form_token_is_refused(site: Site) -> None:
    client = site.client()
    client.get("/login")
    answer = client.post("/login", data={"csrf": "x" * 43, "user": "alice",
                                         "password": PASSWORD})
    assert answer.status_code == 403 and "smimegate-session" not in client.cookies


def test_pages_show_effective_values_and_levels(site: Site) -> None:
    settings.set_property(site.store, domains_actor(), "sign", "no")
    client = site.client()
    sign_in(client, "otto")
    user = client.get("/users/bob@example.com").text
    sign = re.search(r'<tr id="p-sign">.*?</tr>', user, re.S)
    assert sign and ">no<" in sign.group(0) and '<td class="from">global</td>' in sign.group(0)
    locality = re.search(r'<tr id="p-locality">.*?</tr>', user, re.S)
    assert locality and '<td class="from">domain</td>' in locality.group(0)
    listing = client.get("/users?q=BOB").text
    assert "bob@example.com" in listing and "1 in all" in listing
    assert "0 in all" in client.get("/users?q=nobody").text
    assert client.get("/domains/nowhere.test").status_code == 404
    assert "No lines." in client.get("/logs").text
    sms = client.get("/sms").text
    assert "<dt>Transport</dt><dd>http</dd>" in sms and "https://sms.example/api/send" in sms
    audit_page = client.get("/audit?q=sign").text
    assert "settings.set" in audit_page
    dashboard = client.get("/dashboard").text
    assert "Domain rules" in dashboard and "reachable" in dashboard


def domains_actor():  # type: ignore[no-untyped-def]
    from tests.unit.web.conftest import SETUP
    return SETUP


def test_roots_crls_ca_and_queue_tabs_list_what_the_cli_lists(site: Site) -> None:
    config = str(site.config_path)
    assert main(["-c", config, "ca", "create", "--root-cn", "Tab Root", "--intermediate-cn",
                 "Tab Issuing CA", "--key-type", "ec-p256", "--signature-algorithm",
                 "sha256-ecdsa", "--default"]) == 0
    assert main(["-c", config, "crl", "create"]) == 0
    site.store.enqueue("sms", b"not a job")
    client = site.client()
    sign_in(client, "otto")
    assert "CN=Tab Root" in client.get("/roots").text
    ca = client.get("/ca").text
    assert "Tab Issuing CA" in ca and "ec-p256" in ca
    crls = client.get("/crls").text
    assert "CN=Tab Issuing CA" in crls and "current" in crls and ">yes<" in crls
    queue = client.get("/queues").text
    assert ">sms<" in queue and ">pending<" in queue
    assert "1 pending, 0 running, 0 failed" in client.get("/dashboard").text
    assert "<dt>Queued SMS</dt><dd>1 pending, 0 running, 0 failed</dd>" in client.get("/sms").text


def test_account_page_ends_sessions_and_changes_the_password(site: Site) -> None:
    laptop, phone = site.client(), site.client()
    csrf = sign_in(laptop, "otto")
    sign_in(phone, "otto")
    page = laptop.get("/account").text
    assert page.count("End session") == 1 and "this session" in page
    other = re.search(r'name="session" value="([0-9a-f]{64})"', page)
    assert other is not None
    ended = laptop.post("/account/sessions", data={"csrf": csrf, "session": other.group(1)})
    assert ended.status_code == 200 and "Session ended." in ended.text
    assert phone.get("/dashboard").headers["location"] == "/login"
    assert laptop.post("/account/sessions", data={"csrf": csrf, "session": "0" * 64}
                       ).status_code == 404
    wrong = laptop.post("/account/password", data={
        "csrf": csrf, "current": "not it at all", "password": "a brand new password",
        "repeat": "a brand new password"})
    assert wrong.status_code == 400
    assert re.search(r'id="pe-current" role="alert">the current password is wrong<', wrong.text)
    differ = laptop.post("/account/password", data={
        "csrf": csrf, "current": PASSWORD, "password": "a brand new password",
        "repeat": "a brand new passwort"})
    assert differ.status_code == 400 and "the two new passwords differ" in differ.text
    short = laptop.post("/account/password", data={
        "csrf": csrf, "current": PASSWORD, "password": "short", "repeat": "short"})
    assert short.status_code == 400 and 'id="pe-password"' in short.text
    done = laptop.post("/account/password", data={
        "csrf": csrf, "current": PASSWORD, "password": "a brand new password",
        "repeat": "a brand new password"})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert laptop.get("/dashboard").headers["location"] == "/login"
    sign_in(laptop, "otto", "a brand new password")
    assert [e.action for e in audit.entries(site.store, search="otto")][:4] == [
        "session.sign-in", "admin.password", "admin.password-failed", "session.end"]


def test_certificate_detail_chain_and_pem(site: Site) -> None:
    ca = TestCA()
    site.store.add_root(ca.cert)
    dave = ca.issue("dave@example.com").cert
    record = site.store.add_certificate(dave)
    client = site.client()
    sign_in(client, "otto")
    listing = client.get("/certificates?q=dave").text
    assert f'href="/certificates/{record.fingerprint}"' in listing
    page = client.get(f"/certificates/{record.fingerprint}").text
    assert "dave@example.com" in page and "<dt>Trusted</dt><dd>yes</dd>" in page
    chain = page.split('<ol class="chain">')[1].split("</ol>")[0]
    # The path of ``cert show --json`` (service detail), its trusted root marked.
    assert chain.strip() == "<li>O=smimegate tests, CN=smimegate Test Root (trusted root)</li>"
    pem = client.get(f"/certificates/{record.fingerprint}.pem")
    assert pem.status_code == 200 and "attachment" in pem.headers["content-disposition"]
    assert x509.load_pem_x509_certificate(pem.content) == dave
    assert b"PRIVATE" not in pem.content
    assert client.get("/certificates/nothex").status_code == 400
    assert client.get(f"/certificates/{'0' * 64}").status_code == 404


def test_a_store_that_stops_answering_is_a_503_not_a_crash(site: Site) -> None:
    client = site.client()
    sign_in(client, "alice")
    api = site.api(site.admin_token)
    site.store.close()  # every call now raises StoreUnavailable, as with a dead database
    page = client.get("/domains")
    assert page.status_code == 503 and "Store unavailable" in page.text
    answer = api.get("/api/v1/domains/example.com")
    assert answer.status_code == 503 and answer.json()["error"]
    login = site.client().get("/login")
    assert login.status_code in (200, 503)


SECRET_PATH = "/var/lib/smimegate/where-the-store-lives.db"


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
@pytest.mark.parametrize("failure", [StoreUnavailable, StoreError])
def test_a_failing_store_tells_the_unauthenticated_nothing_of_itself(
        site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        failure: type[StoreError]) -> None:
    # Before a caller is known, a store error's text (a file path, a database host) is not
    # theirs to read (ASVS 7.4.1): it goes to the server's log.
    client = site.client()
    csrf = csrf_of(client.get("/login").text)

    def broken(*args: object, **kwargs: object) -> None:
        raise failure(f"SQLite store {SECRET_PATH}: disk I/O error")

    for name in ("current", "sign_in"):
        monkeypatch.setattr(sessions, name, broken)
    monkeypatch.setattr(accounts, "token_actor", broken)
    with caplog.at_level(logging.WARNING, logger="smimegate.web"):
        answers = [
            client.get("/domains"),
            client.post("/login", data={"csrf": csrf, "user": "alice", "password": PASSWORD}),
            site.api(site.admin_token).get("/api/v1/domains"),
            site.api(site.admin_token).get("/metrics"),
        ]
    for answer in answers:
        assert answer.status_code in (409, 503), answer.text
        assert SECRET_PATH not in answer.text and "log says why" in answer.text
    assert SECRET_PATH in caplog.text


def test_admins_page_adds_accounts_and_shows_secrets_once(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    asked = client.post("/admins", data={"csrf": csrf, "action": "add", "name": "Carol",
                                         "role": "auditor"})
    assert asked.status_code == 401 and "To change admin accounts or tokens" in asked.text
    added = client.post("/admins", data={"csrf": csrf, "action": "add", "name": "Carol",
                                         "role": "auditor", "reauth_password": PASSWORD})
    assert added.status_code == 200
    password = re.search(r'Password of carol: <code class="secret">([^<]+)</code>', added.text)
    assert password is not None
    sign_in(site.client(), "carol", password.group(1))
    assert "secret" not in client.get("/admins").text  # shown once, on that answer only
    bad = client.post("/admins", data={"csrf": csrf, "action": "add", "name": "bad name",
                                       "role": "admin"})
    assert bad.status_code == 400 and re.search(r'id="ae-name" role="alert">bad admin name', bad.text)
    token = client.post("/admins", data={"csrf": csrf, "action": "token", "name": "carol",
                                         "role": "auditor"})
    value = re.search(r'<code class="secret">(sgw_[^<]+)</code>', token.text)
    assert value is not None
    assert site.api(value.group(1)).get("/api/v1/domains").status_code == 200
    assert site.api(value.group(1)).put("/api/v1/settings/sign",
                                        json={"value": "no"}).status_code == 403
    refused = client.post("/admins", data={"csrf": csrf, "action": "token", "name": "carol",
                                           "role": "admin"})
    assert refused.status_code == 400 and "only be auditor tokens" in refused.text
    asked = client.post("/admins", data={"csrf": csrf, "action": "remove", "name": "carol"})
    assert asked.status_code == 200 and "Remove the account carol" in asked.text
    assert site.api(value.group(1)).get("/api/v1/domains").status_code == 200  # not yet
    last = client.post("/admins", data={"csrf": csrf, "action": "remove", "name": "alice",
                                        "confirm": "yes"})
    assert last.status_code == 400 and "last account with the admin role" in last.text
    gone = client.post("/admins", data={"csrf": csrf, "action": "remove", "name": "carol",
                                        "confirm": "yes"})
    assert gone.status_code == 200 and "Account carol removed." in gone.text
    assert site.api(value.group(1)).get("/api/v1/domains").status_code == 401
    # An auditor sees the accounts, no actions, and cannot post any.
    auditor = site.client()
    auditor_csrf = sign_in(auditor, "otto")
    listing = auditor.get("/admins").text
    assert "alice" in listing and "New API token" not in listing
    assert auditor.post("/admins", data={"csrf": auditor_csrf, "action": "token",
                                         "name": "otto", "role": "auditor"}).status_code == 403
