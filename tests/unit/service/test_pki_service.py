"""The PKI service functions the CLI, the web and the API share: certificates (import with
per-item errors, issue, export, revoke), roots, CRLs, CAs and the queue; every change and every
key export in the audit log, auditors refused changes and private keys (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smimegate import config as cfg
from smimegate.service import audit, cas, certificates, crls, queues, roots
from smimegate.service.errors import Forbidden, InvalidInput, OperationFailed
from smimegate.store import NotFound, SqlStore
from tests.helpers.testpki import TestCA
from tests.helpers.x509damage import crl_with_version
from tests.unit.service.conftest import ADMIN, AUDITOR

CONFIG = cfg.loads("")


def _actions(store: SqlStore) -> list[str]:
    return [e.action for e in reversed(audit.entries(store))]


def _ca(store: SqlStore) -> None:
    cas.create(store, ADMIN, cas.CaOptions("Test Root", "Test Issuing", key_type="ec-p256"))


def test_import_names_each_unreadable_item_and_stores_the_rest(store: SqlStore) -> None:
    ca = TestCA()
    alice = ca.issue("alice@example.com")
    bundle = alice.cert_pem() + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    report = certificates.import_data(store, ADMIN, bundle, "upload.pem")
    assert [i.status for i in report.items] == ["imported"]
    assert len(report.problems()) == 1 and "upload.pem" in report.problems()[0]
    again = certificates.import_data(store, ADMIN, alice.cert_pem(), "again.pem")
    assert [i.status for i in again.items] == ["already stored"]
    assert _actions(store) == ["cert.import"]  # the second import changed nothing
    with pytest.raises(Forbidden):
        certificates.import_data(store, AUDITOR, alice.cert_pem(), "x.pem")
    with pytest.raises(OperationFailed):
        certificates.import_data(store, ADMIN, b"not a certificate", "junk.bin")


def test_issue_export_and_revoke(store: SqlStore) -> None:
    _ca(store)
    with pytest.raises(InvalidInput) as bad:
        certificates.issue(store, CONFIG, ADMIN, certificates.IssueOptions("not-an-address"))
    assert bad.value.field == "email"
    before = len(store.list_certificates())
    result = certificates.issue(store, CONFIG, ADMIN, certificates.IssueOptions(
        "bob@example.com", days=30, key_type="ec-p256", password="pfx password"))
    assert result.pfx and len(store.list_certificates()) == before + 1
    fingerprint = result.issued.record.fingerprint
    assert certificates.show(store, fingerprint[:12])["emails"] == ["bob@example.com"]
    with pytest.raises(Forbidden):
        certificates.export(store, AUDITOR, fingerprint, "pfx", "secret pw")
    _, pem = certificates.export(store, AUDITOR, fingerprint, "pem")
    assert x509.load_pem_x509_certificate(pem) == result.issued.cert
    with pytest.raises(InvalidInput):
        certificates.export(store, ADMIN, fingerprint, "pfx", None)
    _, pfx = certificates.export(store, ADMIN, fingerprint, "pfx", "secret pw")
    assert pfx[:1] == b"\x30"
    record = certificates.revoke(store, ADMIN, result.issued.cert.serial_number,
                                 reason="key-compromise")
    assert record.entries == 1
    with pytest.raises(Forbidden):
        certificates.revoke(store, AUDITOR, 5)
    assert _actions(store) == ["ca.create", "cert.issue", "cert.export-key", "cert.revoke"]


def test_roots_bundle_and_remove(store: SqlStore) -> None:
    one, two = TestCA("Root One"), TestCA("Root Two")
    leaf = one.issue("carol@example.com")
    report = roots.add_data(store, ADMIN, one.cert_pem() + two.cert_pem() + leaf.cert_pem(),
                            "bundle.pem")
    assert len(report.trusted) == 2
    assert len(report.problems) == 1 and "not a CA certificate" in report.problems[0]
    assert len(roots.listing(store)) == 2
    removed = roots.remove(store, ADMIN, report.trusted[0].fingerprint)
    assert [r["fingerprint"] for r in roots.listing(store)] == [report.trusted[1].fingerprint]
    with pytest.raises(OperationFailed):
        roots.remove(store, ADMIN, removed)
    with pytest.raises(Forbidden):
        roots.remove(store, AUDITOR, report.trusted[1].fingerprint)
    assert _actions(store) == ["root.add", "root.add", "root.remove"]


def test_crl_create_import_export_and_ca_rules(store: SqlStore) -> None:
    with pytest.raises(InvalidInput) as bad:
        cas.create(store, ADMIN, cas.CaOptions("R", "I", days=0))
    assert bad.value.field == "days" and store.list_cas() == []
    _ca(store)
    with pytest.raises(OperationFailed):
        cas.create(store, ADMIN, cas.CaOptions("Other Root", "Test Issuing"))
    record = crls.create(store, ADMIN, None, revoke=[0x1234], reason="superseded")
    assert record.entries == 1
    name, der = crls.export(store, None, "der")
    assert name == "Test Issuing"
    done = crls.import_data(store, ADMIN, der + b"junk", "bad.crl")
    assert done[0].record is None
    done = crls.import_data(store, ADMIN, der, "ok.crl")
    assert done[0].record is not None
    assert b"BEGIN CERTIFICATE" in cas.export_chain(store, "Test Issuing")
    with pytest.raises(Forbidden):
        crls.create(store, AUDITOR)
    assert _actions(store) == ["ca.create", "crl.create", "crl.import"]


def test_queue_delete_claims_first(store: SqlStore) -> None:
    ident = store.enqueue("sms", b"{}")
    with pytest.raises(Forbidden):
        queues.delete(store, CONFIG, AUDITOR, ident)
    store.claim_item(ident, lease=600)  # a worker sends it right now
    with pytest.raises(OperationFailed):
        queues.delete(store, CONFIG, ADMIN, ident)
    store.fail(ident, "test", None)
    queues.delete(store, CONFIG, ADMIN, ident)
    with pytest.raises(NotFound):
        queues.delete(store, CONFIG, ADMIN, ident)
    assert _actions(store) == ["queue.delete"]
    with pytest.raises(InvalidInput):
        queues.listing(store, "nonsense")


def test_crl_import_of_what_cryptography_reads_only_in_part(store: SqlStore) -> None:
    # Found by fuzzing: cryptography parses a CRL's version and names when asked, and its
    # InvalidVersion is no ValueError; both escaped crl import instead of naming the item.
    ca = TestCA()
    good = ca.crl_der(number=1)
    bad_version = crl_with_version(good, 0x11)
    name = ca.cert.subject.public_bytes()
    # The issuer Name's outer length one too large: it swallows the next byte.
    bad_name = good.replace(name, bytes([name[0], name[1] + 1]) + name[2:], 1)
    for data in (bad_version, bad_name):
        (item,) = crls.import_data(store, ADMIN, data, "odd.crl")
        assert item.record is None and item.note
    assert store.list_crls() == []


def test_crl_import_survives_a_stored_ca_whose_key_does_not_parse(store: SqlStore) -> None:
    # Found by fuzzing: cert import keeps a certificate whose key does not parse (it cannot
    # know), and a message's certificate set can carry one with a real CA's name; checking
    # a CRL of that name then failed on it, so no CRL of that CA could be imported.
    ca = TestCA()
    der = ca.cert.public_bytes(Encoding.DER)
    spki = ca.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    # The key's BIT STRING content damaged inside, lengths intact: loads, key does not.
    inner = spki.index(b"\x30\x82", 4)
    broken = x509.load_der_x509_certificate(
        der.replace(spki, spki[:inner] + b"\x31" + spki[inner + 1:], 1))
    with pytest.raises(ValueError):
        broken.public_key()
    store.add_certificate(broken)
    # Only the broken one of that name: the CRL is kept, not verified.
    (item,) = crls.import_data(store, ADMIN, ca.crl_der(number=1), "first.crl")
    assert item.record is not None and item.record.verified is False
    # With the real CA beside it, a CRL of that name verifies.
    store.add_root(ca.cert)
    (item,) = crls.import_data(store, ADMIN, ca.crl_der(number=1), "ca.crl")
    assert item.record is not None and item.record.verified is True
