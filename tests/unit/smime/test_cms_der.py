"""Certificates keep the bytes they arrived with (smimegate.smime.cms.parsed_der).

NIST PKITS 4.3.6 (data: PyPI cryptography-vectors, see tests/vectors/README.md "pkits/"): the
UID CA certificate is 896 bytes long (header 30 82 03 80), which asn1crypto 1.5.1's dump()
mistakes for an indefinite length and re-encodes, losing the unused bits of its
subjectUniqueID: the certificate harvested from the message no longer verified.
"""

from __future__ import annotations

from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.milter.inbound import open_entity
from smimegate.smime.cms import parsed_der, to_crypto
from tests.unit.pki.pkits_support import DATA, cases, read_message

UID_CA = DATA / "certs" / "UIDCACert.crt"
UID_EE = DATA / "certs" / "ValidNameUIDsTest6EE.crt"


def test_certificate_of_length_0x380_keeps_its_bytes() -> None:
    der = UID_CA.read_bytes()
    assert der[:4] == bytes.fromhex("30820380")
    cert = to_crypto(ax509.Certificate.load(der))
    assert cert.public_bytes(Encoding.DER) == der


def test_pkits_uid_message_certificates_are_nists() -> None:
    (case,) = [c for c in cases() if c.section == "4.3.6"]
    (layer,) = open_entity(read_message(case), ()).layers
    carried = {c.public_bytes(Encoding.DER) for c in layer.certificates}
    assert carried == {UID_CA.read_bytes(), UID_EE.read_bytes()}
    assert layer.signers[0].valid


def test_indefinite_length_is_re_encoded_as_der() -> None:
    # BER from a sender: re-encoding is the only way to DER (a certificate without unique IDs).
    der = (DATA / "certs" / "TrustAnchorRootCertificate.crt").read_bytes()
    parsed = ax509.Certificate.load(der)
    inner = der[len(parsed._header):]
    ber = b"\x30\x80" + inner + b"\x00\x00"
    assert parsed_der(ax509.Certificate.load(ber)) == der
