"""The REST API's certificates, roots, CRLs and CAs on SQLite and PostgreSQL: each endpoint's
success (as the CLI's --json shows it), an auditor's 403 before anything is read, bad input
as 400 naming the field, an unknown row as 404, and the audit row in the change's own
transaction. PKCS#12 export and CA creation take the token account's password again."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from starlette.testclient import TestClient

from smimegate.cli.main import main
from smimegate.pki.pkcs12 import make_pkcs12
from smimegate.service import audit, cas
from smimegate.service import certificates as cert_service
from smimegate.service import crls as crl_service
from smimegate.store import StoreUnavailable
from smimegate.store.accounts import AccountStore
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import PASSWORD, SETUP, Site

CA_NAME = "Web CA"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_ca(site: Site) -> str:
    """A default built-in CA (EC, fast) and one certificate it issued; its fingerprint."""
    cas.create(site.store, SETUP, cas.CaOptions("Web Root", CA_NAME, key_type="ec-p256",
                                                default=True))
    done = cert_service.issue(site.store, site.app_config, SETUP, cert_service.IssueOptions(
        "bob@example.com", key_type="ec-p256"))
    return done.issued.record.fingerprint


def cli_json(site: Site, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(["-c", str(site.config_path), *argv]) == 0
    return json.loads(capsys.readouterr().out)


def bad(answer: Any, field: str, status: int = 400) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] and answer.json()["field"] == field, answer.json()


def api_actions(site: Site) -> list[tuple[str, str, str]]:
    return [(e.action, e.target, e.via) for e in audit.entries(site.store) if e.via == "api"]


def test_certificates_search_sort_and_pages(site: Site,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with_ca(site)
    for email in ("carol@example.com", "dave@example.com"):
        cert_service.issue(site.store, site.app_config, SETUP,
                           cert_service.IssueOptions(email, key_type="ec-p256"))
    api = site.api(site.auditor_token)
    whole = api.get("/api/v1/certificates")
    assert whole.json() == cli_json(site, capsys, "cert", "list", "--json")
    assert whole.headers["x-total-count"] == str(len(whole.json())) == "5"  # 2 CA + 3
    found = api.get("/api/v1/certificates", params={"q": "EXAMPLE.com", "sort": "emails",
                                                     "order": "desc", "limit": 2, "offset": 1})
    assert found.headers["x-total-count"] == "3"
    assert [c["emails"] for c in found.json()] == [["carol@example.com"], ["bob@example.com"]]
    assert [c["emails"] for c in api.get("/api/v1/certificates?email=Dave@example.com").json()
            ] == [["dave@example.com"]]
    bad(api.get("/api/v1/certificates?sort=colour"), "sort")
    bad(api.get("/api/v1/certificates?order=up"), "order")
    bad(api.get("/api/v1/certificates?limit=0"), "limit")
    bad(api.get("/api/v1/certificates?offset=-1"), "offset")


def test_certificate_detail_and_export(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    fingerprint = with_ca(site)
    api = site.api(site.auditor_token)
    detail = api.get(f"/api/v1/certificates/{fingerprint[:12]}").json()
    shown = cli_json(site, capsys, "cert", "show", fingerprint, "--json")
    assert {k: v for k, v in detail.items() if k != "path"} == shown
    assert detail["trusted"] is True and detail["trust_info"] is None
    assert [(p["subject"].split(",")[0], p["trusted_root"]) for p in detail["path"]] == [
        (f"CN={CA_NAME}", False), ("CN=Web Root", True)]
    pem = api.get(f"/api/v1/certificates/{fingerprint}/export")
    assert pem.headers["content-type"].startswith("application/pem-certificate-chain")
    cert = x509.load_pem_x509_certificate(pem.content)
    der = api.get(f"/api/v1/certificates/{fingerprint}/export?format=der").content
    assert cert.public_bytes(Encoding.DER) == der
    bad(api.get(f"/api/v1/certificates/{fingerprint}/export?format=pfx"), "format")
    bad(api.get("/api/v1/certificates/xyz"), "fingerprint")
    missing = api.get("/api/v1/certificates/" + "ab" * 32)
    assert missing.status_code == 404 and "no certificate" in missing.json()["error"]
    assert api.get("/api/v1/certificates/" + "ab" * 32 + "/export").status_code == 404


def test_import_every_format(site: Site) -> None:
    api = site.api(site.admin_token)
    ca = TestCA(key_kind="ec-p256")
    leaf = ca.issue("erin@example.com", "ec-p256")
    answer = api.post("/api/v1/certificates/import",
                      json={"data": b64(ca.cert_pem() + leaf.cert_pem()), "name": "two.pem"})
    assert answer.status_code == 200, answer.text
    assert [i["status"] for i in answer.json()["items"]] == ["imported", "imported"]
    assert answer.json()["summary"].startswith("two.pem: 2 new")
    p12 = make_pkcs12(leaf.key, leaf.cert, [ca.cert], "p12 secret", profile_name="modern")
    bad(api.post("/api/v1/certificates/import", json={"data": b64(p12)}), "password")
    keyed = api.post("/api/v1/certificates/import",
                     json={"data": b64(p12), "password": "p12 secret"}).json()
    item = next(i for i in keyed["items"] if i["certificate"]["emails"] == ["erin@example.com"])
    assert item["status"] == "already stored, private key stored"
    assert item["certificate"]["has_key"] is True
    bad(api.post("/api/v1/certificates/import", json={"data": b64(p12), "password": "wrong"}),
        "data")
    bad(api.post("/api/v1/certificates/import", json={"data": b64(b"no certificate")}), "data")
    bad(api.post("/api/v1/certificates/import", json={"data": "not base64!"}), "data")
    bad(api.post("/api/v1/certificates/import", json={}), "data")
    bad(api.post("/api/v1/certificates/import", json={"data": "AA==", "pasword": "x"}),
        "pasword")
    bad(api.post("/api/v1/certificates/import", json=["data"]), "body")
    assert [a for a, _, _ in api_actions(site)] == ["cert.import"] * 3


def test_issue(site: Site) -> None:
    with_ca(site)
    api = site.api(site.admin_token)
    answer = api.post("/api/v1/certificates/issue", json={
        "email": "Frank@example.com", "key_type": "ec-p256", "days": 30, "cn": "Frank",
        "org": "Example Ltd", "crl_dp": ["http://pki.example.com/ca.crl"],
        "generate_password": True})
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    assert issued["certificate"]["emails"] == ["frank@example.com"]
    assert issued["ca"] == CA_NAME and issued["user_created"] is True
    assert issued["published"] is None and len(issued["password"]) >= 16
    stored = site.store.get_certificate(issued["certificate"]["fingerprint"])
    assert stored.has_key and "CN=Frank" in stored.subject
    assert api_actions(site) == [("cert.issue", stored.fingerprint, "api")]
    for body, field in [
        ({"key_type": "ec-p256"}, "email"),
        ({"email": "x@example.com", "key_type": "dsa"}, "key_type"),
        ({"email": "x@example.com", "days": 0}, "days"),
        ({"email": "x@example.com", "days": "30"}, "days"),
        ({"email": "x@example.com", "crl_dp": ["pki.example.com"]}, "crl_dp"),
        ({"email": "x@example.com", "crl_dp": "http://x"}, "crl_dp"),
        ({"email": "x@example.com", "password": "pw", "generate_password": True}, "password"),
        ({"email": "x@example.com", "send_pfx": True}, "password"),
        ({"email": "not an address"}, "email"),
    ]:
        bad(api.post("/api/v1/certificates/issue", json=body), field)
    unknown_ca = api.post("/api/v1/certificates/issue",
                          json={"email": "x@example.com", "ca": "Nope", "key_type": "ec-p256"})
    assert unknown_ca.status_code == 409 and "Nope" in unknown_ca.json()["error"]
    assert len(site.store.list_certificates("x@example.com")) == 0


def test_revoke(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    fingerprint = with_ca(site)
    api = site.api(site.admin_token)
    bad(api.post(f"/api/v1/certificates/{fingerprint}/revoke", json={"reason": "bored"}),
        "reason")
    answer = api.post(f"/api/v1/certificates/{fingerprint}/revoke",
                      json={"reason": "keyCompromise", "next_update_days": 7})
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["ca"] == CA_NAME and done["reason"] == "key-compromise"
    assert done["crl"]["entries"] == 1 and done["crl"]["ca"] == CA_NAME
    assert done["crl"] in cli_json(site, capsys, "crl", "list", "--json")
    assert api_actions(site) == [("cert.revoke", done["serial"].upper().lstrip("0"), "api")]
    assert api.post("/api/v1/certificates/" + "cd" * 32 + "/revoke").status_code == 404
    foreign = TestCA(key_kind="ec-p256").issue("gina@example.com", "ec-p256").cert
    record = site.store.add_certificate(foreign)
    refused = api.post(f"/api/v1/certificates/{record.fingerprint}/revoke")
    assert refused.status_code == 409 and "not issued by a built-in CA" in refused.json()["error"]


def test_pkcs12_export_takes_the_password_again(site: Site) -> None:
    fingerprint = with_ca(site)
    api = site.api(site.admin_token)
    url = f"/api/v1/certificates/{fingerprint}/pkcs12"
    bad(api.post(url, json={"password": "p12 secret"}), "reauth_password")
    bad(api.post(url, json={"password": "p12 secret", "reauth_password": "wrong password"}),
        "reauth_password")
    bad(api.post(url, json={"reauth_password": PASSWORD}), "password")
    bad(api.post(url, json={"password": "x", "profile": "ancient",
                            "reauth_password": PASSWORD}), "profile")
    # Nothing exported, nothing re-authenticated; the wrong password is on record.
    assert api_actions(site) == [("session.reauth-failed", "alice", "api")]
    answer = api.post(url, json={"password": "p12 secret", "reauth_password": PASSWORD})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pkcs12"
    assert answer.headers["cache-control"] == "no-store"
    key, cert, chain = pkcs12.load_key_and_certificates(answer.content, b"p12 secret")
    assert cert is not None and key is not None and len(chain) == 2
    assert cert.public_bytes(Encoding.DER) == site.store.get_certificate(fingerprint).der
    assert api_actions(site) == [("cert.export-key", fingerprint, "api"),
                                 ("session.reauth", "alice", "api"),
                                 ("session.reauth-failed", "alice", "api")]
    assert api.post("/api/v1/certificates/" + "ab" * 32 + "/pkcs12",
                    json={"password": "x", "reauth_password": PASSWORD}).status_code == 404
    foreign = site.store.add_certificate(TestCA(key_kind="ec-p256").cert)
    keyless = api.post(f"/api/v1/certificates/{foreign.fingerprint}/pkcs12",
                       json={"password": "x", "reauth_password": PASSWORD})
    assert keyless.status_code == 409 and "no private key" in keyless.json()["error"]


def test_repeated_wrong_passwords_are_throttled(site: Site) -> None:
    fingerprint = with_ca(site)
    api = site.api(site.admin_token)
    body = {"password": "x", "reauth_password": "wrong password"}
    codes = [api.post(f"/api/v1/certificates/{fingerprint}/pkcs12", json=body).status_code
             for _ in range(4)]
    assert codes == [400, 400, 400, 429]  # conftest: login_failures_per_user = 3
    right = {"password": "x", "reauth_password": PASSWORD}
    assert api.post(f"/api/v1/certificates/{fingerprint}/pkcs12", json=right).status_code == 429


def test_roots(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    api = site.api(site.admin_token)
    ca = TestCA(key_kind="ec-p256")
    added = api.post("/api/v1/roots", json={"data": b64(ca.cert_pem()), "name": "root.pem"})
    assert added.status_code == 201, added.text
    (root,) = added.json()["trusted"]
    assert root["trusted_root"] is True
    listed = api.get("/api/v1/roots")
    assert listed.json() == cli_json(site, capsys, "root", "list", "--json")
    assert listed.headers["x-total-count"] == "1"
    leaf = ca.issue("hank@example.com", "ec-p256")
    bad(api.post("/api/v1/roots", json={"data": b64(leaf.cert_pem())}), "data")
    bad(api.post("/api/v1/roots", json={"data": b64(leaf.key_pem() + leaf.cert_pem())}), "data")
    assert api.delete(f"/api/v1/roots/{root['fingerprint']}").status_code == 204
    assert api.delete(f"/api/v1/roots/{root['fingerprint']}").status_code == 404
    bad(api.delete("/api/v1/roots/nothex"), "fingerprint")
    assert site.store.list_roots() == []
    assert api_actions(site) == [("root.remove", root["fingerprint"], "api"),
                                 ("root.add", root["fingerprint"], "api")]


def test_crls(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    with_ca(site)
    api = site.api(site.admin_token)
    made = api.post("/api/v1/crls", json={"revoke": ["01:AB"], "reason": "superseded",
                                          "next_update_days": 30})
    assert made.status_code == 201, made.text
    assert made.json()["entries"] == 1 and made.json()["ca"] == CA_NAME
    assert made.json() in cli_json(site, capsys, "crl", "list", "--json")
    bad(api.post("/api/v1/crls", json={"revoke": ["zz"]}), "revoke")
    bad(api.post("/api/v1/crls", json={"next_update_days": 0}), "next_update_days")
    bad(api.post("/api/v1/crls", json={"update_existing": "yes"}), "update_existing")
    assert api.post("/api/v1/crls", json={"ca": "Nope"}).status_code == 409
    listed = api.get("/api/v1/crls?sort=number&order=desc")
    assert [c["number"] for c in listed.json()] == sorted(
        (c["number"] for c in listed.json()), reverse=True)
    # Import: the CA's own current CRL again, and junk.
    _, der = crl_service.export(site.store, None, "der")
    imported = api.post("/api/v1/crls/import", json={"data": b64(der), "name": "ours.crl"})
    assert imported.status_code == 201, imported.text
    assert imported.json()["imported"][0]["issuer"] == made.json()["issuer"]
    bad(api.post("/api/v1/crls/import", json={"data": b64(b"junk")}), "data")
    # Download now: no distribution points in the store's certificates here.
    fetched = api.post("/api/v1/crls/fetch", json={})
    assert fetched.status_code == 200 and fetched.json()["summary"] == "no URLs"
    bad(api.post("/api/v1/crls/fetch", json={"urls": ["ftp://example.com/x.crl"]}), "url")
    bad(api.post("/api/v1/crls/fetch", json={"urls": "http://x"}), "urls")
    assert [a for a, _, _ in api_actions(site)] == ["crl.fetch", "crl.import", "crl.create"]


def test_cas(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    api = site.api(site.admin_token)
    body = {"root_cn": "API Root", "intermediate_cn": "API CA", "key_type": "ec-p256",
            "signature_algorithm": "sha256-ecdsa", "default": True}
    bad(api.post("/api/v1/cas", json=body), "reauth_password")
    bad(api.post("/api/v1/cas", json={**body, "key_type": "dsa", "reauth_password": PASSWORD}),
        "key_type")
    bad(api.post("/api/v1/cas", json={**body, "root_cn": "", "reauth_password": PASSWORD}),
        "root_cn")
    bad(api.post("/api/v1/cas", json={**body, "days": -1, "reauth_password": PASSWORD}), "days")
    assert site.store.list_cas() == []
    made = api.post("/api/v1/cas", json={**body, "reauth_password": PASSWORD})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "API CA" and made.json()["default"] is True
    assert api.get("/api/v1/cas").json() == cli_json(site, capsys, "ca", "list", "--json")
    again = api.post("/api/v1/cas", json={**body, "reauth_password": PASSWORD})
    assert again.status_code == 409 and "exists already" in again.json()["error"]
    chain = site.api(site.auditor_token).get("/api/v1/cas/API CA/chain")
    assert chain.status_code == 200 and b"PRIVATE" not in chain.content
    assert [c.subject.rfc4514_string().split(",")[0]
            for c in x509.load_pem_x509_certificates(chain.content)] == ["CN=API CA",
                                                                         "CN=API Root"]
    assert api.get("/api/v1/cas/Nope/chain").status_code == 404
    assert [a for a, _, _ in api_actions(site)] == ["session.reauth", "ca.create",
                                                     "session.reauth"]


def test_an_auditor_is_refused_every_pki_change_before_its_input_is_read(site: Site) -> None:
    fingerprint = with_ca(site)
    api = site.api(site.auditor_token)
    before = audit.entries(site.store)
    for method, path in [
        ("POST", "/api/v1/certificates/import"), ("POST", "/api/v1/certificates/issue"),
        ("POST", f"/api/v1/certificates/{fingerprint}/pkcs12"),
        ("POST", f"/api/v1/certificates/{fingerprint}/revoke"), ("POST", "/api/v1/roots"),
        ("DELETE", f"/api/v1/roots/{fingerprint}"), ("POST", "/api/v1/crls"),
        ("POST", "/api/v1/crls/import"), ("POST", "/api/v1/crls/fetch"),
        ("POST", "/api/v1/cas"),
    ]:
        # A body that is not even JSON: refused for the role before it is parsed.
        answer = api.request(method, path, content=b"{nope",
                             headers={"content-type": "application/json"})
        assert answer.status_code == 403, (method, path, answer.text)
        assert "auditor" in answer.json()["error"]
    assert audit.entries(site.store) == before
    assert site.api(site.auditor_token).get(
        f"/api/v1/certificates/{fingerprint}/export").status_code == 200


def test_no_change_without_its_audit_row(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    fingerprint = with_ca(site)
    certs, crls = len(site.store.list_certificates()), len(site.store.list_crls())

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("audit log not writable (test)")

    monkeypatch.setattr(AccountStore, "add_audit", broken)
    api: TestClient = site.api(site.admin_token)
    ca = TestCA(key_kind="ec-p256")
    for path, body in [
        ("/api/v1/certificates/issue", {"email": "ivan@example.com", "key_type": "ec-p256"}),
        ("/api/v1/certificates/import", {"data": b64(ca.cert_pem())}),
        (f"/api/v1/certificates/{fingerprint}/revoke", {}),
        ("/api/v1/roots", {"data": b64(ca.cert_pem())}),
        ("/api/v1/crls", {"revoke": ["0A"]}),
    ]:
        assert api.post(path, json=body).status_code == 503, path
    assert api.delete(f"/api/v1/roots/{site.store.list_roots()[0].fingerprint}"
                      ).status_code == 503
    monkeypatch.undo()
    assert len(site.store.list_certificates()) == certs
    assert len(site.store.list_crls()) == crls and len(site.store.list_roots()) == 1
    assert site.store.list_users() and not site.store.list_certificates("ivan@example.com")
