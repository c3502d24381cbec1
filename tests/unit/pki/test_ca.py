"""smimegate.pki.ca and .signing: the root/intermediate pair, checked by us and by openssl."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from smimegate.pki.ca import create_ca, random_serial
from smimegate.pki.signing import check_pair, key_type_of, new_key, signature_params
from tests.unit.pki.ca_support import ca_pair, openssl, pem, write


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(cls)


def test_root_is_a_self_signed_ca_that_signs_certificates_and_crls() -> None:
    root = ca_pair().root
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Root rsa2048"
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(root, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert ext(root, x509.SubjectKeyIdentifier).value.digest
    root.verify_directly_issued_by(root)


def test_intermediate_has_path_length_zero_and_names_the_root_key() -> None:
    pair = ca_pair()
    inter = pair.intermediate
    bc = ext(inter, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(inter, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert list(ext(inter, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    aki = ext(inter, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(pair.root, x509.SubjectKeyIdentifier).value.digest
    assert inter.issuer == pair.root.subject
    inter.verify_directly_issued_by(pair.root)
    assert inter.public_key() != pair.root.public_key()


def test_openssl_accepts_the_pair(tmp_path: Path) -> None:
    pair = ca_pair()
    root = write(tmp_path, "root.pem", pem(pair.root))
    inter = write(tmp_path, "inter.pem", pem(pair.intermediate))
    out = openssl("verify", "-x509_strict", "-CAfile", root, inter).stdout
    assert out.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("key_type", "algorithm", "oid", "key_class"),
    [
        ("ec-p384", None, SignatureAlgorithmOID.ECDSA_WITH_SHA384, ec.EllipticCurvePublicKey),
        ("ec-p256", "sha256-ecdsa", SignatureAlgorithmOID.ECDSA_WITH_SHA256,
         ec.EllipticCurvePublicKey),
        ("rsa2048", "sha256-rsa-pss", SignatureAlgorithmOID.RSASSA_PSS, rsa.RSAPublicKey),
        ("rsa2048", "sha512-rsa", SignatureAlgorithmOID.RSA_WITH_SHA512, rsa.RSAPublicKey),
    ],
)
def test_key_types_and_signature_algorithms(
    tmp_path: Path, key_type: str, algorithm: str | None, oid: x509.ObjectIdentifier,
    key_class: type,
) -> None:
    pair = ca_pair(key_type, algorithm)
    for cert in (pair.root, pair.intermediate):
        assert cert.signature_algorithm_oid == oid
        assert isinstance(cert.public_key(), key_class)
    assert key_type_of(pair.root.public_key()) == key_type  # type: ignore[arg-type]
    root = write(tmp_path, "root.pem", pem(pair.root))
    inter = write(tmp_path, "inter.pem", pem(pair.intermediate))
    assert openssl("verify", "-CAfile", root, inter).stdout.strip().endswith(": OK")


def test_subject_carries_org_and_email_when_given() -> None:
    pair = create_ca("R", "I", key_type="ec-p256", org="Example AG", email="pki@example.com",
                     days=10)
    for cert in (pair.root, pair.intermediate):
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
            "Example AG"
        assert cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == \
            "pki@example.com"
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 10 * 86400 <= lifetime.total_seconds() <= 10 * 86400 + 3600
    assert b"BEGIN CERTIFICATE" in pair.chain_pem()
    assert pair.chain_pem().count(b"BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    ("key_type", "algorithm", "message"),
    [
        ("ec-p256", "sha256-rsa", "does not fit"),
        ("rsa2048", "sha384-ecdsa", "does not fit"),
        ("rsa1024", None, "key type 'rsa1024'"),
        ("rsa2048", "md5-rsa", "signature algorithm 'md5-rsa'"),
    ],
)
def test_bad_key_type_and_algorithm_are_refused(
    key_type: str, algorithm: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_pair(key_type, algorithm)
    with pytest.raises(ValueError, match=message):
        create_ca("R", "I", key_type=key_type, signature_algorithm=algorithm)


def test_signature_params_check_the_key() -> None:
    with pytest.raises(ValueError, match="needs an EC key"):
        signature_params("sha256-ecdsa", new_key("rsa2048"))
    with pytest.raises(ValueError, match="needs an RSA key"):
        signature_params("sha256-rsa-pss", new_key("ec-p256"))


def test_days_and_names_are_validated() -> None:
    with pytest.raises(ValueError, match="days"):
        create_ca("R", "I", days=0)
    with pytest.raises(ValueError, match="common name"):
        create_ca(" ", "I", key_type="ec-p256")


def test_random_serial_is_positive_long_and_fits_twenty_octets() -> None:
    serials = {random_serial() for _ in range(200)}
    assert len(serials) == 200
    for s in serials:
        assert 2**158 <= s < 2**159  # RFC 5280 4.1.2.2: positive, at most 20 octets


ML_DSA_OIDS = {"ml-dsa-44": "2.16.840.1.101.3.4.3.17", "ml-dsa-65": "2.16.840.1.101.3.4.3.18",
               "ml-dsa-87": "2.16.840.1.101.3.4.3.19"}


@pytest.mark.parametrize("key_type", sorted(ML_DSA_OIDS))
def test_ml_dsa_ca_pair(key_type: str) -> None:
    # openssl 3.0 here has no ML-DSA: cryptography checks the signatures instead.
    pair = create_ca("R", "I", key_type=key_type, days=10)
    for cert in (pair.root, pair.intermediate):
        # RFC 9881 2/3: one OID names key and signature, with absent parameters.
        assert cert.signature_algorithm_oid.dotted_string == ML_DSA_OIDS[key_type]
        assert cert.signature_algorithm_parameters is None
        assert key_type_of(cert.public_key()) == key_type  # type: ignore[arg-type]
    pair.intermediate.verify_directly_issued_by(pair.root)
    pair.root.verify_directly_issued_by(pair.root)


def test_ml_dsa_signature_algorithm_must_match_the_key() -> None:
    assert check_pair("ml-dsa-65", None) == "ml-dsa-65"
    with pytest.raises(ValueError, match="does not fit"):
        check_pair("ml-dsa-65", "sha256-rsa")
    with pytest.raises(ValueError, match="does not fit"):
        check_pair("rsa2048", "ml-dsa-65")
    with pytest.raises(ValueError, match="does not fit"):
        check_pair("ml-dsa-44", "ml-dsa-87")
    with pytest.raises(ValueError, match="needs an ml-dsa-65 key, the CA key is ml-dsa-44"):
        signature_params("ml-dsa-65", new_key("ml-dsa-44"))
    with pytest.raises(ValueError, match="needs an RSA key, the CA key is ml-dsa-44"):
        signature_params("sha256-rsa", new_key("ml-dsa-44"))
