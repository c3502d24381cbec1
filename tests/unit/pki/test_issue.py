"""smimegate.pki.issue: end-entity certificates in the S/MIME BR strict shape, and openssl's
S/MIME purposes accept them."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smimegate.pki.ca import create_ca
from smimegate.pki.issue import IssueRequest, Profile, Subject, issue_certificate
from smimegate.pki.signing import new_key
from tests.unit.pki.ca_support import ca_pair, openssl, pem, verify, write

EMAIL = "alice@example.com"


def issue(key_type: str = "rsa2048", ca_type: str = "rsa2048", **kwargs: object) -> x509.Certificate:
    pair = ca_pair(ca_type)
    request = IssueRequest(Subject(EMAIL), **kwargs)  # type: ignore[arg-type]
    return issue_certificate(request, new_key(key_type).public_key(), pair.intermediate,
                             pair.intermediate_key)


CASES = [
    ("rsa2048", "rsa2048", None),
    ("ec-p256", "rsa2048", "sha384-rsa"),
    ("ec-p384", "ec-p384", None),
    ("rsa3072", "ec-p256", "sha256-ecdsa"),
    ("ec-p256", "rsa2048", "sha256-rsa-pss"),
]


@pytest.mark.parametrize(("key_type", "ca_type", "algorithm"), CASES)
def test_openssl_accepts_for_smime_signing(
    tmp_path: Path, key_type: str, ca_type: str, algorithm: str | None
) -> None:
    cert = issue(key_type, ca_type, signature_algorithm=algorithm)
    proc = verify(tmp_path, ca_pair(ca_type), cert, "-purpose", "smimesign", "-x509_strict")
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc.stdout + proc.stderr


@pytest.mark.parametrize(("key_type", "ca_type", "algorithm"),
                         [c for c in CASES if c[0].startswith("rsa")])
def test_openssl_accepts_rsa_for_smime_encryption(
    tmp_path: Path, key_type: str, ca_type: str, algorithm: str | None
) -> None:
    cert = issue(key_type, ca_type, signature_algorithm=algorithm)
    proc = verify(tmp_path, ca_pair(ca_type), cert, "-purpose", "smimeencrypt", "-x509_strict")
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc.stdout + proc.stderr


def test_ec_certificate_encrypts_with_openssl_cms(tmp_path: Path) -> None:
    """EC recipients: keyAgreement, never keyEncipherment (RFC 8813 3, BR 7.1.2.3 e).

    OpenSSL 3.0's ``-purpose smimeencrypt`` insists on keyEncipherment for every key type
    (crypto/x509/v3_purp.c check_purpose_smime_encrypt), so it refuses every EC certificate that
    follows RFC 8813; we show instead that the chain verifies for S/MIME and that ``openssl cms``
    encrypts to the certificate (ECDH, RFC 5753) and decrypts with its key.
    """
    key = new_key("ec-p256")
    pair = ca_pair()
    cert = issue_certificate(IssueRequest(Subject(EMAIL)), key.public_key(), pair.intermediate,
                             pair.intermediate_key)
    proc = verify(tmp_path, pair, cert, "-purpose", "smimeencrypt")
    assert "unsuitable certificate purpose" in proc.stdout + proc.stderr  # see the docstring
    leaf = write(tmp_path, "ec.pem", pem(cert))
    keyfile = write(tmp_path, "ec.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    msg = write(tmp_path, "msg.txt", b"hello EC\r\n")
    env = tmp_path / "env.p7m"
    openssl("cms", "-encrypt", "-aes256", "-in", msg, "-out", env, leaf)
    out = openssl("cms", "-decrypt", "-in", env, "-recip", leaf, "-inkey", keyfile).stdout
    assert "hello EC" in out


def test_openssl_refuses_for_tls_server(tmp_path: Path) -> None:
    """The EKU really restricts: the same check with another purpose fails."""
    proc = verify(tmp_path, ca_pair(), issue(), "-purpose", "sslserver")
    assert proc.returncode != 0
    assert "unsuitable certificate purpose" in proc.stdout + proc.stderr


def test_rsa_certificate_extensions() -> None:
    cert = issue("rsa2048", crl_urls=("http://crl.example.com/ca.crl", "ldap://x/cn=ca"))
    exts = cert.extensions
    ku = exts.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_agreement and not ku.value.content_commitment
    eku = exts.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    san = exts.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.RFC822Name) == [EMAIL]
    assert not san.critical
    bc = exts.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ski = exts.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    inter_ski = ca_pair().intermediate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == inter_ski.digest
    policies = exts.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.5.1.3"]
    dps = exts.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in dps for n in dp.full_name or []] == [
        "http://crl.example.com/ca.crl", "ldap://x/cn=ca"]
    assert cert.issuer == ca_pair().intermediate.subject
    cert.verify_directly_issued_by(ca_pair().intermediate)
    assert 2**63 <= cert.serial_number < 2**159


@pytest.mark.parametrize(("ca_type", "algorithm"), [("rsa2048", "sha256-rsa-pss"),
                                                    ("ec-p384", None), ("ml-dsa-65", None)])
def test_ml_kem_512_certificate_from_any_ca(ca_type: str, algorithm: str | None) -> None:
    """cryptography's builder takes no ML-KEM-512 key (smimegate.pki.foreignkey): the same
    extensions as any end entity, the real SPKI, a signature the CA's key made over exactly
    that TBS (checked by cryptography for each kind of CA key)."""
    from smimegate.smime.mlkem512 import OID, MLKEM512PrivateKey, certificate_public_key

    key = MLKEM512PrivateKey.generate()
    pair = ca_pair(ca_type)
    request = IssueRequest(Subject(EMAIL), signature_algorithm=algorithm,
                           crl_urls=("http://crl.example.com/ca.crl",))
    cert = issue_certificate(request, key.public_key(), pair.intermediate, pair.intermediate_key)
    cert = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
    cert.verify_directly_issued_by(pair.intermediate)
    assert cert.public_key_algorithm_oid.dotted_string == OID
    assert certificate_public_key(cert) == key.public_key()
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment and not (ku.digital_signature or ku.key_agreement)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == hashlib.sha1(key.public_key().public_bytes_raw()).digest()
    reference = issue("rsa2048", ca_type, signature_algorithm=algorithm,
                      crl_urls=("http://crl.example.com/ca.crl",))
    assert [e.oid for e in cert.extensions] == [e.oid for e in reference.extensions]
    assert cert.signature_algorithm_oid == reference.signature_algorithm_oid


def test_ec_certificate_uses_key_agreement() -> None:
    ku = issue("ec-p256").extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and not ku.key_encipherment


def test_no_crl_distribution_points_unless_given() -> None:
    with pytest.raises(x509.ExtensionNotFound):
        issue("ec-p256").extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_mailbox_subject_holds_only_the_address() -> None:
    subject = issue("ec-p256").subject
    assert [a.oid for a in subject] == [NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS]
    assert {a.value for a in subject} == {EMAIL}


@pytest.mark.parametrize(
    ("kwargs", "profile", "oids"),
    [
        ({"cn": EMAIL}, Profile.MAILBOX, [NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS]),
        ({"given_name": "Alice", "surname": "Doe", "cn": "Alice Doe"}, Profile.INDIVIDUAL,
         [NameOID.COMMON_NAME, NameOID.GIVEN_NAME, NameOID.SURNAME, NameOID.EMAIL_ADDRESS]),
        # X.509 order from the root of the name down: O first, emailAddress last.
        ({"org": "Example AG"}, Profile.ORGANIZATION,
         [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS]),
        ({"org": "Example AG", "surname": "Doe"}, Profile.SPONSOR,
         [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME, NameOID.SURNAME,
          NameOID.EMAIL_ADDRESS]),
    ],
)
def test_subject_attributes_choose_the_br_profile(
    kwargs: dict[str, str], profile: Profile, oids: list[x509.ObjectIdentifier]
) -> None:
    subject = Subject(EMAIL, **kwargs)
    assert subject.profile is profile
    pair = ca_pair()
    cert = issue_certificate(IssueRequest(subject), new_key("ec-p256").public_key(),
                             pair.intermediate, pair.intermediate_key)
    assert [a.oid for a in cert.subject] == oids
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [profile.value]


def test_validity_follows_days_and_never_outlives_the_issuer() -> None:
    cert = issue("ec-p256", days=30)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, hours=1)
    short = create_ca("R", "I", key_type="ec-p256", days=5)
    cert = issue_certificate(IssueRequest(Subject(EMAIL), days=400),
                             new_key("ec-p256").public_key(), short.intermediate,
                             short.intermediate_key)
    assert cert.not_valid_after_utc == short.intermediate.not_valid_after_utc


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Subject("not-an-address"), "email"),
        (lambda: Subject("a b@example.com"), "email"),
        (lambda: Subject(EMAIL, org=" "), "org"),
        (lambda: IssueRequest(Subject(EMAIL), days=0), "days"),
        (lambda: IssueRequest(Subject(EMAIL), crl_urls=("crl.example.com",)), "not a URL"),
    ],
)
def test_bad_requests_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_signature_algorithm_must_fit_the_ca_key() -> None:
    with pytest.raises(ValueError, match="needs an EC key"):
        issue("rsa2048", "rsa2048", signature_algorithm="sha256-ecdsa")
