"""The PKI tabs' forms in-process: issue, import (upload), export (PKCS#12 only after the
password is given again, never to auditors), revoke (confirmed), roots add/remove, CRL
create/import, CA create (re-authenticated), queue retry/delete, the SMS test message; bad
input beside its field with nothing stored; every change in the audit log; no change by GET
or without the CSRF token."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.service import audit, cas
from smimegate.service.actor import Actor
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import PASSWORD, Site, sign_in

SETUP = Actor("setup", "admin", "cli", "local")


def _ca(site: Site) -> None:
    cas.create(site.store, SETUP, cas.CaOptions("Web Root", "Web Issuing", key_type="ec-p256"))


def _actions(site: Site) -> list[str]:
    return [e.action for e in audit.entries(site.store) if e.actor == "alice"]


def test_issue_export_and_revoke_through_the_forms(site: Site) -> None:
    _ca(site)
    client = site.client()
    csrf = sign_in(client, "alice")
    bad = client.post("/certificates", data={"csrf": csrf, "action": "issue",
                                             "email": "not an address", "days": "30"})
    assert bad.status_code == 400
    assert 'id="issue-e-email" role="alert">email: not a mailbox address' in bad.text
    assert site.store.list_certificates() == [c for c in site.store.list_certificates()
                                              if "Web" in c.subject]  # nothing issued
    done = client.post("/certificates", data={
        "csrf": csrf, "action": "issue", "email": "dave@example.com", "days": "30",
        "key_type": "ec-p256", "generate_password": "yes", "pfx_profile": "modern"})
    assert done.status_code == 200, done.text
    assert "CN=dave@example.com by CA Web Issuing" in done.text and "(shown once)" in done.text
    record = next(r for r in site.store.list_certificates() if r.emails == ("dave@example.com",)
                  or list(r.emails) == ["dave@example.com"])
    page = f"/certificates/{record.fingerprint}"
    pem = client.post(page, data={"csrf": csrf, "format": "pem"})
    assert pem.headers["content-type"].startswith("application/pem-certificate-chain")
    # A PKCS#12 needs the password again; the form's fields are carried through it.
    asked = client.post(page, data={"csrf": csrf, "format": "pfx", "password": "pfx secret 1"})
    assert asked.status_code == 401 and 'name="reauth_password"' in asked.text
    assert "cert.export-key" not in _actions(site)
    pfx = client.post(page, data={"csrf": csrf, "format": "pfx", "password": "pfx secret 1",
                                  "profile": "modern", "reauth_password": PASSWORD})
    assert pfx.headers["content-type"] == "application/pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(pfx.content, b"pfx secret 1")
    assert cert is not None and key is not None
    serial = f"{cert.serial_number:X}"
    ask = client.post("/certificates", data={"csrf": csrf, "action": "revoke", "serial": serial})
    assert "Revoke serial" in ask.text and 'name="confirm" value="yes"' in ask.text
    assert "cert.revoke" not in _actions(site)
    revoked = client.post("/certificates", data={"csrf": csrf, "action": "revoke",
                                                 "serial": serial, "confirm": "yes"})
    assert f"Revoked serial {serial}" in revoked.text
    assert _actions(site)[:4] == ["cert.revoke", "cert.export-key", "session.reauth",
                                  "cert.issue"]


def test_an_auditor_never_gets_a_private_key(site: Site) -> None:
    _ca(site)
    client = site.client()
    csrf = sign_in(client, "otto")
    record = site.store.list_certificates()[0]
    refused = client.post(f"/certificates/{record.fingerprint}",
                          data={"csrf": csrf, "format": "pfx", "password": "x" * 12,
                                "reauth_password": PASSWORD})
    assert refused.status_code == 403
    assert "Issue a certificate" not in client.get("/certificates").text  # no forms shown
    assert client.get(f"/certificates/{record.fingerprint}.pem").status_code == 200


def test_import_upload_roots_and_crls(site: Site) -> None:
    ca = TestCA("Upload Root")
    erin = ca.issue("erin@example.com")
    client = site.client()
    csrf = sign_in(client, "alice")
    junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    answer = client.post("/certificates", data={"csrf": csrf, "action": "import"},
                         files={"file": ("bundle.pem", erin.cert_pem() + junk)})
    assert answer.status_code == 200 and "imported:" in answer.text
    assert "bundle.pem" in answer.text and 'class="problem"' in answer.text
    none = client.post("/certificates", data={"csrf": csrf, "action": "import"})
    assert none.status_code == 400 and "choose a file" in none.text
    roots = client.post("/roots", data={"csrf": csrf},
                        files={"file": ("root.pem", ca.cert_pem() + erin.cert_pem())})
    assert "Trusted root" in roots.text and "is not a CA certificate" in roots.text
    fingerprint = site.store.list_roots()[0].fingerprint
    ask = client.post("/roots", data={"csrf": csrf, "action": "remove",
                                      "fingerprint": fingerprint})
    assert "Stop trusting" in ask.text and site.store.list_roots()
    client.post("/roots", data={"csrf": csrf, "action": "remove", "fingerprint": fingerprint,
                                "confirm": "yes"})
    assert site.store.list_roots() == []
    crl = client.post("/crls", data={"csrf": csrf, "action": "import"},
                      files={"file": ("x.crl", b"not a crl")})
    assert crl.status_code == 400 and site.store.list_crls() == []
    assert _actions(site)[:3] == ["root.remove", "root.add", "cert.import"]
    assert "crl.import" not in _actions(site)


def test_ca_create_needs_the_password_again_and_crl_create(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    bad = client.post("/ca", data={"csrf": csrf, "root_cn": "R", "intermediate_cn": "I",
                                   "days": "0"})
    assert bad.status_code == 400 and 'id="ca-e-days"' in bad.text
    form = {"csrf": csrf, "root_cn": "Form Root", "intermediate_cn": "Form Issuing",
            "key_type": "ec-p256"}
    asked = client.post("/ca", data=form)
    assert asked.status_code == 401 and site.store.list_cas() == []
    made = client.post("/ca", data={**form, "reauth_password": PASSWORD})
    assert "CA Form Issuing created" in made.text
    chain = client.get("/ca/Form Issuing.pem")
    assert chain.text.count("BEGIN CERTIFICATE") == 2 and "PRIVATE" not in chain.text
    crl = client.post("/crls", data={"csrf": csrf, "action": "create", "revoke": "1F 20",
                                     "reason": "superseded"})
    assert "2 revoked" in crl.text
    bad_serial = client.post("/crls", data={"csrf": csrf, "action": "create", "revoke": "xyz"})
    assert bad_serial.status_code == 400 and 'id="create-e-revoke"' not in bad_serial.text
    assert "ca.create" in _actions(site) and "crl.create" in _actions(site)


def test_queue_retry_delete_and_sms_test(site: Site, tmp_path: object) -> None:
    ident = site.store.enqueue("sms", b"not a job")
    client = site.client()
    csrf = sign_in(client, "alice")
    assert client.get("/queues?kind=pfx-mail").text.count(">sms<") == 0
    retried = client.post("/queues", data={"csrf": csrf, "action": "retry", "id": str(ident)})
    assert retried.status_code == 200 and f"Queue item {ident}" in retried.text
    ask = client.post("/queues", data={"csrf": csrf, "action": "delete", "id": str(ident)})
    assert "Delete queue item" in ask.text and site.store.list_queue()
    client.post("/queues", data={"csrf": csrf, "action": "delete", "id": str(ident),
                                 "confirm": "yes"})
    assert site.store.list_queue() == []
    bad = client.post("/sms", data={"csrf": csrf, "phone": "12ab"})
    assert bad.status_code == 400 and 'id="sms-e-phone"' in bad.text
    assert {"queue.retry", "queue.delete"} <= set(_actions(site))


def test_no_pki_change_by_get_without_csrf_or_by_an_auditor(site: Site) -> None:
    client = site.client()
    csrf = sign_in(client, "alice")
    assert client.get("/certificates?action=issue&email=x@example.com").status_code == 200
    forged = client.post("/ca", data={"csrf": "forged" * 7, "root_cn": "R",
                                      "intermediate_cn": "I", "reauth_password": PASSWORD})
    assert forged.status_code == 403 and site.store.list_cas() == []
    auditor = site.client()
    token = sign_in(auditor, "otto")
    for path, data in (("/crls", {"action": "create"}), ("/roots", {"action": "remove"}),
                       ("/queues", {"action": "delete", "id": "1"}), ("/sms", {"phone": "+1"}),
                       ("/certificates", {"action": "issue", "email": "x@example.com"})):
        assert auditor.post(path, data={"csrf": token, **data}).status_code == 403, path
    assert csrf and site.store.list_crls() == [] and site.store.list_cas() == []


def test_the_pages_decide_trust_with_the_configured_revocation_mode(site: Site) -> None:
    ca = TestCA("Mode Root")
    site.store.add_root(ca.cert)
    record = site.store.add_certificate(ca.issue("erin@partner.test", days=30).cert)
    default = site.client()
    sign_in(default, "alice")
    assert "not trusted" not in _row(default.get("/certificates").text, "erin@partner.test")
    # Under require, a certificate no CRL covers is not trusted: the CLI says so
    # (cert list/show with [crl] revocation_mode), and so must the pages.
    site.app_config = dataclasses.replace(site.app_config, crl=dataclasses.replace(
        site.app_config.crl, revocation_mode="require"))
    strict = site.client()
    sign_in(strict, "alice")
    row = _row(strict.get("/certificates").text, "erin@partner.test")
    assert "not trusted" in row and "revocation" in row, row
    detail = strict.get(f"/certificates/{record.fingerprint}").text
    assert "Why not trusted" in detail and "revocation" in detail


def _row(html: str, email: str) -> str:
    """The table row of the certificate list that names ``email``."""
    for row in html.split("<tr")[1:]:
        if email in row:
            return row.split("</tr>")[0]
    raise AssertionError(f"no row for {email} in:\n{html}")
