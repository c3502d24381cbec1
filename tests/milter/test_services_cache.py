"""The per-process caches of smimegate.milter.services (issue 5 item 12): policy rows, trust
decisions on signers, and private keys read back from the store.

Policy rows: a write through the same store object is seen at once (SqlStore counts its policy
writes); a write by another process (here: a second SqlStore on the same file, as the CLI is)
once the shared generation is read again (POLICY_CHECK seconds), or at once after reload(),
and at the latest after POLICY_TTL seconds (a store that keeps no shared generation).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from smimegate.milter import services as svc
from smimegate.milter.services import Services
from smimegate.smime.cms import cert_id
from smimegate.smime.results import Layer, SignerResult
from smimegate.store.base import NotFound, StoreUnavailable
from smimegate.store.keys import ensure_master_key
from smimegate.store.sql import SqlStore
from tests.helpers.testpki import TestCA

ALICE = "alice@inside.test"


def open_store(root: Path) -> SqlStore:
    return SqlStore.open(f"sqlite:///{root / 'store.db'}", root / "master.key",
                         check_schema=False, create=True)


@pytest.fixture()
def stores(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    """(the milter's store, the CLI's store): two objects over one SQLite file."""
    ensure_master_key(tmp_path / "master.key")
    mine = open_store(tmp_path)
    mine.migrate()
    mine.add_domain("inside.test", {"locality": "internal"})
    mine.add_user(ALICE)
    other = open_store(tmp_path)
    yield mine, other
    other.close()
    mine.close()


def sign_mode(services: Services) -> str:
    return services.policies([ALICE])[ALICE].value("sign_mode")


def test_policy_generation_counts_policy_writes_only(stores: tuple[SqlStore, SqlStore]) -> None:
    store, _ = stores
    before = store.policy_generation
    store.set_user_property(ALICE, "sign_mode", "opaque")
    store.set_setting("encrypt_mode", "allow")
    assert store.policy_generation == before + 2
    store.add_certificate(TestCA().issue("x@outside.test").cert)  # not a policy table
    assert store.policy_generation == before + 2
    with pytest.raises(NotFound):  # a failed write still counts
        store.remove_user("nobody@inside.test")
    assert store.policy_generation == before + 3


def test_own_writes_are_seen_at_once(stores: tuple[SqlStore, SqlStore]) -> None:
    store, _ = stores
    services = Services(store)
    assert sign_mode(services) == "clear"
    store.set_user_property(ALICE, "sign_mode", "opaque")
    assert sign_mode(services) == "opaque"


def test_other_process_writes_after_reload_or_ttl(stores: tuple[SqlStore, SqlStore],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, cli = stores
    services = Services(store)
    # Without the shared generation (a store that keeps none) only the TTL and reload() help.
    monkeypatch.setattr(services, "_shared_policy_generation", lambda now: None)
    assert sign_mode(services) == "clear"
    cli.set_user_property(ALICE, "sign_mode", "opaque")
    assert sign_mode(services) == "clear"  # cached: POLICY_TTL seconds at most
    services.reload()
    assert sign_mode(services) == "opaque"
    monkeypatch.setattr(svc, "POLICY_TTL", 0.05)
    cli.delete_user_property(ALICE, "sign_mode")
    deadline = time.monotonic() + 5
    while sign_mode(services) != "clear":  # the other process's write shows after the TTL
        assert time.monotonic() < deadline, "policy cache never expired"
        time.sleep(0.02)


def test_other_process_writes_within_policy_check(stores: tuple[SqlStore, SqlStore],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's or the web admin's write moves the store's shared generation; the milter
    reads it every POLICY_CHECK seconds (not per message) and then reads the rows again."""
    store, cli = stores
    services = Services(store)
    reads: list[int] = []
    shared = store.shared_policy_generation

    def counted() -> int:
        reads.append(1)
        return shared()

    monkeypatch.setattr(store, "shared_policy_generation", counted)
    assert sign_mode(services) == "clear"
    assert sign_mode(services) == "clear"
    assert len(reads) == 1  # once per POLICY_CHECK, not per lookup
    before = cli.shared_policy_generation()
    cli.set_user_property(ALICE, "sign_mode", "opaque")
    assert cli.shared_policy_generation() == before + 1
    monkeypatch.setattr(svc, "POLICY_CHECK", 0.0)
    assert sign_mode(services) == "opaque"  # long before POLICY_TTL
    assert len(reads) == 2
    with pytest.raises(NotFound):  # a failed write changes nothing and counts nothing shared
        cli.remove_user("nobody@inside.test")
    assert cli.shared_policy_generation() == before + 1


def test_shared_generation_unreadable_keeps_the_cache(stores: tuple[SqlStore, SqlStore],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that does not answer the generation query leaves the cached rows in use (they
    expire by POLICY_TTL as before); nothing is raised on the message's path for it."""
    store, _ = stores
    services = Services(store)
    assert sign_mode(services) == "clear"

    def down() -> int:
        raise StoreUnavailable("store down")

    monkeypatch.setattr(store, "shared_policy_generation", down)
    monkeypatch.setattr(svc, "POLICY_CHECK", 0.0)
    assert sign_mode(services) == "clear"


def test_policies_of_a_mixed_list_and_the_null_sender(stores: tuple[SqlStore, SqlStore]) -> None:
    store, _ = stores
    services = Services(store)
    assert services.policies([ALICE])[ALICE].value("locality") == "internal"
    pol = services.policies(["", ALICE, "bob@outside.test"])
    assert pol[""].value("locality") == "external"
    assert pol[ALICE].value("locality") == "internal"
    assert pol["bob@outside.test"].value("locality") == "external"


def test_unwrapped_key_works_without_the_rsa_check(stores: tuple[SqlStore, SqlStore]) -> None:
    """SqlStore skips OpenSSL's RSA key check on unwrap (the key was checked when stored and
    AES-GCM proves it unchanged): the key read back still decrypts what its certificate
    encrypted."""
    store, _ = stores
    alice = TestCA().issue(ALICE, "rsa2048")
    store.add_certificate(alice.cert, key=alice.key)
    [(record, key)] = store.keys_for_email(ALICE)
    assert record.certificate() == alice.cert
    secret = alice.cert.public_key().encrypt(b"cek", padding.PKCS1v15())  # type: ignore[union-attr]
    assert key.decrypt(secret, padding.PKCS1v15()) == b"cek"
    signature = key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    alice.cert.public_key().verify(signature, b"data", padding.PKCS1v15(),  # type: ignore[union-attr]
                                   hashes.SHA256())


def signed_layer(cert: x509.Certificate, when: dt.datetime,
                 capabilities: tuple[str, ...]) -> Layer:
    signer = SignerResult(cert_id(cert), cert, True, None, "sha256", "rsa",
                          signing_time=when, capabilities=capabilities)
    return Layer(kind="signed", signers=(signer,), certificates=(cert,))


def test_harvest_writes_once_per_process_until_reload(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store, other = stores
    cert = TestCA().issue("frank@outside.test").cert
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    layer = signed_layer(cert, when, ("aes256-gcm",))
    services = Services(store)
    assert services.import_signers([layer]) == 1
    assert store.get_certificate(fingerprint).source == "message"
    # Removed behind the milter's back (the CLI): the same signer again is not written again,
    # yet counted as harvested, as the log line always said.
    other.remove_certificate(fingerprint)
    assert services.import_signers([layer]) == 1
    with pytest.raises(NotFound):
        store.get_certificate(fingerprint)
    services.reload()
    assert services.import_signers([layer]) == 1
    assert store.get_certificate(fingerprint).source == "message"
    assert store.certificate_capabilities([fingerprint])[fingerprint].names == ("aes256-gcm",)


def test_capabilities_same_announcement_skipped_other_names_recorded(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store, _ = stores
    cert = TestCA().issue("gina@outside.test").cert
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    services = Services(store)
    services.import_signers([signed_layer(cert, when, ("aes256-gcm",))])
    # At the same signing time the store keeps the one seen last (store.sql): other names
    # are still written; an older announcement never replaces a newer one.
    services.import_signers([signed_layer(cert, when, ("aes128-cbc",))])
    assert store.certificate_capabilities([fingerprint])[fingerprint].names == ("aes128-cbc",)
    older = when - dt.timedelta(days=1)
    services.import_signers([signed_layer(cert, older, ("aes256-cbc",))])
    assert store.certificate_capabilities([fingerprint])[fingerprint].names == ("aes128-cbc",)
    newer = when + dt.timedelta(seconds=1)
    services.import_signers([signed_layer(cert, newer, ("aes256-cbc",))])
    assert store.certificate_capabilities([fingerprint])[fingerprint].names == ("aes256-cbc",)


def test_decryption_keys_and_key_certificates_cached_until_reload(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store, other = stores
    services = Services(store)
    assert services.decryption_keys([ALICE]) == [] and services.key_certificates(ALICE) == []
    alice = TestCA().issue(ALICE)
    other.add_certificate(alice.cert, key=alice.key)  # the CLI imports a key meanwhile
    assert services.decryption_keys([ALICE]) == [] and services.key_certificates(ALICE) == []
    services.reload()
    ((cert, key),) = services.decryption_keys([ALICE, ALICE])  # no duplicates
    assert cert == alice.cert and key.public_key() == alice.cert.public_key()
    assert services.key_certificates(ALICE) == [alice.cert]


def test_resolved_policy_kept_while_its_rows_are_cached(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store, _ = stores
    services = Services(store)
    first = services.policies([ALICE])[ALICE]
    assert services.policies([ALICE])[ALICE] is first  # not resolved again
    store.set_user_property(ALICE, "sign_mode", "opaque")  # new rows: resolved again
    again = services.policies([ALICE])[ALICE]
    assert again is not first and again.value("sign_mode") == "opaque"
