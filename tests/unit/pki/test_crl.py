"""smimegate.pki.crl: our CRLs verify with openssl and revoke what they list; issuer checks."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import SignatureAlgorithmOID

from smimegate.pki.ca import create_ca
from smimegate.pki.crl import (
    CrlIssuerError,
    Entry,
    build_crl,
    crl_number,
    entries_of,
    find_issuer,
    load_crl,
    merge,
    parse_reason,
)
from smimegate.pki.issue import IssueRequest, Subject, issue_certificate
from smimegate.pki.signing import new_key
from tests.unit.pki.ca_support import ca_pair, openssl, pem, verify, write

NOW = dt.datetime.now(dt.UTC)


def leaf(email: str, ca_type: str = "rsa2048") -> x509.Certificate:
    pair = ca_pair(ca_type)
    return issue_certificate(IssueRequest(Subject(email)), new_key("ec-p256").public_key(),
                             pair.intermediate, pair.intermediate_key)


@pytest.mark.parametrize(("ca_type", "algorithm"),
                         [("rsa2048", None), ("rsa2048", "sha256-rsa-pss"), ("ec-p384", None)])
def test_openssl_verifies_the_crl_and_sees_the_revocation(
    tmp_path: Path, ca_type: str, algorithm: str | None
) -> None:
    pair = ca_pair(ca_type)
    revoked, fine = leaf("gone@example.com", ca_type), leaf("fine@example.com", ca_type)
    crl = build_crl(pair.intermediate, pair.intermediate_key,
                    [Entry(revoked.serial_number, NOW, "key-compromise")], 7,
                    signature_algorithm=algorithm)
    crl_path = write(tmp_path, "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    inter = write(tmp_path, "inter.pem", pem(pair.intermediate))
    check = openssl("crl", "-in", crl_path, "-CAfile", inter, "-noout")
    assert "verify OK" in check.stdout + check.stderr
    text = openssl("crl", "-in", crl_path, "-noout", "-text").stdout
    assert re.search(r"X509v3 CRL Number:\s*\n\s*7\n", text), text
    assert "Key Compromise" in text
    assert "X509v3 Authority Key Identifier" in text

    proc = verify(tmp_path, pair, revoked, "-purpose", "smimesign", crl=crl)
    assert proc.returncode != 0
    assert "certificate revoked" in proc.stdout + proc.stderr
    proc = verify(tmp_path, pair, fine, "-purpose", "smimesign", crl=crl)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc.stdout + proc.stderr


def test_openssl_refuses_a_crl_from_another_key(tmp_path: Path) -> None:
    pair = ca_pair()
    impostor = create_ca("Test Root rsa2048", "Test Issuing CA rsa2048", key_type="ec-p256",
                         org="smimegate tests")
    crl = build_crl(impostor.intermediate, impostor.intermediate_key, [], 1)
    crl_path = write(tmp_path, "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    inter = write(tmp_path, "inter.pem", pem(pair.intermediate))
    check = openssl("crl", "-in", crl_path, "-CAfile", inter, "-noout", check=False)
    assert "verify OK" not in check.stdout + check.stderr
    with pytest.raises(CrlIssuerError, match="does not verify"):
        # Same name, other key and no AKI match: our issuer check refuses it too.
        find_issuer(crl, [pair.intermediate, pair.root])


def test_fields_entries_and_numbering() -> None:
    pair = ca_pair("ec-p256")
    earlier = NOW - dt.timedelta(days=3)
    entries = [Entry(1234, earlier, None), Entry(99, NOW, "superseded"),
               Entry(1234, NOW, "key-compromise")]
    crl = build_crl(pair.intermediate, pair.intermediate_key, entries, 42,
                    next_update_days=10, now=NOW)
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert crl.issuer == pair.intermediate.subject
    assert crl_number(crl) == 42
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=10)
    got = {e.serial: e for e in entries_of(crl)}
    assert set(got) == {1234, 99}
    assert got[1234].reason is None  # the first record of a serial wins
    assert got[99].reason == "superseded"
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pair.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # RFC 5280 5.3.1: no reasonCode extension for an unspecified reason
    plain = crl.get_revoked_certificate_by_serial_number(1234)
    assert plain is not None and len(plain.extensions) == 0
    assert load_crl(crl.public_bytes(serialization.Encoding.PEM)) == crl
    assert load_crl(crl.public_bytes(serialization.Encoding.DER)) == crl
    with pytest.raises(ValueError):
        load_crl(b"not a crl")


def test_merge_keeps_one_entry_per_serial() -> None:
    a, b = Entry(5, NOW - dt.timedelta(days=1)), Entry(5, NOW, "ca-compromise")
    assert merge([a], [b, Entry(6, NOW)]) == [a, Entry(6, NOW)]


def test_find_issuer_accepts_the_real_issuer_and_names_the_problem_otherwise() -> None:
    pair = ca_pair()
    crl = build_crl(pair.intermediate, pair.intermediate_key, [], 1)
    assert find_issuer(crl, [pair.root, pair.intermediate]) == pair.intermediate
    with pytest.raises(CrlIssuerError, match="not a CA we know"):
        find_issuer(crl, [pair.root, ca_pair("ec-p256").intermediate])


def test_a_leaf_with_the_issuer_name_may_not_sign_crls() -> None:
    pair = ca_pair("ec-p256")
    key = new_key("ec-p256")
    fake = issue_certificate(IssueRequest(Subject("x@example.com")), key.public_key(),
                             pair.intermediate, pair.intermediate_key)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(fake.subject)
           .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
           .sign(key, hashes.SHA256()))
    with pytest.raises(CrlIssuerError, match="may not sign CRLs"):
        find_issuer(crl, [fake])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("key-compromise", "key-compromise"), ("keyCompromise", "key-compromise"),
     ("ca_compromise", "ca-compromise"), ("superseded", "superseded"), ("unspecified", None),
     (None, None)],
)
def test_parse_reason(text: str | None, expected: str | None) -> None:
    assert parse_reason(text) == expected


def test_parse_reason_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="expected one of unspecified, key-compromise"):
        parse_reason("bored")


def test_bad_arguments() -> None:
    pair = ca_pair()
    with pytest.raises(ValueError, match="next update"):
        build_crl(pair.intermediate, pair.intermediate_key, [], 1, next_update_days=0)
    with pytest.raises(ValueError, match="needs an EC key"):
        build_crl(pair.intermediate, pair.intermediate_key, [], 1,
                  signature_algorithm="sha256-ecdsa")
    with pytest.raises(ValueError, match="serial"):
        Entry(0, NOW)
    with pytest.raises(ValueError, match="reason"):
        Entry(1, NOW, "bored")
