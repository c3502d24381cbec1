"""CRUD and lookups, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smimegate.dn import name_string
from smimegate.store import Conflict, InvalidData, NotFound, SqlStore
from tests.helpers.testpki import TestCA


def _pub(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_settings(store: SqlStore) -> None:
    assert store.settings() == {}
    store.set_setting("encrypt_mode", "allow")
    store.set_setting("encrypt_mode", "mandatory")
    store.set_setting("sign", "yes")
    assert store.settings() == {"encrypt_mode": "mandatory", "sign": "yes"}
    store.delete_setting("sign")
    assert store.settings() == {"encrypt_mode": "mandatory"}
    with pytest.raises(NotFound):
        store.delete_setting("sign")


def test_domains(store: SqlStore) -> None:
    d = store.add_domain("Example.COM.", {"locality": "internal"})
    assert d.name == "example.com"
    with pytest.raises(Conflict):
        store.add_domain("example.com")
    store.add_domain("*.partner.test")
    store.set_domain_property("example.com", "encrypt_mode", "mandatory")
    store.set_domain_property("example.com", "locality", "external")
    assert store.get_domain("EXAMPLE.com").properties == {
        "locality": "external", "encrypt_mode": "mandatory"}
    assert [x.name for x in store.list_domains()] == ["*.partner.test", "example.com"]
    assert store.get_domain("*.partner.test").properties == {}
    store.delete_domain_property("example.com", "locality")
    with pytest.raises(NotFound):
        store.delete_domain_property("example.com", "locality")
    with pytest.raises(NotFound):
        store.set_domain_property("nope.test", "a", "b")
    store.remove_domain("example.com")
    with pytest.raises(NotFound):
        store.get_domain("example.com")
    with pytest.raises(NotFound):
        store.remove_domain("example.com")
    with pytest.raises(InvalidData):
        store.add_domain("a b.test")


def test_users(store: SqlStore) -> None:
    u = store.add_user("Alice@Example.com", {"phone": "+4912345"})
    assert (u.email, u.enabled) == ("alice@example.com", True)
    with pytest.raises(Conflict):
        store.add_user("alice@example.com")
    store.add_user("bob@example.com", enabled=False)
    store.add_user("carol@other.test")
    store.set_user_property("alice@example.com", "smime", "deny")
    got = store.get_user("ALICE@example.com")
    assert got.properties == {"phone": "+4912345", "smime": "deny"} and got.enabled
    assert not store.get_user("bob@example.com").enabled
    store.set_user_enabled("bob@example.com", True)
    assert store.get_user("bob@example.com").enabled
    assert [x.email for x in store.list_users()] == [
        "alice@example.com", "bob@example.com", "carol@other.test"]
    assert [x.email for x in store.list_users("EXAMPLE.com")] == [
        "alice@example.com", "bob@example.com"]
    store.delete_user_property("alice@example.com", "smime")
    assert store.get_user("alice@example.com").properties == {"phone": "+4912345"}
    store.remove_user("alice@example.com")
    with pytest.raises(NotFound):
        store.get_user("alice@example.com")
    with pytest.raises(NotFound):
        store.set_user_property("alice@example.com", "a", "b")
    with pytest.raises(InvalidData):
        store.add_user("not-an-address")


def test_domain_removal_keeps_users_and_cascades_properties(store: SqlStore) -> None:
    store.add_domain("example.com", {"locality": "internal"})
    store.add_user("a@example.com", {"phone": "1"})
    store.remove_domain("example.com")
    assert store.get_user("a@example.com").properties == {"phone": "1"}
    store.add_domain("example.com")
    assert store.get_domain("example.com").properties == {}


def test_shared_policy_generation_counts_every_writer(
        store: SqlStore, open_store: Callable[..., SqlStore]) -> None:
    """Policy writes of any SqlStore on the database (another process: the CLI, the web
    admin) move the shared generation the milter's cache watches (sql/0008); a write that
    fails, or one to another table, does not; both stores read the same value."""
    other = open_store()
    start = store.shared_policy_generation()
    other.add_domain("example.com", {"locality": "internal"})
    other.set_setting("encrypt_mode", "allow")
    assert store.shared_policy_generation() == start + 2
    with pytest.raises(NotFound):
        other.remove_user("nobody@example.com")
    other.add_certificate(TestCA().issue("x@outside.test").cert)
    with other.atomic():  # a write inside a larger transaction counts with it
        other.add_user("alice@example.com")
        other.set_user_property("alice@example.com", "sign_mode", "opaque")
    assert store.shared_policy_generation() == other.shared_policy_generation() == start + 4


def test_policy_rows(store: SqlStore) -> None:
    store.set_setting("encrypt_mode", "allow")
    store.add_domain("example.com", {"locality": "internal"})
    store.add_domain("*.example.com", {"encrypt_mode": "mandatory"})
    store.add_domain("mx.example.com")
    store.add_domain("partner.test", {"smime": "deny"})
    store.add_domain("unrelated.test", {"smime": "deny"})
    store.add_user("boss@mx.example.com", {"sign": "no"})
    rows = store.policy_rows(["Boss@mx.example.com", "x@partner.test", "y@nowhere.test"])
    assert rows.settings == {"encrypt_mode": "allow"}
    assert set(rows.domains) == {"example.com", "*.example.com", "mx.example.com", "partner.test"}
    assert rows.domains["*.example.com"].properties == {"encrypt_mode": "mandatory"}
    assert rows.domains["mx.example.com"].properties == {}
    assert set(rows.users) == {"boss@mx.example.com"}
    assert rows.users["boss@mx.example.com"].properties == {"sign": "no"}
    assert store.policy_rows([]).users == {}


def test_address_only_in_subject_email_address_is_found(store: SqlStore, ca: TestCA) -> None:
    # Older and some corporate CAs put the address only in the subject's emailAddress
    # (PKCS #9; RFC 8551 3.1 allows it besides subjectAltName). No SAN at all here.
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "Olaf Old"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "Olaf.Old@Example.COM")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca.key, hashes.SHA256())
    )
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    rec = store.add_certificate(cert, source="harvested")
    assert rec.emails == ("olaf.old@example.com",)
    assert [c.fingerprint for c in store.find_certificates("olaf.old@example.com")] == [
        rec.fingerprint]
    assert [c.fingerprint for c in store.list_certificates("OLAF.OLD@example.com")] == [
        rec.fingerprint]


def test_certificate_lookups(store: SqlStore, ca: TestCA) -> None:
    alice = ca.issue("Alice@Example.com", "ec-p256")
    rec = store.add_certificate(alice.cert, source="harvested")
    fp = alice.cert.fingerprint(hashes.SHA256()).hex()
    assert rec.fingerprint == fp
    assert rec.emails == ("alice@example.com",)
    assert rec.serial == format(alice.cert.serial_number, "X")
    ski = alice.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert rec.ski == ski.hex()
    assert rec.issuer == name_string(ca.cert.subject)
    assert rec.source == "harvested" and not rec.has_key and not rec.trusted_root
    assert rec.not_after == alice.cert.not_valid_after_utc.replace(microsecond=0)
    assert rec.certificate() == alice.cert

    # Storing it again is not an error and keeps one row.
    again = store.add_certificate(alice.cert.public_bytes(serialization.Encoding.DER))
    assert again.fingerprint == fp and again.source == "harvested"
    assert len(store.list_certificates()) == 1

    assert [c.fingerprint for c in store.find_certificates("ALICE@example.com")] == [fp]
    assert store.find_certificates("bob@example.com") == []
    assert [c.fingerprint for c in store.find_by_issuer_serial(
        ca.cert.subject, alice.cert.serial_number)] == [fp]
    assert store.find_by_issuer_serial(ca.cert.subject, alice.cert.serial_number + 1) == []
    assert [c.fingerprint for c in store.find_by_ski(ski)] == [fp]
    assert store.get_certificate(fp.upper()).fingerprint == fp
    with pytest.raises(NotFound):
        store.get_certificate("00" * 32)

    store.set_certificate_blocked(fp, True)
    assert store.get_certificate(fp).blocked
    store.remove_certificate(fp)
    assert store.find_certificates("alice@example.com") == []
    with pytest.raises(NotFound):
        store.remove_certificate(fp)
    with pytest.raises(InvalidData):
        store.add_certificate(b"not a certificate")


def test_certificate_without_ski_and_newest_first(store: SqlStore, ca: TestCA) -> None:
    old = ca.issue("a@x.test", not_before=dt.datetime.now(dt.UTC)
                   - dt.timedelta(days=400), with_ski=False)
    new = ca.issue("a@x.test")
    store.add_certificate(old.cert)
    store.add_certificate(new.cert)
    found = store.find_certificates("a@x.test")
    assert [c.der for c in found] == [
        new.cert.public_bytes(serialization.Encoding.DER),
        old.cert.public_bytes(serialization.Encoding.DER)]
    assert found[1].ski is None


def test_private_keys(store: SqlStore, ca: TestCA) -> None:
    ids = [ca.issue("k@x.test", kind) for kind in ("rsa2048", "ec-p384", "ed25519", "x25519")]
    for ident in ids:
        rec = store.add_certificate(ident.cert, key=ident.key)
        assert rec.has_key
        assert _pub(store.get_private_key(rec.fingerprint)) == _pub(ident.key)
    pairs = store.keys_for_email("K@x.test")
    assert len(pairs) == 4
    assert {_pub(k) for _, k in pairs} == {_pub(i.key) for i in ids}
    for rec, key in pairs:
        assert _pub(key) == rec.certificate().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # A certificate stored first without its key gets the key on a later import.
    late = ca.issue("late@x.test")
    assert not store.add_certificate(late.cert).has_key
    assert store.add_certificate(late.cert, key=late.key).has_key
    # A key that does not belong to the certificate is refused.
    other = ca.issue("other@x.test")
    with pytest.raises(InvalidData):
        store.add_certificate(other.cert, key=late.key)
    assert store.find_certificates("other@x.test") == []  # the transaction was rolled back
    with pytest.raises(NotFound):
        store.get_private_key("00" * 32)
    store.verify_master_key()


def test_roots(store: SqlStore, ca: TestCA) -> None:
    rec = store.add_root(ca.cert)
    assert rec.trusted_root and rec.is_ca
    store.add_root(ca.cert)
    assert [r.fingerprint for r in store.list_roots()] == [rec.fingerprint]
    store.remove_root(rec.fingerprint)
    assert store.list_roots() == []
    assert not store.get_certificate(rec.fingerprint).trusted_root
    with pytest.raises(NotFound):
        store.remove_root(rec.fingerprint)


def _crl(ca: TestCA, number: int, days_ago: int) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=30))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


def test_crls_keep_the_newest_verified_per_issuer(store: SqlStore, ca: TestCA) -> None:
    older, newer = _crl(ca, 1, 10), _crl(ca, 2 ** 100, 1)  # numbers beyond BIGINT are kept
    first = store.add_crl(older, source="http://crl.test/a.crl", verified=True)
    assert first.crl_number == 1 and first.source == "http://crl.test/a.crl"
    assert first.verified is True and first.entries == 0 and first.scope == ""
    current = store.add_crl(newer, verified=True)
    assert current.crl_number == 2 ** 100
    assert current.der == newer.public_bytes(serialization.Encoding.DER)
    # An older CRL arriving late does not replace the newer one.
    assert store.add_crl(older, verified=True).crl_number == 2 ** 100
    found = store.crls_for_issuer(ca.cert.subject)
    assert [c.crl_number for c in found] == [2 ** 100]
    assert found[0].authority_key_id is not None
    other = TestCA("Other Root")
    store.add_crl(_crl(other, 7, 0))
    assert len(store.list_crls()) == 2


def test_unverified_crls_stand_side_by_side_until_checked(store: SqlStore, ca: TestCA) -> None:
    # Issue 10 item 1: a CRL whose issuer is unknown is kept (verified NULL) and replaces
    # nothing: it cannot prove it supersedes anything.
    older, newer = _crl(ca, 1, 10), _crl(ca, 2, 1)
    kept = store.add_crl(older, source="import:a.pem")
    assert kept.verified is None and kept.crl_number == 1
    assert store.add_crl(newer).crl_number == 2
    assert sorted(c.crl_number or 0 for c in store.list_crls()) == [1, 2]
    assert set(store.crl_fingerprints()) == {c.fingerprint for c in store.list_crls()}
    store.set_crls_verified({kept.fingerprint: False})
    (got,) = store.get_crls([kept.fingerprint.upper(), "0" * 64])
    assert got.verified is False
    # Verified now: the newest verified one of the group replaces the older verified ones.
    store.set_crls_verified({kept.fingerprint: True})
    assert store.add_crl(newer, verified=True).crl_number == 2
    assert [c.crl_number for c in store.list_crls()] == [2]
    store.remove_crl(store.list_crls()[0].fingerprint)
    assert store.list_crls() == []
    with pytest.raises(NotFound):
        store.remove_crl("0" * 64)


def test_partitioned_and_delta_crls_stand_side_by_side(store: SqlStore, ca: TestCA) -> None:
    now = dt.datetime.now(dt.UTC)

    def partition(url: str | None, number: int, delta: int | None = None
                  ) -> x509.CertificateRevocationList:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
                   .last_update(now).next_update(now + dt.timedelta(days=1))
                   .add_extension(x509.CRLNumber(number), critical=False))
        if url is not None:
            builder = builder.add_extension(x509.IssuingDistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)], relative_name=None,
                only_contains_user_certs=False, only_contains_ca_certs=False,
                only_some_reasons=None, indirect_crl=False,
                only_contains_attribute_certs=False), critical=True)
        if delta is not None:
            builder = builder.add_extension(x509.DeltaCRLIndicator(delta), critical=True)
        return builder.sign(ca.key, hashes.SHA256())

    for crl in (partition("http://a.test/1.crl", 5), partition("http://a.test/2.crl", 5),
                partition(None, 5), partition(None, 6, delta=5)):
        store.add_crl(crl, verified=True)
    rows = store.list_crls()
    assert len(rows) == 4
    assert sorted(r.delta_base or 0 for r in rows) == [0, 0, 0, 5]
    assert len({r.scope for r in rows}) == 4


def test_cas_and_revocations(store: SqlStore, ca: TestCA) -> None:
    root = store.add_root(ca.cert)
    inter = store.add_certificate(TestCA("Intermediate").cert, source="ca")
    first = store.add_ca("main", root.fingerprint, inter.fingerprint, default=True)
    assert first.is_default and first.next_crl_number == 1
    store.add_ca("second", root.fingerprint, inter.fingerprint, default=True)
    assert store.get_ca().name == "second"
    assert not store.get_ca("main").is_default
    store.set_default_ca("main")
    assert store.get_ca().name == "main"
    assert [c.name for c in store.list_cas()] == ["main", "second"]
    with pytest.raises(Conflict):
        store.add_ca("main", root.fingerprint, inter.fingerprint)
    with pytest.raises(NotFound):
        store.add_ca("third", "00" * 32, inter.fingerprint)
    with pytest.raises(NotFound):
        store.get_ca("third")
    assert [store.allocate_crl_number("main") for _ in range(3)] == [1, 2, 3]
    assert store.get_ca("main").next_crl_number == 4
    with pytest.raises(NotFound):
        store.allocate_crl_number("third")
    r = store.add_revocation("main", 0x0ABC, "keyCompromise")
    assert (r.serial, r.reason) == ("ABC", "keyCompromise")
    store.add_revocation("main", 0x0ABC)
    assert [x.serial for x in store.revocations("main")] == ["ABC"]
    assert store.revocations("second") == []
    with pytest.raises(Conflict):
        store.remove_certificate(inter.fingerprint)


def test_queue(store: SqlStore) -> None:
    now = dt.datetime.now(dt.UTC)
    a = store.enqueue("pfx-mail", b"\x00mail bytes", at=now - dt.timedelta(seconds=5))
    b = store.enqueue("sms", b"password 123")
    later = store.enqueue("sms", b"later", at=now + dt.timedelta(hours=1))
    assert a < b < later
    claimed = store.claim(limit=10)
    assert [(i.id, i.payload, i.status) for i in claimed] == [
        (a, b"\x00mail bytes", "running"), (b, b"password 123", "running")]
    assert store.claim() == []  # leased
    store.complete(a)
    store.fail(b, "gateway said 503", now - dt.timedelta(seconds=1))
    item = store.get_queue_item(b)
    assert (item.status, item.attempts, item.last_error) == ("pending", 1, "gateway said 503")
    assert [i.id for i in store.claim(kinds=["pfx-mail"])] == []
    assert [i.id for i in store.claim(kinds=["sms"])] == [b]
    store.fail(b, "permanent", None)
    assert store.get_queue_item(b).status == "failed"
    assert [i.id for i in store.list_queue("failed")] == [b]
    store.retry(b)
    assert [i.id for i in store.claim(lease=-10)] == [b]
    # An expired lease lets another worker take the item over.
    assert [i.id for i in store.claim()] == [b]
    assert [i.id for i in store.list_queue()] == [b, later]
    store.delete_queue_item(b)
    with pytest.raises(NotFound):
        store.get_queue_item(b)
    with pytest.raises(NotFound):
        store.complete(a)


def test_revocations_in_bulk(store: SqlStore, ca: TestCA) -> None:
    inter = store.add_certificate(ca.cert, source="ca")
    store.add_ca("main", inter.fingerprint, inter.fingerprint)
    early = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    store.add_revocation("main", 7, "keyCompromise", early)
    assert store.add_revocations("main", [*range(1, 2001), 7, 7], "superseded") == 1999
    rows = {r.serial: r for r in store.revocations("main")}
    assert len(rows) == 2000
    assert (rows["7"].reason, rows["7"].revoked_at) == ("keyCompromise", early)  # kept
    assert rows["7D0"].reason == "superseded"
    assert store.add_revocations("main", []) == 0
    # More than one statement's worth (sql._BULK), overlapping what is recorded.
    assert store.add_revocations("main", range(1001, 50_001)) == 50_000 - 2000
    assert len(store.revocations("main")) == 50_000
    with pytest.raises(NotFound):
        store.add_revocations("nope", [1, 2])
    # The expiry of stored certificates by serial, for one issuer.
    leaf = ca.issue("exp@x.test", "ec-p256")
    store.add_certificate(leaf.cert)
    expiry = store.latest_expiry_by_serial(ca.cert.subject)
    assert expiry == {format(c.serial_number, "X"): c.not_valid_after_utc
                      for c in (leaf.cert, ca.cert)}  # the test CA is self-issued
    assert store.latest_expiry_by_serial("CN=nobody") == {}
